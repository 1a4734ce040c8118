"""Rounding chosen on calibration activations, bias correction, and their end-to-end effect."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecompile.frontend.checkpoint import load_checkpoint, model_from_arrays
from edgecompile.ir.qmodel import load_qmodel
from edgecompile.quant import rounding
from edgecompile.quant.biascorr import correct_pre_biases
from edgecompile.quant.quantizer import quantize
from edgecompile.quant.rounding import round_factor
from edgecompile.reference import forward, normalise
from edgecompile.sim.simulator import pre_activation, quantize_inputs, simulate
from edgecompile.train.data import load_training_data

from .cbuild import PLAIN
from .helpers.codegen import assert_bit_exact
from .helpers.models import make_arrays, make_inputs

ROOT = Path(__file__).resolve().parent.parent
GUNPOINT = ROOT / "benchmarks" / "data" / "GunPoint"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "gunpoint_fastgrnn.npz"
EXE = Path(sys.executable).parent / "edgecompile"


def objective(q: np.ndarray, w: np.ndarray, fracs: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """Per output column: ||acts @ (q / 2^f - w)||^2."""
    err = acts @ (q / 2.0 ** fracs[None, :] - w)
    return (err**2).sum(axis=0)


def half_up(w: np.ndarray, fracs: np.ndarray, bits: int) -> np.ndarray:
    lim = 2 ** (bits - 1)
    return np.clip(np.floor(w * 2.0 ** fracs[None, :] + 0.5), -lim, lim - 1)


@st.composite
def factors(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    rows, cols = draw(st.integers(1, 12)), draw(st.integers(1, 6))
    bits = draw(st.sampled_from([8, 16]))
    w = draw(hnp.arrays(np.float64, (rows, cols), elements=st.floats(-2, 2, width=32)))
    fracs = np.asarray(draw(st.lists(st.integers(0, 14 if bits == 16 else 7), min_size=cols, max_size=cols)))
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(rows, rows)) * draw(st.sampled_from([0.0, 0.5, 2.0]))
    acts = rng.normal(size=(n, rows)) @ (np.eye(rows) + mix) + draw(st.floats(-3, 3))
    return w, fracs, bits, acts


@settings(max_examples=300, deadline=None)
@given(factors())
def test_never_worse_than_nearest_and_only_floor_or_ceil(case):
    w, fracs, bits, acts = case
    q = round_factor(w, fracs, bits, acts)
    near = half_up(w, fracs, bits)
    got, base = objective(q, w, fracs, acts), objective(near, w, fracs, acts)
    assert np.all(got <= base * (1 + 1e-9) + 1e-18), (got, base)
    lim = 2 ** (bits - 1)
    scaled = w * 2.0 ** fracs[None, :]
    assert q.dtype == np.int64
    lo, hi = np.clip(np.floor(scaled), -lim, lim - 1), np.clip(np.ceil(scaled), -lim, lim - 1)
    assert np.all((q == lo) | (q == hi))


def test_improves_on_nearest_for_correlated_activations():
    rng = np.random.default_rng(3)
    acts = rng.normal(size=(2000, 32)) @ rng.normal(size=(32, 32))
    w = rng.normal(0, 0.1, (32, 16))
    fracs = np.full(16, 7)
    got = objective(round_factor(w, fracs, 8, acts), w, fracs, acts).sum()
    base = objective(half_up(w, fracs, 8), w, fracs, acts).sum()
    assert got < 0.8 * base


def test_exact_zeros_stay_zero_and_none_is_nearest():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (20, 10))
    w[rng.random(w.shape) < 0.6] = 0.0
    fracs = np.arange(10) % 6 + 2
    acts = rng.normal(1.0, 1.0, (300, 20))
    q = round_factor(w, fracs, 8, acts)
    assert np.all(q[w == 0.0] == 0)
    np.testing.assert_array_equal(round_factor(w, fracs, 8, None), half_up(w, fracs, 8))


@pytest.mark.parametrize("bits", [8, 16])
def test_saturates_to_the_bits_range(bits):
    lim = 2 ** (bits - 1)
    w = np.array([[1e6, -1e6, (lim - 0.5) / 4], [3.0, -3.0, -(lim + 0.7) / 4]])
    acts = np.random.default_rng(1).normal(size=(50, 2))
    q = round_factor(w, np.array([2, 2, 2]), bits, acts)
    assert q[0, 0] == lim - 1 and q[0, 1] == -lim and q[1, 2] == -lim
    assert q.min() >= -lim and q.max() <= lim - 1


def test_deterministic():
    rng = np.random.default_rng(5)
    w, acts = rng.normal(0, 0.2, (24, 12)), rng.normal(size=(500, 24))
    fracs = np.full(12, 6)
    a = round_factor(w, fracs, 8, acts)
    rounding._RECENT.clear()  # computed afresh, not remembered
    b = round_factor(w.copy(), fracs.copy(), 8, acts.copy())
    assert a is not b
    np.testing.assert_array_equal(a, b)


def _mean_pre_error(qm, fm, X) -> np.ndarray:
    """Float − integer pre-activation plus Bh, mean per unit, each on its own trajectory."""
    x_q = quantize_inputs(qm, X)
    _, hq = simulate(qm, x_q, return_states=True)
    _, hf = forward(fm, X, return_states=True)
    errs = []
    for t in range(X.shape[1]):
        prev_q = np.zeros_like(hq[:, 0]) if t == 0 else hq[:, t - 1]
        prev_f = np.zeros_like(hf[:, 0]) if t == 0 else hf[:, t - 1]
        pre_q = (pre_activation(qm, prev_q.astype(np.int64), x_q[:, t].astype(np.int64))
                 + qm.bias_update) / 4096.0
        pre_f = normalise(fm, X)[:, t] @ fm.W.dense() + prev_f @ fm.U.dense() + fm.params.bias_update
        errs.append(pre_f - pre_q)
    return np.mean(errs, axis=(0, 1))


def test_bias_correction_removes_a_systematic_rounding_bias():
    arrays = make_arrays("FastGRNN", D=6, H=8, C=3, seed=4)
    fm = model_from_arrays(arrays)
    X = make_inputs(fm, n=64, T=8) + 1.0 * fm.std  # normalised inputs with mean +1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = quantize(fm, 8, X, search=False, rounding="nearest", bias_correction=False)
    f = qm.W.factors[0].frac
    # every W entry 0.45 LSB above an integer: round to nearest drops all of them the same way
    arrays["W"] = ((np.abs(qm.W.factors[0].values) + 0.45) / 2.0**f).astype(np.float64)
    biased = model_from_arrays(arrays)
    qm = quantize(biased, 8, X, search=False, rounding="nearest", bias_correction=False)
    assert qm.W.factors[0].frac == f
    before = _mean_pre_error(qm, biased, X)
    assert np.all(before > 0)  # the systematic bias is there
    fixed, delta = correct_pre_biases(qm, biased, X)
    after = _mean_pre_error(fixed, biased, X)
    assert delta.any()
    assert np.abs(after).mean() < 0.5 * np.abs(before).mean()


def _run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_gunpoint_quantize_predict_host_c_and_int8_accuracy(tmp_path):
    train = load_training_data(GUNPOINT / "GunPoint_TRAIN.ts")
    test = load_training_data(GUNPOINT / "GunPoint_TEST.ts", length=train.X.shape[1])
    np.save(tmp_path / "calib.npy", train.X)
    np.save(tmp_path / "test.npy", test.X)
    res = _run("quantize", FIXTURE, "--bits", "8", "--calib", "calib.npy", "-o", "q.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "rounding" in res.stdout + res.stderr and "bias correction" in res.stdout + res.stderr
    qm = load_qmodel(tmp_path / "q.json")
    assert qm.calibration["rounding"].startswith("adaptive")
    assert "applied" in qm.calibration["bias_correction"]
    for name, extra in (("q.npy", ()), ("f.npy", ("--bits", "float"))):
        model = "q.json" if name == "q.npy" else FIXTURE
        res = _run("predict", model, "--data", "test.npy", *extra, "-o", name, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    q_logits, f_logits = np.load(tmp_path / "q.npy"), np.load(tmp_path / "f.npy")
    np.testing.assert_array_equal(f_logits, forward(load_checkpoint(FIXTURE), test.X))
    n = len(test.y)
    drop = int((f_logits.argmax(1) == test.y).sum()) - int((q_logits.argmax(1) == test.y).sum())
    assert drop * 100 <= max(0.5 * n, 100), f"int8 loses {drop} of {n} test sequences"
    # the integers the CLI wrote run identically in the simulator and the generated C
    x_q = quantize_inputs(qm, test.X[:40])
    assert_bit_exact(qm, x_q, PLAIN)
    np.testing.assert_array_equal(q_logits[:40] * 2.0**qm.logit_frac, simulate(qm, x_q))
