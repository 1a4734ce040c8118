"""Raw int16 sensor inputs quantized in integers (docs/fixed-point.md, "Raw int16 inputs").

The user states the real value of one raw LSB (``raw_scale``) and of raw 0 (``raw_offset``), per
feature. For every normalisation entry (feature ``d``, and time offset ``t`` for ``[T*D]``
statistics) the host precomputes an int32 multiplier ``m``, a shift ``k`` and an int32 offset
``b`` with

    x_q = sat16(rshift(raw * m + b, k))

standing for ``sat16(round((raw * raw_scale + raw_offset - mean) / std * 2^fx))``. ``k`` is the
largest shift for which every intermediate is proved inside int32 over the whole int16 raw
range; :func:`quantize_raw_inputs` renders the formula bit for bit as ``<name>_step_raw`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgecompile.errors import DataError, QuantError
from edgecompile.ir.fixedpoint import check_int32, sat16, to_fixed
from edgecompile.ir.qmodel import QuantizedModel

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
RAW_MIN, RAW_MAX = -32768, 32767
#: Shifts tried, largest first (k = 31 would leave no room for the rounding term's sign bit).
MAX_SHIFT = 30


@dataclass(frozen=True)
class RawConstants:
    """The integer constants of every normalisation entry ``[S, D]`` (S = T for ``[T*D]``
    statistics, else 1), int64 arrays holding int32 values."""

    mul: np.ndarray  # m
    shift: np.ndarray  # k, 0..MAX_SHIFT
    offset: np.ndarray  # b (without the rounding term of rshift)

    @property
    def add(self) -> np.ndarray:
        """``b + 2^(k-1)`` (``b`` when k = 0): the constant the C code adds before ``>> k``."""
        return self.offset + np.where(self.shift > 0, np.int64(1) << np.maximum(self.shift - 1, 0), 0)

    def error_bound(self, qm: QuantizedModel) -> np.ndarray:
        """``E [S, D]``: the largest ``|(raw*m + b) / 2^k - (raw*A + B)|`` (input LSBs, before
        rounding) over the int16 raws whose real value ``raw*A + B`` lies in [-32769.5, 32768.5]
        (outside it both results saturate alike while that is below 1), else over every int16
        raw. The error of x_q is at most floor(E) + 1 LSBs. The error is linear in raw: it is
        largest at an end of the range."""
        scale = np.asarray(qm.raw_scale, np.float64)
        offset = np.asarray(qm.raw_offset if qm.raw_offset is not None else np.zeros(scale.size), np.float64)
        a, b = _real_terms(qm, scale, offset)
        step = np.ldexp(1.0, -self.shift)
        slope, icept = self.mul * step - a, self.offset * step - b
        with np.errstate(divide="ignore", invalid="ignore"):
            ends = np.stack([(-32769.5 - b) / a, (32768.5 - b) / a])
        ends = np.clip(np.nan_to_num(ends), RAW_MIN, RAW_MAX)
        inside = np.max(np.abs(ends * slope + icept), axis=0)
        everywhere = np.maximum(np.abs(RAW_MIN * slope + icept), np.abs(RAW_MAX * slope + icept))
        return np.where(inside < 1.0, inside, everywhere)


def _proved(m: int, b: int, k: int) -> bool:
    """Every intermediate of ``(int32)raw * m + (b + 2^(k-1))`` inside int32 for every int16 raw
    (the expression is linear in raw: its extremes are at raw = -32768 and 32767)."""
    add = b + ((1 << (k - 1)) if k > 0 else 0)
    if not (INT32_MIN <= m <= INT32_MAX and INT32_MIN <= add <= INT32_MAX):
        return False
    for raw in (RAW_MIN, RAW_MAX):
        prod = raw * m
        if not (INT32_MIN <= prod <= INT32_MAX and INT32_MIN <= prod + add <= INT32_MAX):
            return False
    return True


def _real_terms(qm: QuantizedModel, scale: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A = scale / std * 2^fx`` and ``B = (offset - mean) / std * 2^fx`` ``[S, D]`` (float64)."""
    steps = qm.seq_len or 1
    mean, std = qm.normalisation(steps)
    fx = float(2.0 ** qm.in_frac)
    with np.errstate(all="ignore"):
        a = scale[None, :] / std * fx
        b = (offset[None, :] - mean) / std * fx
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


