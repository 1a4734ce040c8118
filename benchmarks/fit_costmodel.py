"""Measure the generated firmware over a spread of models and refit ``edgecompile/fit/costmodel.json``.

    .venv/bin/python benchmarks/fit_costmodel.py [--boards uno,microbit] [--models 100] [--ernn-models 24] [--jobs 2]

For each board, ``--models`` random FastGRNN/FastRNN checkpoints and ``--ernn-models`` random
ERNN checkpoints (when ERNN is deployable; cell, H, D, C, T, ranks, sparsity, bits and ERNN's
inner steps K drawn from a fixed seed) are exported and built with the console script exactly
as a user does (``edgecompile export`` with its default ``--profile auto`` + ``edgecompile
build``: flash = .text + .data, RAM = static .data + .bss as the build reports them) and run
with ``edgecompile verify --emulate`` (cycles per step as verify reports them: simavr cycles on
AVR, the QEMU instruction count on Cortex-M). The features are those of the quantized model the
export wrote (its profile included), computed by the current cost model at every refit. With
``--cache DIR`` a sample whose exported project (generated code, firmware harness, platform) is
byte for byte one measured before is not built and run again. Every fourth model is held out;
the coefficients are fitted on the others and the worst held-out errors are stored beside them.
Re-run after any
change to the kernels or the firmware harness; ``--refit-only`` recomputes the features of the
stored measurements (each checkpoint is regenerated from its seed and quantized again in the
profile its export took) and refits, without building anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
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

from edgecompile.errors import EdgecompileError  # noqa: E402
from edgecompile.fit import costmodel  # noqa: E402
from edgecompile.frontend.checkpoint import load_checkpoint  # noqa: E402
from edgecompile.ir.model import DEPLOYABLE_CELLS  # noqa: E402
from edgecompile.ir.qmodel import load_qmodel  # noqa: E402
from edgecompile.quant.quantizer import quantize  # noqa: E402

#: Sample indices of the ERNN models start here (their checkpoints' seeds differ from the others').
ERNN_INDEX0 = 1000


def random_spec(rng: np.random.Generator, cells: tuple[str, ...] = ("FastGRNN", "FastRNN")) -> dict[str, Any]:
    D = int(rng.integers(2, 17))
    H = int(rng.choice([4, 8, 12, 16, 24, 32, 48, 64]))
    cell = str(rng.choice(list(cells)))
    spec: dict[str, Any] = {
        "cell": cell, "hidden": H, "inputs": D,
        "classes": int(rng.integers(2, 11)), "steps": int(rng.choice([8, 16, 29])),
        "wrank": None if rng.random() < 0.4 or D < 3 else int(rng.integers(1, D)),
        "urank": None if rng.random() < 0.4 else int(rng.integers(1, max(2, H // 2) + 1)),
        # dense models about as often as sparse ones (on AVR the two run different steps; a
        # quarter sparse is mostly stored dense)
        "sparsity": float(rng.choice([0.0, 0.25, 0.5, 0.75], p=[0.35, 0.15, 0.25, 0.25])),
        "bits": int(rng.choice([8, 16])),
    }
    if cell == "ERNN":
        spec["inner_steps"] = int(rng.choice([1, 2]))
    return spec


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
    elif spec["cell"] == "ERNN":
        p.update(B=rng.normal(0, 0.5, H), eta=np.full(spec["inner_steps"], 0.05),
                 alpha=np.asarray(1.0))
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


def sample_model(spec: dict[str, Any], index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The checkpoint and calibration inputs of sample ``index`` (the same on every call)."""
    rng = np.random.default_rng([index, 7])
    ckpt = checkpoint(spec, rng)
    return ckpt, rng.normal(0, 1, (24, spec["steps"], spec["inputs"]))


#: What the measured firmware is made of: a measurement belongs to one state of these files.
KERNEL_SOURCES = ("templates", "firmware", "edgecompile/quant/profile.py", "edgecompile/codegen",
                  "edgecompile/pipeline/export.py")
