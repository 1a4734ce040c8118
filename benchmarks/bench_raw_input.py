"""Cycles per input of the raw int16 helper against the float helper, on the Uno (simavr,
cycle-exact, Timer1 at clk/1) and a Cortex-M3 (QEMU mps2_an385, icount instructions).

The shipped example (FastGRNN D=12 H=32, int8, raw LSB = 1e-4) is built into one image with
tests/c/raw_device.c: one call each of <name>_step, <name>_step_raw and <name>_step_float on the
same input, averaged over 4 calls. Per input = (helper - step) / D. On the Uno the counts are CPU
cycles; on QEMU they are SysTick counts of 40 instructions each (qemu-icount), so coarse there.
Run from the repository root:

    .venv/bin/python benchmarks/bench_raw_input.py [--boards uno,mps2_an385]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecompile.frontend.checkpoint import load_checkpoint  # noqa: E402
from edgecompile.frontend.data import load_sequences  # noqa: E402
from edgecompile.quant.quantizer import quantize  # noqa: E402
from edgecompile.sim.rawinput import raw_constants, with_raw_input  # noqa: E402
from tests.helpers.rawinput import RawCase, build_image, run_image  # noqa: E402

EXAMPLE = ROOT / "examples" / "japanese_vowels"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="uno,mps2_an385")
    args = ap.parse_args(argv)
    fm = load_checkpoint(EXAMPLE / "model.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = with_raw_input(quantize(fm, 8, load_sequences(EXAMPLE / "X_calib.npy", fm)), 1e-4)
    X = np.load(EXAMPLE / "X_test.npy")[:1]
    seqs = np.clip(np.round(X / 1e-4), -32768, 32767).astype(np.int16)
    case = RawCase("jv", qm, seqs[0, :1], np.zeros(1, np.uint16), seqs)
    d = qm.input_dim
    print(f"model: {qm.summary()}; raw shifts k = {sorted(set(raw_constants(qm).shift.ravel().tolist()))}")
    print("| board | step | step_raw | step_float | raw per input | float per input |")
    print("|---|---|---|---|---|---|")
    for board in args.boards.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            res = run_image(board, build_image(Path(tmp), board, [case]), [case])
        step, raw, flt = res.cycles["jv"]
        print(f"| {board} | {step:,} | {raw:,} | {flt:,} | {(raw - step) / d:.0f} | {(flt - step) / d:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
