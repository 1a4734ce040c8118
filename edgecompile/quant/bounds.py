"""The overflow proof: the worst magnitude of every int32 intermediate of the integer kernel.

Each :class:`Bound` names the quantizer formats (keys of the ``formats`` the quantizer records:
``W0``, ``U1``, ``FC``, ``hid``, ...) whose lowering shrinks it, so the quantizer's repair loop
reads what to change from the bound itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import INT32_LIMIT
from edgecompile.ir.qmodel import QMatrix, QuantizedModel


@dataclass(frozen=True)
class Bound:
    """One int32 intermediate over the full int16 input range; ``proved``: it cannot overflow."""

    operation: str
    worst_case: int
    limit: int
    proved: bool
    formats: tuple[str, ...]  # the formats that constrain it

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "worst_case": self.worst_case, "limit": self.limit,
                "proved": self.proved, "formats": list(self.formats)}


def bound(operation: str, worst_case: int, formats: tuple[str, ...]) -> Bound:
    """The row for ``operation`` against the int32 limit."""
    return Bound(operation, worst_case, INT32_LIMIT, worst_case < INT32_LIMIT, formats)


class OverflowBound(QuantError):
    """An int32 intermediate could overflow; ``bound`` says which formats to lower."""

    def __init__(self, bound: Bound, message: str | None = None) -> None:
        super().__init__(message or
                         f"{bound.operation} could reach {bound.worst_case} >= 2^31: lower its Q format")
        self.bound = bound


def bound_report(qm: QuantizedModel) -> list[Bound]:
    """Worst-case magnitude of every int32 intermediate over the full int16 input range.

    The quantizer only emits models where every row is proved.
    """
    rows = []
    factor_formats: list[str] = []
    for name, m, a_frac in (("W", qm.W, qm.in_frac), ("U", qm.U, qm.hid_frac)):
        if qm.per_unit:  # only a low-rank first product is rescaled on its own
            pairs = [(m.factors[0], m.mid_shift(a_frac))] if m.low_rank else []
        else:
            pairs = list(zip(m.factors, m.shifts(a_frac), strict=True))
        for k, (factor, shift) in enumerate(pairs):
            formats = (f"{name}{k}",)
            factor_formats.append(formats[0])
            worst = int(np.abs(factor.values).sum(axis=0).max()) * 32768
            worst += (1 << (shift - 1)) if shift > 0 else 0
            op = f"{name}{k + 1 if m.low_rank else ''} product"
            rows.append(bound(op, worst, formats))
            if shift < 0:
                rows.append(bound(f"{op} rescale", worst << -shift, formats))
    worst_fc = int(np.abs(qm.FC.values).sum(axis=0).max()) * 32768
    worst_fc += int(np.abs(qm.fc_bias).max())
    rows.append(bound("FC product + bias", worst_fc, ("FC",)))
    if qm.per_unit:
        summed, rescaled = unit_worst(qm)
        names = "+".join(n + ("2" if m.low_rank else "") for n, m in (("W", qm.W), ("U", qm.U)))
        rows.append(bound(f"{names} summed products", int(summed.max()), UNIT_FORMATS))
        shifts = qm.unit_shifts()
        if (shifts < 0).any():
            rows.append(bound(f"{names} summed rescale", int(np.where(shifts < 0, rescaled, 0).max()),
                              UNIT_FORMATS))
        pre = int(rescaled.max())
    else:
        pre = sum(_rescaled_worst(m, f) for m, f in ((qm.W, qm.in_frac), (qm.U, qm.hid_frac)))
    rows.append(bound("pre-activation + bias", pre + 32768, UNIT_FORMATS if qm.per_unit else tuple(factor_formats)))
    if qm.cell == "ERNN":
        rows.extend(_ernn_rows(qm))
    else:
        rows.append(bound("residual update", _residual_worst(qm), ("hid",)))
    return rows


def _ernn_rows(qm: QuantizedModel) -> list[Bound]:
    """ERNN's inner update ``g + rshift(eta * phi, se) - rshift(decay * s, sd)`` over every
    int16 g and s and the nonlinearity's range (sd >= 1 by the quantizer's limits; se <= 0 is a
    multiplication, proved here)."""
    eta, decay, se, sd = qm.ernn_terms()
    phi_max = max(abs(v) for v in NL_RANGE[qm.update_nl])
    e_max, d_max = max(abs(v) for v in eta), max(abs(v) for v in decay)
    eta_phi = e_max * phi_max + ((1 << (se - 1)) if se > 0 else 0)
    decay_s = d_max * 32768 + ((1 << (sd - 1)) if sd > 0 else 0)
    update = 32768 + _rshift_worst(e_max * phi_max, se) + _rshift_worst(d_max * 32768, sd)
    # a coarse pre-activation format (relu) can make se <= 0: a lower hid_frac raises it
    return [bound("ERNN eta * phi", eta_phi if se > 0 else (e_max * phi_max) << -se, ("hid",)),
            bound("ERNN decay * s", decay_s if sd > 0 else (d_max * 32768) << -sd, ()),
            bound("ERNN inner update", update, ("hid",))]


def check_bounds(qm: QuantizedModel) -> None:
    """Raise :class:`OverflowBound` for the first int32 intermediate that could overflow."""
    for row in bound_report(qm):
        if not row.proved:
            raise OverflowBound(row)


#: The output range of each nonlinearity, in its own format (docs/fixed-point.md): Q14, relu Q12.
NL_RANGE: dict[str, tuple[int, int]] = {
    "sigmoid": (0, 16384), "quantSigm": (0, 16384), "quantSigm4": (0, 16384),
    "tanh": (-16384, 16384), "quantTanh": (-16384, 16384), "relu": (0, 32767),
}


def _rshift_worst(v: int, s: int) -> int:
    """The largest |rshift(x, s)| over |x| <= v."""
    return ((v + (1 << (s - 1))) >> s) if s > 0 else v << -s


def gate_coef_range(qm: QuantizedModel) -> tuple[int, int]:
    """The range of FastGRNN's ``coef = rshift(zeta * (2^gz - z), gz) + nu`` over the gate's
    output range (decreasing in z); a relu gate's coef saturates to int16."""
    _, zeta, nu = qm.grnn_terms()
    gz = qm.gate_frac
    z_min, z_max = NL_RANGE[qm.gate_nl]

    def coef(z: int) -> int:
        return ((zeta * ((1 << gz) - z) + (1 << (gz - 1))) >> gz) + nu

    lo, hi = coef(z_max), coef(z_min)
    if qm.gate_nl == "relu":
        lo, hi = max(lo, -32768), min(hi, 32767)
    return lo, hi


