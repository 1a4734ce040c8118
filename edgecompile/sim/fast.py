"""The fast arithmetic profile (docs/fixed-point.md, "The fast profile"), bit-exact, batched.

Direct 512-entry tables instead of interpolation, a per-model table of the gate coefficient
indexed like the gate, one floor shift per unit for the summed products of W and U, and the
biases added in 16 bits. quantSigm, quantTanh, quantSigm4 and relu are the exact functions of
the precise profile; the residual update is the precise profile's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecompile.ir.fixedpoint import ONE, PRE_FRAC, check_int32, round_half_up, rshift, sat16
from edgecompile.ir.qmodel import QuantizedModel, nl_frac
from edgecompile.reference import NONLINEAR_FUNCTIONS

TABLE_SIZE = 512
#: Index shift of each table nonlinearity: a Q12 input's bin is ``u >> shift`` (floor).
#: sigmoid: bins of 2^7 / 2^12 = 1/32 over [-8, 8); tanh: bins of 1/64 over [-4, 4).
INDEX_SHIFT = {"sigmoid": 7, "tanh": 6}
TABLE_NLS = tuple(INDEX_SHIFT)


def _table(name: str) -> np.ndarray:
    """``T[i] = round(f((i - 256 + 1/2) * 2^(shift - 12)) * 16384)``: the value at the centre of
    bin i, int16 Q14."""
    centres = (np.arange(TABLE_SIZE, dtype=np.float64) - TABLE_SIZE // 2 + 0.5) * 2.0 ** (INDEX_SHIFT[name] - PRE_FRAC)
    return round_half_up(NONLINEAR_FUNCTIONS[name](centres) * ONE).astype(np.int64)


FAST_SIG = _table("sigmoid")
FAST_TANH = _table("tanh")
FAST_TABLES = {"sigmoid": FAST_SIG, "tanh": FAST_TANH}


def table_index(name: str, u: np.ndarray) -> np.ndarray:
    """The bin of an int16 Q12 input in the table of ``name``, in [0, 511]: sigmoid
    ``(u >> 7) + 256``; tanh ``(clamp(u, -16384, 16383) >> 6) + 256``."""
    u = np.asarray(u, dtype=np.int64)
    k = INDEX_SHIFT[name]
    lim = (TABLE_SIZE // 2) << k
    return (np.clip(u, -lim, lim - 1) >> k) + TABLE_SIZE // 2


def coef_table(qm: QuantizedModel) -> np.ndarray | None:
    """FastGRNN with a table gate: ``COEF[i] = rshift(zeta_q * (16384 - Z[i]), 14) + nu_q``,
    uint16 Q14 in [0, 49152] (Z the gate's table); None for other models."""
    if qm.cell != "FastGRNN" or qm.gate_nl not in TABLE_NLS:
        return None
    _, zeta, nu = qm.grnn_terms()
    return rshift(zeta * (ONE - FAST_TABLES[qm.gate_nl]), 14) + nu


def apply_fast(name: str, u: np.ndarray) -> np.ndarray:
    """A nonlinearity of the fast profile on int16 Q12 inputs: a table lookup for sigmoid and
    tanh, the exact precise-profile function otherwise."""
    if name in FAST_TABLES:
        return FAST_TABLES[name][table_index(name, u)]
    from edgecompile.sim.nonlinear import apply

    return apply(name, u)


def floor_shift(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``v >> s`` (floor) per unit for ``s > 0``, ``v * 2^-s`` for ``s <= 0``."""
    s = np.asarray(s, dtype=np.int64)
    pos = s > 0
    return np.where(pos, v >> np.where(pos, s, 0), v * (np.int64(1) << np.where(pos, 0, -s)))


def pre16(qm: QuantizedModel, h: np.ndarray, x_q: np.ndarray) -> np.ndarray:
    """``sat16(floor_shift(accW + accU, s))`` ``[N, H]``: the int16 Q12 pre-activation."""
    from edgecompile.sim.simulator import _acc

    shifts = qm.unit_shifts()
    acc = _acc(x_q, qm.W, qm.in_frac, "W") + _acc(h, qm.U, qm.hid_frac, "U")
    check_int32(acc, "summed products")
    pre = floor_shift(acc, shifts)
    check_int32(pre, "pre-activation")
    return sat16(pre)


def step_fast(qm: QuantizedModel, h: np.ndarray, x_q: np.ndarray) -> np.ndarray:
    """One time step of the fast profile for a batch: ``h [N, H]``, ``x_q [N, D]`` → new h."""
    if qm.cell == "ERNN":
        return step_ernn(qm, h, x_q)
    bias_gate = qm.grnn_terms()[0] if qm.cell == "FastGRNN" else None
    return unit_update(qm, pre16(qm, h, x_q), h, qm.bias_update, bias_gate)


def unit_update(qm: QuantizedModel, p: np.ndarray, h: np.ndarray, bias_update: np.ndarray,
                bias_gate: np.ndarray | None) -> np.ndarray:
    """The fast profile's per-unit update of the int16 Q12 pre-activation ``p`` and the state
    ``h`` ([N, units]) with the units' biases (FastGRNN: also the gate's): the new h."""
    from edgecompile.sim.simulator import gate_coef, residual_update

    c = apply_fast(qm.update_nl, sat16(p + bias_update))
    if bias_gate is None:
        return residual_update(qm, h, c)
    ug = sat16(p + bias_gate)
    coef_t = coef_table(qm)
    if coef_t is not None:
        i = table_index(qm.gate_nl, ug)
        return residual_update(qm, h, c, FAST_TABLES[qm.gate_nl][i], coef_t[i])
    z = apply_fast(qm.gate_nl, ug)
    return residual_update(qm, h, c, z, gate_coef(qm, z))


def step_ernn(qm: QuantizedModel, h: np.ndarray, x_q: np.ndarray) -> np.ndarray:
    """One ERNN time step (docs/fixed-point.md, "ERNN"): the input product once, then K inner
    steps ``s = sat16(g + h)``, ``p = sat16(floor_shift(accW + accU(s), s_j))``,
    ``phi = f(sat16(p + B))``, ``g = sat16(g + rshift(eta_i phi, se) - rshift(decay_i s, sd))``."""
    from edgecompile.sim.simulator import _acc

    eta, decay, eta_shift, decay_shift = qm.ernn_terms()
    shifts = qm.unit_shifts()
    h = np.asarray(h, dtype=np.int64)
    acc_w = _acc(x_q, qm.W, qm.in_frac, "W")
    g = h
    for e, d in zip(eta, decay, strict=True):
        s = sat16(g + h)
        acc = acc_w + _acc(s, qm.U, qm.hid_frac, "U")
        check_int32(acc, "summed products")
        p = sat16(floor_shift(acc, shifts))
        phi = apply_fast(qm.update_nl, sat16(p + qm.bias_update))
        g = sat16(g + rshift(e * phi, eta_shift) - rshift(d * s, decay_shift))
    return g


def simulate_fast(qm: QuantizedModel, x: np.ndarray,
                  return_states: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``simulate()`` of the fast profile: ``x [N, T, D]`` int → logits (and states)."""
    from edgecompile.sim.simulator import _exact_product

    n, steps, _ = x.shape
    h = np.zeros((n, qm.hidden_dim), dtype=np.int64)
    states = np.empty((n, steps, qm.hidden_dim), dtype=np.int16) if return_states else None
    for t in range(steps):
        h = step_fast(qm, h, x[:, t, :])
        if states is not None:
            states[:, t, :] = h
    logits = _exact_product(h, qm.FC.values, "FC") + qm.fc_bias
    check_int32(logits, "logits")
    if states is None:
        return logits
    return logits, states


def measure_fast_errors() -> dict[str, dict[str, float | int]]:
    """Exhaustive error of every fast-profile nonlinearity over all 65,536 int16 inputs, in LSB
    of its output format, against the exact function (as ``nonlinear.measure_errors()``)."""
    u = np.arange(-32768, 32768, dtype=np.int64)
    x = u / float(1 << PRE_FRAC)
    out: dict[str, dict[str, float | int]] = {}
    for name in NONLINEAR_FUNCTIONS:
        frac = nl_frac(name)
        err = np.abs(apply_fast(name, u) - NONLINEAR_FUNCTIONS[name](x) * float(1 << frac))
        out[name] = {"max_lsb": float(err.max()), "mean_lsb": float(err.mean()), "frac": frac}
    return out


def fast_tables_doc(qm: QuantizedModel) -> dict[str, Any]:
    """The tables of the fast profile a model uses, for its hash: sigmoid, tanh, coef."""
    nls = {qm.update_nl} | ({qm.gate_nl} if qm.cell == "FastGRNN" else set())
    doc: dict[str, Any] = {n: FAST_TABLES[n].tolist() for n in sorted(nls & set(TABLE_NLS))}
    coef = coef_table(qm)
    doc["coef"] = None if coef is None else coef.tolist()
    return doc
