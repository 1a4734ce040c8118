"""Kernel benchmarks: cycles per time step of the generated library on emulated boards.

For each cell, weight width and board: export the project, build it offline with PlatformIO,
run ``verify --emulate`` (parity is checked on every run: a benchmark of a wrong kernel is an
error) and read the cycle counts it reports, then split the flash of the linked ELF into kernel
code and model data (weights + tables) from the symbol table. Prints ONE markdown table.

    .venv/bin/python benchmarks/bench_kernels.py [--cells a,b,c] [--bits 8,16]
        [--boards uno,mps2_an385,mps2_an386,mps2_an500] [--n 4] [--work DIR]
        [--kernels fast,reference] [--profile precise,fast]

Cell ``a-trained`` is cell a's shape trained (``edgecompile.train``, a few seeded epochs on a
synthetic 10-class task of 16 x 16 sequences), cached as ``a_trained_<digest>.npz`` under ``--work`` (or
``$EDGECOMPILE_BENCH_CACHE``); the other cells are random models.

``--boards twins`` runs the real boards that have an emulated twin (nucleo_f401re on QEMU's
netduinoplus2, bluepill_f103c8 on stm32vldiscovery, microbit on microbit); ``all`` both sets.

Units: on the Uno, CPU cycles (simavr is cycle-exact, Timer1 at clk/1); on the QEMU boards and
twins, instructions (``-icount shift=0``, the counter's counts times the machine's
instructions per count; QEMU models no pipeline): M0/M3/M4/M7 columns compare instruction
counts, not time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgecompile.frontend.checkpoint import load_checkpoint, save_checkpoint
from edgecompile.ir.model import FloatModel
from edgecompile.pipeline.export import export_project
from edgecompile.pipeline.verify import verify_project
from edgecompile.quant.quantizer import quantize
from edgecompile.targets.boards import get_board
from edgecompile.targets.build import build_project
from edgecompile.targets.platforms import platform_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import random_model  # noqa: E402

#: The three benchmark cells: (D, H, wRank, uRank, T, C).
CELLS = {
    "a": dict(D=16, H=32, wrank=5, urank=5, T=16, C=10, what="D16 H32 r5/5 (USPS)"),
    "b": dict(D=16, H=32, wrank=None, urank=None, T=16, C=10, what="D16 H32 full rank"),
    "c": dict(D=12, H=32, wrank=None, urank=None, T=29, C=9, what="D12 H32 dense (vowels)"),
    "a-trained": dict(D=16, H=32, wrank=5, urank=5, T=16, C=10, what="D16 H32 r5/5 (USPS), trained"),
}
BOARDS = ("uno", "mps2_an385", "mps2_an386", "mps2_an500")
#: real boards whose firmware runs on a QEMU twin of the same SoC family
TWINS = ("nucleo_f401re", "bluepill_f103c8", "microbit")
BOARD_SETS = {"twins": TWINS, "all": BOARDS + TWINS}
BOARD_LABEL = {"uno": "Uno (AVR)", "lm3s6965evb": "lm3s6965evb (M3)", "mps2_an385": "AN385 (M3)",
               "mps2_an386": "AN386 (M4)", "mps2_an500": "AN500 (M7)",
               "nucleo_f401re": "Nucleo F401RE on netduinoplus2 (M4)",
               "bluepill_f103c8": "Blue Pill on stm32vldiscovery (M3)",
               "microbit": "micro:bit v1 on microbit (M0)"}
NAME = "bench"


def synthetic_task(key: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled sequences of the cell's shape: per class a random smooth template over time and
    features (a few sinusoids), plus noise and a random gain; labels 0..C-1."""
    c = CELLS[key]
    T, D, C = c["T"], c["D"], c["C"]
    proto = np.random.default_rng(1234)
    t = np.arange(T)[:, None] / T
    freq, phase = proto.uniform(0.5, 3.0, (C, 1, D)), proto.uniform(0.0, 2 * np.pi, (C, 1, D))
    templates = np.sin(2 * np.pi * freq * t[None] + phase)  # [C, T, D]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = templates[y] * rng.uniform(0.7, 1.3, (n, 1, 1)) + rng.normal(0.0, 0.4, (n, T, D))
    return X.astype(np.float32), y


def trained_model(key: str, cache: Path) -> FloatModel:
    """Cell ``key``'s shape trained for a few seeded epochs on :func:`synthetic_task` (cached under
    a name that carries the cell and the training settings, written whole or not at all)."""
    from edgecompile.train import TrainConfig, train

    c = CELLS[key]
    cfg = TrainConfig(hidden=c["H"], wrank=c["wrank"], urank=c["urank"], epochs=6, seed=0)
    tag = hashlib.sha256(repr((sorted(c.items()), cfg)).encode()).hexdigest()[:12]
    path = cache / f"{key.replace('-', '_')}_{tag}.npz"
    if not path.exists():
        X, y = synthetic_task(key, 600, seed=5)
        cache.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.stem + ".part.npz")
        save_checkpoint(train(X, y, cfg).model, part)
        part.replace(path)
    return load_checkpoint(path)


def cell_model(key: str, seed: int = 0, cache: Path | None = None) -> FloatModel:
    """A FastGRNN of the cell's shape with EdgeML-like random weights (sigmoid gate, tanh update),
    or, for a ``-trained`` cell, trained (cached under ``cache``)."""
    c = CELLS[key]
    if key.endswith("-trained"):
        return trained_model(key, cache or Path(os.environ.get("EDGECOMPILE_BENCH_CACHE", tempfile.gettempdir())))
    return random_model("FastGRNN", c["D"], c["H"], c["C"], wrank=c["wrank"], urank=c["urank"], seed=seed)


