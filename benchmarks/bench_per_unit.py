"""The cost of the per-unit form in the kernels: cycles (Uno, simavr) and instructions (QEMU
boards) per time step, per-tensor vs per-unit on the same model.

For each benchmark cell (benchmarks/bench_kernels.py) the quantizer's starting formats are built
twice, once with one shift per factor and once with one shift per unit for the summed final
products (same activation formats, same weights up to the column formats), exported, built
offline and run with ``verify --emulate`` (parity is checked on every run). Prints ONE
markdown table.

    .venv/bin/python benchmarks/bench_per_unit.py [--cells a,b,c] [--bits 8] [--boards uno,mps2_an385]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import CELLS, NAME, cell_data, cell_model, split_flash  # noqa: E402

from edgecompile.pipeline.export import export_project  # noqa: E402
from edgecompile.pipeline.verify import verify_project  # noqa: E402
from edgecompile.quant.quantizer import Structure, _keep_low_rank, _ranges, build, initial_formats  # noqa: E402
from edgecompile.reference import forward, normalise  # noqa: E402
from edgecompile.targets.build import build_project  # noqa: E402


def both_forms(key: str, bits: int):
    fm = cell_model(key)
    X = cell_data(key, 64, seed=2).astype(np.float64)
    structure = Structure(_keep_low_rank(fm.W), _keep_low_rank(fm.U))
    _, states = forward(fm, X, return_states=True)
    start = initial_formats(fm, bits, _ranges(fm, (normalise(fm, X), states), structure), structure)
    return {form: build(fm, bits, start, structure, per_unit=form == "per-unit")
            for form in ("per-tensor", "per-unit")}


def run(key: str, bits: int, board: str, work: Path) -> list[dict]:
    rows = []
    X = cell_data(key, 4)
    np.save(work / f"X_{key}.npy", X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forms = both_forms(key, bits)
    for form, qm in forms.items():
        proj = work / f"{key}{bits}_{board}_{form}"
        export_project(qm, board, out_dir=proj, force=True, name=NAME)
        res = build_project(proj, offline=True, echo=None)
        rep = verify_project(proj, data=work / f"X_{key}.npy", emulate=True)
        if not rep.ok:
            raise SystemExit(f"PARITY FAILED for cell {key} int{bits} {form} on {board}: {rep.render()}")
        code, data = split_flash(res.elf, board)
        unit = "instr" if "qemu" in rep.cycle_source else "cycles"
        shifts = qm.per_unit_line().removeprefix("per-unit shifts: ")
        rows.append(dict(cell=key, bits=bits, board=board, form=form, per_step=rep.cycles_per_step,
                         unit=unit, code=code, data=data, shifts=shifts))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="a,b,c")
    ap.add_argument("--bits", default="8")
    ap.add_argument("--boards", default="uno,mps2_an385")
    ap.add_argument("--work", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_per_unit_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for key in args.cells.split(","):
        for bits in (int(b) for b in args.bits.split(",")):
            for board in args.boards.split(","):
                rows += run(key, bits, board, work)
    print("| cell | bits | board | form | per step | code bytes | data bytes | shifts |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {CELLS[r['cell']]['what']} | {r['bits']} | {r['board']} | {r['form']} | "
              f"{r['per_step']:,} {r['unit']} | {r['code']} | {r['data']} | {r['shifts']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
