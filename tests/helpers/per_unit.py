"""Per-unit quantized models built on purpose: columns of very different magnitude, shifts that
range over negative, zero and positive values, dense / low-rank / sparse final factors."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel
from edgecompile.quant.bounds import check_bounds

from .models import make_arrays

SHA = "cd" * 32


def per_unit_qmodel(seed: int, bits: int = 8, D: int = 5, H: int = 8, C: int = 3, cell: str = "FastGRNN",
                    wrank: int | None = None, urank: int | None = None, sparse: bool = False,
                    shifts: tuple[int, int] = (-3, 16), gate_nl: str = "sigmoid",
                    update_nl: str = "tanh") -> QuantizedModel:
    """A per-unit QuantizedModel drawn directly: unit j's shift s[j] spans ``shifts`` (both ends
    included, the first units take -k..0 when the range allows), its W and U columns hold
    weights as large as the per-unit bound allows at that shift (large columns next to tiny
    ones), and the formats tie: a_W + fW[j] = a_U + fU[j] = 12 + s[j]."""
    rng = np.random.default_rng(seed)
    lim = (1 << (bits - 1)) - 1
    in_frac, hid_frac = int(rng.integers(4, 14)), int(rng.integers(9, 15))
    lo, hi = shifts
    s = rng.integers(lo, hi + 1, H)
    s[: min(H, 3)] = [lo, min(max(lo, 0), hi), hi][: min(H, 3)]
    if H > 3 and lo < 0 <= hi:
        s[3] = 0

    def first(rows: int, rank: int, a_frac: int) -> tuple[QFactor, int]:
        mid = int(rng.integers(6, 14))
        wmax = max(1, min(lim, 16000 // rows))
        v = rng.integers(-wmax, wmax + 1, (rows, rank))
        if sparse:
            v[rng.random(v.shape) < 0.6] = 0
        shift = int(rng.integers(1, 16))
        return QFactor(v, shift + mid - a_frac, bool(sparse)), mid

    def final(rows_w: int, rows_u: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns summing (W and U together) to what the bound of each unit allows."""
        w = np.zeros((rows_w, H), dtype=np.int64)
        u = np.zeros((rows_u, H), dtype=np.int64)
        for j in range(H):
            room = (1 << 31) - 1 - ((1 << (s[j] - 1)) if s[j] > 0 else 0)
            if s[j] < 0:
                room = ((1 << 31) - 1) >> int(-s[j])
            budget = room // 32768  # sum |w| + sum |u| of this column
            small = rng.random() < 0.3  # a tiny column next to large ones
            per = max(1, min(lim, budget // (rows_w + rows_u)))
            if small:
                per = max(1, per // 64)
            w[:, j] = rng.integers(-per, per + 1, rows_w)
            u[:, j] = rng.integers(-per, per + 1, rows_u)
            if rows_w and rng.random() < 0.5:
                w[int(rng.integers(rows_w)), j] = per if rng.random() < 0.5 else -per
        if sparse:
            w[rng.random(w.shape) < 0.6] = 0
            u[rng.random(u.shape) < 0.6] = 0
        return w, u

    w_first = u_first = None
    aw, au = in_frac, hid_frac
    w_mid = u_mid = None
    if wrank:
        w_first, w_mid = first(D, wrank, in_frac)
        aw = w_mid
    if urank:
        u_first, u_mid = first(H, urank, hid_frac)
        au = u_mid
    wv, uv = final(wrank or D, urank or H)
    acc = 12 + s
    wcol, ucol = acc - aw, acc - au
    wlast = QFactor(wv, int(wcol.min()), bool(sparse), tuple(int(v) for v in wcol))
    ulast = QFactor(uv, int(ucol.min()), bool(sparse), tuple(int(v) for v in ucol))
    W = QMatrix((w_first, wlast), w_mid) if w_first is not None else QMatrix((wlast,))
    U = QMatrix((u_first, ulast), u_mid) if u_first is not None else QMatrix((ulast,))
    fc = QFactor(rng.integers(-min(lim, 40000 // H), min(lim, 40000 // H) + 1, (H, C)), 6, False)
    extra: dict[str, Any] = (
        dict(bias_gate=rng.integers(-6000, 6000, H), zeta=int(rng.integers(0, 16385)), nu=int(rng.integers(0, 16385)))
        if cell == "FastGRNN" else dict(alpha=int(rng.integers(0, 16385)), beta=int(rng.integers(0, 16385))))
    qm = QuantizedModel(
        cell=cell, bits=bits, gate_nl=gate_nl, update_nl=update_nl, in_frac=in_frac, hid_frac=hid_frac,
        W=W, U=U, FC=fc, fc_bias=rng.integers(-(1 << 20), 1 << 20, C), bias_update=rng.integers(-6000, 6000, H),
        source_sha256=SHA, per_unit=True, **extra)
    check_bounds(qm)
    return qm


def first_per_unit_qmodel(seed: int, tries: int = 40, **kw: Any) -> QuantizedModel | None:
    """The first of ``per_unit_qmodel(seed, **kw)``, ``per_unit_qmodel(seed + 1, **kw)``, ...
    (``tries`` seeds) that draws within the bounds; None when none of them does."""
    for s in range(seed, seed + tries):
        try:
            return per_unit_qmodel(s, **kw)
        except Exception:  # noqa: BLE001 - this draw fails a residual bound: the next one
            continue
    return None


#: The per-unit models of the emulator and host runs: int8 / int16, dense / low rank / sparse,
#: shifts negative, zero and positive.
PER_UNIT_CASES: dict[str, dict[str, Any]] = {
    "pu_dense_i8": dict(seed=1, bits=8),
    "pu_dense_i16": dict(seed=2, bits=16, shifts=(-2, 24)),
    "pu_lowrank_i8": dict(seed=3, bits=8, wrank=3, urank=4),
    "pu_lowrank_i16": dict(seed=4, bits=16, wrank=2, urank=3, shifts=(-1, 20)),
    "pu_sparse_i8": dict(seed=5, bits=8, sparse=True, H=12),
    "pu_sparse_lr_i16": dict(seed=6, bits=16, sparse=True, wrank=3, urank=2, cell="FastRNN"),
    "pu_rnn_i8": dict(seed=7, bits=8, cell="FastRNN", update_nl="quantTanh", shifts=(-4, 9)),
}


def per_unit_models() -> list[tuple[str, QuantizedModel]]:
    return [(name, per_unit_qmodel(**kw)) for name, kw in PER_UNIT_CASES.items()]


def magnitude_arrays(seed: int = 0, small: float = 0.01, large: float = 10.0, **kw: Any) -> dict[str, np.ndarray]:
    """A float FastGRNN (EdgeML arrays) whose even units have W and U columns of magnitude
    ``small`` and odd ones ``large``; the small units carry the classifier (large FC rows), so
    rounding them to a per-tensor format loses the prediction."""
    a = make_arrays(seed=seed, **kw)
    H = a["Bh"].shape[1]
    tiny = np.arange(H) % 2 == 0
    for k in [k for k in ("W", "U", "W2", "U2") if k in a]:
        a[k] = (a[k] * np.where(tiny, small, large)).astype(np.float32)
    if small != large:
        a["Bh"] = np.where(tiny, 0.0, a["Bh"]).astype(np.float32)
        a["FC"] = (a["FC"] * np.where(tiny, 100.0, 0.01)[:, None]).astype(np.float32)
    return a


def magnitude_model(seed: int = 0, small: float = 0.01, large: float = 10.0, **kw: Any) -> FloatModel:
    m = model_from_arrays(magnitude_arrays(seed, small, large, **kw))
    return dataclasses.replace(m, sha256=m.content_hash())
