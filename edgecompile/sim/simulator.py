"""Bit-exact NumPy simulator of the integer kernel (docs/fixed-point.md), batched over sequences.

Matrix products run as float64 BLAS products of integers: every product and partial sum is an
integer below 2^53, so the result is exact (and much faster than NumPy's integer matmul).
``step()`` renders one time step operation by operation; ``simulate()`` runs the same arithmetic
through a batched engine (see "the batched engine" below), bit for bit equal to it.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from edgecompile.ir.fixedpoint import INT16_MAX, INT16_MIN, INT32_LIMIT, check_int32, rshift, sat16, to_fixed
from edgecompile.ir.qmodel import QMatrix, QuantizedModel
from edgecompile.sim.fast import simulate_fast, step_fast
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
    if qm.profile == "fast":
        return step_fast(qm, h, x_q)
    pre = pre_activation(qm, h, x_q)
    c = apply(qm.update_nl, sat16(pre + qm.bias_update))  # Q(gc)
    if qm.cell == "FastGRNN":
        z = apply(qm.gate_nl, sat16(pre + qm.grnn_terms()[0]))  # Q(gz)
        return residual_update(qm, h, c, z, gate_coef(qm, z))
    return residual_update(qm, h, c)


def gate_coef(qm: QuantizedModel, z: np.ndarray) -> np.ndarray:
    """FastGRNN's ``coef = rshift(zeta * (1 - z), gz) + nu`` (Q14), saturated with a relu gate."""
    _, zeta, nu = qm.grnn_terms()
    gz = qm.gate_frac
    coef = rshift(zeta * ((1 << gz) - z), gz) + nu
    return sat16(coef) if qm.gate_nl == "relu" else coef


def residual_update(qm: QuantizedModel, h: np.ndarray, c: np.ndarray,
                    z: np.ndarray | None = None, coef: np.ndarray | None = None) -> np.ndarray:
    """The new hidden state from the update value ``c`` (Q(gc)) and, for FastGRNN, the gate ``z``
    (Q(gz)) and its ``coef``: ``sat16(rshift(z*h + rshift(coef*c, s), gz))`` (FastRNN: beta, alpha)."""
    gz = qm.gate_frac
    if z is not None and coef is not None:
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
    if qm.profile == "fast":
        return simulate_fast(qm, x_q.astype(np.int64), return_states)
    return _simulate_precise(qm, x_q, return_states)


def dequantize_logits(qm: QuantizedModel, logits_q: np.ndarray) -> np.ndarray:
    return np.asarray(logits_q, dtype=np.float64) / float(2**qm.logit_frac)


def predict_quantized(qm: QuantizedModel, X: np.ndarray) -> np.ndarray:
    """Dequantized logits of the integer kernel for raw inputs: what the device will output."""
    return dequantize_logits(qm, simulate(qm, quantize_inputs(qm, X)))


# --- the batched engine of simulate() --------------------------------------------------------
#
# The same arithmetic as step(), restructured for speed and still exact:
# - every value is an integer (or an integer times a power of two) held in float64, far below
#   2^53, so additions, products and power-of-two scalings are exact, and floor(v * 2^-s + 1/2)
#   is rshift(v, s); a rescaling shift is folded into the weights (W * 2^-s) and the tables;
# - the input products of all time steps run as one BLAS product before the time loop;
# - each nonlinearity is one lookup in a 65,536-entry table of its value at every int16 input
#   (built with apply(), so it is the spec's function), indexed by ``pre + bias + 32768`` with
#   clipping (sat16); FastGRNN's coef is a second table indexed like the gate;
# - sequences run in chunks that stay in cache.
# The int32 assertions: every intermediate that step() asserts with check_int32 (each product,
# the per-unit summed products, the pre-activation, the residual update, the logits) is first
# bounded once per call from the model's integers over every int16 activation (the inputs' own
# largest magnitude for the input products, and every table entry of the nonlinearities); an
# intermediate whose bound stays below 2^31 cannot overflow on any input, and one whose bound
# does not is checked on its values at every step (vectorised max/min), raising the same
# OverflowError as check_int32.