#: The sources only one board family's firmware is made of (another family's digest leaves them out).
FAMILY_SOURCES = {
    "avr": ("templates/library/kernels/avr.c.j2", "templates/library/kernels/_avr_step_fast.j2",
            "firmware/avr", "firmware/arduino", "firmware/emulators/simavr_host.c",
            "firmware/emulators/simavr_uart_pty.h", "firmware/emulators/uno_optiboot_host.c"),
    "cortex-m": ("templates/library/kernels/armv7em.c.j2", "templates/library/kernels/portable.c.j2",
                 "firmware/cortexm", "firmware/harness/ech_cycles_cortexm.h", "firmware/lm3s",
                 "firmware/mps2", "firmware/nrf51", "firmware/nrf52", "firmware/rp2040",
                 "firmware/stm32f1", "firmware/stm32f4"),
}


def _family(board: str) -> str:
    return str(json.loads((ROOT / "boards" / f"{board}.json").read_text())["family"])


def kernel_digest(board: str) -> str:
    """sha256 (16 hex digits) of the templates, the firmware harness, the code generator and the
    profile rules that ``board``'s firmware is made of (not another family's kernel or HAL): a
    sample measured under another digest is measured again."""
    family = _family(board)
    skip = tuple(src for fam, srcs in FAMILY_SOURCES.items() if fam != family for src in srcs)
    h = hashlib.sha256()
    for src in KERNEL_SOURCES:
        root = ROOT / src
        for p in sorted([root] if root.is_file() else root.rglob("*")):
            rel = p.relative_to(ROOT).as_posix()
            if (p.is_file() and "__pycache__" not in p.parts
                    and not any(rel == s or rel.startswith(s + "/") for s in skip)):
                h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


#: Outside the exported project, what a measurement also depends on: the emulators' host programs.
EMULATOR_SOURCES = ROOT / "firmware" / "emulators"
#: Files a build or a run adds to the project (not what the firmware is made of).
_PROJECT_OUTPUTS = {".pio", "build.json", "verify.json"}


def project_digest(project: Path) -> str:
    """sha256 (16 hex digits) of an exported project's files (generated code, firmware harness,
    platform) and of the emulator hosts: two exports with the same digest build and run alike."""
    h = hashlib.sha256()
    files = [(p.relative_to(project).as_posix(), p) for p in project.rglob("*")
             if p.is_file() and not _PROJECT_OUTPUTS & set(p.relative_to(project).parts)]
    files += [("emulators/" + p.relative_to(EMULATOR_SOURCES).as_posix(), p)
              for p in EMULATOR_SOURCES.rglob("*") if p.is_file()]
    for rel, p in sorted(files):
        h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _cache_file(cache: Path, board: str, index: int, spec: dict[str, Any], project: str) -> Path:
    text = json.dumps({"board": board, "index": index, "spec": spec, "project": project}, sort_keys=True)
    return cache / f"{board}-{index}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"


def measure(board: str, index: int, spec: dict[str, Any], tmp: Path,
            cache: Path | None = None) -> dict[str, Any] | None:
    """One sample: export, build and run model ``index`` on ``board`` (None: it did not build).
    With ``cache``, a sample whose export is the same as one measured before (same board,
    index, spec and :func:`project_digest`) is read from there instead of built and run again.
    The sample's ``kernels`` is the :func:`kernel_digest` it was exported under (``changed``
    when the sources changed during its export or measurement)."""
    kernels = kernel_digest(board)
    work = tmp / f"{board}-{index}-{kernels}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    ckpt, X = sample_model(spec, index)
    np.savez(work / "model.npz", **ckpt)
    np.save(work / "calib.npy", X)
    np.save(work / "x.npy", X[:3])
    try:
        _run(["export", str(work / "model.npz"), "--board", board, "--bits", str(spec["bits"]),
              "--calib", str(work / "calib.npy"), "-o", str(work / "fw"),
              *(["--profile", spec["profile"]] if "profile" in spec else [])], work)
    except RuntimeError as exc:  # e.g. a model the board cannot hold: not a sample
        print(f"  {board} #{index}: skipped ({exc})", file=sys.stderr)
        return None
    project = project_digest(work / "fw")
    if cache is not None and _cache_file(cache, board, index, spec, project).is_file():
        sample = dict(json.loads(_cache_file(cache, board, index, spec, project).read_text()))
        return {**sample, "kernels": kernels if kernel_digest(board) == kernels else "changed"}
    try:
        measured = measure_project(work / "fw", work / "x.npy")
    except RuntimeError as exc:
        print(f"  {board} #{index}: skipped ({exc})", file=sys.stderr)
        return None
    try:
        qm = load_qmodel(work / "fw" / "model.qmodel.json")  # what the firmware runs
    except EdgecompileError as exc:
        print(f"  {board} #{index}: skipped ({exc})", file=sys.stderr)
        return None
    feats = costmodel.features(qm, spec["steps"])
    print(f"  {board} #{index}: {spec} {qm.profile} -> {measured}", file=sys.stderr)
    if kernel_digest(board) != kernels:
        kernels = "changed"
    sample = {"spec": spec, "index": index, "profile": qm.profile, "features": feats,
              "measured": measured, "kernels": kernels}
    if cache is not None and kernels != "changed":
        cache.mkdir(parents=True, exist_ok=True)
        _cache_file(cache, board, index, spec, project).write_text(json.dumps(sample, sort_keys=True))
    return sample


