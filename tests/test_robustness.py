"""The robustness analysis against answers known in closed form.

Spectral quantities are checked on matrices whose answers are exact (normal, nilpotent, Jordan,
scaled orthogonal); the gradients the attacks follow are checked by finite differences; the
perturbation sweep by its invariants (eps 0 is the clean accuracy, worst case <= random).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.analysis import matrix_stats, parse_eps
from edgecompile.analysis.dynamics import model_params, step_jacobians, tangent_norms
from edgecompile.analysis.perturbation import perturbation_sweep
from edgecompile.analysis.robustness import dequantize_matrix
from edgecompile.analysis.spectra import eig_decomposition, kreiss_lower_bound, power_norms, pseudospectrum, sigma_min
from edgecompile.errors import DataError
from edgecompile.ir.model import FastRNNParams
from edgecompile.quant.quantizer import quantize
from edgecompile.reference import forward, normalise, sigmoid
from edgecompile.train.cells import input_gradient, loss_and_grads
from tests.helpers.models import make_inputs, make_model

seeds = st.integers(0, 2**31 - 1)
sizes = st.integers(2, 12)


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def real_normal(n: int, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Q B Q^T with B block-diagonal rotations-and-scalings (a real normal, non-symmetric U)."""
    B = np.zeros((n, n))
    k = 0
    while k < n:
        r = rng.uniform(0.05, 1.0) * radius
        if k + 1 < n and rng.random() < 0.7:
            t = rng.uniform(0, np.pi)
            B[k:k + 2, k:k + 2] = r * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            k += 2
        else:
            B[k, k] = r * rng.choice([-1.0, 1.0])
            k += 1
    Q = orthogonal(n, rng)
    return Q @ B @ Q.T


def jordan(n: int, lam: float = 0.0) -> np.ndarray:
    return lam * np.eye(n) + np.diag(np.ones(n - 1), 1)


# --- the recurrent matrix ------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(n=sizes, seed=seeds)
def test_normal_matrix_has_departure_zero_and_perfect_eigenvectors(n: int, seed: int) -> None:
    U = real_normal(n, np.random.default_rng(seed), radius=0.95)
    assert np.linalg.norm(U @ U.T - U.T @ U) < 1e-12  # really normal
    s = matrix_stats(U)
    assert s.henrici_departure < 1e-6
    assert s.eigvec_condition == pytest.approx(1.0, abs=1e-6)
    # a normal contraction: the Kreiss constant is exactly 1 (and the bound never below 1)
    assert s.kreiss_lower_bound == 1.0
    assert s.spectral_norm == pytest.approx(s.spectral_radius, rel=1e-10)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), seed=seeds)