_CHUNK = 2048  # sequences per pass of the time loop
_U16 = np.arange(INT16_MIN, INT16_MAX + 1, dtype=np.int64)  # every int16 nonlinearity input
_A16 = 1 << 15  # the largest magnitude of an int16 activation (h, a low-rank intermediate)


def _scaled(values: np.ndarray, s: int | np.ndarray) -> np.ndarray:
    """``values * 2^-s`` in float64 (exact: a power-of-two scaling of integers)."""
    return np.asarray(values, dtype=np.float64) * np.exp2(-np.asarray(s, dtype=np.float64))


def _worst(values: np.ndarray, a_max: int) -> np.ndarray:
    """Largest magnitude of each column of ``a @ values`` over activations with |a| <= a_max."""
    return np.abs(np.asarray(values, dtype=np.int64)).sum(axis=0) * a_max


def _fits(worst: np.ndarray | int) -> bool:
    return bool(np.all(np.asarray(worst) < INT32_LIMIT))


def _check_scaled(v: np.ndarray, s: int | np.ndarray, where: str) -> None:
    """``check_int32`` of the integers ``v * 2^s`` (``v`` holds them scaled by 2^-s)."""
    limit = INT32_LIMIT * np.exp2(-np.asarray(s, dtype=np.float64))
    if v.size and (np.any(v >= limit) or np.any(v < -limit)):
        raise OverflowError(f"int32 overflow in {where}: the quantizer's bound proof is wrong")


def _round_sat16(v: np.ndarray) -> np.ndarray:
    """``sat16(floor(v + 1/2))`` in place: rshift of a scaled product, saturated."""
    v += 0.5
    np.floor(v, out=v)
    return np.clip(v, INT16_MIN, INT16_MAX, out=v)


def _first_product(a: np.ndarray, m: QMatrix, a_frac: int, a_max: int, name: str) -> np.ndarray:
    """The int16 intermediate of a low-rank matrix, ``sat16(rshift(a @ M1, mid_shift))``."""
    s = m.mid_shift(a_frac)
    v = a @ _scaled(m.factors[0].values, s)
    if not _fits(_worst(m.factors[0].values, a_max)):
        _check_scaled(v, s, name + "1")
    return _round_sat16(v)


