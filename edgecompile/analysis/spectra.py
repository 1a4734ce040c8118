"""Spectral analysis of a recurrent matrix: eigenvalues, norms, non-normality, pseudospectra.

Matrices follow the row-vector convention of the rest of the package (``h @ U``); every quantity
here (eigenvalues, singular values, pseudospectra) is the same for ``U`` and ``U.T``.
A low-rank ``U = U1 @ U2`` is analysed through its factors where that is more accurate: its
non-zero eigenvalues are those of the small ``U2 @ U1``, and its null space is that of ``U2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# an eigenvalue modulus within this of 1 is on the unit circle (rounding of the eigenvalues)
_ON_CIRCLE = 1e-10
# eigenvector matrices worse conditioned than this are reported as defective (infinite)
_DEFECTIVE = 1e14


@dataclass(frozen=True)
class MatrixStats:
    """The spectral summary of one square matrix."""

    eigenvalues: np.ndarray  # complex [H], by decreasing modulus
    spectral_radius: float
    spectral_norm: float
    frobenius_norm: float
    henrici_departure: float  # sqrt(max(0, ||U||_F^2 - sum |l_i|^2)) / ||U||_F, in [0, 1]
    eigvec_condition: float  # ||V|| ||V^-1|| with unit-norm eigenvectors; inf when defective
    kreiss_lower_bound: float  # max over sampled |z| > 1 of (|z| - 1) / sigma_min(zI - U); inf if rho > 1

    def to_json(self) -> dict:
        return {
            "spectral_radius": self.spectral_radius,
            "spectral_norm": self.spectral_norm,
            "frobenius_norm": self.frobenius_norm,
            "henrici_departure": self.henrici_departure,
            "eigvec_condition": _finite_or_none(self.eigvec_condition),
            "kreiss_lower_bound": _finite_or_none(self.kreiss_lower_bound),
            "eigenvalues": [[float(v.real), float(v.imag)] for v in self.eigenvalues],
        }


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def eig_decomposition(U: np.ndarray, factors: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``[H]`` and unit-norm eigenvectors ``[H, H]`` (columns) of ``U``.

    With ``factors = (A, B)`` (``U = A @ B``, ``A [H, r]``) the non-zero part comes from the
    ``r x r`` matrix ``B @ A`` and the zero eigenvalue's eigenvectors are an orthonormal basis of
    the null space of ``B``: exact zeros instead of a numerically split cluster.
    """
    U = np.asarray(U, dtype=np.float64)
    if factors is None or factors[0].shape[1] >= U.shape[0]:
        w, V = np.linalg.eig(U)
    else:
        A, B = (np.asarray(f, dtype=np.float64) for f in factors)
        r, n = A.shape[1], U.shape[0]
        mu, Y = np.linalg.eig(B @ A)
        top = A @ Y
        _, s, vh = np.linalg.svd(B)
        rank = int(np.sum(s > s.max(initial=0.0) * n * np.finfo(float).eps)) if s.size else 0
        null = vh[rank:].conj().T  # [H, H - rank]
        if rank < r:  # B has a null direction inside the range of A: keep the exact eigenvectors
            w, V = np.linalg.eig(U)
        else:
            w = np.concatenate([mu, np.zeros(n - r)])
            V = np.concatenate([top, null.astype(complex)], axis=1)
    norms = np.linalg.norm(V, axis=0)
    V = V / np.where(norms > 0, norms, 1.0)
    order = np.argsort(-np.abs(w), kind="stable")
    return w[order], V[:, order]


def henrici_departure(U: np.ndarray, eigenvalues: np.ndarray) -> float:
    """``sqrt(max(0, ||U||_F^2 - sum |l_i|^2)) / ||U||_F`` (0 for a normal U, 1 for a nilpotent)."""
    fro2 = float(np.sum(np.abs(U) ** 2))
    if fro2 == 0.0:
        return 0.0
    return float(np.sqrt(max(0.0, fro2 - float(np.sum(np.abs(eigenvalues) ** 2)))) / np.sqrt(fro2))


def eigvec_condition(V: np.ndarray) -> float:
    """2-norm condition number of the eigenvector matrix; ``inf`` for a defective matrix."""
    s = np.linalg.svd(V, compute_uv=False)
    if s[-1] <= 0.0 or s[0] / s[-1] > _DEFECTIVE:
        return float("inf")
    return float(s[0] / s[-1])


