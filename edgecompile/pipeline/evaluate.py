"""`evaluate`/`predict`: float reference vs the bit-exact integer simulator on data."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.quant.quantizer import CalibrationWarning, quantize
from edgecompile.reference import forward
from edgecompile.sim.simulator import predict_quantized

Warn = Callable[[str], object]  # a one-line printer


def quantize_for_cli(model: FloatModel, bits: int, calib: np.ndarray | None,
                     warn: Warn | None = None) -> QuantizedModel:
    """Quantize, routing the no-calibration warning to ``warn`` (a one-line printer)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        qm = quantize(model, bits, calib)
    for w in caught:
        if warn is not None and issubclass(w.category, CalibrationWarning):
            warn(f"warning: {w.message}")
    return qm


def predict_logits(model: FloatModel, X: np.ndarray, bits: str, calib: np.ndarray | None,
                   warn: Warn | None = None) -> np.ndarray:
    """Logits of the float reference (``bits='float'``) or the dequantized integer simulator."""
    if bits == "float":
        return forward(model, X)
    return predict_quantized(quantize_for_cli(model, int(bits), calib, warn), X)


def evaluate(model: FloatModel, X: np.ndarray, y: np.ndarray, bits: str,
             calib: np.ndarray | None, warn: Warn | None = None) -> dict[str, Any]:
    """Accuracy of the float model and (for 8/16) the quantized one, and their agreement.

    Keys scripts rely on: ``accuracy_float``, ``accuracy_quantized``, ``argmax_agreement``.
    """
    ref = forward(model, X)
    report: dict[str, Any] = {"n": int(X.shape[0]), "bits": bits,
                    "accuracy_float": float((ref.argmax(1) == y).mean())}
    if bits == "float":
        report.update(accuracy_quantized=None, argmax_agreement=None, max_abs_logit_error=None)
        return report
    qm = quantize_for_cli(model, int(bits), calib, warn)
    q = predict_quantized(qm, X)
    report.update(
        accuracy_quantized=float((q.argmax(1) == y).mean()),
        argmax_agreement=float((q.argmax(1) == ref.argmax(1)).mean()),
        max_abs_logit_error=float(np.abs(q - ref).max()),
        quantization=qm.summary(),
        calibration=qm.calibration.get("method"),
    )
    return report


def render_evaluation(report: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    lines = [f"{'sequences':<22}{report['n']}",
             f"{'accuracy (float)':<22}{pct(report['accuracy_float'])}"]
    if report["bits"] != "float":
        lines += [
            f"{'accuracy (int' + report['bits'] + ')':<22}{pct(report['accuracy_quantized'])}",
            f"{'argmax agreement':<22}{pct(report['argmax_agreement'])}",
            f"{'max |logit error|':<22}{report['max_abs_logit_error']:.5f}",
            f"{'quantization':<22}{report['quantization']}",
        ]
    return "\n".join(lines)
