"""Accuracy of the float model vs the bit-exact integer simulator (int8 / int16), one table.

Models: the shipped Japanese Vowels FastGRNN (low rank + 50 % sparse), and variants trained here
with the same data in a few seconds each (FastRNN, full-rank dense FastGRNN, FastGRNN with the
piecewise-linear quantSigm/quantTanh, and a QAT-fine-tuned int8 model). Calibration: the shipped
X_calib.npy (training sequences); accuracy: the 370 official test sequences.

    .venv/bin/python benchmarks/accuracy.py
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.quant.quantizer import quantize
from edgecompile.reference import forward
from edgecompile.sim.simulator import predict_quantized
from edgecompile.train.data import load_training_data
from edgecompile.train.trainer import TrainConfig, train

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "japanese_vowels"

VARIANTS = {
    "FastRNN H=32 dense": TrainConfig(cell="FastRNN", hidden=32, epochs=90, lr=0.02, batch_size=64),
    "FastGRNN H=32 dense": TrainConfig(hidden=32, epochs=90, lr=0.02, batch_size=64),
    "FastGRNN quantSigm/quantTanh r6/8 50%": TrainConfig(
        hidden=32, wrank=6, urank=8, sparsity=0.5, epochs=90, lr=0.02, batch_size=64,
        gate_nl="quantSigm", update_nl="quantTanh"),
    "FastGRNN r6/8 50% + int8 QAT": TrainConfig(
        hidden=32, wrank=6, urank=8, sparsity=0.5, epochs=90, lr=0.02, batch_size=64, qat=True),
}


def accuracy(logits: np.ndarray, y: np.ndarray) -> str:
    return f"{100 * float((logits.argmax(1) == y).mean()):.2f}%"


def main() -> None:
    X_test, y_test = np.load(EXAMPLE / "X_test.npy"), np.load(EXAMPLE / "y_test.npy")
    calib = np.load(EXAMPLE / "X_calib.npy").astype(np.float64)
    models = {"shipped FastGRNN r6/8 50% (model.npz)": load_checkpoint(EXAMPLE / "model.npz")}
    data = load_training_data(EXAMPLE / "JapaneseVowels_TRAIN.ts", length=29)
    for name, cfg in VARIANTS.items():
        start = time.perf_counter()
        models[name] = train(data.X, data.y, cfg, lengths=data.lengths).model
        print(f"trained {name} in {time.perf_counter() - start:.1f} s")
    print("\n| model | non-zero parameters | float | int8 | int16 | int8 argmax agreement | int8 max logit error |")
    print("|---|---|---|---|---|---|---|")
    for name, fm in models.items():
        ref = forward(fm, X_test)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            q8 = predict_quantized(quantize(fm, 8, calib), X_test)
            q16 = predict_quantized(quantize(fm, 16, calib), X_test)
        # learned parameters, as `inspect` counts them: mean/std (input normalisation) excluded
        params = sum(int(np.count_nonzero(a)) for k, a in fm.arrays().items() if k not in ("mean", "std"))
        agree = 100 * float((q8.argmax(1) == ref.argmax(1)).mean())
        print(f"| {name} | {params} | {accuracy(ref, y_test)} | {accuracy(q8, y_test)} | "
              f"{accuracy(q16, y_test)} | {agree:.2f}% | {np.abs(q8 - ref).max():.4f} |")


if __name__ == "__main__":
    main()
