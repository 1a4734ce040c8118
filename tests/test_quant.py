"""Quantizer, integer simulator and nonlinearities against an independent scalar rendering of
docs/fixed-point.md written here with Python ints (no NumPy in the arithmetic)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecompile.errors import QuantError
from edgecompile.ir.model import Matrix
from edgecompile.ir.qmodel import load_qmodel, qmodel_from_json, qmodel_to_json, save_qmodel
from edgecompile.quant.bounds import OverflowBound, bound_report, check_bounds
from edgecompile.quant.quantizer import CalibrationWarning, Structure, build, initial_formats, quantize
from edgecompile.reference import forward
from edgecompile.sim.nonlinear import SIG, apply, measure_errors
from edgecompile.sim.simulator import predict_quantized, quantize_inputs, simulate

from .helpers.models import make_inputs, make_model

# ---- an independent scalar rendering of the spec -------------------------------------------


def r_shift(v: int, s: int) -> int:
    if s > 0:
        return math.floor((v + 2 ** (s - 1)) / 2**s)
    return v * 2 ** (-s)


def r_sat(v: int) -> int:
    return max(-32768, min(32767, v))


def r_sig_mag(a: int) -> int:
    i, r = a // 256, a % 256
    return int(SIG[i]) + r_shift((int(SIG[i + 1]) - int(SIG[i])) * r, 8)


def r_nl(name: str, u: int) -> int:
    if name == "sigmoid":
        y = r_sig_mag(abs(u))
        return 16384 - y if u < 0 else y
    if name == "tanh":
        y = 2 * r_sig_mag(min(2 * abs(u), 65535)) - 16384
        return -y if u < 0 else y
    if name == "quantSigm":
        return max(0, min(16384, 2 * (u + 4096)))
    return 4 * max(-4096, min(4096, u))


def r_mat(a: list[int], m, a_frac: int) -> list[int]:
    def product(vec, values):
        rows, cols = values.shape
        return [sum(int(vec[i]) * int(values[i][j]) for i in range(rows)) for j in range(cols)]

    if m.low_rank:
        f1, f2 = m.factors
        mid = [r_sat(r_shift(v, a_frac + f1.frac - m.mid_frac)) for v in product(a, f1.values)]
        return [r_shift(v, m.mid_frac + f2.frac - 12) for v in product(mid, f2.values)]
    f = m.factors[0]
    return [r_shift(v, a_frac + f.frac - 12) for v in product(a, f.values)]


def r_acc(a: list[int], m, a_frac: int) -> tuple[list[int], int]:
    """Per-unit form: the final product, not rescaled, and the format of what it multiplies."""
    def product(vec, values):
        rows, cols = values.shape
        return [sum(int(vec[i]) * int(values[i][j]) for i in range(rows)) for j in range(cols)]

    if m.low_rank:
        f1, f2 = m.factors
        mid = [r_sat(r_shift(v, a_frac + f1.frac - m.mid_frac)) for v in product(a, f1.values)]
        return product(mid, f2.values), m.mid_frac
    return product(a, m.factors[0].values), a_frac


def r_pre(qm, x: list[int], h: list[int]) -> list[int]:
    if not qm.per_unit:
        return [p + q for p, q in zip(r_mat(x, qm.W, qm.in_frac), r_mat(h, qm.U, qm.hid_frac), strict=True)]
    (aw, fw), (au, fu) = r_acc(x, qm.W, qm.in_frac), r_acc(h, qm.U, qm.hid_frac)
    wcol, ucol = qm.W.factors[-1].col_fracs, qm.U.factors[-1].col_fracs
    assert all(fw + a == fu + b for a, b in zip(wcol, ucol, strict=True))
    return [r_shift(p + q, fw + a - 12) for p, q, a in zip(aw, au, wcol, strict=True)]


def r_run(qm, xs: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    h = [0] * qm.hidden_dim
    states = []
    for x in xs:
        pre = r_pre(qm, x, h)
        new_h = []
        for j in range(qm.hidden_dim):
            c = r_nl(qm.update_nl, r_sat(pre[j] + int(qm.bias_update[j])))
            if qm.cell == "FastGRNN":
                z = r_nl(qm.gate_nl, r_sat(pre[j] + int(qm.bias_gate[j])))
                coef = r_shift(qm.zeta * (16384 - z), 14) + qm.nu
                keep, new = z * h[j], coef * c
            else:
                keep, new = qm.beta * h[j], qm.alpha * c
            new_h.append(r_sat(r_shift(keep + r_shift(new, 14 - qm.hid_frac), 14)))
        h = new_h
        states.append(h)
    logits = [sum(h[k] * int(qm.FC.values[k][c]) for k in range(qm.hidden_dim)) + int(qm.fc_bias[c])
              for c in range(qm.num_classes)]
    return logits, states


# ---- strategies -----------------------------------------------------------------------------

model_kwargs = st.fixed_dictionaries({
    "cell": st.sampled_from(["FastGRNN", "FastRNN"]),
    "D": st.integers(1, 6), "H": st.integers(1, 8), "C": st.integers(2, 4),
    "wrank": st.none() | st.integers(1, 3), "urank": st.none() | st.integers(1, 3),
    "sparsity": st.sampled_from([0.0, 0.5, 0.8]),
    "gate_nl": st.sampled_from(["sigmoid", "quantSigm"]),
    "update_nl": st.sampled_from(["tanh", "quantTanh", "sigmoid"]),
    "seed": st.integers(0, 10_000),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kw=model_kwargs, bits=st.sampled_from([8, 16]), extreme=st.booleans(), data=st.data())
def test_simulator_equals_scalar_spec(kw, bits, extreme, data):
    model = make_model(**kw)
    X = make_inputs(model, n=3, T=4, seed=kw["seed"])
    qm = quantize(model, bits, X)
    x_q = quantize_inputs(qm, X).astype(np.int64)
    if extreme:  # range extremes: the bound proof must hold for any int16 input
        x_q = np.array(data.draw(st.lists(st.sampled_from([-32768, 32767, 0, -1, 1]),
                                          min_size=x_q.size, max_size=x_q.size))).reshape(x_q.shape)
    logits, states = simulate(qm, x_q, return_states=True)
    for n in range(x_q.shape[0]):
        ref_logits, ref_states = r_run(qm, x_q[n].tolist())
        assert logits[n].tolist() == ref_logits
        assert states[n].tolist() == ref_states


def test_nonlinearities_equal_scalar_spec_exhaustively():
    u = np.arange(-32768, 32768)
    for name in ("sigmoid", "tanh", "quantSigm", "quantTanh"):
        fast = apply(name, u)
        sample = range(0, 65536, 97)
        assert [int(fast[i]) for i in sample] == [r_nl(name, int(u[i])) for i in sample]
        assert fast.min() >= -16384 and fast.max() <= 16384


def test_nonlinearity_errors_are_small_and_exact_where_piecewise_linear():
    errors = measure_errors()
    assert errors["quantSigm"]["max_lsb"] == 0 and errors["quantTanh"]["max_lsb"] == 0
    assert errors["sigmoid"]["max_lsb"] < 2.0  # interpolation + rounding, < 2 Q14 LSB
    assert errors["tanh"]["max_lsb"] < 4.0  # via 2 sigmoid(2x) - 1: twice the sigmoid error
    sig = apply("sigmoid", np.arange(-32768, 32768))
    assert np.all(np.diff(sig) >= 0), "the LUT sigmoid must be monotonic"
    assert int(apply("sigmoid", np.array([0]))[0]) == 8192


@pytest.mark.parametrize("bits,min_agreement", [(8, 0.97), (16, 0.999)])
@pytest.mark.parametrize("kw", [
    {}, {"cell": "FastRNN"}, {"wrank": 3, "urank": 4, "sparsity": 0.5},
    {"gate_nl": "quantSigm", "update_nl": "quantTanh", "norm": "TD", "T": 8},
])
def test_quantized_model_tracks_float_model(kw, bits, min_agreement):
    model = make_model(D=8, H=16, C=5, **kw)
    X = make_inputs(model, n=300, T=8, seed=3)
    qm = quantize(model, bits, X)
    ref, q = forward(model, X), predict_quantized(qm, X)
    assert (ref.argmax(1) == q.argmax(1)).mean() >= min_agreement
    scale = np.abs(ref).max()
    assert np.abs(ref - q).max() < (0.05 if bits == 8 else 0.005) * scale


def test_search_never_worse_than_initial_formats():
    model = make_model(D=6, H=12, C=6, wrank=3, sparsity=0.3, seed=5)
    X = make_inputs(model, n=200, T=10)
    qm = quantize(model, 8, X)
    assert qm.calibration["disagreements"] <= qm.calibration["initial_disagreements"]
    assert qm.calibration["method"].startswith("calibrated")


def test_no_calibration_warns_and_uses_documented_fallback():
    model = make_model()
    with pytest.warns(CalibrationWarning, match="no calibration data"):
        qm = quantize(model, 8)
    assert qm.calibration["sequences"] == 0
    assert qm.in_frac == 12 and qm.hid_frac == 14  # |x| <= 4 -> Q12 holds 7.99; |h| <= 1 -> Q15 capped


def test_every_bound_is_proved_even_for_huge_weights():
    model = make_model(D=4, H=6, seed=2)
    big = model.W.factors[0] * 500.0
    model = dataclasses.replace(model, W=Matrix((big,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        for bits in (8, 16):
            qm = quantize(model, bits)
            assert all(row.proved for row in bound_report(qm))
            x = np.full((1, 3, 4), 32767)
            simulate(qm, x)  # raises OverflowError if the proof were wrong
            simulate(qm, -x - 1)


def test_the_repair_lowers_exactly_the_formats_a_failed_bound_names():
    """A U whose every column sums to 3.0 overflows its int16 product at the format that holds
    its largest entry; the failed Bound names U0, and the input-side formats stay."""
    model = make_model(D=4, H=6, seed=2)
    flat = dataclasses.replace(model, U=Matrix((np.full((6, 6), 0.5),)))
    structure = Structure(False, False)
    formats = initial_formats(flat, 16, {"in": 4.0, "hid": 1.0}, structure)
    qm = build(flat, 16, formats, structure)
    assert qm.U.factors[0].frac < formats["U0"]
    assert (formats["in"], formats["hid"], formats["W0"]) == (qm.in_frac, qm.hid_frac, qm.W.factors[0].frac)
    u = qm.U.factors[0]
    one_bit_more = dataclasses.replace(qm, U=dataclasses.replace(
        qm.U, factors=(dataclasses.replace(u, values=u.values * 2, frac=u.frac + 1),)))
    with pytest.raises(OverflowBound) as failed:
        check_bounds(one_bit_more)
    assert failed.value.bound.operation == "U product" and failed.value.bound.formats == ("U0",)
    assert not failed.value.bound.proved and failed.value.bound.worst_case >= 2**31


def test_bits_must_be_8_or_16():
    with pytest.raises(QuantError):
        quantize(make_model(), 4)


def test_low_rank_and_sparsity_decisions_are_recorded():
    cheap = make_model(D=16, H=32, wrank=5, urank=5, sparsity=0.0)
    qm = quantize(cheap, 8, make_inputs(cheap, n=20))
    assert qm.W.low_rank and qm.U.low_rank  # 5*(16+32) < 16*32
    costly = make_model(D=4, H=4, wrank=3, urank=None)
    assert not quantize(costly, 8, make_inputs(costly, n=20)).W.low_rank  # 3*8 > 16
    sparse = make_model(D=16, H=32, sparsity=0.8)
    qs = quantize(sparse, 8, make_inputs(sparse, n=20))
    assert qs.W.factors[0].sparse and qs.U.factors[0].sparse
    assert qs.W.macs() == qs.W.factors[0].nonzeros
    dense = make_model(D=16, H=32, sparsity=0.0)
    assert not quantize(dense, 8, make_inputs(dense, n=20)).W.factors[0].sparse


def test_serialisation_round_trip_and_determinism(tmp_path):
    model = make_model(wrank=2, sparsity=0.5, norm="TD", T=6)
    X = make_inputs(model, n=40)
    a, b = quantize(model, 8, X), quantize(model, 8, X)
    assert qmodel_to_json(a) == qmodel_to_json(b)
    save_qmodel(a, tmp_path / "m.json")
    back = load_qmodel(tmp_path / "m.json")
    assert qmodel_to_json(back) == qmodel_to_json(a)
    xq = quantize_inputs(a, X)
    assert np.array_equal(simulate(back, xq), simulate(a, xq))
    with pytest.raises(QuantError):
        qmodel_from_json('{"format_version": 99}')


def test_input_quantization_rounds_half_up_and_saturates():
    model = make_model(D=2, H=3, norm=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        qm = quantize(model, 8)
    step = 2.0 ** -qm.in_frac
    X = np.array([[[0.5 * step, -0.5 * step], [1e9, -1e9]]])
    assert quantize_inputs(qm, X).tolist() == [[[1, 0], [32767, -32768]]]
