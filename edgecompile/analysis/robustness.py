"""The robustness report of one model: spectra of U and U_q, cell Jacobians, bounded input
perturbation (float vs the integer simulator) and hidden-state growth (docs/robustness.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgecompile.analysis import dynamics, spectra
from edgecompile.analysis.blas import blas_threads
from edgecompile.analysis.perturbation import DEFAULT_EPS, PerturbationRow, perturbation_sweep
from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import QMatrix, QuantizedModel
from edgecompile.pipeline.evaluate import quantize_for_cli
from edgecompile.reference import normalise

JACOBIAN_POINTS = 2000  # per-step Jacobians sampled from the calibration states
HORIZON_SEQUENCES = 128  # trajectories followed over the long horizon
TRANSIENT_SEQUENCES = 64  # sequences whose Jacobian products give the transient amplification


def dequantize_matrix(m: QMatrix) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The real matrix an integer ``QMatrix`` stands for, and its two factors when low rank."""
    reals = [f.values.astype(np.float64) / float(2.0**f.frac) for f in m.factors]
    if len(reals) == 2:
        return reals[0] @ reals[1], (reals[0], reals[1])
    return reals[0], None


@dataclass(frozen=True)
class RobustnessReport:
    """Everything the JSON report and the HTML page show (``to_json`` for the JSON keys)."""

    model_sha256: str
    cell: str
    hidden: int
    bits: int
    n: int
    float_stats: spectra.MatrixStats
    quantized_stats: spectra.MatrixStats
    quantization_error_norm: float  # ||U_q - U||_2
    quantized_eigs_in_pseudospectrum: bool  # sigma_min(l_q I - U) <= ||U_q - U||_2 for every l_q
    grid_x: np.ndarray
    grid_y: np.ndarray
    sigma_min: np.ndarray  # sigma_min(zI - U) on the grid [len(y), len(x)]
    jacobian_radii: np.ndarray
    perturbation: list[PerturbationRow]
    eps: list[float]
    draws: int
    pgd_steps: int
    horizon: int
    hidden_norm_float: np.ndarray  # ||h_t||, [S, horizon]
    hidden_norm_quantized: np.ndarray
    power_norms_float: np.ndarray  # ||U^k||_2, k = 0..T
    power_norms_quantized: np.ndarray
    tangent_norms: np.ndarray  # ||dh_t/dh_0||_2 of the cell, [S, T + 1]
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        f = self.float_stats.to_json()
        radii = self.jacobian_radii
        report: dict = {
            **{k: f[k] for k in ("spectral_radius", "spectral_norm", "henrici_departure", "eigvec_condition",
                                 "frobenius_norm", "kreiss_lower_bound", "eigenvalues")},
            "quantized": self.quantized_stats.to_json(),
            "quantization_error_norm": self.quantization_error_norm,
            "quantized_eigenvalues_in_pseudospectrum": self.quantized_eigs_in_pseudospectrum,
            "perturbation": [row.to_json() for row in self.perturbation],
            "eps": list(self.eps),
            "eps_units": "normalised input (x - mean) / std, L-inf",
            "random_draws": self.draws,
            "pgd_steps": self.pgd_steps,
            "accuracy_clean": {"float": self.perturbation[0].accuracy_float,
                               "quantized": self.perturbation[0].accuracy_quantized},
            "jacobian": {
                "points": int(radii.size),
                "spectral_radius": _summary(radii),
                "fraction_above_1": float(np.mean(radii > 1.0)) if radii.size else 0.0,
            },
            "hidden_state": {
                "horizon": self.horizon,
                "norm_float": _summary(self.hidden_norm_float[:, -1]),
                "norm_quantized": _summary(self.hidden_norm_quantized[:, -1]),
                "max_norm_float": float(self.hidden_norm_float.max()),
                "max_norm_quantized": float(self.hidden_norm_quantized.max()),
            },
            "transient_amplification": {
                "steps": int(self.power_norms_float.size - 1),
                "linear_float": _finite(self.power_norms_float.max()),
                "linear_quantized": _finite(self.power_norms_quantized.max()),
                "cell_max": _finite(self.tangent_norms.max()),
                "cell_median": _finite(float(np.median(self.tangent_norms.max(axis=1)))),
            },
            "model_sha256": self.model_sha256,
            "cell": self.cell,
            "hidden": self.hidden,
            "bits": self.bits,
            "n": self.n,
            "seconds": round(self.seconds, 3),
            "timings": dict(self.timings),
        }
        return report


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _summary(v: np.ndarray) -> dict:
    if v.size == 0:
        return {"min": None, "median": None, "mean": None, "p95": None, "max": None}
    return {"min": float(v.min()), "median": float(np.median(v)), "mean": float(v.mean()),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def robustness_report(model: FloatModel, X: np.ndarray, y: np.ndarray, bits: int = 8,
                      calib: np.ndarray | None = None, eps: list[float] | None = None,
                      draws: int = 5, pgd_steps: int = 10, seed: int = 0,
                      warn: Callable[[str], None] | None = None,
                      grid_points: int = 121,
                      progress: Callable[[int, int, str], None] | None = None) -> RobustnessReport:
    """The full report for raw inputs ``X [N, T, D]`` and labels ``y``; ``calib`` (raw) sets the
    quantization formats and the states the Jacobians are taken at (``X`` when absent).
    ``progress(done, total, what)`` receives the stages done (quantize, spectra, jacobians,
    perturbation, dynamics)."""
    with blas_threads(1):
        return _report(model, X, y, bits, calib, eps, draws, pgd_steps, seed, warn, grid_points,
                       progress)


def _report(model: FloatModel, X: np.ndarray, y: np.ndarray, bits: int, calib: np.ndarray | None,
            eps: list[float] | None, draws: int, pgd_steps: int, seed: int,
            warn: Callable[[str], None] | None, grid_points: int,
            progress: Callable[[int, int, str], None] | None = None) -> RobustnessReport:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clock = [started]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 3)
        clock[0] = now
        if progress is not None:
            progress(len(timings), 5, "stages")

    eps_list = sorted({0.0, *(DEFAULT_EPS if eps is None else eps)})
    qm: QuantizedModel = quantize_for_cli(model, bits, calib, warn)
    rng = np.random.default_rng(seed)
    lap("quantize")

    U = model.U.dense()
    Uq, q_factors = dequantize_matrix(qm.U)
    f_stats = spectra.matrix_stats(U, (model.U.factors[0], model.U.factors[1]) if model.U.is_low_rank else None)
    q_stats = spectra.matrix_stats(Uq, q_factors)
    err = float(np.linalg.norm(Uq - U, 2))
    inside = bool(np.all(spectra.sigma_min(U, q_stats.eigenvalues) <= err * (1 + 1e-9) + 1e-12))
    gx, gy = spectra.grid_for([f_stats.eigenvalues, q_stats.eigenvalues], grid_points)
    sig = spectra.pseudospectrum(U, gx, gy)
    lap("spectra")

    states_X = X if calib is None else calib
    Xn_states = normalise(model, states_X)
    states = dynamics.float_states(model, Xn_states)
    radii = dynamics.jacobian_radii(model, Xn_states, states, JACOBIAN_POINTS, rng)
    lap("jacobians")

    rows = perturbation_sweep(model, qm, X, y, eps_list, draws, pgd_steps, seed)
    lap("perturbation")

    steps = X.shape[1]
    horizon = max(200, 10 * steps)
    long = dynamics.tiled_horizon(Xn_states, horizon, HORIZON_SEQUENCES)
    h_float = np.linalg.norm(dynamics.float_states(model, long), axis=2)
    h_quant = np.linalg.norm(dynamics.quantized_states(qm, long), axis=2)
    with np.errstate(over="ignore"):
        tangent = dynamics.tangent_norms(model, Xn_states[:TRANSIENT_SEQUENCES])
        p_float = spectra.power_norms(U, steps)
        p_quant = spectra.power_norms(Uq, steps)
    lap("dynamics")

    return RobustnessReport(
        model_sha256=model.sha256 or model.content_hash(), cell=model.cell, hidden=model.hidden_dim,
        bits=bits, n=int(X.shape[0]), float_stats=f_stats, quantized_stats=q_stats,
        quantization_error_norm=err, quantized_eigs_in_pseudospectrum=inside,
        grid_x=gx, grid_y=gy, sigma_min=sig, jacobian_radii=radii, perturbation=rows,
        eps=eps_list, draws=draws, pgd_steps=pgd_steps, horizon=horizon,
        hidden_norm_float=h_float, hidden_norm_quantized=h_quant,
        power_norms_float=p_float, power_norms_quantized=p_quant, tangent_norms=tangent,
        seconds=time.perf_counter() - started, timings=timings,
    )