def test_nilpotent_matrix_has_departure_one(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    N = np.triu(rng.normal(size=(n, n)), 1)
    N[0, n - 1] += 1.0  # never all zero
    Q = orthogonal(n, rng)
    U = Q @ N @ Q.T  # nilpotent, not triangular
    s = matrix_stats(U)
    # eigenvalues of a defective matrix are computed to ~eps^(1/n): departure = 1 - O(that^2)
    assert s.henrici_departure == pytest.approx(1.0, abs=1e-4)
    assert s.henrici_departure <= 1.0


def test_jordan_block_exact_answers() -> None:
    s = matrix_stats(jordan(2))
    assert s.henrici_departure == 1.0
    assert s.spectral_radius == 0.0
    assert s.spectral_norm == pytest.approx(1.0)
    assert s.eigvec_condition == float("inf")
    assert s.to_json()["eigvec_condition"] is None


def test_two_by_two_jordan_pseudospectrum_closed_form() -> None:
    """sigma_min(zI - J)^2 = (2r^2 + 1 - sqrt(4r^2 + 1)) / 2 with r = |z|: discs of radius
    sqrt(eps + eps^2)."""
    x = np.linspace(-1.5, 1.5, 61)
    y = np.linspace(-1.2, 1.2, 49)
    sig = pseudospectrum(jordan(2), x, y)
    r2 = x[None, :] ** 2 + y[:, None] ** 2
    exact = np.sqrt((2 * r2 + 1 - np.sqrt(4 * r2 + 1)) / 2)
    assert sig.shape == (49, 61)
    assert np.max(np.abs(sig - exact)) < 1e-12
    for eps in (1e-3, 1e-2, 0.1, 0.5):
        radius = np.sqrt(eps + eps**2)
        away = np.abs(np.sqrt(r2) - radius) > 1e-9
        assert np.array_equal((sig <= eps)[away], (np.sqrt(r2) <= radius)[away])


@pytest.mark.parametrize("n", [3, 5, 8])
def test_jordan_block_pseudospectra_are_discs_within_known_bounds(n: int) -> None:
    """For the n x n Jordan block with eigenvalue 0: sigma_min depends on |z| only (a disc), and
    1 / sum_{k=1..n} r^-k <= sigma_min <= r^n."""
    rng = np.random.default_rng(n)
    r = np.linspace(0.05, 2.0, 40)
    theta = rng.uniform(0, 2 * np.pi, (40, 7))
    z = r[:, None] * np.exp(1j * theta)
    sig = sigma_min(jordan(n), z)
    assert np.max(np.ptp(sig, axis=1) / sig.max(axis=1)) < 1e-8  # rotation invariant
    upper = r**n
    lower = 1.0 / np.sum(r[:, None] ** -np.arange(1, n + 1)[None, :], axis=1)
    assert np.all(sig[:, 0] <= upper * (1 + 1e-9))
    assert np.all(sig[:, 0] >= lower * (1 - 1e-9))


@settings(max_examples=40, deadline=None)
@given(n=sizes, seed=seeds, scale=st.floats(0.05, 3.0))
def test_scaled_orthogonal_norm_equals_radius(n: int, seed: int, scale: float) -> None:
    U = scale * orthogonal(n, np.random.default_rng(seed))
    s = matrix_stats(U)
    assert s.spectral_norm == pytest.approx(scale, rel=1e-10)
    assert s.spectral_radius == pytest.approx(scale, rel=1e-10)
    assert s.henrici_departure < 1e-6
    assert np.allclose(power_norms(U, 5), scale ** np.arange(6), rtol=1e-9)
    if scale > 1.0:
        assert s.kreiss_lower_bound == float("inf")
    else:
        assert s.kreiss_lower_bound == 1.0


def test_kreiss_bound_sees_transient_growth() -> None:
    """A non-normal contraction: the bound is above 1, and below the largest ||U^k||
    (Kreiss: K <= sup_k ||U^k||)."""
    U = np.array([[0.5, 4.0], [0.0, 0.5]])
    k = kreiss_lower_bound(U, 0.5)
    assert k > 1.5
    assert k <= power_norms(U, 200).max() + 1e-9


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 16), rank=st.integers(1, 4), seed=seeds)
def test_low_rank_eigenvalues_match_the_dense_matrix(n: int, rank: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(n, rank)), rng.normal(size=(rank, n))
    U = A @ B
    w, V = eig_decomposition(U, (A, B))
    assert np.allclose(U @ V, V * w[None, :], atol=1e-8 * max(1.0, np.abs(U).max()))
    assert np.sum(w == 0) == n - rank
    dense = np.sort_complex(np.linalg.eigvals(B @ A))
    assert np.allclose(np.sort_complex(w[w != 0]), dense)
    assert np.isfinite(matrix_stats(U, (A, B)).eigvec_condition)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 10), seed=seeds, size=st.floats(1e-4, 0.5))
def test_perturbed_eigenvalues_lie_in_the_pseudospectrum(n: int, seed: int, size: float) -> None:
    """Every eigenvalue of U + E has sigma_min(lambda I - U) <= ||E||: why the eigenvalues of the
    quantized U sit inside the ||U_q - U||-pseudospectrum of U."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, n)) / np.sqrt(n)
    E = rng.normal(size=(n, n))
    E *= size / np.linalg.norm(E, 2)
    lam = np.linalg.eigvals(U + E)
    assert np.all(sigma_min(U, lam) <= size * (1 + 1e-8) + 1e-12)


def test_dequantized_low_rank_u_is_close_to_the_float_one() -> None:
    model = make_model(H=12, urank=3, seed=4)
    X = make_inputs(model, n=24)
    qm = quantize(model, 16, X)
    Uq, factors = dequantize_matrix(qm.U)
    assert factors is not None and factors[0].shape == (12, 3)
    assert np.linalg.norm(Uq - model.U.dense(), 2) < 1e-3 * np.linalg.norm(model.U.dense(), 2)


# --- gradients and Jacobians ---------------------------------------------------------------

@pytest.mark.parametrize("cell", ["FastGRNN", "FastRNN"])
@pytest.mark.parametrize("update_nl", ["tanh", "sigmoid"])
def test_input_gradient_matches_finite_differences(cell: str, update_nl: str) -> None:
    model = make_model(cell=cell, H=7, D=3, C=3, urank=4 if cell == "FastRNN" else None,
                       update_nl=update_nl, seed=2)
    X = make_inputs(model, n=5, T=6, seed=3)
    Xn = normalise(model, X)
    y = np.array([0, 1, 2, 1, 0])
    params = model_params(model)
    loss, out, g = input_gradient(params, Xn, y, model.gate_nl, model.update_nl)
    assert g.shape == Xn.shape
    assert np.allclose(out, forward(model, X))  # the trainer's forward is the reference one
    # the parameter gradients are unchanged by asking for the input gradient
    _, _, plain = loss_and_grads(params, Xn, y, model.gate_nl, model.update_nl)
    _, _, both = loss_and_grads(params, Xn, y, model.gate_nl, model.update_nl, input_grad=True)
    assert all(np.array_equal(plain[k], both[k]) for k in plain)
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(8):
        v = rng.normal(size=Xn.shape)
        up = loss_and_grads(params, Xn + h * v, y, model.gate_nl, model.update_nl)[0]
        down = loss_and_grads(params, Xn - h * v, y, model.gate_nl, model.update_nl)[0]
        assert (up - down) / (2 * h) == pytest.approx(float(np.sum(g * v)), rel=1e-5, abs=1e-9)


def one_step(model, h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The README's cell equations, for one step."""
    W, U = model.W.dense(), model.U.dense()
    pre = x @ W + h @ U
    upd = np.tanh if model.update_nl == "tanh" else sigmoid
    p = model.params
    if model.cell == "FastGRNN":
        z = sigmoid(pre + p.bias_gate)
        c = upd(pre + p.bias_update)
        return z * h + (sigmoid(p.zeta) * (1 - z) + sigmoid(p.nu)) * c
    return sigmoid(p.beta) * h + sigmoid(p.alpha) * upd(pre + p.bias)


