"""ERNN's fixed point (docs/fixed-point.md, "ERNN") through the real chain: the simulator against
a scalar rendering of the spec, the quantizer's constants, refusals and bounds, int8 against
float on a trained model, the generated C on every kernel family (host compilers), the real
AVR and Cortex-M code in simavr and QEMU (many models per image), and train → export → verify
through the console script."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.frontend.checkpoint import load_checkpoint, model_from_arrays
from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import QuantizedModel, load_qmodel, qmodel_from_json, qmodel_to_json
from edgecompile.quant.bounds import bound_report, check_bounds
from edgecompile.quant.quantizer import quantize
from edgecompile.reference import forward
from edgecompile.sim.simulator import quantize_inputs, simulate, step

from . import harness_build as hb
from .cbuild import PLAIN
from .helpers.codegen import HYPO, assert_bit_exact, int_inputs
from .helpers.matrix import assert_device_matches, check_on_qemu

ROOT = Path(__file__).resolve().parent.parent
EXE = str(ROOT / ".venv" / "bin" / "edgecompile")
NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu")


# --- models -------------------------------------------------------------------------------------

def ernn_arrays(D: int = 4, H: int = 6, C: int = 3, K: int = 3, seed: int = 0, wrank: int | None = None,
                urank: int | None = None, sparsity: float = 0.0, nl: str = "relu",
                eta: tuple[float, float] = (0.05, 0.5), alpha: float = 0.8, bias: float = 0.3,
                norm: bool = True) -> dict[str, np.ndarray]:
    """EdgeML-layout float32 arrays of an ERNN (``eta`` drawn uniformly in the given range)."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        m = rng.normal(0.0, scale / np.sqrt(rows), (rows, cols))
        if sparsity > 0:
            m[np.abs(m) < np.quantile(np.abs(m), sparsity)] = 0.0
        return m

    a: dict[str, Any] = {}
    for name, rows, rank, scale in (("W", D, wrank, 1.0), ("U", H, urank, 0.6)):
        if rank:
            a[name + "1"], a[name + "2"] = mat(rows, rank, 1.0), mat(rank, H, scale)
        else:
            a[name] = mat(rows, H, scale)
    a.update(B=rng.normal(0.0, bias, H), eta=rng.uniform(*eta, K), alpha=np.asarray(alpha),
             FC=mat(H, C, 2.0), FCbias=rng.normal(0.0, 0.1, C), update_nonlinearity=np.array(nl))
    if norm:
        a["mean"], a["std"] = rng.normal(0.0, 1.0, D), rng.uniform(0.5, 2.0, D)
    return {k: (v if v.dtype.kind == "U" else np.asarray(v, np.float32)) for k, v in a.items()}


def ernn_model(**kw: Any) -> FloatModel:
    m = model_from_arrays(ernn_arrays(**kw))
    return dataclasses.replace(m, sha256=m.content_hash())


def raw_inputs(fm: FloatModel, n: int = 24, T: int = 8, seed: int = 1) -> np.ndarray:
    mean, std = fm.normalisation(T)
    return mean + std * np.random.default_rng(seed).normal(0.0, 1.0, (n, T, fm.input_dim))