def _simulate_precise(qm: QuantizedModel, x_q: np.ndarray,
                      return_states: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    n, steps, d = x_q.shape
    H, W, U = qm.hidden_dim, qm.W, qm.U
    x_max = int(np.abs(x_q.astype(np.int64)).max()) if x_q.size else 0
    names = ("W2" if W.low_rank else "W", "U2" if U.low_rank else "U")

    # Input products of every step: [n, T, H], the final product scaled by 2^-s (per unit: the
    # shared shift of the summed products, with the 1/2 of its rounding added).
    a = x_q.reshape(n * steps, d).astype(np.float64)
    a_max = x_max
    if W.low_rank:
        a, a_max = _first_product(a, W, qm.in_frac, x_max, "W"), _A16
    w_last, u_last = W.factors[-1].values, U.factors[-1].values
    worst_w, worst_u = _worst(w_last, a_max), _worst(u_last, _A16)
    if qm.per_unit:
        s_unit = qm.unit_shifts()
        s_w: int | np.ndarray = s_unit
        s_u: int | np.ndarray = s_unit
        rounding = np.where(s_unit > 0, np.int64(1) << np.maximum(s_unit - 1, 0), 0)
        check_sum = not _fits(worst_w + worst_u + rounding)
        check_pre = not _fits(rshift(worst_w + worst_u, s_unit))
    else:
        s_w, s_u = W.shifts(qm.in_frac)[-1], U.shifts(qm.hid_frac)[-1]
        check_sum = False
        check_pre = not _fits(rshift(worst_w, s_w) + rshift(worst_u, s_u))
    xw = a @ _scaled(w_last, s_w)
    if not _fits(worst_w):
        _check_scaled(xw, s_w, names[0])
    xw += 0.5
    if not qm.per_unit:
        np.floor(xw, out=xw)  # rshift(x @ W, s): the pre-activation's integer input part
    xw = xw.reshape(n, steps, H)
    u_first = _scaled(U.factors[0].values, U.mid_shift(qm.hid_frac)) if U.low_rank else None
    check_u1 = U.low_rank and not _fits(_worst(U.factors[0].values, _A16))
    u_final = _scaled(u_last, s_u)
    check_u = not _fits(worst_u)

    # Nonlinearity tables over every int16 input, indexed by pre + bias + 32768 (clipped).
    gz, rs = qm.gate_frac, qm.residual_shift
    c_tab = apply(qm.update_nl, _U16)
    c_max = int(np.abs(c_tab).max())
    grnn = qm.cell == "FastGRNN"
    if grnn:
        bias_gate, zeta, nu = qm.grnn_terms()
        z_tab = apply(qm.gate_nl, _U16)
        coef_tab = rshift(zeta * ((1 << gz) - z_tab), gz) + nu
        if qm.gate_nl == "relu":
            coef_tab = sat16(coef_tab)
        worst_res = int((np.abs(z_tab) * _A16 + rshift(np.abs(coef_tab) * c_max, rs)).max())
        keep_tab = _scaled(z_tab, gz)  # z * 2^-gz
        new_tab = _scaled(coef_tab, rs)  # coef * 2^-rs, times c below
        update_tab = c_tab.astype(np.float64)
        gate_off = bias_gate.astype(np.float64) + 32768.0
        beta_s = 0.0
    else:
        alpha, beta = qm.rnn_terms()
        worst_res = abs(beta) * _A16 + rshift(abs(alpha) * c_max, rs)
        update_tab = _scaled(alpha * c_tab, rs)  # alpha * c * 2^-rs
        beta_s = beta * 2.0 ** -gz
    check_res = not _fits(worst_res + (1 << (gz - 1)))
    update_off = qm.bias_update.astype(np.float64) + 32768.0
    back = 2.0 ** -gz

    h_last = np.zeros((n, H))
    states = np.empty((n, steps, H), dtype=np.int16) if return_states else None
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        h = np.zeros((hi - lo, H))
        v, keep, new = np.empty_like(h), np.empty_like(h), np.empty_like(h)
        idx = np.empty(h.shape, dtype=np.intp)
        for t in range(steps):
            if u_first is not None:
                mid = h @ u_first
                if check_u1:
                    _check_scaled(mid, U.mid_shift(qm.hid_frac), "U1")
                np.matmul(_round_sat16(mid), u_final, out=v)
            else:
                np.matmul(h, u_final, out=v)
            if check_u:
                _check_scaled(v, s_u, names[1])
            if qm.per_unit:
                v += xw[lo:hi, t]  # (accW + accU) * 2^-s + 1/2
                if check_sum:
                    _check_scaled(v + (_scaled(rounding, s_unit) - 0.5), s_unit, "summed products")
                np.floor(v, out=v)
            else:
                v += 0.5
                np.floor(v, out=v)
                v += xw[lo:hi, t]
            if check_pre:
                _check_scaled(v, 0, "pre-activation")
            np.add(v, update_off, out=idx, casting="unsafe")
            np.take(update_tab, idx, out=new, mode="clip")
            if grnn:
                np.add(v, gate_off, out=idx, casting="unsafe")
                new *= np.take(new_tab, idx, out=keep, mode="clip")  # coef * c * 2^-rs
                np.take(keep_tab, idx, out=keep, mode="clip")
                keep *= h  # z * h * 2^-gz
            else:
                np.multiply(h, beta_s, out=keep)  # beta * h * 2^-gz
            if rs > 0:
                new += 0.5
                np.floor(new, out=new)  # rshift(coef * c, rs)
            if check_res:
                _check_scaled(keep + new * back + back * (1 << (gz - 1)), gz, "residual update")
            new *= back
            keep += new
            np.floor(keep + 0.5, out=h)
            np.clip(h, INT16_MIN, INT16_MAX, out=h)
            if states is not None:
                states[lo:hi, t] = h
        h_last[lo:hi] = h
    fc = qm.FC.values
    logits = h_last @ fc.astype(np.float64)
    if not _fits(_worst(fc, _A16)):
        _check_scaled(logits, 0, "FC")
    logits = logits.astype(np.int64) + qm.fc_bias
    if not _fits(_worst(fc, _A16) + np.abs(np.asarray(qm.fc_bias, dtype=np.int64))):
        check_int32(logits, "logits")
    if states is None:
        return logits
    return logits, states
