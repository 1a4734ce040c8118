"""``edgecompile evaluate``: accuracy of the float and the quantized model."""

from __future__ import annotations

import click

from edgecompile.cli.options import MODEL_ARG
from edgecompile.cli.output import human_to_stderr, warn, write_json


@click.command()
@MODEL_ARG
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] (.npy).")
@click.option("--labels", required=True, type=click.Path(), help="Integer class labels y [N] (.npy).")
@click.option("--bits", type=click.Choice(["float", "8", "16"]), default="8", show_default=True,
              help="Weight width of the quantized model compared with the float one.")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write accuracy_float, accuracy_quantized, argmax_agreement, ... as JSON "
                   "(-: standard output, the text then goes to stderr).")
def evaluate(model: str, data: str, labels: str, bits: str, calib: str | None, json_path: str | None) -> None:
    """Accuracy of the float model and of the bit-exact quantized model on labelled data."""
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_labels, load_sequences
    from edgecompile.pipeline.evaluate import evaluate as run_evaluation
    from edgecompile.pipeline.evaluate import render_evaluation

    err = human_to_stderr(json_path)
    fm = load_checkpoint(model)
    X = load_sequences(data, fm)
    y = load_labels(labels, X.shape[0], fm.num_classes)
    calib_X = load_sequences(calib, fm) if calib else None
    report = run_evaluation(fm, X, y, bits, calib_X, warn=warn)
    click.echo(render_evaluation(report), err=err)
    write_json(json_path, report)