def ernn_q(bits: int = 8, calib: bool = True, **kw: Any) -> QuantizedModel:
    fm = ernn_model(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(fm, bits, raw_inputs(fm, n=32, T=8) if calib else None, profile="fast")


def pushed(qm: QuantizedModel, seed: int) -> QuantizedModel:
    """``qm`` with its inner-step constants and biases moved to the edges the bounds allow: eta_q
    and decay_q up to 32767, eta's format down to 4 (steps up to 2047), biases over the whole
    int16 range, so that s = g + h, p + B and the new g saturate. The bound proof must still hold."""
    rng = np.random.default_rng(seed)
    K = len(qm.eta or ())
    eta = tuple(int(v) for v in rng.integers(1, 32768, K))
    decay = tuple(int(v) for v in rng.integers(0, 32768, K))
    out = dataclasses.replace(qm, eta=eta, decay=decay, eta_frac=int(rng.integers(4, max(5, int(qm.eta_frac or 4)))),
                              bias_update=rng.integers(-32768, 32768, qm.hidden_dim))
    check_bounds(out)
    return out


# --- the spec, by hand ----------------------------------------------------------------------------

def _rshift(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) >> s if s > 0 else v * (1 << -s)


def _sat16(v: int) -> int:
    return min(max(v, -32768), 32767)


def _phi(nl: str, u: int) -> int:
    """F(update_nl, u) of the fast profile, from the tables' definitions in docs/fixed-point.md."""
    if nl == "sigmoid":
        return math.floor(16384 / (1 + math.exp(-((u >> 7) + 0.5) / 32)) + 0.5)
    if nl == "tanh":
        return math.floor(math.tanh(((min(max(u, -16384), 16383) >> 6) + 0.5) / 64) * 16384 + 0.5)
    if nl == "quantSigm":
        return min(max(2 * (u + 4096), 0), 16384)
    if nl == "quantTanh":
        return 4 * min(max(u, -4096), 4096)
    if nl == "quantSigm4":
        return min(max(u + 8192, 0), 16384)
    assert nl == "relu"
    return max(u, 0)


def _dot(a: list[int], m: np.ndarray, j: int) -> int:
    return sum(a[i] * int(m[i, j]) for i in range(len(a)))


def _final(qm: QuantizedModel, a: list[int], name: str) -> tuple[list[int], int]:
    """The final product of W or U on ``a`` (exact), and the Q format of the vector it multiplies."""
    m = qm.W if name == "W" else qm.U
    fa = qm.in_frac if name == "W" else qm.hid_frac
    f1 = m.factors[0]
    if len(m.factors) == 2:
        r = f1.values.shape[1]
        mid = [_sat16(_rshift(_dot(a, f1.values, k), fa + f1.frac - int(m.mid_frac))) for k in range(r)]
        return [_dot(mid, m.factors[1].values, j) for j in range(qm.hidden_dim)], int(m.mid_frac)
    return [_dot(a, f1.values, j) for j in range(qm.hidden_dim)], fa


def scalar_ernn(qm: QuantizedModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """docs/fixed-point.md, "ERNN", one Python int at a time: (logits [N, C], states [N, T, H])."""
    H, C = qm.hidden_dim, qm.num_classes
    assert qm.eta is not None and qm.decay is not None and qm.eta_frac is not None
    fp = qm.pre_frac  # the pre-activations' format: 12, or calibrated for a relu update
    gc = fp if qm.update_nl == "relu" else 14
    se, sd = qm.eta_frac + gc - qm.hid_frac, qm.decay_frac
    assert sd is not None and sd >= 1
    # per-unit shift s[j] = A[j] - fp, A[j] = (format of W's final input) + (W's final column format)
    aw = qm.W.mid_frac if len(qm.W.factors) == 2 else qm.in_frac
    au = qm.U.mid_frac if len(qm.U.factors) == 2 else qm.hid_frac
    fw, fu = qm.W.factors[-1], qm.U.factors[-1]
    colw = fw.col_fracs or (fw.frac,) * H
    colu = fu.col_fracs or (fu.frac,) * H
    shift = [int(aw) + colw[j] - fp for j in range(H)]
    assert shift == [int(au) + colu[j] - fp for j in range(H)], "W and U do not tie"
    logits, states = [], []
    for seq in np.asarray(x, dtype=np.int64):
        h = [0] * H
        hs = []
        for xt in seq:
            acc_w, _ = _final(qm, [int(v) for v in xt], "W")
            g = list(h)
            for eta, decay in zip(qm.eta, qm.decay, strict=True):
                s = [_sat16(g[j] + h[j]) for j in range(H)]
                acc_u, _ = _final(qm, s, "U")
                for j in range(H):
                    acc = acc_w[j] + acc_u[j]
                    pre = acc >> shift[j] if shift[j] > 0 else acc * (1 << -shift[j])
                    p = _sat16(pre)
                    phi = _phi(qm.update_nl, _sat16(p + int(qm.bias_update[j])))
                    g[j] = _sat16(g[j] + _rshift(eta * phi, se) - _rshift(decay * s[j], sd))
            h = g
            hs.append(list(h))
        states.append(hs)
        logits.append([sum(h[k] * int(qm.FC.values[k, c]) for k in range(H)) + int(qm.fc_bias[c])
                       for c in range(C)])
    return np.array(logits, dtype=np.int64), np.array(states, dtype=np.int64).reshape(len(x), -1, H)


#: Explicit models: K 1..4, every update nonlinearity, low rank / full / sparse, int8 / int16.
CASES: dict[str, dict[str, Any]] = {
    "k1-relu-full-i8": dict(bits=8, K=1, nl="relu", D=3, H=5),
    "k2-tanh-lowrank-i16": dict(bits=16, K=2, nl="tanh", D=5, H=8, wrank=2, urank=3),
    "k3-sigmoid-sparse-i8": dict(bits=8, K=3, nl="sigmoid", D=4, H=10, sparsity=0.6),
    "k4-quantTanh-lowrank-i8": dict(bits=8, K=4, nl="quantTanh", D=6, H=7, wrank=3, urank=2),
    "k2-quantSigm-full-i16": dict(bits=16, K=2, nl="quantSigm", D=2, H=4, eta=(0.5, 1.5)),
    "k3-quantSigm4-sparse-lr-i16": dict(bits=16, K=3, nl="quantSigm4", D=5, H=9, urank=4, sparsity=0.5),
    "k1-relu-urank-i16-noalpha": dict(bits=16, K=1, nl="relu", D=3, H=6, urank=2, alpha=0.0),
    "k3-relu-lowrank-i8-big-eta": dict(bits=8, K=3, nl="relu", D=4, H=6, wrank=2, urank=2, eta=(2.0, 6.0),
                                       alpha=0.3),
}


@pytest.fixture(scope="module")
def case_models() -> dict[str, QuantizedModel]:
    return {name: ernn_q(**kw, seed=i) for i, (name, kw) in enumerate(CASES.items())}


def _case_inputs(qm: QuantizedModel, seed: int, n: int = 4, steps: int = 5) -> np.ndarray:
    return int_inputs(np.random.default_rng(seed), n, steps, qm.input_dim)


# --- the simulator ------------------------------------------------------------------------------

def test_cases_are_ernn_in_the_fast_profile(case_models):
    """The explicit models are what they claim to be: ERNN, fast, per unit, K = the inner steps."""
    for name, qm in case_models.items():
        kw = CASES[name]
        assert qm.cell == "ERNN" and qm.profile == "fast" and qm.per_unit, name
        assert len(qm.eta) == len(qm.decay) == kw["K"] and qm.bits == kw["bits"], name
        assert qm.update_nl == kw["nl"] and qm.U.low_rank == bool(kw.get("urank")), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_step_loop_equals_simulate(case_models, name):
    qm = case_models[name]
    x = _case_inputs(qm, 3, n=5, steps=6)
    logits, states = simulate(qm, x, return_states=True)
    h = np.zeros((x.shape[0], qm.hidden_dim), dtype=np.int64)
    for t in range(x.shape[1]):
        h = step(qm, h, x[:, t].astype(np.int64))
        np.testing.assert_array_equal(h, states[:, t])
    np.testing.assert_array_equal(h @ qm.FC.values + qm.fc_bias, logits)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("push", [False, True], ids=["quantized", "pushed"])
def test_scalar_spec_equals_simulate(case_models, name, push):
    qm = case_models[name]
    if push:
        qm = pushed(qm, seed=len(name))
    x = _case_inputs(qm, 7)
    logits, states = simulate(qm, x, return_states=True)
    want_logits, want_states = scalar_ernn(qm, x)
    np.testing.assert_array_equal(states, want_states)
    np.testing.assert_array_equal(logits, want_logits)


def test_pushed_models_saturate_the_state(case_models):
    """The pushed constants reach the clipping paths the scalar test is there for."""
    hit = 0
    for name, qm in case_models.items():
        qp = pushed(qm, seed=len(name))
        _, states = simulate(qp, _case_inputs(qp, 7), return_states=True)
        hit += int(np.isin(states, (-32768, 32767)).any())
    assert hit >= len(CASES) // 2, hit


def test_inner_steps_matter():
    """K inner steps are not one: dropping the last inner step changes the states (the scalar
    test would pass vacuously if the loop ran once)."""
    qm = ernn_q(K=3, nl="tanh", eta=(0.4, 0.6), seed=4)
    x = _case_inputs(qm, 2)
    one = dataclasses.replace(qm, eta=qm.eta[:2], decay=qm.decay[:2])
    assert not np.array_equal(simulate(qm, x, return_states=True)[1], simulate(one, x, return_states=True)[1])


# --- the quantizer ------------------------------------------------------------------------------

def _largest_frac(v: float, lo: int, hi: int) -> int:
    """The largest f in lo..hi with v * 2^f <= 32767 (the value fits int16 without clipping)."""
    f = lo
    while f < hi and v * 2.0 ** (f + 1) <= 32767:
        f += 1
    assert v * 2.0 ** f <= 32767
    return f


@settings(max_examples=40, deadline=None)
@given(K=st.integers(1, 4), top=st.floats(1e-3, 2047.0), spread=st.floats(0.05, 1.0),
       alpha=st.floats(0.0, 8.0), seed=st.integers(0, 2**16))
def test_constants_are_the_largest_formats_that_hold_them(K, top, spread, alpha, seed):
    from edgecompile.ir.model import ERNNParams
    from edgecompile.quant.quantizer import ernn_constants

    eta = np.random.default_rng(seed).uniform(spread * top, top, K)
    eta[0] = top
    if float(np.max(eta * alpha)) > 16383:
        return
    p = ERNNParams(bias=np.zeros(2), eta=eta, alpha=alpha)
    c = ernn_constants(p)
    fe = _largest_frac(top, 4, 24)
    fd = _largest_frac(float(np.max(eta * alpha)), 1, 30) if alpha > 0 else 30
    assert (c["eta_frac"], c["decay_frac"]) == (fe, fd)
    assert c["eta"] == tuple(math.floor(float(e) * 2**fe + 0.5) for e in eta)
    assert c["decay"] == tuple(math.floor(float(e) * alpha * 2**fd + 0.5) for e in eta)
    assert all(1 <= v <= 32767 for v in c["eta"]) and all(0 <= v <= 32767 for v in c["decay"])


def test_quantized_model_carries_the_constants(case_models):
    """quantize() stores what ernn_constants() gives for the float model's eta and alpha, the
    constants survive the JSON file and enter the hash."""
    for i, (name, qm) in enumerate(case_models.items()):
        fm = ernn_model(**{k: v for k, v in CASES[name].items() if k != "bits"}, seed=i)
        eta, alpha = fm.params.eta, fm.params.alpha
        fe, fd = _largest_frac(float(eta.max()), 4, 24), (_largest_frac(float(eta.max() * alpha), 1, 30)
                                                          if alpha > 0 else 30)
        assert (qm.eta_frac, qm.decay_frac) == (fe, fd), name
        assert qm.eta == tuple(math.floor(float(e) * 2**fe + 0.5) for e in eta), name
        back = qmodel_from_json(qmodel_to_json(qm))
        assert (back.eta, back.eta_frac, back.decay, back.decay_frac) == (qm.eta, qm.eta_frac, qm.decay,
                                                                          qm.decay_frac), name
        assert back.quantized_sha256() == qm.quantized_sha256(), name
    qm = case_models["k3-sigmoid-sparse-i8"]
    for change in (dict(eta=(qm.eta[0] ^ 1, *qm.eta[1:])), dict(decay=(qm.decay[0] ^ 1, *qm.decay[1:])),
                   dict(eta_frac=qm.eta_frac - 1)):
        assert dataclasses.replace(qm, **change).quantized_sha256() != qm.quantized_sha256()


def test_bound_rows_are_proved_and_hold(case_models):
    """Every row of the report is proved, ERNN's three rows among them; and the worst case of
    each is reached or passed by no int16 g, s and nonlinearity value (checked at the extremes,
    where these linear terms peak)."""
    for name, qm in case_models.items():
        for q in (qm, pushed(qm, seed=len(name))):
            rows = {r.operation: r for r in bound_report(q)}
            assert all(r.proved for r in rows.values()), (name, [r for r in rows.values() if not r.proved])
            ernn = [r for op, r in rows.items() if op.startswith("ERNN")]
            assert len(ernn) == 3 and "residual update" not in rows, (name, sorted(rows))
            gc = q.pre_frac if q.update_nl == "relu" else 14
            se, sd = q.eta_frac + gc - q.hid_frac, q.decay_frac
            phis = [_phi(q.update_nl, u) for u in (-32768, 0, 32767)]
            worst_update = 0
            for e in q.eta:
                for d in q.decay:
                    for phi in phis:
                        for sv in (-32768, 32767):
                            eta_phi = abs(e * phi) + (1 << (se - 1)) if se > 0 else abs(e * phi) << -se
                            assert eta_phi <= rows["ERNN eta * phi"].worst_case
                            assert abs(d * sv) + (1 << (sd - 1)) <= rows["ERNN decay * s"].worst_case
                            for g in (-32768, 32767):
                                worst_update = max(worst_update, abs(g + _rshift(e * phi, se) - _rshift(d * sv, sd)))
            assert worst_update <= rows["ERNN inner update"].worst_case < 2**31, name


def _cli(*args: Any, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _one_line_error(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.startswith("edgecompile: error: ") and r.stderr.strip().count("\n") == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


REFUSED = [
    ("eta 3000", dict(eta=(3000.0, 3000.0), alpha=0.1), ["eta = 3000", "2047"]),
    ("eta*alpha 20000", dict(eta=(1000.0, 1000.0), alpha=20.0), ["eta * alpha = 20000", "16383"]),
    ("eta rounds to 0", dict(eta=(0.5, 0.5), tiny=1e-7), ["eta[1]", "1e-07", "resolution"]),
]


@pytest.mark.parametrize("what, kw, words", REFUSED, ids=[r[0] for r in REFUSED])
def test_constants_out_of_range_refused_in_one_line(tmp_path, what, kw, words):
    kw = dict(kw)
    tiny = kw.pop("tiny", None)
    a = ernn_arrays(K=2, **kw)
    if tiny is not None:
        a["eta"][1] = np.float32(tiny)
    np.savez(tmp_path / "m.npz", **a)
    for cmd in (["quantize", tmp_path / "m.npz", "-o", tmp_path / "q.json"],
                ["export", tmp_path / "m.npz", "--board", "uno", "-o", tmp_path / "proj"]):
        err = _one_line_error(_cli(*cmd))
        assert all(w in err for w in words), err
    assert not (tmp_path / "q.json").exists() and not (tmp_path / "proj").exists()


# --- a trained model ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small ERNN (K=2, H=6) trained by the project's trainer through the console script on two
    separable classes, with 20 held-out sequences for the boards."""
    d = tmp_path_factory.mktemp("ernn_trained")
    rng = np.random.default_rng(11)
    n, T = 100, 8
    y = np.arange(n) % 2
    X = rng.normal(size=(n, T, 2)) + np.where(y[:, None, None] == 1, 0.8, -0.8) * np.array([1.0, 0.0])
    X = (X * np.array([3.0, 0.5]) + np.array([10.0, -2.0])).astype(np.float32)  # raw units
    np.save(d / "X.npy", X[:80])
    np.save(d / "y.npy", y[:80])
    np.save(d / "Xv.npy", X[80:])
    np.save(d / "yv.npy", y[80:])
    r = _cli("train", "--data", d / "X.npy", "--labels", d / "y.npy", "--cell", "ERNN", "--inner-steps", "2",
             "--hidden", "6", "--epochs", "12", "--lr", "0.03", "--quiet", "-o", d / "ernn.npz")
    assert r.returncode == 0, r.stderr
    return d


def test_int8_agrees_with_float_on_a_trained_model(trained):
    d = trained
    fm = load_checkpoint(d / "ernn.npz")
    assert fm.cell == "ERNN" and fm.params.inner_steps == 2
    r = _cli("quantize", d / "ernn.npz", "--calib", d / "X.npy", "-o", d / "q8.json")
    assert r.returncode == 0, r.stderr
    qm = load_qmodel(d / "q8.json")
    assert qm.bits == 8 and qm.profile == "fast" and len(qm.eta) == 2
    X = np.load(d / "X.npy").astype(np.float64)
    y = np.load(d / "y.npy")
    r = _cli("predict", d / "q8.json", "--data", d / "X.npy", "-o", d / "l8.npy")
    assert r.returncode == 0, r.stderr
    int_logits = np.load(d / "l8.npy")
    flt = forward(fm, X)
    agree = float(np.mean(int_logits.argmax(axis=1) == flt.argmax(axis=1)))
    assert agree >= 0.95, agree
    assert float(np.mean(flt.argmax(axis=1) == y)) >= 0.75  # the float model learned something
    # the predicted logits are the simulator's, dequantized
    np.testing.assert_array_equal(int_logits, simulate(qm, quantize_inputs(qm, X)) / 2.0**qm.logit_frac)
    rel = np.abs(int_logits - flt).max() / np.abs(flt).max()
    assert rel < 0.1, rel


# --- host C on every kernel family -----------------------------------------------------------------

#: (backend, extra flags): the host-compiled forms of each kernel family.
VARIANTS = {"native": ("native", []), "native-reference": ("native", ["-DEC_KERNEL_REFERENCE"]),
            "armv7em": ("armv7em", []), "armv7m": ("armv7m", []), "armv6m": ("armv6m", []), "avr": ("avr", [])}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cases_host_c_bit_exact(case_models, variant):
    """Every explicit model on every variant, as quantized on half of the variants and with
    pushed constants on the other half (one build per model and variant)."""
    backend, flags = VARIANTS[variant]
    v = sorted(VARIANTS).index(variant)
    for i, (name, qm) in enumerate(case_models.items()):
        q = pushed(qm, seed=len(name)) if (i + v) % 2 else qm
        assert_bit_exact(q, _case_inputs(q, i, n=4, steps=6), PLAIN + flags, backend)


@st.composite
def ernn_qmodels(draw: st.DrawFn) -> QuantizedModel:
    """Quantized ERNNs: K 1..4, H 1..12, full or low rank W and U, sparse or not, int8/int16,
    every update nonlinearity; half of them with constants pushed to the bounds' edges."""
    H = draw(st.integers(1, 12))
    D = draw(st.integers(1, 6))
    kw = dict(K=draw(st.integers(1, 4)), H=H, D=D, C=draw(st.integers(1, 4)), nl=draw(st.sampled_from(NLS)),
              wrank=draw(st.sampled_from([None, 1, 2, 3])), urank=draw(st.sampled_from([None, 1, 2, 4])),
              sparsity=draw(st.sampled_from([0.0, 0.5, 0.8])), seed=draw(st.integers(0, 2**16)),
              eta=draw(st.sampled_from([(0.05, 0.5), (0.5, 2.0), (0.01, 0.02)])),
              alpha=draw(st.sampled_from([0.0, 0.8, 3.0])))
    if kw["wrank"] is not None and kw["wrank"] >= min(D, H):
        kw["wrank"] = None
    if kw["urank"] is not None and kw["urank"] >= H:
        kw["urank"] = None
    qm = ernn_q(bits=draw(st.sampled_from([8, 16])), calib=draw(st.booleans()), **kw)
    return pushed(qm, draw(st.integers(0, 2**16))) if draw(st.booleans()) else qm


@settings(HYPO, max_examples=10)
@given(qm=ernn_qmodels(), seed=st.integers(0, 2**16), variant=st.sampled_from(sorted(VARIANTS)))
def test_random_models_host_c_bit_exact(qm, seed, variant):
    backend, flags = VARIANTS[variant]
    assert_bit_exact(qm, _case_inputs(qm, seed, n=3, steps=5), PLAIN + flags, backend)


# --- the real targets: many models in one image ------------------------------------------------

#: The models of the device images: K 1..3, relu / tanh / sigmoid / quantSigm4, low rank and
#: full, sparse, int8 and int16; the second half with pushed constants (saturating states).
DEVICE_CASES: dict[str, dict[str, Any]] = {
    "e_re_k1_i8": dict(bits=8, K=1, nl="relu", D=3, H=6),
    "e_th_k2_lr_i8": dict(bits=8, K=2, nl="tanh", D=4, H=8, wrank=2, urank=3),
    "e_sg_k3_i16": dict(bits=16, K=3, nl="sigmoid", D=3, H=7),
    "e_q4_k2_lr_i16": dict(bits=16, K=2, nl="quantSigm4", D=5, H=6, wrank=3, urank=2),
    "e_re_k3_lr_i16": dict(bits=16, K=3, nl="relu", D=4, H=9, urank=4, eta=(1.0, 3.0), alpha=0.2),
    "e_th_k3_sp_i8": dict(bits=8, K=3, nl="tanh", D=5, H=10, sparsity=0.6),
    "e_sg_k1_lr_i8": dict(bits=8, K=1, nl="sigmoid", D=2, H=5, wrank=1, urank=2),
    "e_q4_k3_i8": dict(bits=8, K=3, nl="quantSigm4", D=3, H=6, alpha=0.0),
    "e_qt_k2_b2_i8": dict(bits=8, K=2, nl="quantTanh", D=6, H=40, urank=5),  # two row blocks on AVR
    "e_qs_k2_sp_lr_i16": dict(bits=16, K=2, nl="quantSigm", D=6, H=12, wrank=3, urank=4, sparsity=0.6),
}


@pytest.fixture(scope="module")
def device_models() -> tuple[list[tuple[str, QuantizedModel]], dict[str, np.ndarray]]:
    from .test_avr_matrix import saturating_inputs

    models = []
    for i, (name, kw) in enumerate(DEVICE_CASES.items()):
        qm = ernn_q(**kw, seed=50 + i)
        models.append((name, qm))
        models.append((name + "_p", pushed(qm, seed=90 + i)))
    inputs = {name: saturating_inputs(qm.input_dim, seed=i) for i, (name, qm) in enumerate(models)}
    return models, inputs


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["fast", pytest.param("reference", marks=pytest.mark.slowest)])
def test_ernn_models_in_simavr(device_models, kernel, tmp_path):
    """Every device model in one atmega2560 image per kernel, the real 16-bit-int AVR code, bit-exact
    with the simulator in every hidden state (hashed per sequence) and logit; clean under avr-gcc
    -Wconversion -Wsign-conversion."""
    from .test_avr_matrix import KERNELS, build_image, need, run_image

    need("avr-gcc")
    need("simavr")
    models, inputs = device_models
    assert_device_matches(models, inputs, run_image(build_image(tmp_path, models, inputs, KERNELS[kernel])))


@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2_an385", *(pytest.param(b, marks=pytest.mark.slowest)
                                                    for b in ("microbit", "mps2_an386"))])
