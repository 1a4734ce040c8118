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
        for k, (factor, shift) in enumerate(zip(m.factors, m.shifts(a_frac), strict=True)):
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
    pre = sum(_rescaled_worst(m, f) for m, f in ((qm.W, qm.in_frac), (qm.U, qm.hid_frac)))
    rows.append(bound("pre-activation + bias", pre + 32768, tuple(factor_formats)))
    rows.append(bound("residual update", _residual_worst(qm), ("hid",)))
    return rows


def check_bounds(qm: QuantizedModel) -> None:
    """Raise :class:`OverflowBound` for the first int32 intermediate that could overflow."""
    for row in bound_report(qm):
        if not row.proved:
            raise OverflowBound(row)


def _residual_worst(qm: QuantizedModel) -> int:
    """Worst |keep + rshift(new, 14 - hid_frac)| of the hidden-state update.

    A tanh-type gate makes z negative, so ``1 - z`` reaches 2.0 and ``coef`` 3.0 (Q14).
    """
    if qm.cell == "FastGRNN":
        _, zeta, nu = qm.grnn_terms()
        z_min = -16384 if qm.gate_nl in ("tanh", "quantTanh") else 0
        keep = 16384 * 32768
        coef = ((zeta * (16384 - z_min) + (1 << 13)) >> 14) + nu
    else:
        alpha, beta = qm.rnn_terms()
        keep, coef = beta * 32768, alpha
    new = coef * 16384
    s = qm.residual_shift
    return keep + (((new + (1 << (s - 1))) >> s) if s > 0 else new << -s)


def _rescaled_worst(m: QMatrix, a_frac: int) -> int:
    """Worst |value| of mat() after its final rescale (the low-rank middle saturates to int16)."""
    shifts = m.shifts(a_frac)
    last = m.factors[-1]
    worst = int(np.abs(last.values).sum(axis=0).max()) * 32768
    s = shifts[-1]
    return ((worst + (1 << (s - 1))) >> s) if s > 0 else worst << -s
