"""The robustness report as one self-contained HTML page with PNG plots beside it (matplotlib)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.analysis.robustness import RobustnessReport
from edgecompile.report.page import check_out_dir, figure, render_page, write_page

PLOTS: tuple[tuple[str, str], ...] = (
    ("pseudospectra.png", "Pseudospectra of U with the eigenvalues of U and U_q"),
    ("accuracy.png", "Accuracy under bounded input perturbation"),
    ("jacobian.png", "Spectral radius of the per-step cell Jacobian"),
    ("hidden_norm.png", "Hidden-state norm over a long horizon"),
    ("transient.png", "Transient amplification of a unit perturbation of h_0"),
)


def _plot_pseudospectra(plt: Any, r: RobustnessReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.2, 5.4), dpi=100)
    levels = np.arange(-3.0, 0.5, 0.5)
    logs = np.log10(np.maximum(r.sigma_min, 1e-16))
    cs = ax.contour(r.grid_x, r.grid_y, logs, levels=levels, cmap="viridis", linewidths=1.0)
    fig.colorbar(cs, ax=ax, label="log10 eps (contour of sigma_min(zI - U) = eps)")
    if r.quantization_error_norm > 0:
        ax.contour(r.grid_x, r.grid_y, r.sigma_min, levels=[r.quantization_error_norm], colors="crimson",
                   linewidths=1.6, linestyles="--")
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="0.5", lw=0.8, ls=":", label="unit circle")
    w, wq = r.float_stats.eigenvalues, r.quantized_stats.eigenvalues
    ax.plot(w.real, w.imag, "o", mfc="none", mec="black", ms=7, label="eigenvalues of U")
    ax.plot(wq.real, wq.imag, "x", color="crimson", ms=6,
            label=f"eigenvalues of U_q (dashed: eps = ||U_q - U|| = {r.quantization_error_norm:.3g})")
    ax.set_aspect("equal")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title("eps-pseudospectra of U")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_accuracy(plt: Any, r: RobustnessReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.2, 4.2), dpi=100)
    styles = {("random", "float"): ("tab:blue", "-"), ("random", "quantized"): ("tab:blue", "--"),
              ("worst", "float"): ("tab:red", "-"), ("worst", "quantized"): ("tab:red", "--")}
    for (kind, which), (color, ls) in styles.items():
        rows = [row for row in r.perturbation if row.kind == kind]
        acc = [100 * (row.accuracy_float if which == "float" else row.accuracy_quantized) for row in rows]
        label = f"{kind}, {'float' if which == 'float' else 'int' + str(r.bits)}"
        ax.plot([row.eps for row in rows], acc, ls=ls, color=color, marker="o", ms=4, label=label)
    positive = [e for e in r.eps if e > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive))
    ax.set_xlabel("eps (L-inf radius, normalised input units)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("accuracy vs eps")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_jacobian(plt: Any, r: RobustnessReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.2, 4.0), dpi=100)
    ax.hist(r.jacobian_radii, bins=50, color="tab:green", alpha=0.8)
    ax.set_yscale("log")
    ax.axvline(1.0, color="black", ls="--", lw=1, label="radius 1")
    ax.set_xlabel("spectral radius of J_t = dh_t / dh_{t-1}")
    ax.set_ylabel("states (log scale)")
    ax.legend(fontsize=8)
    ax.set_title(f"per-step Jacobian at {r.jacobian_radii.size} calibration states")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_hidden(plt: Any, r: RobustnessReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.2, 4.0), dpi=100)
    t = np.arange(1, r.horizon + 1)
    for norms, color, name in ((r.hidden_norm_float, "tab:blue", "float"),
                               (r.hidden_norm_quantized, "tab:orange", f"int{r.bits}")):
        ax.plot(t, np.median(norms, axis=0), color=color, label=f"{name}: median")
        ax.fill_between(t, norms.min(axis=0), norms.max(axis=0), color=color, alpha=0.2,
                        label=f"{name}: min..max")
    ax.set_xlabel("time step t (inputs: the data sequences one after another)")
    ax.set_ylabel("||h_t||_2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"hidden-state norm over {r.horizon} steps")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_transient(plt: Any, r: RobustnessReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.2, 4.0), dpi=100)
    k = np.arange(r.power_norms_float.size)
    with np.errstate(divide="ignore"):
        ax.plot(k, r.power_norms_float, color="tab:blue", label="||U^k|| (linear, float)")
        ax.plot(k, r.power_norms_quantized, color="tab:orange", ls="--", label="||U_q^k|| (linear, quantized)")
        tn = r.tangent_norms
        ax.plot(k, np.median(tn, axis=0), color="tab:green", label="cell ||dh_t/dh_0||: median")
        ax.plot(k, tn.max(axis=0), color="tab:green", ls=":", label="cell ||dh_t/dh_0||: max")
    ax.set_yscale("log")
    ax.set_xlabel("steps after the perturbation of h_0")
    ax.set_ylabel("amplification")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("transient amplification")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _num(v: float | None) -> str:
    if v is None or not np.isfinite(v):
        return "&infin;"
    return f"{v:.4g}"


def render_html(r: RobustnessReport, title: str) -> str:
    """The page text (the PNGs are referenced by relative names)."""
    f, q = r.float_stats, r.quantized_stats
    spec_rows = [
        ("spectral radius", f.spectral_radius, q.spectral_radius),
        ("spectral norm", f.spectral_norm, q.spectral_norm),
        ("Henrici departure from normality", f.henrici_departure, q.henrici_departure),
        ("eigenvector condition number", f.eigvec_condition, q.eigvec_condition),
        ("Kreiss constant, lower bound", f.kreiss_lower_bound, q.kreiss_lower_bound),
    ]
    radii = r.jacobian_radii
    j = r.to_json()
    tr = j["transient_amplification"]
    rows_html = "\n".join(
        f"<tr><th>{html.escape(name)}</th><td>{_num(a)}</td><td>{_num(b)}</td></tr>" for name, a, b in spec_rows)
    pert_html = "\n".join(
        f"<tr><td>{row.eps:g}</td><td>{row.kind}</td><td>{100 * row.accuracy_float:.2f}%</td>"
        f"<td>{100 * row.accuracy_quantized:.2f}%</td></tr>" for row in r.perturbation)
    extra = [
        ("||U_q - U||_2 (quantization as a perturbation)", _num(r.quantization_error_norm)),
        ("eigenvalues of U_q inside the ||U_q - U||-pseudospectrum of U",
         "yes" if r.quantized_eigs_in_pseudospectrum else "no"),
        ("Jacobian spectral radius: median / p95 / max",
         f"{_num(float(np.median(radii)))} / {_num(float(np.percentile(radii, 95)))} / {_num(float(radii.max()))}"),
        ("Jacobian states with radius &gt; 1", f"{100 * float(np.mean(radii > 1.0)):.1f}%"),
        (f"||h_t|| at t = {r.horizon}: median float / int{r.bits}",
         f"{_num(float(np.median(r.hidden_norm_float[:, -1])))} / "
         f"{_num(float(np.median(r.hidden_norm_quantized[:, -1])))}"),
        (f"transient amplification over {tr['steps']} steps: cell max / median",
         f"{_num(tr['cell_max'])} / {_num(tr['cell_median'])}"),
        (f"max ||U^k|| / ||U_q^k||, k &le; {tr['steps']}",
         f"{_num(tr['linear_float'])} / {_num(tr['linear_quantized'])}"),
    ]
    extra_html = "\n".join(f"<tr><th>{name}</th><td colspan=\"2\">{value}</td></tr>" for name, value in extra)
    figs = "\n".join(figure(name, caption) for name, caption in PLOTS)
    return render_page(title, f"""<p>{html.escape(r.cell)}, H={r.hidden}, int{r.bits} weights, {r.n} labelled
