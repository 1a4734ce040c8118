"""``edgecompile robustness``: spectra and accuracy under bounded perturbation."""

from __future__ import annotations

import click

from edgecompile.cli.options import LAYOUT_OPT, MODEL_ARG
from edgecompile.cli.output import human_to_stderr, warn, write_json
from edgecompile.cli.progress import reporter
from edgecompile.ir.model import Layout


@click.command()
@MODEL_ARG
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] (.npy).")
@click.option("--labels", required=True, type=click.Path(), help="Integer class labels y [N] (.npy).")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy): quantization formats and the states the "
                   "Jacobians are taken at [default: assumed ranges and --data].")
@click.option("--bits", type=click.Choice(["8", "16"]), default="8", show_default=True, help="Weight width.")
@click.option("--eps", "eps_text", default=None,
              help="Comma-separated L-inf radii in normalised input units; 0 is always added "
                   "[default: 0,0.01,0.03,0.1,0.3].")
@click.option("--draws", type=click.IntRange(1), default=5, show_default=True,
              help="Random perturbations per eps (also the PGD starting points).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write the report as JSON.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(),
              help="Directory for the HTML page (index.html) and its PNG plots.")
@LAYOUT_OPT
def robustness(model: str, data: str, labels: str, calib: str | None, bits: str, eps_text: str | None,
               draws: int, seed: int, json_path: str | None, out_dir: str, layout: Layout | None) -> None:
    """Spectra, pseudospectra and accuracy under bounded perturbation, float vs quantized.

    Writes DIR/index.html with its plots; see docs/robustness.md for what each number means.
    """
    from edgecompile.analysis import check_out_dir, parse_eps, render_report, robustness_report, write_report_page
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_labels, load_sequences

    err = human_to_stderr(json_path)
    check_out_dir(out_dir)
    eps = parse_eps(eps_text)
    fm = load_checkpoint(model, layout=layout, warn=warn)
    X = load_sequences(data, fm)
    y = load_labels(labels, X.shape[0], fm.num_classes)
    calib_X = load_sequences(calib, fm) if calib else None
    with reporter("robustness") as progress:
        report = robustness_report(fm, X, y, int(bits), calib_X, eps, draws=draws, seed=seed,
                                   warn=warn, progress=progress)
        progress(0, 1, "report page")
        page = write_report_page(report, out_dir, f"edgecompile robustness report: {model}")
        progress(1, 1, "report page")
    write_json(json_path, report.to_json())
    click.echo(render_report(report), err=err)
    click.echo(f"wrote {page} ({report.seconds:.1f} s)", err=err)