def sigma_min(U: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``sigma_min(zI - U)`` for every complex point of ``z`` (any shape): batched SVDs."""
    U = np.asarray(U, dtype=np.float64)
    n = U.shape[0]
    z = np.asarray(z, dtype=complex)
    flat = z.reshape(-1)
    out = np.empty(flat.shape[0])
    eye = np.eye(n, dtype=complex)
    chunk = max(1, 2_000_000 // max(1, n * n))  # bound the memory of one batch
    for start in range(0, flat.shape[0], chunk):
        zs = flat[start:start + chunk]
        M = zs[:, None, None] * eye[None] - U[None]
        out[start:start + chunk] = np.linalg.svd(M, compute_uv=False)[:, -1]
    return out.reshape(z.shape)


def grid_for(eigenvalue_sets: list[np.ndarray], points: int = 121) -> tuple[np.ndarray, np.ndarray]:
    """A square grid (``x``, ``y`` axes) holding the unit disk and every eigenvalue with margin."""
    reach = 1.0
    for w in eigenvalue_sets:
        if w.size:
            reach = max(reach, float(np.abs(w).max()))
    half = 1.25 * reach + 0.1
    axis = np.linspace(-half, half, points)
    return axis, axis.copy()


def pseudospectrum(U: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sigma_min(zI - U)`` on the grid ``z = x + iy`` (``[len(y), len(x)]``)."""
    Z = x[None, :] + 1j * y[:, None]
    return sigma_min(U, Z)


def kreiss_lower_bound(U: np.ndarray, spectral_radius: float, radii: int = 48, angles: int = 96) -> float:
    """A lower bound on the Kreiss constant ``sup_{|z|>1} (|z| - 1) ||(zI - U)^-1||``.

    The supremum is over every ``|z| > 1``; this takes the maximum over a polar grid outside the
    unit circle, and over the limit ``|z| -> inf`` (which is 1), so the bound is at least 1 and
    equals 1 for a normal matrix with radius <= 1. With an eigenvalue outside the unit circle the
    constant is infinite (the powers of U grow without bound).
    """
    if spectral_radius > 1.0 + _ON_CIRCLE:
        return float("inf")
    r = 1.0 + np.logspace(-3, 1.5, radii)
    theta = np.linspace(0.0, 2.0 * np.pi, angles, endpoint=False)
    Z = r[:, None] * np.exp(1j * theta[None, :])
    # sigma_min plus the SVD's rounding error bound (n eps ||zI - U||): a bound that rounding
    # cannot push above the true value
    s = sigma_min(U, Z) + U.shape[0] * np.finfo(float).eps * (np.abs(Z) + float(np.linalg.norm(U, 2)))
    return float(max(1.0, float(np.max((np.abs(Z) - 1.0) / s))))


def power_norms(U: np.ndarray, steps: int) -> np.ndarray:
    """``||U^k||_2`` for ``k = 0..steps``: the worst amplification of a unit ``h_0`` by the
    linear recurrence ``h_k = h_{k-1} @ U``."""
    U = np.asarray(U, dtype=np.float64)
    out = np.empty(steps + 1)
    P = np.eye(U.shape[0])
    out[0] = 1.0
    for k in range(1, steps + 1):
        P = P @ U
        out[k] = np.linalg.norm(P, 2)
    return out


def matrix_stats(U: np.ndarray, factors: tuple[np.ndarray, np.ndarray] | None = None) -> MatrixStats:
    """Eigenvalues, radius, norms, Henrici departure, eigenvector condition and Kreiss bound."""
    U = np.asarray(U, dtype=np.float64)
    w, V = eig_decomposition(U, factors)
    radius = float(np.abs(w).max()) if w.size else 0.0
    return MatrixStats(
        eigenvalues=w,
        spectral_radius=radius,
        spectral_norm=float(np.linalg.norm(U, 2)),
        frobenius_norm=float(np.linalg.norm(U, "fro")),
        henrici_departure=henrici_departure(U, w),
        eigvec_condition=eigvec_condition(V),
        kreiss_lower_bound=kreiss_lower_bound(U, radius),
    )