sequences; model sha256 <code>{r.model_sha256[:16]}</code>. Perturbations are L&infin;-bounded in normalised
input units;
worst case: PGD ({r.pgd_steps} steps) from each of {r.draws} random draws, plus FGSM.</p>
<table id="summary">
<thead><tr><th>recurrent matrix</th><th>U (float)</th><th>U_q (int{r.bits})</th></tr></thead>
<tbody>
{rows_html}
{extra_html}
</tbody>
</table>
<table id="perturbation">
<thead><tr><th>eps</th><th>kind</th><th>float</th><th>int{r.bits}</th></tr></thead>
<tbody>
{pert_html}
</tbody>
</table>
<div class="plots">
{figs}
</div>""")


__all__ = ["PLOTS", "check_out_dir", "render_html", "write_report_page"]


def write_report_page(r: RobustnessReport, out_dir: str | os.PathLike, title: str) -> Path:
    """Write ``index.html`` and the PNGs into ``out_dir`` (:func:`edgecompile.report.page.write_page`:
    atomic, never over a directory that is not a report); returns the page's path."""
    drawers = (_plot_pseudospectra, _plot_accuracy, _plot_jacobian, _plot_hidden, _plot_transient)

    def plot(draw: Any) -> Any:
        return lambda plt, path: draw(plt, r, path)

    plots = [(name, plot(draw)) for (name, _), draw in zip(PLOTS, drawers, strict=True)]
    return write_page(out_dir, render_html(r, title), plots)
