"""Measure the generated firmware over a spread of models and refit ``edgecompile/fit/costmodel.json``.

    .venv/bin/python benchmarks/fit_costmodel.py [--boards uno,microbit] [--models 40] [--jobs 2]

For each board, ``--models`` random FastGRNN/FastRNN checkpoints (cell, H, D, C, T, ranks,
sparsity and bits drawn from a fixed seed) are exported and built with the console script
exactly as a user does (``edgecompile export`` + ``edgecompile build``: flash = .text + .data,
RAM = static .data + .bss as the build reports them) and run with ``edgecompile verify
--emulate`` (cycles per step as verify reports them: simavr cycles on AVR, the QEMU instruction
count on Cortex-M). Every fourth model is held out; the coefficients are fitted on the others
and the worst held-out errors are stored beside them. Re-run after any change to the kernels or
the firmware harness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EC = str(ROOT / ".venv" / "bin" / "edgecompile")
sys.path.insert(0, str(ROOT))

from edgecompile.fit import costmodel  # noqa: E402
from edgecompile.frontend.checkpoint import load_checkpoint  # noqa: E402
from edgecompile.quant.quantizer import quantize  # noqa: E402


def random_spec(rng: np.random.Generator) -> dict[str, Any]:
    D = int(rng.integers(2, 17))
    H = int(rng.choice([4, 8, 12, 16, 24, 32, 48, 64]))
    return {
        "cell": str(rng.choice(["FastGRNN", "FastRNN"])), "hidden": H, "inputs": D,
        "classes": int(rng.integers(2, 11)), "steps": int(rng.choice([8, 16, 29])),
        "wrank": None if rng.random() < 0.4 or D < 3 else int(rng.integers(1, D)),
        "urank": None if rng.random() < 0.4 else int(rng.integers(1, max(2, H // 2) + 1)),
        "sparsity": float(rng.choice([0.0, 0.25, 0.5, 0.75])), "bits": int(rng.choice([8, 16])),
    }


def _sparse(a: np.ndarray, s: float) -> np.ndarray:
    keep = max(1, a.size - int(round(s * a.size)))
    order = np.argsort(-np.abs(a).reshape(-1), kind="stable")
    out = np.zeros(a.size)
    out[order[:keep]] = a.reshape(-1)[order[:keep]]
    return out.reshape(a.shape)


def checkpoint(spec: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    H, D, C, s = spec["hidden"], spec["inputs"], spec["classes"], spec["sparsity"]
    p: dict[str, np.ndarray] = {}
    for name, rows, rank in (("W", D, spec["wrank"]), ("U", H, spec["urank"])):
        if rank:
            p[name + "1"] = _sparse(rng.normal(0, 1 / np.sqrt(rows), (rows, rank)), s)
            p[name + "2"] = _sparse(rng.normal(0, 1 / np.sqrt(rank), (rank, H)), s)
        else:
            p[name] = _sparse(rng.normal(0, 1 / np.sqrt(rows), (rows, H)), s)
    if spec["cell"] == "FastGRNN":
        p.update(Bg=rng.normal(0, 0.5, H), Bh=rng.normal(0, 0.5, H), zeta=np.asarray(1.0),
                 nu=np.asarray(-4.0))
    else:
        p.update(B=rng.normal(0, 0.5, H), alpha=np.asarray(-3.0), beta=np.asarray(3.0))
    p.update(FC=rng.normal(0, 1 / np.sqrt(H), (H, C)), FCbias=rng.normal(0, 0.1, C))
    return p


def _run(args: list[str], cwd: Path) -> None:
    res = subprocess.run([EC, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"edgecompile {args[0]}: {res.stderr.strip().splitlines()[-1:]}")


def measure_project(project: Path, data: Path) -> dict[str, float]:
    """Flash and RAM as ``edgecompile build`` reports them, cycles/step as ``verify`` does."""
    _run(["build", str(project), "--json", str(project / "build.json")], project.parent)
    _run(["verify", str(project), "--emulate", "--data", str(data), "--json",
          str(project / "verify.json")], project.parent)
    b = json.loads((project / "build.json").read_text())["linked"]
    v = json.loads((project / "verify.json").read_text())
    return {"flash": b["flash_used"], "ram": b["ram_used"], "cycles": v["cycles_per_step"]}


def measure(board: str, index: int, spec: dict[str, Any], tmp: Path) -> dict[str, Any] | None:
    rng = np.random.default_rng([index, 7])
    work = tmp / f"{board}-{index}"
    work.mkdir()
    np.savez(work / "model.npz", **checkpoint(spec, rng))
    X = rng.normal(0, 1, (24, spec["steps"], spec["inputs"]))
    np.save(work / "calib.npy", X)
    np.save(work / "x.npy", X[:3])
    try:
        _run(["export", str(work / "model.npz"), "--board", board, "--bits", str(spec["bits"]),
              "--calib", str(work / "calib.npy"), "-o", str(work / "fw")], work)
        measured = measure_project(work / "fw", work / "x.npy")
    except RuntimeError as exc:  # e.g. a model the board cannot hold: not a sample
        print(f"  {board} #{index}: skipped ({exc})", file=sys.stderr)
        return None
    qm = quantize(load_checkpoint(work / "model.npz"), spec["bits"], calib=X)
    feats = costmodel.features(qm, spec["steps"])
    print(f"  {board} #{index}: {spec} -> {measured}", file=sys.stderr)
    return {"spec": spec, "features": feats, "measured": measured}


def _fit(board: str, fit: list[dict[str, Any]], frame_steps: int) -> costmodel.BoardCostModel:
    probe = costmodel.BoardCostModel(board, {}, {}, frame_steps)
    rows = [probe.terms(s["features"]) for s in fit]
    coefs = {t: costmodel.fit_linear(rows, [s["measured"][t] for s in fit], costmodel.TERMS[t])
             for t in costmodel.TARGETS}
    return costmodel.BoardCostModel(board, coefs, {}, frame_steps)


def refit(board: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    held = [s for i, s in enumerate(samples) if i % 4 == 3]
    fit = [s for i, s in enumerate(samples) if i % 4 != 3]

    def worst_ram(m: costmodel.BoardCostModel) -> float:
        return max(costmodel.relative_errors(m, [s["features"] for s in fit],
                                             [s["measured"] for s in fit])["ram"])

    # The firmware's steps per frame sizes its serial buffer: the value that explains the
    # training builds' RAM best.
    model = min((_fit(board, fit, k) for k in (1, 2, 4, 8, 16, 32, 64)), key=worst_ram)
    errs = costmodel.relative_errors(model, [s["features"] for s in held], [s["measured"] for s in held])
    fit_errs = costmodel.relative_errors(model, [s["features"] for s in fit], [s["measured"] for s in fit])
    return {"coefficients": model.coefficients, "frame_steps": model.frame_steps,
            "held_out_worst_error": {t: round(max(v), 4) for t, v in errs.items()},
            "fit_worst_error": {t: round(max(v), 4) for t, v in fit_errs.items()},
            "n_fit": len(fit), "n_held_out": len(held), "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="uno,microbit")
    ap.add_argument("--models", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("-o", "--out", type=Path, default=costmodel.COSTMODEL_PATH)
    ap.add_argument("--refit-only", action="store_true",
                    help="Refit the coefficients from the measurements already stored in --out.")
    args = ap.parse_args()
    if args.refit_only:
        data = json.loads(args.out.read_text())
        for board, rec in data["boards"].items():
            data["boards"][board] = refit(board, rec["samples"])
            print(f"{board}: {data['boards'][board]['held_out_worst_error']}", file=sys.stderr)
        args.out.write_text(costmodel.to_json(data))
        return
    rng = np.random.default_rng(args.seed)
    specs = [random_spec(rng) for _ in range(args.models)]
    data: dict[str, Any] = {"boards": {}}
    if args.out.is_file():
        data = json.loads(args.out.read_text())
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ec-costmodel-") as tmp:
        for board in args.boards.split(","):
            with ThreadPoolExecutor(args.jobs) as pool:
                results = list(pool.map(measure, [board] * len(specs), range(len(specs)), specs,
                                        [Path(tmp)] * len(specs)))
            samples = [r for r in results if r is not None]
            data["boards"][board] = refit(board, samples)
            rec = data["boards"][board]
            print(f"{board}: {len(samples)} builds, worst held-out error "
                  + ", ".join(f"{t} {100 * e:.1f} %" for t, e in rec["held_out_worst_error"].items())
                  + f" (fit part: {rec['fit_worst_error']})", file=sys.stderr)
    data["measured_with"] = "edgecompile export + build + verify --emulate (benchmarks/fit_costmodel.py)"
    args.out.write_text(costmodel.to_json(data))
    print(f"wrote {args.out} in {time.monotonic() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
