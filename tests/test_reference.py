"""The float reference forward against a per-sample loop written here from DESIGN.md's equations.

The loop reads the raw checkpoint arrays (not the model object), so neither the checkpoint parser
nor the batched implementation is trusted by the expected values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecompile.errors import DataError
from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.reference import forward
from tests.helpers.models import make_arrays

NL = {
    "sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)),
    "tanh": math.tanh,
    "quantSigm": lambda v: min(max((v + 1.0) / 2.0, 0.0), 1.0),
    "quantTanh": lambda v: min(max(v, -1.0), 1.0),
}


def unrolled(a: dict[str, np.ndarray], x: np.ndarray) -> tuple[list[float], list[list[float]]]:
    """Logits and hidden states of one raw sequence ``x [T, D]``, scalar loops in float64."""
    def mat(name: str) -> np.ndarray:
        if name in a:
            return np.asarray(a[name], np.float64)
        m1, m2 = np.asarray(a[name + "1"], np.float64), np.asarray(a[name + "2"], np.float64)
        return np.array([[sum(m1[i, k] * m2[k, j] for k in range(m1.shape[1]))
                          for j in range(m2.shape[1])] for i in range(m1.shape[0])])

    def vec(name: str) -> list[float]:
        return [float(v) for v in np.asarray(a[name], np.float64).reshape(-1)]

    def scal(name: str) -> float:
        return float(np.asarray(a[name], np.float64).reshape(()))

    W, U = mat("W"), mat("U")
    steps, d = x.shape
    hdim = W.shape[1]
    gate = NL[str(a["gate_nonlinearity"])] if "gate_nonlinearity" in a else NL["sigmoid"]
    update = NL[str(a["update_nonlinearity"])] if "update_nonlinearity" in a else NL["tanh"]
    sig = NL["sigmoid"]
    h = [0.0] * hdim
    states = []
    for t in range(steps):
        xt = [float(v) for v in x[t]]
        if "mean" in a:
            mean, std = vec("mean"), vec("std")
            off = 0 if len(mean) == d else t * d  # EdgeML's T*D: one entry per time-step offset
            xt = [(xt[i] - mean[off + i]) / std[off + i] for i in range(d)]
        pre = [sum(xt[i] * W[i, j] for i in range(d)) + sum(h[k] * U[k, j] for k in range(hdim))
               for j in range(hdim)]
        if "Bg" in a:
            bg, bh = vec("Bg"), vec("Bh")
            zeta, nu = sig(scal("zeta")), sig(scal("nu"))
            new = []
            for j in range(hdim):
                z = gate(pre[j] + bg[j])
                c = update(pre[j] + bh[j])
                new.append(z * h[j] + (zeta * (1.0 - z) + nu) * c)
        else:
            b, alpha, beta = vec("B"), sig(scal("alpha")), sig(scal("beta"))
            new = [beta * h[j] + alpha * update(pre[j] + b[j]) for j in range(hdim)]
        h = new
        states.append(h)
    FC, fcb = np.asarray(a["FC"], np.float64), vec("FCbias")
    logits = [sum(h[k] * FC[k, c] for k in range(hdim)) + fcb[c] for c in range(FC.shape[1])]
    return logits, states


@st.composite
def checkpoints(draw, norm_choices=(None, "D", "TD")):
    cell = draw(st.sampled_from(["FastGRNN", "FastRNN"]))
    D, H, C = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    T = draw(st.integers(1, 6))
    kw = dict(
        cell=cell, D=D, H=H, C=C, T=T,
        wrank=draw(st.sampled_from([None, 1, 2, 3])),
        urank=draw(st.sampled_from([None, 1, 2, 4])),
        sparsity=draw(st.sampled_from([0.0, 0.5])),
        norm=draw(st.sampled_from(norm_choices)),
        gate_nl=draw(st.sampled_from(["sigmoid", "tanh", "quantSigm", "quantTanh"])),
        update_nl=draw(st.sampled_from(["sigmoid", "tanh", "quantSigm", "quantTanh"])),
        seed=draw(st.integers(0, 2**16)),
    )
    a = make_arrays(**kw)
    if draw(st.booleans()):  # biases [H] instead of [1,H], scalars 0-d instead of [1,1]
        a = {k: (v.reshape(-1) if k in ("Bg", "Bh", "B") else v.reshape(()) if v.size == 1
                 and k in ("zeta", "nu", "alpha", "beta") else v) for k, v in a.items()}
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(kw["seed"] + 1)
    X = rng.normal(0.0, 2.0, (n, T, D))
    return a, X


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(checkpoints())
def test_batched_forward_equals_per_sample_unrolled_loop(case) -> None:
    a, X = case
    model = model_from_arrays(a)
    logits, states = forward(model, X, return_states=True)
    assert logits.shape == (X.shape[0], a["FC"].shape[1]) and logits.dtype == np.float64
    assert states.shape == (X.shape[0], X.shape[1], model.hidden_dim)
    for i in range(X.shape[0]):
        want_logits, want_states = unrolled(a, X[i])
        np.testing.assert_allclose(logits[i], want_logits, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(states[i], want_states, rtol=1e-9, atol=1e-9)


@FAST
@given(checkpoints())
def test_low_rank_equals_the_product_matrix(case) -> None:
    a, X = case
    dense = {k: v for k, v in a.items() if k not in ("W1", "W2", "U1", "U2")}
    for name in ("W", "U"):
        if name + "1" in a:
            dense[name] = a[name + "1"].astype(np.float64) @ a[name + "2"].astype(np.float64)
    low, full = model_from_arrays(a), model_from_arrays(dense)
    np.testing.assert_allclose(forward(low, X), forward(full, X), rtol=1e-10, atol=1e-10)


@FAST
@given(checkpoints(norm_choices=("TD",)))
def test_td_normalisation_equals_per_step_normalisation(case) -> None:
    a, X = case
    n, T, D = X.shape
    mean, std = a["mean"].astype(np.float64), a["std"].astype(np.float64)
    # normalise by hand, step by step, then run a model without normalisation
    Xn = np.stack([(X[:, t, :] - mean[t * D:(t + 1) * D]) / std[t * D:(t + 1) * D] for t in range(T)], axis=1)
    plain = {k: v for k, v in a.items() if k not in ("mean", "std")}
    np.testing.assert_allclose(forward(model_from_arrays(a), X), forward(model_from_arrays(plain), Xn),
                               rtol=1e-10, atol=1e-10)
    # the same per-feature statistics repeated T times behave like the [D] layout
    rep = dict(a, mean=np.tile(mean[:D], T), std=np.tile(std[:D], T))
    per_feature = dict(a, mean=mean[:D], std=std[:D])
    np.testing.assert_allclose(forward(model_from_arrays(rep), X), forward(model_from_arrays(per_feature), X),
                               rtol=1e-12, atol=1e-12)


@FAST
@given(checkpoints(norm_choices=(None, "D")))
def test_states_consistent_with_logits_and_prefixes(case) -> None:
    a, X = case
    model = model_from_arrays(a)
    logits, states = forward(model, X, return_states=True)
    FC, fcb = a["FC"].astype(np.float64), a["FCbias"].astype(np.float64).reshape(-1)
    np.testing.assert_allclose(logits, states[:, -1, :] @ FC + fcb, rtol=1e-12, atol=1e-12)
    for t in range(X.shape[1]):  # the state after step t does not depend on later inputs
        prefix_logits = forward(model, X[:, : t + 1, :])
        np.testing.assert_allclose(prefix_logits, states[:, t, :] @ FC + fcb, rtol=1e-12, atol=1e-12)


def test_zero_length_sequence_gives_the_classifier_bias() -> None:
    a = make_arrays(D=3, H=4, C=2)
    logits = forward(model_from_arrays(a), np.zeros((2, 0, 3)))
    np.testing.assert_array_equal(logits, np.tile(a["FCbias"].astype(np.float64), (2, 1)))


@pytest.mark.parametrize(
    ("shape", "message"),
    [((2, 5, 4), r"D=4 but the model takes D=3"), ((5, 3), r"expected \[N,T,D\]"), ((2, 4, 3), r"T=4 .* T=5")],
)
def test_inputs_that_do_not_fit_raise_data_error(shape, message) -> None:
    model = model_from_arrays(make_arrays(D=3, H=4, C=2, T=5, norm="TD" if shape == (2, 4, 3) else "D"))
    with pytest.raises(DataError, match=message):
        forward(model, np.zeros(shape))