def cell_data(key: str, n: int, seed: int = 1) -> np.ndarray:
    c = CELLS[key]
    if key.endswith("-trained"):  # sequences of the task it learnt
        return synthetic_task(key, n, seed=100 + seed)[0]
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, c["T"], c["D"])).astype(np.float32)


def trained_accuracy(qm, key: str) -> float:
    """The quantized model's accuracy (bit-exact simulator) on 200 held-out task sequences."""
    from edgecompile.sim import quantize_inputs, simulate

    X, y = synthetic_task(key, 200, seed=77)
    return float(np.mean(np.argmax(simulate(qm, quantize_inputs(qm, X)), axis=-1) == y))


def macs_per_step(qm) -> int:
    return qm.W.macs() + qm.U.macs()


def split_flash(elf: Path, board_id: str, name: str = NAME) -> tuple[int, int]:
    """(kernel code bytes, model data bytes) linked into ``elf``: the sizes of the library's
    ``<name>_*`` functions (F) and objects (O) from the symbol table (``objdump -t``; on AVR
    both live in .text, so the symbol kind decides)."""
    objdump = platform_for(get_board(board_id)).toolchain_prefix + "objdump"
    out = subprocess.run([objdump, "-t", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    code = data = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[-1].startswith(name + "_"):
            continue
        size = int(parts[-2], 16)
        if " F " in line:
            code += size
        elif " O " in line:
            data += size
    return code, data


def board_list(spec: str) -> list[str]:
    """``--boards``: comma-separated ids (former ids accepted) or the sets ``twins``, ``all``."""
    out: list[str] = []
    for item in spec.split(","):
        out += BOARD_SETS[item] if item in BOARD_SETS else [get_board(item).id]
    return out


def run_one(key: str, bits: int, board: str, n: int, work: Path, kernel: str = "fast",
            profile: str = "precise") -> dict:
    board = get_board(board).id
    fm = cell_model(key, cache=work)
    X = cell_data(key, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = quantize(fm, bits, cell_data(key, 64, seed=2), profile=profile)
    proj = work / f"{key.replace('-', '_')}{bits}_{board}_{kernel}_{profile}"
    export_project(qm, board, out_dir=proj, force=True, name=NAME)
    if kernel == "reference":  # the library's other kernel, selected by a macro
        ini = proj / "platformio.ini"
        ini.write_text(ini.read_text().replace("build_flags =\n", "build_flags =\n    -DEC_KERNEL_REFERENCE\n", 1))
    res = build_project(proj, offline=True, echo=None)
    np.save(work / f"X_{key}.npy", X)
    rep = verify_project(proj, data=work / f"X_{key}.npy", emulate=True)
    if key.endswith("-trained"):
        fm_acc = trained_accuracy(qm, key)
        print(f"# {key} int{bits}: accuracy of the quantized model on held-out task sequences {fm_acc:.2f}",
              file=sys.stderr)
    if not rep.ok:
        raise SystemExit(f"PARITY FAILED for cell {key} int{bits} on {board}: {rep.render()}")
    code, data = split_flash(res.elf, board)
    macs = macs_per_step(qm)
    T = CELLS[key]["T"]
    unit = "instr" if "qemu" in rep.cycle_source else "cycles"
    return dict(cell=key, bits=bits, board=board, kernel=kernel, profile=qm.profile, macs=macs,
                per_step=rep.cycles_per_step,
                per_inf=rep.cycles_per_inference, T=T, unit=unit, code=code, data=data,
                flash=rep.flash_bytes, ram=rep.ram_bytes)


def table(rows: list[dict]) -> str:
    head = ("| cell | bits | board | kernel | profile | MACs/step | cycles or instr / step | per MAC | per inference "
            "(T steps + logits) | kernel code B | weights+tables B | flash / RAM (whole firmware) |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['cell']}: {CELLS[r['cell']]['what']} | int{r['bits']} "
            f"| {BOARD_LABEL.get(r['board'], r['board'])} | {r['kernel']} | {r['profile']} "
            f"| {r['macs']:,} | {r['per_step']:,.0f} {r['unit']} | {r['per_step'] / r['macs']:.1f} "
            f"| {r['per_inf']:,.0f} (T={r['T']}) | {r['code']:,} | {r['data']:,} "
            f"| {r['flash']:,} / {r['ram']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="a,b,c")
    ap.add_argument("--bits", default="8,16")
    ap.add_argument("--boards", default=",".join(BOARDS),
                    help="board ids, or 'twins' / 'all' (see the module docstring)")
    ap.add_argument("--n", type=int, default=4, help="sequences per run (median reported)")
    ap.add_argument("--work", type=Path, default=None, help="keep the projects here")
    ap.add_argument("--kernels", default="fast", help="fast (default), reference; comma-separated")
    ap.add_argument("--profile", default="precise",
                    help="arithmetic profiles: precise (default), fast, auto; comma-separated")
    args = ap.parse_args(argv)
    os.environ.setdefault("EDGECOMPILE_OFFLINE", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="ec_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for key in args.cells.split(","):
            for bits in (int(b) for b in args.bits.split(",")):
                for board in board_list(args.boards):
                    for kernel in args.kernels.split(","):
                        for profile in args.profile.split(","):
                            print(f"# cell {key} int{bits} {board} {kernel} {profile} ...", file=sys.stderr,
                                  flush=True)
                            rows.append(run_one(key, bits, board, args.n, work, kernel, profile))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
