"""Host-side speed: the NumPy simulator against the same kernel compiled natively, and
the wall time of ``export`` + offline ``build`` for the Uno.

    .venv/bin/python benchmarks/bench_host.py [--n 10000] [--shapes jv8,c8,...] [--repeat 3]
        [--no-build] [--profile SHAPE]

For every shape the simulator (``simulate``, batched over all sequences) and the generated
library compiled with ``gcc -O2`` (its fast kernel and its reference kernel,
``-DEC_KERNEL_REFERENCE``) run the same int16 inputs; the native driver runs every sequence
through ``predict`` one at a time, timed inside the driver (file I/O excluded). Each time is
the best of ``--repeat`` runs; the native logits must equal the simulator's (a checksum of
every logit and the class sum), or the benchmark stops. The ratio column is native time /
simulator time (1.0x: as fast as native C; the target is >= 0.5x against the fast kernel).
``--profile SHAPE`` prints a cProfile of one simulator run of that shape instead.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import random_model  # noqa: E402
from bench_kernels import CELLS, cell_data, cell_model  # noqa: E402
from bench_per_unit import both_forms  # noqa: E402

from edgecompile.codegen import render_library  # noqa: E402
from edgecompile.frontend.checkpoint import load_checkpoint  # noqa: E402
from edgecompile.ir.model import FloatModel  # noqa: E402
from edgecompile.ir.qmodel import QuantizedModel  # noqa: E402
from edgecompile.pipeline.export import export_project  # noqa: E402
from edgecompile.quant.quantizer import quantize  # noqa: E402
from edgecompile.sim.simulator import quantize_inputs, simulate  # noqa: E402
from edgecompile.targets.build import build_project  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
JV = ROOT / "examples" / "japanese_vowels"

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "bench.h"
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "rb");
    long n = atol(argv[2]), steps = atol(argv[3]), i, sum = 0;
    long long lsum = 0;
    size_t per = (size_t)steps * BENCH_INPUT_DIM;
    int16_t *x = malloc(sizeof(int16_t) * per * (size_t)n);
    int32_t *logits = malloc(sizeof(int32_t) * BENCH_NUM_CLASSES * (size_t)n);
    struct timespec t0, t1;
    if (argc < 4 || f == NULL || x == NULL || logits == NULL
        || fread(x, sizeof(int16_t), per * (size_t)n, f) != per * (size_t)n) return 2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; ++i)
        sum += bench_predict(x + per * (size_t)i, (uint16_t)steps, logits + BENCH_NUM_CLASSES * (size_t)i);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (i = 0; i < n * BENCH_NUM_CLASSES; ++i) lsum += (long long)logits[i] * (long long)(i % 7 + 1);
    printf("%.6f %ld %lld\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           sum, lsum);
    return 0;
}
"""


def _q(fm: FloatModel, bits: int, calib: np.ndarray) -> QuantizedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(fm, bits, calib)


