"""The batched simulator (``simulate``) against a plain scalar rendering of docs/fixed-point.md
written here: Python integers, one sequence, one unit and one multiply-accumulate at a time.

Random small models of both cells, every nonlinearity, the per-tensor and the per-unit form,
int8/int16 weights, dense/low-rank/sparse factors and extreme int16 inputs. Some models are
drawn with weights the int32 bound cannot prove: there the scalar rendering either overflows
(and ``simulate`` must raise OverflowError too) or not (and the results must be equal).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import SIG
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel
from edgecompile.sim.simulator import simulate
from tests.helpers.codegen import NLS, SHA, int_inputs
from tests.helpers.per_unit import per_unit_qmodel

LIMIT = 1 << 31


class Overflow(Exception):
    pass


def i32(v: int) -> int:
    if not -LIMIT <= v < LIMIT:
        raise Overflow(v)
    return v


def rsh(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) >> s if s > 0 else v * (1 << -s)


def sat(v: int) -> int:
    return max(-32768, min(32767, v))


def sig_mag(a: int) -> int:
    i, r = a >> 8, a & 255
    return int(SIG[i]) + rsh((int(SIG[i + 1]) - int(SIG[i])) * r, 8)


def nl(name: str, u: int) -> int:
    if name == "sigmoid":
        y = sig_mag(abs(u))
        return 16384 - y if u < 0 else y
    if name == "tanh":
        y = 2 * sig_mag(min(2 * abs(u), 65535)) - 16384
        return -y if u < 0 else y
    if name == "quantSigm":
        return max(0, min(16384, 2 * (u + 4096)))
    if name == "quantTanh":
        return 4 * max(-4096, min(4096, u))
    if name == "quantSigm4":
        return max(0, min(16384, u + 8192))
    assert name == "relu"
    return max(u, 0)


def dot(a: list[int], w: np.ndarray, j: int) -> int:
    acc = 0
    for i, ai in enumerate(a):
        acc += ai * int(w[i, j])
    return i32(acc)


def product(a: list[int], f: QFactor) -> list[int]:
    return [dot(a, f.values, j) for j in range(f.shape[1])]


def fracs(f: QFactor) -> list[int]:
    return [f.frac] * f.shape[1] if f.col_fracs is None else list(f.col_fracs)


def matrix_acc(a: list[int], m: QMatrix, a_frac: int) -> tuple[list[int], int]:
    """(the final product before any rescale, the activation format of that product)."""
    if len(m.factors) == 2:
        assert m.mid_frac is not None
        s = a_frac + m.factors[0].frac - m.mid_frac
        mid = [sat(rsh(v, s)) for v in product(a, m.factors[0])]
        return product(mid, m.factors[1]), m.mid_frac
    return product(a, m.factors[0]), a_frac


def pre_activation(qm: QuantizedModel, h: list[int], x: list[int]) -> list[int]:
    acc_w, aw = matrix_acc(x, qm.W, qm.in_frac)
    acc_u, au = matrix_acc(h, qm.U, qm.hid_frac)
    pre = []
    for j in range(qm.hidden_dim):
        fw, fu = fracs(qm.W.factors[-1])[j], fracs(qm.U.factors[-1])[j]
        if qm.per_unit:
            assert aw + fw == au + fu
            s = aw + fw - 12
            i32(acc_w[j] + acc_u[j] + ((1 << (s - 1)) if s > 0 else 0))
            pre.append(i32(rsh(acc_w[j] + acc_u[j], s)))
        else:
            pre.append(i32(rsh(acc_w[j], aw + fw - 12) + rsh(acc_u[j], au + fu - 12)))
    return pre


def step(qm: QuantizedModel, h: list[int], x: list[int]) -> list[int]:
    pre = pre_activation(qm, h, x)
    gz = 12 if (qm.cell == "FastGRNN" and qm.gate_nl == "relu") else 14
    gc = 12 if qm.update_nl == "relu" else 14
    out = []
    for j in range(qm.hidden_dim):
        c = nl(qm.update_nl, sat(pre[j] + int(qm.bias_update[j])))
        if qm.cell == "FastGRNN":
            assert qm.bias_gate is not None and qm.zeta is not None and qm.nu is not None
            z = nl(qm.gate_nl, sat(pre[j] + int(qm.bias_gate[j])))
            coef = rsh(qm.zeta * ((1 << gz) - z), gz) + qm.nu
            if qm.gate_nl == "relu":
                coef = sat(coef)
            total = z * h[j] + rsh(coef * c, 14 + gc - gz - qm.hid_frac)
        else:
            assert qm.alpha is not None and qm.beta is not None
            total = qm.beta * h[j] + rsh(qm.alpha * c, gc - qm.hid_frac)
        i32(total + (1 << (gz - 1)))
        out.append(sat(rsh(total, gz)))
    return out


def scalar_simulate(qm: QuantizedModel, x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, steps, _ = x_q.shape
    logits, states = [], []
    for k in range(n):
        h = [0] * qm.hidden_dim
        seq = []
        for t in range(steps):
            h = step(qm, h, [int(v) for v in x_q[k, t]])
            seq.append(h)
        states.append(seq)
        logits.append([i32(v + int(b)) for v, b in zip(product(h, qm.FC), qm.fc_bias, strict=True)])
    return (np.array(logits, dtype=np.int64).reshape(n, qm.num_classes),
            np.array(states, dtype=np.int64).reshape(n, steps, qm.hidden_dim))


@st.composite
def per_tensor_models(draw: st.DrawFn) -> QuantizedModel:
    cell = draw(st.sampled_from(["FastGRNN", "FastRNN"]))
    bits = draw(st.sampled_from([8, 16]))
    D, H, C = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    in_frac, hid_frac = draw(st.integers(0, 15)), draw(st.integers(8, 15))
    lim = 1 << (bits - 1)
    big = draw(st.booleans())  # weights at full width: int16 bounds the proof cannot hold

    def factor(rows: int, cols: int, a_frac: int, to_frac: int) -> QFactor:
        wmax = lim - 1 if big else max(1, min(lim - 1, 16000 // rows))
        v = rng.integers(-wmax, wmax + 1, (rows, cols))
        v[rng.random((rows, cols)) < draw(st.sampled_from([0.0, 0.5, 1.0]))] = 0
        return QFactor(v, draw(st.integers(-2, 18)) + to_frac - a_frac, draw(st.booleans()))

    def matrix(rows: int, a_frac: int) -> QMatrix:
        if draw(st.booleans()):
            r, mid = draw(st.integers(1, 4)), draw(st.integers(0, 15))
            return QMatrix((factor(rows, r, a_frac, mid), factor(r, H, mid, 12)), mid)
        return QMatrix((factor(rows, H, a_frac, 12),))

    wide = draw(st.booleans())

    def bias() -> np.ndarray:
        return rng.integers(-32768, 32768, H) if wide else rng.integers(-6000, 6000, H)

    unit = st.integers(0, 16384)
    extra = (dict(bias_gate=bias(), zeta=draw(unit), nu=draw(unit)) if cell == "FastGRNN"
             else dict(alpha=draw(unit), beta=draw(unit)))
    fc = factor(H, C, 0, 0)
    return QuantizedModel(
        cell=cell, bits=bits, gate_nl=draw(st.sampled_from(NLS)), update_nl=draw(st.sampled_from(NLS)),
        in_frac=in_frac, hid_frac=hid_frac, W=matrix(D, in_frac), U=matrix(H, hid_frac),
        FC=QFactor(fc.values, draw(st.integers(0, 15)), fc.sparse),
        fc_bias=rng.integers(-(1 << 30), 1 << 30, C), bias_update=bias(), source_sha256=SHA, **extra)


@st.composite
def per_unit_models(draw: st.DrawFn) -> QuantizedModel:
    kw = dict(seed=draw(st.integers(0, 2**31)), bits=draw(st.sampled_from([8, 16])),
              D=draw(st.integers(1, 6)), H=draw(st.integers(1, 8)), C=draw(st.integers(1, 4)),
              cell=draw(st.sampled_from(["FastGRNN", "FastRNN"])),
              wrank=draw(st.sampled_from([None, 1, 3])), urank=draw(st.sampled_from([None, 2])),
              sparse=draw(st.booleans()), shifts=draw(st.sampled_from([(-3, 16), (0, 9), (-5, 0), (2, 24)])),
              gate_nl=draw(st.sampled_from(NLS)), update_nl=draw(st.sampled_from(NLS)))
    try:
        qm = per_unit_qmodel(**kw)
    except QuantError:
        reject()
    grow = draw(st.sampled_from([1, 1, 4, 64]))  # past the per-unit bound: checked on the values
    if grow > 1:
        lim = (1 << (qm.bits - 1)) - 1

        def bigger(m: QMatrix) -> QMatrix:
            f = m.factors[-1]
            return dataclasses.replace(m, factors=(*m.factors[:-1], dataclasses.replace(
                f, values=np.clip(f.values * grow, -lim - 1, lim))))
        qm = dataclasses.replace(qm, W=bigger(qm.W), U=bigger(qm.U))
    return qm


def compare(qm: QuantizedModel, seed: int, n: int, steps: int) -> None:
    x = int_inputs(np.random.default_rng(seed), n, steps, qm.input_dim)
    try:
        exp_logits, exp_states = scalar_simulate(qm, x)
    except Overflow:
        with pytest.raises(OverflowError, match="int32 overflow"):
            simulate(qm, x, return_states=True)
        return
    logits, states = simulate(qm, x, return_states=True)
    np.testing.assert_array_equal(states, exp_states)
    np.testing.assert_array_equal(logits, exp_logits)
    np.testing.assert_array_equal(simulate(qm, x), exp_logits)
    np.testing.assert_array_equal(simulate(qm, x[0]), exp_logits[:1])


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.filter_too_much])


@PROPS
@given(per_tensor_models(), st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(0, 4))
def test_simulate_equals_the_scalar_spec_per_tensor(qm: QuantizedModel, seed: int, n: int, steps: int) -> None:
    compare(qm, seed, n, steps)


@PROPS
@given(per_unit_models(), st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(0, 4))
def test_simulate_equals_the_scalar_spec_per_unit(qm: QuantizedModel, seed: int, n: int, steps: int) -> None:
    compare(qm, seed, n, steps)


def test_chunks_and_an_overflow_found_on_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """More sequences than one chunk of the time loop; and an unproved model whose overflow only
    some inputs reach: raised for those, not for small inputs."""
    import edgecompile.sim.simulator as sim

    qm = per_unit_qmodel(seed=3, bits=8, wrank=3, urank=4)
    x = int_inputs(np.random.default_rng(1), 7, 3, qm.input_dim)
    monkeypatch.setattr(sim, "_CHUNK", 2)
    np.testing.assert_array_equal(simulate(qm, x), scalar_simulate(qm, x)[0])
    rnn = QuantizedModel(
        cell="FastRNN", bits=8, gate_nl="sigmoid", update_nl="tanh", in_frac=0, hid_frac=14,
        W=QMatrix((QFactor(np.full((2, 1), 1 << 20), 12),)), U=QMatrix((QFactor(np.zeros((1, 1), int), 14),)),
        FC=QFactor(np.ones((1, 1), int), 0), fc_bias=np.zeros(1, int),
        bias_update=np.zeros(1, int), alpha=16384, beta=0, source_sha256=SHA)
    small = np.ones((1, 2, 2), dtype=np.int16)
    np.testing.assert_array_equal(simulate(rnn, small), scalar_simulate(rnn, small)[0])
    with pytest.raises(OverflowError, match="int32 overflow in W"):
        simulate(rnn, np.full((1, 2, 2), 32767, dtype=np.int16))


def _rnn(w: int, w_frac: int, update_nl: str, hid_frac: int) -> QuantizedModel:
    """FastRNN, D = H = C = 1, U = 0, alpha = 1.0, beta = 0: pre = rshift(x * w, w_frac - 12)."""
    return QuantizedModel(
        cell="FastRNN", bits=16, gate_nl="sigmoid", update_nl=update_nl, in_frac=0, hid_frac=hid_frac,
        W=QMatrix((QFactor(np.full((1, 1), w), w_frac),)), U=QMatrix((QFactor(np.zeros((1, 1), int), 14),)),
        FC=QFactor(np.ones((1, 1), int), 0), fc_bias=np.zeros(1, int), bias_update=np.zeros(1, int),
        alpha=16384, beta=0, source_sha256=SHA)


def _per_unit_rnn() -> QuantizedModel:
    """Per-unit FastRNN, D = H = C = 1, s = 20: x * 65535 fits int32, plus the 2^19 of rounding not."""
    qm = _rnn(65535, 32, "tanh", 14)
    return dataclasses.replace(
        qm, per_unit=True, W=QMatrix((QFactor(np.full((1, 1), 65535), 32, col_fracs=(32,)),)),
        U=QMatrix((QFactor(np.full((1, 1), 3), 18, col_fracs=(18,)),)))


@pytest.mark.parametrize(("qm", "where"), [
    (_per_unit_rnn(), "summed products"),
    (_rnn(1 << 16, 11, "tanh", 14), "pre-activation"),  # x * 2^16 fits, its rescale by 2^1 does not
    (_rnn(1, 12, "relu", 15), "residual update"),  # alpha * relu(x) * 2^3 at x = 32767
])
def test_overflow_is_asserted_on_the_values(qm: QuantizedModel, where: str) -> None:
    small = np.array([[[3]], [[-2]]], dtype=np.int16)
    np.testing.assert_array_equal(simulate(qm, small), scalar_simulate(qm, small)[0])
    large = np.array([[[1]], [[32767]]], dtype=np.int16)
    with pytest.raises(Overflow):
        scalar_simulate(qm, large)
    with pytest.raises(OverflowError, match=f"int32 overflow in {where}"):
        simulate(qm, large)