def refeature(sample: dict[str, Any], work: Path) -> dict[str, Any]:
    """``sample`` with its features recomputed by the current :func:`costmodel.features`."""
    spec = sample["spec"]
    ckpt, X = sample_model(spec, sample["index"])
    path = work / f"m{sample['index']}.npz"
    np.savez(path, **ckpt)
    qm = quantize(load_checkpoint(path), spec["bits"], calib=X, profile=sample["profile"])
    return {**sample, "features": costmodel.features(qm, spec["steps"])}


def _loo_worst(rows: list[dict[str, float]], y: list[float], terms: tuple[str, ...],
               nonnegative: bool = False) -> float:
    """The worst leave-one-out relative error of ``terms`` over ``rows``."""
    worst = 0.0
    for i in range(len(rows)):
        c = costmodel.fit_linear(rows[:i] + rows[i + 1:], y[:i] + y[i + 1:], terms, nonnegative=nonnegative)
        worst = max(worst, abs(sum(c[t] * rows[i][t] for t in terms) - y[i]) / y[i])
    return worst


def _fit(board: str, fit: list[dict[str, Any]], frame_steps: int,
         choose: bool = False) -> costmodel.BoardCostModel:
    """Coefficients fitted on ``fit`` (non-negative for cycles); ``choose``: each target's feature
    set is the one of ``costmodel.term_sets(board, target)`` with the lowest worst leave-one-out
    error (the first set otherwise)."""
    probe = costmodel.BoardCostModel(board, {}, {}, frame_steps)
    rows = [probe.terms(s["features"]) for s in fit]
    coefs = {}
    for t in costmodel.TARGETS:
        y = [float(s["measured"][t]) for s in fit]
        # cycles are sums of non-negative costs (instructions or cycles per occurrence of a
        # feature): a negative coefficient stands in for a correlated term and extrapolates badly
        options = [(ts, t == "cycles") for ts in costmodel.term_sets(board, t)]
        terms, nonneg = min(options, key=lambda o: _loo_worst(rows, y, *o)) if choose else options[0]
        coefs[t] = costmodel.fit_linear(rows, y, terms, nonnegative=nonneg)
    return costmodel.BoardCostModel(board, coefs, {}, frame_steps)


