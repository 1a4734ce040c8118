"""Fake quantization for quantization-aware fine-tuning (straight-through estimator).

The forward pass of a QAT step runs on the weights the integer kernel will hold, computed with
the project quantizer's own functions (:mod:`edgecompile.ir.fixedpoint`, docs/fixed-point.md):
each weight matrix gets the power-of-two format ``frac_for(max|w|, bits)`` and is rounded with
``to_fixed`` (round half up, saturating to int8/int16); the biases become int16 Q12 and the
residual scalars ``sigmoid(zeta)`` etc. Q14 (ERNN's step sizes ``eta`` and decay ``alpha`` stay
float: their integer format is not defined yet). Like the quantizer, a low-rank matrix is quantized
factor by factor when it keeps two products (fewer MACs) and as its multiplied-out product
otherwise. The backward pass treats rounding as the identity (straight-through) and updates the
float "shadow" weights.

What QAT does not model: the quantizer's calibration search may move a weight format by one bit,
and activations (inputs, h, the low-rank intermediate) are rounded to int16 on the device; both
are far smaller effects than int8 weight rounding.
"""

from __future__ import annotations

import numpy as np

from edgecompile.ir.fixedpoint import PRE_FRAC, UNIT_FRAC, frac_for, round_half_up, to_fixed
from edgecompile.ir.model import Matrix
from edgecompile.quant.quantizer import _keep_low_rank
from edgecompile.reference import sigmoid

__all__ = ["fake_quantize", "quantize_weight", "round_half_up", "weight_frac"]


def weight_frac(w: np.ndarray, bits: int = 8) -> int:
    """The quantizer's starting format for a weight matrix: the largest Q(f) that holds it."""
    return frac_for(float(np.max(np.abs(w))), bits)


def quantize_weight(w: np.ndarray, bits: int = 8) -> np.ndarray:
    """``w`` rounded to its power-of-two ``int<bits>`` grid, returned as floats."""
    f = weight_frac(w, bits)
    return to_fixed(w, f, bits) / 2.0**f


def _to_raw(p: float) -> float:
    """The raw (pre-sigmoid) value whose sigmoid is ``p`` (for the Q14 residual scalars)."""
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return float(np.log(p / (1.0 - p)))


def fake_quantize(params: dict[str, np.ndarray], bits: int = 8) -> dict[str, np.ndarray]:
    """The values the integer kernel represents, under the same names as ``params``.

    A low-rank matrix that the quantizer multiplies out comes back as its quantized product
    under the full name (``W`` instead of ``W1``/``W2``); :func:`shadow_grads` maps gradients
    back to the factors.
    """
    out = dict(params)
    for name in ("W", "U"):
        if name in params:
            out[name] = quantize_weight(params[name], bits)
        elif _keep_low_rank(Matrix((params[name + "1"], params[name + "2"]))):
            for k in (name + "1", name + "2"):
                out[k] = quantize_weight(params[k], bits)
        else:
            del out[name + "1"], out[name + "2"]
            out[name] = quantize_weight(params[name + "1"] @ params[name + "2"], bits)
    out["FC"] = quantize_weight(params["FC"], bits)
    for name in ("Bg", "Bh", "B"):
        if name in params:
            out[name] = to_fixed(params[name], PRE_FRAC) / 2.0**PRE_FRAC
    for name in ("zeta", "nu", "alpha", "beta"):
        if name in params and "eta" not in params:  # ERNN's eta/alpha are used as stored
            q = round_half_up(sigmoid(params[name]) * 2.0**UNIT_FRAC) / 2.0**UNIT_FRAC
            out[name] = np.asarray(_to_raw(float(q)))
    return out


def shadow_grads(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Straight-through: gradients at the fake-quantized values, as gradients of ``params``."""
    for name in ("W", "U"):
        if name in grads and name not in params:
            d = grads.pop(name)
            grads[name + "1"] = d @ params[name + "2"].T
            grads[name + "2"] = params[name + "1"].T @ d
    return grads


def saved_values(params: dict[str, np.ndarray], bits: int = 8) -> dict[str, np.ndarray]:
    """What a QAT run saves: quantized values, except the factors of a multiplied-out low-rank
    matrix, which stay float (the quantizer multiplies them out and rounds exactly as QAT did)."""
    q = fake_quantize(params, bits)
    for name in ("W", "U"):
        if name in q and name not in params:
            del q[name]
            q[name + "1"], q[name + "2"] = params[name + "1"], params[name + "2"]
    return q
