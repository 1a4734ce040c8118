"""``edgecompile inspect``: what a checkpoint holds and what it costs per step."""

from __future__ import annotations

import click

from edgecompile.cli.options import MODEL_ARG
from edgecompile.cli.output import human_to_stderr, warn, write_json


@click.command()
@MODEL_ARG
@click.option("--bits", type=click.Choice(["8", "16"]), default=None,
              help="Also quantize at this weight width and show formats and nonlinearity errors.")
@click.option("--calib", type=click.Path(), default=None, help="Raw calibration inputs [N,T,D] (.npy).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the report as JSON (-: standard output, the text then goes to stderr).")
def inspect(model: str, bits: str | None, calib: str | None, json_path: str | None) -> None:
    """Show a checkpoint's cell, dimensions, ranks, sparsity, size and cost per step."""
    from edgecompile.analysis.inspection import inspect_report, render_report
    from edgecompile.frontend.checkpoint import load_checkpoint

    err = human_to_stderr(json_path)
    fm = load_checkpoint(model)
    report = inspect_report(fm)
    click.echo(render_report(report), err=err)
    if bits:
        from edgecompile.analysis.inspection import quant_report, render_quant_report
        from edgecompile.frontend.data import load_sequences
        from edgecompile.pipeline.evaluate import quantize_for_cli

        calib_X = load_sequences(calib, fm) if calib else None
        report["quantized"] = quant_report(quantize_for_cli(fm, int(bits), calib_X, warn=warn))
        click.echo(render_quant_report(report["quantized"]), err=err)
    write_json(json_path, report)
