"""Fixed-point nonlinearities (input int16 Q12, output Q14; relu Q12) and their measured errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecompile.ir.fixedpoint import ONE, PRE_FRAC, SIG, rshift
from edgecompile.ir.qmodel import nl_frac
from edgecompile.reference import NONLINEAR_FUNCTIONS


def _sigmoid_magnitude(a: np.ndarray) -> np.ndarray:
    """sigmoid of a non-negative Q12 magnitude ``a`` in [0, 65535], interpolated, Q14."""
    i, r = a >> 8, a & 255
    lo = SIG[i]
    return lo + rshift((SIG[i + 1] - lo) * r, 8)


def sigmoid_lut(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.int64)
    y = _sigmoid_magnitude(np.abs(u))
    return np.where(u < 0, ONE - y, y)


def tanh_lut(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.int64)
    y = 2 * _sigmoid_magnitude(np.minimum(2 * np.abs(u), 65535)) - ONE
    return np.where(u < 0, -y, y)


def quant_sigm(u: np.ndarray) -> np.ndarray:
    return np.clip(2 * (np.asarray(u, dtype=np.int64) + (1 << PRE_FRAC)), 0, ONE)


def quant_tanh(u: np.ndarray) -> np.ndarray:
    one_in = 1 << PRE_FRAC
    return 4 * np.clip(np.asarray(u, dtype=np.int64), -one_in, one_in)


def quant_sigm4(u: np.ndarray) -> np.ndarray:
    """clip((x + 2) / 4, 0, 1): Q12 in, Q14 out, so (x + 2) / 4 in Q14 is u + 8192."""
    return np.clip(np.asarray(u, dtype=np.int64) + (2 << PRE_FRAC), 0, ONE)


def relu(u: np.ndarray) -> np.ndarray:
    """max(x, 0) in Q12 (the input's format): [0, 32767], exact."""
    return np.maximum(np.asarray(u, dtype=np.int64), 0)


FIXED_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid_lut,
    "tanh": tanh_lut,
    "quantSigm": quant_sigm,
    "quantTanh": quant_tanh,
    "quantSigm4": quant_sigm4,
    "relu": relu,
}


def apply(name: str, u: np.ndarray) -> np.ndarray:
    """The fixed-point nonlinearity ``name`` on int16 Q12 inputs: Q(nl_frac(name)) result."""
    return FIXED_FUNCTIONS[name](u)


def measure_errors() -> dict[str, dict[str, float | int]]:
    """Exhaustive error of every nonlinearity over all 65,536 int16 inputs, in LSB of its output
    format (Q14; Q12 for relu), with that format under ``frac``.

    The reference is the exact function at the real value the input stands for.
    """
    u = np.arange(-32768, 32768, dtype=np.int64)
    x = u / float(1 << PRE_FRAC)
    out: dict[str, dict[str, float | int]] = {}
    for name, fixed in FIXED_FUNCTIONS.items():
        frac = nl_frac(name)
        exact = NONLINEAR_FUNCTIONS[name](x) * float(1 << frac)
        err = np.abs(fixed(u) - exact)
        out[name] = {"max_lsb": float(err.max()), "mean_lsb": float(err.mean()), "frac": frac}
    return out