def test_ernn_models_on_qemu(device_models, board, tmp_path):
    """The same models in one image per Cortex-M kernel: armv6m (micro:bit), armv7m (AN385),
    armv7em with the DSP instructions (AN386), under QEMU, bit-exact in every state and logit."""
    from edgecompile.targets.boards import get_board

    want = {"microbit": "armv6m", "mps2_an385": "armv7m", "mps2_an386": "armv7em"}[board]
    assert get_board(board).kernel_backend == want
    models, inputs = device_models
    check_on_qemu(tmp_path, board, models, inputs)


def test_device_models_reach_saturation(device_models):
    """The device inputs and pushed constants drive the states to both int16 ends in some models
    and the nonlinearity inputs past their clipping points."""
    models, inputs = device_models
    ends = 0
    for name, qm in models:
        _, states = simulate(qm, inputs[name], return_states=True)
        ends += int(states.min() == -32768 or states.max() == 32767)
    assert ends >= 4, ends


# --- end to end through the console script -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("board", ["uno", "mps2_an385"])
def test_train_export_verify_emulated(trained, board, tmp_path):
    """train --cell ERNN → export → verify --emulate: PARITY OK, exit 0, every logit equal."""
    d = trained
    hb.need("simavr" if board == "uno" else "qemu-system-arm")
    proj = tmp_path / "proj"
    r = _cli("export", d / "ernn.npz", "--board", board, "--calib", d / "X.npy", "-o", proj)
    assert r.returncode == 0, r.stderr
    assert "ERNN" in r.stdout + r.stderr and "K=2 inner steps" in r.stdout + r.stderr
    qm = load_qmodel(next(proj.glob("*.qmodel.json")))
    assert qm.cell == "ERNN" and qm.profile == "fast"
    assert qm.calibration["profile"]["requested"] == "auto" and qm.calibration["profile"]["chosen"] == "fast"
    r = _cli("verify", proj, "--emulate", "--data", d / "Xv.npy", "--labels", d / "yv.npy",
             "-o", tmp_path / "dev.npy", "--json", tmp_path / "v.json")
    assert r.returncode == 0, r.stderr
    assert "PARITY OK" in r.stdout + r.stderr
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["mismatched"] == [] and rep["first_divergence"] is None and rep["board"] == board
    host = _cli("predict", proj, "--data", d / "Xv.npy", "-o", tmp_path / "host.npy")
    assert host.returncode == 0, host.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "dev.npy"), np.load(tmp_path / "host.npy"))
