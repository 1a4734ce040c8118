"""``edgecompile evaluate``: accuracy of the float and the quantized model."""

from __future__ import annotations

import click

from edgecompile.cli.options import LAYOUT_OPT, MODEL_ARG, PROFILE_OPT
from edgecompile.cli.output import human_to_stderr, warn, write_json
from edgecompile.ir.model import Layout


@click.command()
@MODEL_ARG
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] (.npy).")
@click.option("--labels", required=True, type=click.Path(), help="Integer class labels y [N] (.npy).")
@click.option("--bits", type=click.Choice(["float", "8", "16"]), default=None,
              help="Weight width of the quantized model compared with the float one; float: the "
                   "float model only [default: 8; a quantized model or project keeps its own].")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write accuracy_float, accuracy_quantized, argmax_agreement, bits (an integer, "
                   "null for --bits float), ... as JSON (-: standard output, the text then goes "
                   "to stderr).")
@click.option("--report", "report_dir", type=click.Path(), default=None,
              help="Write an HTML page with plots (DIR/index.html): per-class accuracy, confusion "
                   "matrices, logit errors (a new or empty DIR, or an earlier report).")
@LAYOUT_OPT
@PROFILE_OPT
def evaluate(model: str, data: str, labels: str, bits: str | None, calib: str | None,
             json_path: str | None, report_dir: str | None, layout: Layout | None,
             profile: str | None) -> None:
    """Accuracy of the float model and of the bit-exact quantized model on labelled data.

    MODEL is a checkpoint (.npz or a directory of .npy), a quantized model (.json) or an exported
    project directory; the last two are evaluated exactly as flashed (their own bit width, no
    --calib). Without a float model (a .json alone) the float accuracy is null, with a note.
    """
    from edgecompile.frontend.data import load_labels
    from edgecompile.pipeline.evaluate import evaluate as run_evaluation
    from edgecompile.pipeline.evaluate import load_data, load_model_source, render_evaluation, resolve_bits

    err = human_to_stderr(json_path)
    if report_dir is not None:
        from edgecompile.report.page import check_out_dir

        check_out_dir(report_dir)
    source = load_model_source(model, layout=layout, warn=warn)
    width = resolve_bits(source, bits, calib)
    X = load_data(data, source)
    shape = source.float_model if source.float_model is not None else source.qmodel
    assert shape is not None
    y = load_labels(labels, X.shape[0], shape.num_classes)
    calib_X = load_data(calib, source) if calib else None
    report = run_evaluation(source, X, y, width, calib_X, warn=warn, profile=profile)
    click.echo(render_evaluation(report), err=err)
    write_json(json_path, report)
    if report_dir is not None:
        from edgecompile.pipeline.evaluate import predict_logits
        from edgecompile.report.evaluate_page import write_evaluate_report

        floats = None if source.float_model is None else predict_logits(source, X, "float", None)
        ints = None if width == "float" else predict_logits(source, X, width, calib_X, profile=profile)
        page = write_evaluate_report(report, y, floats, ints, report_dir,
                                     f"edgecompile evaluate report: {model}")
        click.echo(f"wrote {page}", err=err)