def derive_constants(qm: QuantizedModel, scale: np.ndarray, offset: np.ndarray) -> RawConstants:
    """The constants of ``qm`` for the raw unit ``scale``/``offset`` ``[D]``; raises
    :class:`QuantError` (one line) when no shift is proved free of int32 overflow."""
    a, b = _real_terms(qm, scale, offset)
    mul = np.zeros(a.shape, dtype=np.int64)
    shift = np.zeros(a.shape, dtype=np.int64)
    off = np.zeros(a.shape, dtype=np.int64)
    for idx in np.ndindex(a.shape):
        ai, bi = float(a[idx]), float(b[idx])
        if not (np.isfinite(ai) and np.isfinite(bi)):
            raise QuantError(_where(qm, idx) + f": raw_scale/std * 2^{qm.in_frac} = {ai:.6g} and "
                             f"(raw_offset - mean)/std * 2^{qm.in_frac} = {bi:.6g} are not finite")
        for k in range(MAX_SHIFT, -1, -1):
            m, o = _round(ai * 2.0**k), _round(bi * 2.0**k)
            if m is not None and o is not None and _proved(m, o, k):
                mul[idx], shift[idx], off[idx] = m, k, o
                break
        else:
            raise QuantError(
                _where(qm, idx) + f": raw * {ai:.6g} + {bi:.6g} input LSBs has no int32 multiplier and "
                f"shift proved free of overflow over the int16 raw range (32768 * |raw_scale| / std * 2^{qm.in_frac} "
                f"+ |raw_offset - mean| / std * 2^{qm.in_frac} must stay below 2^31)")
    return RawConstants(mul, shift, off)


def _round(x: float) -> int | None:
    """floor(x + 1/2) as a Python int, None when it cannot be an int32."""
    if not abs(x) < 2.0**32:
        return None
    return int(np.floor(x + 0.5))


def _where(qm: QuantizedModel, idx: tuple[int, ...]) -> str:
    s, d = idx
    return f"raw input feature {d}" + (f" at step {s}" if qm.seq_len else "")


def _per_feature(values: float | Sequence[float] | np.ndarray, dim: int, what: str) -> np.ndarray:
    v = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
    if v.size == 1:
        v = np.full(dim, float(v[0]))
    if v.size != dim:
        raise QuantError(f"{what}: {v.size} values, the model takes D={dim} (give one, or one per feature)")
    if not np.all(np.isfinite(v)):
        raise QuantError(f"{what}: values must be finite")
    return v


def with_raw_input(qm: QuantizedModel, scale: float | Sequence[float] | np.ndarray,
                   offset: float | Sequence[float] | np.ndarray | None = None) -> QuantizedModel:
    """``qm`` carrying the raw unit (one value, or one per feature): real input =
    ``raw * scale + offset``. Checked now (scale non-zero, constants proved), so an export with
    it cannot fail later."""
    d = qm.input_dim
    s = _per_feature(scale, d, "raw scale")
    if np.any(s == 0.0):
        raise QuantError("raw scale: 0 maps every raw value to one input; give the real value of one raw LSB")
    o = np.zeros(d) if offset is None else _per_feature(offset, d, "raw offset")
    out = dataclasses.replace(qm, raw_scale=s, raw_offset=o)
    raw_constants(out)
    return out


def raw_constants(qm: QuantizedModel) -> RawConstants:
    """The constants of a quantized model that carries a raw unit (:func:`with_raw_input`)."""
    if qm.raw_scale is None:
        raise QuantError("the quantized model has no raw input unit: export or quantize it with --raw-scale")
    offset = qm.raw_offset if qm.raw_offset is not None else np.zeros(qm.input_dim)
    return derive_constants(qm, np.asarray(qm.raw_scale, np.float64), np.asarray(offset, np.float64))


def parse_values(text: str, what: str) -> list[float]:
    """``--raw-scale 0.001`` or ``--raw-scale 0.001,0.002,...`` (one per feature)."""
    try:
        return [float(p) for p in text.split(",")]
    except ValueError:
        raise QuantError(f"{what} {text!r}: expected a number or comma-separated numbers (one per feature)") from None


def raw_option(scale: str | None, offset: str | None) -> tuple[list[float], list[float] | None] | None:
    """``export --raw-scale/--raw-offset`` as ``raw_input`` of ``export_project`` (None: not given)."""
    if scale is None:
        if offset is not None:
            raise QuantError("--raw-offset needs --raw-scale (the real value of one raw LSB)")
        return None
    return parse_values(scale, "--raw-scale"), None if offset is None else parse_values(offset, "--raw-offset")


