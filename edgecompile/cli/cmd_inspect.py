"""``edgecompile inspect``: what a model holds and what it costs per step."""

from __future__ import annotations

import click

from edgecompile.cli.options import LAYOUT_OPT, MODEL_ARG
from edgecompile.cli.output import human_to_stderr, warn, write_json
from edgecompile.ir.model import Layout


@click.command()
@MODEL_ARG
@click.option("--bits", type=click.Choice(["float", "8", "16"]), default=None,
              help="Weight width of the quantized view (formats, overflow bounds, nonlinearity "
                   "errors); float: the float model only [default: 8; a quantized model or "
                   "project keeps its own].")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the report as JSON (-: standard output, the text then goes to stderr).")
@LAYOUT_OPT
def inspect(model: str, bits: str | None, calib: str | None, json_path: str | None,
            layout: Layout | None) -> None:
    """Show a model's cell, dimensions, ranks, sparsity, size and cost per step.

    MODEL is a checkpoint (.npz or a directory of .npy), a quantized model (.json from
    `edgecompile quantize` or an export) or an exported project directory; the last two keep
    their own bit width and formats (--calib does not apply).
    """
    from edgecompile.analysis.inspection import inspect_report, render_report
    from edgecompile.pipeline.evaluate import load_model_source, resolve_bits

    err = human_to_stderr(json_path)
    source = load_model_source(model, layout=layout, warn=warn)
    width = resolve_bits(source, bits, calib)
    shown = source.float_model if source.float_model is not None else source.qmodel
    assert shown is not None
    report = inspect_report(shown)
    click.echo(render_report(report), err=err)
    if width != "float":
        from edgecompile.analysis.inspection import quant_report, render_quant_report
        from edgecompile.pipeline.evaluate import load_data, quantized_model

        calib_X = load_data(calib, source) if calib else None
        report["quantized"] = quant_report(quantized_model(source, width, calib_X, warn=warn))
        click.echo(render_quant_report(report["quantized"]), err=err)
    write_json(json_path, report)