def refit(board: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    held = [s for i, s in enumerate(samples) if i % 4 == 3]
    fit = [s for i, s in enumerate(samples) if i % 4 != 3]

    def worst_ram(m: costmodel.BoardCostModel) -> float:
        return max(costmodel.relative_errors(m, [s["features"] for s in fit],
                                             [s["measured"] for s in fit])["ram"])

    # The firmware's steps per frame sizes its serial buffer: the value that explains the
    # training builds' RAM best.
    frame_steps = min((_fit(board, fit, k) for k in (1, 2, 4, 8, 16, 32, 64)), key=worst_ram).frame_steps
    model = _fit(board, fit, frame_steps, choose=True)
    errs = costmodel.relative_errors(model, [s["features"] for s in held], [s["measured"] for s in held])
    fit_errs = costmodel.relative_errors(model, [s["features"] for s in fit], [s["measured"] for s in fit])
    # each sample keeps its non-zero features only (the cost model reads the others as 0)
    samples = [{**s, "features": {k: v for k, v in s["features"].items() if v}} for s in samples]
    return {"coefficients": model.coefficients, "frame_steps": model.frame_steps,
            "held_out_worst_error": {t: round(max(v), 4) for t, v in errs.items()},
            "fit_worst_error": {t: round(max(v), 4) for t, v in fit_errs.items()},
            "n_fit": len(fit), "n_held_out": len(held), "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="uno,microbit")
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--ernn-models", type=int, default=24,
                    help="ERNN models besides --models (when ERNN is deployable).")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None,
                    help="Keep each measurement in this directory and reuse it when re-run (same "
                         "board, model index and spec): an interrupted run resumes.")
    ap.add_argument("--precise-every", type=int, default=3,
                    help="Export every Nth FastGRNN/FastRNN model with --profile precise (0: none), so "
                         "that the precise step has samples where auto seldom takes it.")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("-o", "--out", type=Path, default=costmodel.COSTMODEL_PATH)
    ap.add_argument("--add", action="store_true",
                    help="Keep the samples already stored for each board and add the new ones.")
    ap.add_argument("--refit-only", action="store_true",
                    help="Refit the coefficients from the measurements already stored in --out.")
    args = ap.parse_args()
    if args.refit_only:
        data = json.loads(args.out.read_text())
        with tempfile.TemporaryDirectory(prefix="ec-costmodel-") as tmp:
            for board, rec in data["boards"].items():
                if board not in args.boards.split(","):
                    continue
                samples = [refeature(s, Path(tmp)) for s in rec["samples"]]
                data["boards"][board] = {**refit(board, samples), "kernels": rec.get("kernels"),
                                         "kernels_consistent": rec.get("kernels_consistent")}
                print(f"{board}: {data['boards'][board]['held_out_worst_error']}", file=sys.stderr)
        args.out.write_text(costmodel.to_json(data))
        return
    rng = np.random.default_rng(args.seed)
    specs = [random_spec(rng) for _ in range(args.models)]
    indices = list(range(len(specs)))
    if "ERNN" in DEPLOYABLE_CELLS:
        rng_e = np.random.default_rng([args.seed, 1])
        specs += [random_spec(rng_e, ("ERNN",)) for _ in range(args.ernn_models)]
        indices += [ERNN_INDEX0 + i for i in range(args.ernn_models)]
    if args.precise_every > 0:
        for i in range(args.precise_every - 1, args.models, args.precise_every):
            specs[i] = {**specs[i], "profile": "precise"}
    # the ERNN models interleaved with the others, so that every fourth held out covers both
    order = sorted(range(len(specs)), key=lambda i: (indices[i] % ERNN_INDEX0) / (
        args.models if indices[i] < ERNN_INDEX0 else max(args.ernn_models, 1)))
    specs, indices = [specs[i] for i in order], [indices[i] for i in order]
    data: dict[str, Any] = {"boards": {}}
    if args.out.is_file():
        data = json.loads(args.out.read_text())
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ec-costmodel-") as tmp:
        for board in args.boards.split(","):
            # measured again until every sample belongs to the sources as they are at the end
            # (other work may change the kernels during a run); at most four passes
            for _ in range(4):
                with ThreadPoolExecutor(args.jobs) as pool:
                    results = list(pool.map(measure, [board] * len(specs), indices, specs,
                                            [Path(tmp)] * len(specs), [args.cache] * len(specs)))
                kernels = kernel_digest(board)
                stale = [r for r in results if r is not None and r["kernels"] != kernels]
                if not stale or args.cache is None:
                    break
                print(f"  {board}: {len(stale)} samples measured on other kernel sources: again",
                      file=sys.stderr)
            samples = [r for r in results if r is not None]
            if args.add and board in data["boards"]:
                samples = data["boards"][board]["samples"] + samples
            # the features of the current cost model (a cached sample may hold older ones)
            samples = [refeature(s, Path(tmp)) for s in samples]
            data["boards"][board] = {**refit(board, samples), "kernels": kernels,
                                     "kernels_consistent": all(s.get("kernels") == kernels for s in samples)}
            rec = data["boards"][board]
            print(f"{board}: {len(samples)} builds, worst held-out error "
                  + ", ".join(f"{t} {100 * e:.1f} %" for t, e in rec["held_out_worst_error"].items())
                  + f" (fit part: {rec['fit_worst_error']})", file=sys.stderr)
    data["measured_with"] = "edgecompile export + build + verify --emulate (benchmarks/fit_costmodel.py)"
    args.out.write_text(costmodel.to_json(data))
    print(f"wrote {args.out} in {time.monotonic() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