def _tile(X: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([X] * (n // len(X) + 1))[:n]


def _cell(key: str, bits: int) -> Callable[[int], tuple[QuantizedModel, np.ndarray]]:
    return lambda n: (_q(cell_model(key), bits, cell_data(key, 64, seed=2)), cell_data(key, n, seed=5))


def _jv(bits: int) -> Callable[[int], tuple[QuantizedModel, np.ndarray]]:
    def make(n: int) -> tuple[QuantizedModel, np.ndarray]:
        qm = _q(load_checkpoint(JV / "model.npz"), bits, np.load(JV / "X_calib.npy"))
        return qm, _tile(np.load(JV / "X_test.npy"), n)
    return make


def _per_unit(key: str, bits: int) -> Callable[[int], tuple[QuantizedModel, np.ndarray]]:
    def make(n: int) -> tuple[QuantizedModel, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qm = both_forms(key, bits)["per-unit"]
        return qm, cell_data(key, n, seed=5)
    return make


def _nl(cell: str, gate: str, update: str, bits: int) -> Callable[[int], tuple[QuantizedModel, np.ndarray]]:
    def make(n: int) -> tuple[QuantizedModel, np.ndarray]:
        fm = random_model(cell, 12, 32, 9, gate_nl=gate, update_nl=update)
        rng = np.random.default_rng(5)
        return _q(fm, bits, rng.normal(0, 1, (64, 29, 12))), rng.normal(0, 1, (n, 29, 12))
    return make


#: shape key -> (what, builder of (quantized model, raw inputs [n, T, D]))
SHAPES: dict[str, tuple[str, Callable[[int], tuple[QuantizedModel, np.ndarray]]]] = {
    "jv8": ("Japanese Vowels (shipped), D12 H32 r6/8 sparse, int8", _jv(8)),
    "jv16": ("Japanese Vowels (shipped), int16", _jv(16)),
    "a8": (f"a: {CELLS['a']['what']}, T16, int8", _cell("a", 8)),
    "a16": (f"a: {CELLS['a']['what']}, T16, int16", _cell("a", 16)),
    "b8": (f"b: {CELLS['b']['what']}, T16, int8", _cell("b", 8)),
    "c8": (f"c: {CELLS['c']['what']}, T29, int8", _cell("c", 8)),
    "c16": (f"c: {CELLS['c']['what']}, T29, int16", _cell("c", 16)),
    "a8pu": ("a, per-unit shifts, int8", _per_unit("a", 8)),
    "b8pu": ("b, per-unit shifts, int8", _per_unit("b", 8)),
    "rnn8": ("FastRNN D12 H32 dense, update tanh, T29, int8", _nl("FastRNN", "sigmoid", "tanh", 8)),
    "relu8": ("FastGRNN D12 H32, gate quantSigm4, update relu, T29, int8",
              _nl("FastGRNN", "quantSigm4", "relu", 8)),
    "qt16": ("FastGRNN D12 H32, gate quantSigm, update quantTanh, T29, int16",
             _nl("FastGRNN", "quantSigm", "quantTanh", 16)),
}


def native_seconds(qm: QuantizedModel, x_q: np.ndarray, work: Path, flags: list[str],
                   repeat: int) -> tuple[float, int, int]:
    """Best wall time of the driver over ``repeat`` runs, the class sum and the logit checksum."""
    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    for rel, data in render_library(qm, "bench", backend="native").items():
        if rel.startswith("src/"):
            (work / rel).write_bytes(data)
    (src / "driver.c").write_text(DRIVER)
    exe = work / "native"
    subprocess.run(["gcc", "-O2", *flags, "-I", str(src), str(src / "driver.c"), str(src / "bench.c"),
                    "-o", str(exe)], check=True)
    (work / "x.bin").write_bytes(np.ascontiguousarray(x_q, dtype="<i2").tobytes())
    best, classes, lsum = float("inf"), 0, 0
    for _ in range(repeat):
        out = subprocess.run([str(exe), str(work / "x.bin"), str(len(x_q)), str(x_q.shape[1])],
                             capture_output=True, text=True, check=True).stdout.split()
        best, classes, lsum = min(best, float(out[0])), int(out[1]), int(out[2])
    return best, classes, lsum


def logit_checksum(logits: np.ndarray) -> int:
    flat = np.asarray(logits, dtype=np.int64).ravel()
    return int((flat * (np.arange(flat.size) % 7 + 1)).sum())


def sim_seconds(qm: QuantizedModel, x_q: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    simulate(qm, x_q[:10])  # warm-up
    best, logits = float("inf"), np.empty(0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        logits = simulate(qm, x_q)
        best = min(best, time.perf_counter() - t0)
    return best, logits


def speed_rows(shapes: list[str], n: int, repeat: int, work: Path) -> list[tuple[str, ...]]:
    rows = []
    for key in shapes:
        what, make = SHAPES[key]
        print(f"# {key}: {what} ...", file=sys.stderr, flush=True)
        qm, X = make(n)
        x_q = quantize_inputs(qm, X)
        sim_s, logits = sim_seconds(qm, x_q, repeat)
        native = {}
        for kernel, flags in (("fast", []), ("reference", ["-DEC_KERNEL_REFERENCE"])):
            secs, classes, lsum = native_seconds(qm, x_q, work / f"{key}_{kernel}", flags, repeat)
            if classes != int(logits.argmax(1).sum()) or lsum != logit_checksum(logits):
                raise SystemExit(f"{key}: native {kernel} logits differ from the simulator")
            native[kernel] = secs
        rows.append((key, what, f"{n:,} x T{x_q.shape[1]}", f"{sim_s:.3f} s", f"{native['fast']:.3f} s",
                     f"{native['reference']:.3f} s", f"{native['fast'] / sim_s:.2f}x",
                     f"{native['reference'] / sim_s:.2f}x"))
    return rows


def build_rows(work: Path) -> list[tuple[str, str, str]]:
    from edgecompile.frontend.checkpoint import save_checkpoint

    fm = cell_model("c")
    model = work / "model.npz"
    save_checkpoint(fm, model)
    t0 = time.perf_counter()
    export_project(model, "uno", bits=8, out_dir=work / "uno", name="bench")
    t1 = time.perf_counter()
    build_project(work / "uno", offline=True, echo=None)
    t2 = time.perf_counter()
    return [("export (uno, int8, no calibration)", f"{t1 - t0:.2f} s", ""),
            ("offline build (uno)", f"{t2 - t1:.2f} s", f"export + build = {t2 - t0:.2f} s, target <= 5 s")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="sequences per shape")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: " + ",".join(SHAPES))
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best reported)")
    ap.add_argument("--no-build", action="store_true", help="skip the export + build timing")
    ap.add_argument("--profile", metavar="SHAPE", help="profile one simulator run of SHAPE and stop")
    args = ap.parse_args(argv)
    os.environ.setdefault("EDGECOMPILE_OFFLINE", "1")
    shapes = args.shapes.split(",")
    unknown = [s for s in shapes + ([args.profile] if args.profile else []) if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    if args.profile:
        qm, X = SHAPES[args.profile][1](args.n)
        x_q = quantize_inputs(qm, X)
        simulate(qm, x_q[:10])
        prof = cProfile.Profile()
        prof.runcall(simulate, qm, x_q)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        rows = speed_rows(shapes, args.n, args.repeat, Path(tmp))
        brows = [] if args.no_build else build_rows(Path(tmp))
    print("| shape | what | sequences | simulator | native -O2 fast | native -O2 reference "
          "| native fast / simulator | native reference / simulator |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if brows:
        print("\n| what | wall time | note |\n|---|---|---|")
        for b in brows:
            print(f"| {b[0]} | {b[1]} | {b[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