@pytest.mark.parametrize("cell", ["FastGRNN", "FastRNN"])
def test_step_jacobian_matches_finite_differences(cell: str) -> None:
    model = make_model(cell=cell, H=6, D=3, seed=5)
    rng = np.random.default_rng(1)
    h, x = rng.normal(size=(4, 6)) * 0.7, rng.normal(size=(4, 3))
    J = step_jacobians(model, h, x)
    eps = 1e-6
    for i in range(6):
        e = np.zeros(6)
        e[i] = eps
        row = (one_step(model, h + e, x) - one_step(model, h - e, x)) / (2 * eps)
        assert np.allclose(J[:, i, :], row, atol=1e-8)  # row convention: dh_t = dh_{t-1} @ J


def test_tangent_norms_of_a_linear_cell_are_the_powers_of_u() -> None:
    """quantTanh in its linear range and a gate-free FastRNN with beta ~ 0, alpha ~ 1 make the
    cell h_t = x_t W + h U: its Jacobian products are the powers of U."""
    model = make_model(cell="FastRNN", H=5, D=2, update_nl="quantTanh", seed=6, norm=None)
    import dataclasses

    model = dataclasses.replace(model, params=FastRNNParams(bias=np.zeros(5), alpha=60.0, beta=-60.0),
                                U=dataclasses.replace(model.U, factors=(0.3 * model.U.dense(),)))
    Xn = np.zeros((1, 6, 2))
    tn = tangent_norms(model, Xn)
    assert np.allclose(tn[0], power_norms(model.U.dense(), 6), rtol=1e-9)


# --- bounded perturbation ------------------------------------------------------------------

def labelled(seed: int, n: int = 24):
    model = make_model(H=8, D=4, C=3, seed=seed)
    X = make_inputs(model, n=n, T=7, seed=seed + 1)
    y = forward(model, X).argmax(axis=1)
    y[: n // 4] = (y[: n // 4] + 1) % 3  # some wrong, so the clean accuracy is not trivially 1
    return model, X, y


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), eps=st.lists(st.floats(0.001, 1.0), min_size=1, max_size=3),
       draws=st.integers(1, 4))
def test_worst_never_above_random_and_eps_zero_is_clean(seed: int, eps: list[float], draws: int) -> None:
    model, X, y = labelled(seed)
    qm = quantize(model, 8, X)
    eps_list = parse_eps(",".join(str(e) for e in eps))
    rows = perturbation_sweep(model, qm, X, y, eps_list, draws=draws, pgd_steps=3, seed=seed)
    assert [r.eps for r in rows] == [e for e in eps_list for _ in range(2)]
    assert [r.kind for r in rows] == ["random", "worst"] * len(eps_list)
    clean_f = float((forward(model, X).argmax(1) == y).mean())
    from edgecompile.sim.simulator import predict_quantized

    clean_q = float((predict_quantized(qm, X).argmax(1) == y).mean())
    for r in rows[:2]:
        assert (r.accuracy_float, r.accuracy_quantized) == (clean_f, clean_q)
    for rand, worst in zip(rows[::2], rows[1::2], strict=True):
        assert worst.accuracy_float <= rand.accuracy_float
        assert worst.accuracy_quantized <= rand.accuracy_quantized


def test_the_attack_finds_more_than_random_noise() -> None:
    model, X, y = labelled(3, n=48)
    qm = quantize(model, 8, X)
    rows = perturbation_sweep(model, qm, X, y, [0.0, 0.5], draws=3, pgd_steps=10)
    rand, worst = rows[2], rows[3]
    assert worst.accuracy_float < rand.accuracy_float


def test_parse_eps() -> None:
    assert parse_eps(None)[0] == 0.0 and len([e for e in parse_eps(None) if e > 0]) >= 3
    assert parse_eps("0.1, 0.01,0.1") == [0.0, 0.01, 0.1]
    for bad in ("a", "-0.1", "nan", "inf"):
        with pytest.raises(DataError):
            parse_eps(bad)
