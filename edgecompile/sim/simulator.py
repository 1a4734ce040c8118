"""Bit-exact NumPy simulator of the integer kernel (docs/fixed-point.md), batched over sequences.

Matrix products run as float64 BLAS products of integers: every product and partial sum is an
integer below 2^53, so the result is exact (and much faster than NumPy's integer matmul).
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from edgecompile.ir.fixedpoint import check_int32, rshift, sat16, to_fixed
from edgecompile.ir.qmodel import QMatrix, QuantizedModel
from edgecompile.sim.nonlinear import apply


def quantize_inputs(qm: QuantizedModel, X: np.ndarray) -> np.ndarray:
    """Raw float inputs ``[N, T, D]`` → int16 Q(in_frac), normalised in float64 on the host."""
    X = np.asarray(X, dtype=np.float64)
    mean, std = qm.normalisation(X.shape[1])
    return to_fixed((X - mean) / std, qm.in_frac).astype(np.int16)


def _exact_product(a: np.ndarray, w: np.ndarray, where: str) -> np.ndarray:
    out = np.rint(a.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    check_int32(out, where)
    return out


def _mat(a: np.ndarray, m: QMatrix, a_frac: int, name: str) -> np.ndarray:
    """``mat(a, M, fa)`` of the spec: int32 Q12 result of an int16 vector batch times M."""
    shifts = m.shifts(a_frac)
    if m.low_rank:
        mid = sat16(rshift(_exact_product(a, m.factors[0].values, name + "1"), shifts[0]))
        return rshift(_exact_product(mid, m.factors[1].values, name + "2"), shifts[1])
    return rshift(_exact_product(a, m.factors[0].values, name), shifts[0])


def _acc(a: np.ndarray, m: QMatrix, a_frac: int, name: str) -> np.ndarray:
    """The final product of M before any rescale (per-unit form): int32 Q(acc_fracs)."""
    if m.low_rank:
        mid = sat16(rshift(_exact_product(a, m.factors[0].values, name + "1"), m.mid_shift(a_frac)))
        return _exact_product(mid, m.factors[1].values, name + "2")
    return _exact_product(a, m.factors[0].values, name)


def pre_activation(qm: QuantizedModel, h: np.ndarray, x_q: np.ndarray) -> np.ndarray:
    """``pre [N, H]``, int32 Q12: ``mat(x_q, W) + mat(h, U)``, or in the per-unit form
    ``rshift(accW + accU, A - 12)`` with one shift per unit."""
    if qm.per_unit:
        shifts = qm.unit_shifts()
        acc = _acc(x_q, qm.W, qm.in_frac, "W") + _acc(h, qm.U, qm.hid_frac, "U")
        check_int32(acc + np.where(shifts > 0, np.int64(1) << np.maximum(shifts - 1, 0), 0),
                    "summed products")
        pre = rshift(acc, shifts)
    else:
        pre = _mat(x_q, qm.W, qm.in_frac, "W") + _mat(h, qm.U, qm.hid_frac, "U")
    check_int32(pre, "pre-activation")
    return pre


def step(qm: QuantizedModel, h: np.ndarray, x_q: np.ndarray) -> np.ndarray:
    """One time step for a batch: ``h [N, H]`` int Q(hid_frac), ``x_q [N, D]`` int16 → new h."""
    pre = pre_activation(qm, h, x_q)
    c = apply(qm.update_nl, sat16(pre + qm.bias_update))  # Q(gc)
    gz = qm.gate_frac
    if qm.cell == "FastGRNN":
        bias_gate, zeta, nu = qm.grnn_terms()
        z = apply(qm.gate_nl, sat16(pre + bias_gate))  # Q(gz)
        coef = rshift(zeta * ((1 << gz) - z), gz) + nu  # Q14
        if qm.gate_nl == "relu":
            coef = sat16(coef)
        keep, new = z * h, coef * c
    else:
        alpha, beta = qm.rnn_terms()
        keep, new = beta * h, alpha * c
    total = keep + rshift(new, qm.residual_shift)
    check_int32(total + (1 << (gz - 1)), "residual update")
    return sat16(rshift(total, gz))


@overload
def simulate(qm: QuantizedModel, x_q: np.ndarray, return_states: Literal[False] = False) -> np.ndarray: ...
@overload
def simulate(
    qm: QuantizedModel, x_q: np.ndarray, return_states: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...
def simulate(
    qm: QuantizedModel, x_q: np.ndarray, return_states: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Integer logits ``[N, C]`` (int64 holding int32 values, Q(logit_frac)) for int16 inputs.

    With ``return_states`` also the hidden state after every step, ``[N, T, H]`` int16.
    """
    x_q = np.asarray(x_q)
    if x_q.ndim == 2:
        x_q = x_q[None]
    n, steps, _ = x_q.shape
    x = x_q.astype(np.int64)
    h = np.zeros((n, qm.hidden_dim), dtype=np.int64)
    states = np.empty((n, steps, qm.hidden_dim), dtype=np.int16) if return_states else None
    for t in range(steps):
        h = step(qm, h, x[:, t, :])
        if states is not None:
            states[:, t, :] = h
    logits = _exact_product(h, qm.FC.values, "FC") + qm.fc_bias
    check_int32(logits, "logits")
    if states is None:
        return logits
    return logits, states


def dequantize_logits(qm: QuantizedModel, logits_q: np.ndarray) -> np.ndarray:
    return np.asarray(logits_q, dtype=np.float64) / float(2**qm.logit_frac)


def predict_quantized(qm: QuantizedModel, X: np.ndarray) -> np.ndarray:
    """Dequantized logits of the integer kernel for raw inputs: what the device will output."""
    return dequantize_logits(qm, simulate(qm, quantize_inputs(qm, X)))