def render_report(report: RobustnessReport) -> str:
    """A few lines for the terminal."""
    def num(v: float | None) -> str:
        return "inf" if v is None or not np.isfinite(v) else f"{v:.4g}"

    f, q = report.float_stats, report.quantized_stats
    lines = [
        f"{'':<28}{'U (float)':>14}{'U_q (int' + str(report.bits) + ')':>14}",
        f"{'spectral radius':<28}{num(f.spectral_radius):>14}{num(q.spectral_radius):>14}",
        f"{'spectral norm':<28}{num(f.spectral_norm):>14}{num(q.spectral_norm):>14}",
        f"{'Henrici departure':<28}{num(f.henrici_departure):>14}{num(q.henrici_departure):>14}",
        f"{'eigenvector condition':<28}{num(f.eigvec_condition):>14}{num(q.eigvec_condition):>14}",
        f"{'Kreiss lower bound':<28}{num(f.kreiss_lower_bound):>14}{num(q.kreiss_lower_bound):>14}",
        f"{'||U_q - U||_2':<28}{num(report.quantization_error_norm):>14}",
        f"{'Jacobian radius median/max':<28}"
        f"{num(float(np.median(report.jacobian_radii)))}/{num(float(report.jacobian_radii.max()))}",
        "",
        f"{'eps':>8}  {'kind':<8}{'float':>9}{'int' + str(report.bits):>9}",
    ]
    for row in report.perturbation:
        lines.append(f"{row.eps:>8g}  {row.kind:<8}{100 * row.accuracy_float:>8.2f}%"
                     f"{100 * row.accuracy_quantized:>8.2f}%")
    return "\n".join(lines)
