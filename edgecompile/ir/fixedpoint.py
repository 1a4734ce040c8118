"""The integer primitives of docs/fixed-point.md, on NumPy int64 arrays (exact).

These are the only rounding/saturation operations the simulator uses; the C templates render
the same three operations.
"""

from __future__ import annotations

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
INT32_LIMIT = 2**31
PRE_FRAC = 12  # pre-activations and the biases added to them
UNIT_FRAC = 14  # nonlinearity outputs and residual scalars: 1.0 == 16384
ONE = 1 << UNIT_FRAC


def rshift(v: np.ndarray | int, s: int) -> np.ndarray | int:
    """Rescale by 2^-s: round half up for s > 0, exact multiply for s <= 0."""
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    if s < 0:
        return v * (1 << -s)
    return v


def sat16(v: np.ndarray | int) -> np.ndarray | int:
    """Clamp to the int16 range."""
    return np.clip(v, INT16_MIN, INT16_MAX)


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """Host-side rounding of real values: floor(x + 1/2) (not round-half-to-even)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def to_fixed(x: np.ndarray | float, frac: int, bits: int = 16) -> np.ndarray:
    """Quantize reals to signed ``bits``-bit integers of format Q(frac), saturating."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scaled = np.asarray(x, dtype=np.float64) * float(2.0**frac)
    return np.clip(round_half_up(scaled), lo, hi).astype(np.int64)


def frac_for(max_abs: float, bits: int, lo: int = -31, hi: int = 31) -> int:
    """The largest Q format whose ``bits``-bit range holds ``max_abs`` without clipping."""
    limit = (1 << (bits - 1)) - 1
    if max_abs <= 0 or not np.isfinite(max_abs):
        return hi
    f = int(np.floor(np.log2(limit / max_abs)))
    return int(min(hi, max(lo, f)))


def check_int32(v: np.ndarray, where: str) -> None:
    """Assert an intermediate stays inside int32: a violation is a quantizer bug."""
    if v.size and (v.max() >= INT32_LIMIT or v.min() < -INT32_LIMIT):
        raise OverflowError(f"int32 overflow in {where}: the quantizer's bound proof is wrong")