def _residual_worst(qm: QuantizedModel) -> int:
    """Worst |keep + rshift(new, residual_shift)| of the hidden-state update, plus the rounding
    term of the final ``rshift(., gz)`` (computed in int32 too).

    A tanh-type gate makes z negative, so ``1 - z`` reaches 2.0 and ``coef`` 3.0 (Q14); a relu
    gate (Q12, up to 8.0) makes coef negative, saturated to int16 (|coef| < 2.0); a relu update
    reaches 32767 in Q12.
    """
    c_max = max(abs(v) for v in NL_RANGE[qm.update_nl])
    if qm.cell == "FastGRNN":
        z_max = max(abs(v) for v in NL_RANGE[qm.gate_nl])
        keep = z_max * 32768
        coef = max(abs(v) for v in gate_coef_range(qm))
    else:
        alpha, beta = qm.rnn_terms()
        keep, coef = beta * 32768, alpha
    return keep + _rshift_worst(coef * c_max, qm.residual_shift) + (1 << (qm.gate_frac - 1))


#: What a failed per-unit row names: the column formats, which the quantizer lowers per unit.
UNIT_FORMATS = ("units",)


def unit_worst(qm: QuantizedModel) -> tuple[np.ndarray, np.ndarray]:
    """Per unit j of the per-unit form: the worst ``|accW[j] + accU[j]| + 2^(s-1)`` (s > 0) and the
    worst ``|pre[j]|`` after the rescale, both ``[H]`` (exact Python integers).

    ``sum_i |W[i][j]| * 32768 + sum_k |U[k][j]| * 32768 + 2^(s-1) < 2^31`` is the bound; with
    s <= 0 the rescale multiplies, and ``(sum ...) * 2^-s < 2^31`` is proved as well.
    """
    shifts = [int(v) for v in qm.unit_shifts()]
    sums = np.abs(qm.W.factors[-1].values).sum(axis=0) + np.abs(qm.U.factors[-1].values).sum(axis=0)
    summed, rescaled = [], []
    for total, s in zip((int(v) * 32768 for v in sums), shifts, strict=True):
        summed.append(total + ((1 << (s - 1)) if s > 0 else 0))
        rescaled.append(((total + (1 << (s - 1))) >> s) if s > 0 else total << -s)
    return np.array(summed, dtype=object), np.array(rescaled, dtype=object)


def _rescaled_worst(m: QMatrix, a_frac: int) -> int:
    """Worst |value| of mat() after its final rescale (the low-rank middle saturates to int16)."""
    shifts = m.shifts(a_frac)
    last = m.factors[-1]
    worst = int(np.abs(last.values).sum(axis=0).max()) * 32768
    s = shifts[-1]
    return ((worst + (1 << (s - 1))) >> s) if s > 0 else worst << -s