def quantize_raw_inputs(qm: QuantizedModel | RawConstants, raw: np.ndarray) -> np.ndarray:
    """Raw int16 inputs ``[N, T, D]`` (or ``[T, D]``) → int16 Q(in_frac) ``x_q``, exactly as
    ``<name>_step_raw`` computes them (step t uses entry ``min(t, S-1)``, as on the device)."""
    c = raw_constants(qm) if isinstance(qm, QuantizedModel) else qm
    r = np.asarray(raw)
    if r.dtype.kind not in "iu":
        raise DataError(f"raw inputs must be integers (int16), got dtype {r.dtype}")
    squeeze = r.ndim == 2
    if squeeze:
        r = r[None]
    if r.ndim != 3 or r.shape[2] != c.mul.shape[1]:
        raise DataError(f"raw inputs: shape {list(np.shape(raw))}, expected [N,T,D] or [T,D] with D={c.mul.shape[1]}")
    r = r.astype(np.int64)
    if r.size and (r.min() < RAW_MIN or r.max() > RAW_MAX):
        raise DataError(f"raw inputs reach {int(r.min())}..{int(r.max())}: outside the int16 range")
    steps = r.shape[1]
    rows = np.minimum(np.arange(steps), c.mul.shape[0] - 1)
    mul, add, shift = c.mul[rows], c.add[rows], c.shift[rows]  # [T, D]
    prod = r * mul
    check_int32(prod, "raw input product")
    v = prod + add
    check_int32(v, "raw input sum")
    # rshift(raw*m + b, k) with the rounding term already in add: a plain arithmetic shift
    x = sat16(v >> shift).astype(np.int16)
    return x[0] if squeeze else x


def float_reference(qm: QuantizedModel, raw: np.ndarray) -> np.ndarray:
    """The float normalisation the integer path stands for: ``to_fixed((raw*scale + offset -
    mean) / std, fx)`` in float64, int64 ``[N, T, D]``."""
    if qm.raw_scale is None:
        raise QuantError("the quantized model has no raw input unit")
    offset = qm.raw_offset if qm.raw_offset is not None else 0.0
    r = np.asarray(raw, dtype=np.float64)
    x = r * qm.raw_scale + offset
    mean, std = qm.normalisation(qm.seq_len or 1)  # [S, D]
    rows = np.minimum(np.arange(r.shape[-2]), mean.shape[0] - 1)
    mean, std = mean[rows], std[rows]
    return to_fixed((x - mean) / std, qm.in_frac)


__all__ = ["RawConstants", "derive_constants", "float_reference", "parse_values", "quantize_raw_inputs", "raw_option",
           "raw_constants", "with_raw_input"]


def load_raw(path: str, qm: QuantizedModel) -> np.ndarray:
    """``predict --raw-int16 FILE``: int16 raw sequences ``[N, T, D]`` (or ``[T, D]``) from a
    ``.npy`` of an integer dtype, checked against the model (D; T for ``[T*D]`` statistics)."""
    from edgecompile.files import read_npy

    r = read_npy(path, DataError)
    if r.dtype.kind not in "iu":
        raise DataError(f"{path}: dtype {r.dtype}, expected raw int16 sensor values (an integer .npy)")
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or r.size == 0:
        raise DataError(f"{path}: shape {list(r.shape)}, expected [N,T,D] or [T,D] with N,T,D > 0")
    r = r.astype(np.int64)
    if r.min() < RAW_MIN or r.max() > RAW_MAX:
        raise DataError(f"{path}: values {int(r.min())}..{int(r.max())} are outside the int16 range")
    if r.shape[2] != qm.input_dim:
        raise DataError(f"{path}: D={r.shape[2]} but the model takes D={qm.input_dim}")
    if qm.seq_len is not None and r.shape[1] != qm.seq_len:
        raise DataError(f"{path}: T={r.shape[1]} but the model's mean/std cover T={qm.seq_len} steps")
    return r.astype(np.int16)


def raw_as_real(qm: QuantizedModel, raw: np.ndarray) -> np.ndarray:
    """The real inputs the raws stand for, ``raw * raw_scale + raw_offset`` (float64)."""
    if qm.raw_scale is None:
        raise QuantError("the quantized model has no raw input unit")
    offset = qm.raw_offset if qm.raw_offset is not None else 0.0
    return np.asarray(raw, dtype=np.float64) * qm.raw_scale + offset
