"""Host-side speed: the NumPy simulator against the same kernel compiled natively, and
the wall time of ``export`` + offline ``build`` for the Uno.

    .venv/bin/python benchmarks/bench_host.py [--n 10000]

Cell (c): FastGRNN D=12, H=32, T=29, dense, int8 (benchmarks/bench_kernels.py). The native run
compiles the generated library with ``gcc -O2`` and a small driver that runs every sequence
(``predict``), timed inside the driver (file I/O excluded). Prints one markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import cell_data, cell_model  # noqa: E402

from edgecompile.codegen import render_library  # noqa: E402
from edgecompile.pipeline.export import export_project  # noqa: E402
from edgecompile.quant.quantizer import quantize  # noqa: E402
from edgecompile.sim.simulator import quantize_inputs, simulate  # noqa: E402
from edgecompile.targets.build import build_project  # noqa: E402

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "bench.h"
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "rb");
    long n = atol(argv[2]), steps = atol(argv[3]), i, sum = 0;
    size_t per = (size_t)steps * BENCH_INPUT_DIM;
    int16_t *x = malloc(sizeof(int16_t) * per * (size_t)n);
    int32_t logits[BENCH_NUM_CLASSES];
    struct timespec t0, t1;
    if (f == NULL || x == NULL || fread(x, sizeof(int16_t), per * (size_t)n, f) != per * (size_t)n) return 2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; ++i) sum += bench_predict(x + per * (size_t)i, (uint16_t)steps, logits);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.6f %ld\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), sum);
    return 0;
}
"""


def native_seconds(qm, x_q: np.ndarray, work: Path, flags: list[str]) -> tuple[float, np.ndarray]:
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
    out = subprocess.run([str(exe), str(work / "x.bin"), str(len(x_q)), str(x_q.shape[1])],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args(argv)
    os.environ.setdefault("EDGECOMPILE_OFFLINE", "1")
    fm = cell_model("c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = quantize(fm, 8, cell_data("c", 64, seed=2))
    X = cell_data("c", args.n, seed=5)
    x_q = quantize_inputs(qm, X)
    simulate(qm, x_q[:10])  # warm-up
    t0 = time.perf_counter()
    logits = simulate(qm, x_q)
    sim_s = time.perf_counter() - t0
    rows = [("simulator (NumPy, batched), 10,000 sequences of cell c" if args.n == 10_000
             else f"simulator, {args.n} sequences of cell c", f"{sim_s:.3f} s", "target <= 2 s")]
    with tempfile.TemporaryDirectory() as tmp:
        for label, flags in (("native gcc -O2, fast kernel", []),
                             ("native gcc -O2, reference kernel", ["-DEC_KERNEL_REFERENCE"])):
            secs, classes = native_seconds(qm, x_q, Path(tmp) / label.split()[-2], flags)
            if classes != int(logits.argmax(1).sum()):
                raise SystemExit("native predictions differ from the simulator")
            rows.append((f"{label}, same sequences (one at a time)", f"{secs:.3f} s",
                         f"simulator / native = {sim_s / secs:.2f}x"))
        model = Path(tmp) / "model.npz"
        from edgecompile.frontend.checkpoint import save_checkpoint

        save_checkpoint(fm, model)
        t0 = time.perf_counter()
        export_project(model, "uno", bits=8, out_dir=Path(tmp) / "uno", name="bench")
        t1 = time.perf_counter()
        build_project(Path(tmp) / "uno", offline=True, echo=None)
        t2 = time.perf_counter()
        rows.append(("export (uno, int8, no calibration)", f"{t1 - t0:.2f} s", ""))
        rows.append(("offline build (uno)", f"{t2 - t1:.2f} s", f"export + build = {t2 - t0:.2f} s, target <= 5 s"))
    print("| what | wall time | note |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
