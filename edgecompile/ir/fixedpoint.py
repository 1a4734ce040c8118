"""The integer primitives of docs/fixed-point.md, on NumPy int64 arrays (exact).

These are the only rounding/saturation operations the simulator uses; the C templates render
the same three operations.
"""

from __future__ import annotations

from typing import overload

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
INT32_LIMIT = 2**31
PRE_FRAC = 12  # pre-activations and the biases added to them
UNIT_FRAC = 14  # nonlinearity outputs and residual scalars: 1.0 == 16384
ONE = 1 << UNIT_FRAC


@overload
def rshift(v: np.ndarray, s: int | np.ndarray) -> np.ndarray: ...
@overload
def rshift(v: int, s: int) -> int: ...
def rshift(v: np.ndarray | int, s: int | np.ndarray) -> np.ndarray | int:
    """Rescale by 2^-s: round half up for s > 0, exact multiply for s <= 0.

    ``s`` may be an int array (one shift per unit, broadcast over the last axis of ``v``),
    its entries positive, zero or negative.
    """
    if isinstance(s, np.ndarray):
        s = s.astype(np.int64)
        pos = s > 0
        up = (v + (np.int64(1) << np.where(pos, s - 1, 0))) >> np.where(pos, s, 0)
        return np.where(pos, up, np.asarray(v, dtype=np.int64) * (np.int64(1) << np.where(pos, 0, -s)))
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    if s < 0:
        return v * (1 << -s)
    return v


def sat16(v: np.ndarray) -> np.ndarray:
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
    with np.errstate(over="ignore"):
        ratio = limit / np.float64(max_abs)
    if not np.isfinite(ratio):  # a max_abs so tiny that every format up to hi holds it
        return hi
    f = int(np.floor(np.log2(ratio)))
    return int(min(hi, max(lo, f)))


def check_int32(v: np.ndarray, where: str) -> None:
    """Assert an intermediate stays inside int32: a violation is a quantizer bug."""
    if v.size and (v.max() >= INT32_LIMIT or v.min() < -INT32_LIMIT):
        raise OverflowError(f"int32 overflow in {where}: the quantizer's bound proof is wrong")


SIG_TABLE_SIZE = 257
SIG_TABLE_STEP = 1.0 / 16.0  # in x; one step is 256 units of a Q12 input


def sigmoid_table() -> np.ndarray:
    """``SIG[i] = round(sigmoid(i/16) * 16384)``, i = 0..256: x in [0, 16], int16 Q14 (in flash).

    Only x >= 0 is stored: sigmoid(-x) = 1 - sigmoid(x), and tanh(x) = 2 sigmoid(2x) - 1
    reuses the same table, so one 514-byte table serves both. It is part of the arithmetic spec
    (docs/fixed-point.md): the simulator, the generated C and the quantized model's hash share it.
    """
    x = SIG_TABLE_STEP * np.arange(SIG_TABLE_SIZE)
    sigmoid = 0.5 * (1.0 + np.tanh(0.5 * x))  # the float reference's sigmoid
    return round_half_up(sigmoid * ONE).astype(np.int64)


SIG = sigmoid_table()
