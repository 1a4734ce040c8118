"""``edgecompile quantize``: save the QuantizedModel as JSON."""

from __future__ import annotations

import click

from edgecompile.cli.options import LAYOUT_OPT, MODEL_ARG, PROFILE_OPT
from edgecompile.cli.output import human_to_stderr, warn
from edgecompile.files import write_output
from edgecompile.ir.model import Layout


@click.command()
@MODEL_ARG
@click.option("--bits", type=click.Choice(["8", "16"]), default="8", show_default=True, help="Weight width.")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Where to write the quantized model (.json; -: standard output).")
@LAYOUT_OPT
@PROFILE_OPT
def quantize(model: str, bits: str, calib: str | None, out: str, layout: Layout | None,
             profile: str | None) -> None:
    """Quantize a checkpoint and save the QuantizedModel (readable JSON; `export` takes it too)."""
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_sequences
    from edgecompile.ir.qmodel import qmodel_to_json
    from edgecompile.pipeline.evaluate import quantize_for_cli
    from edgecompile.quant.biascorr import ptq_summary
    from edgecompile.quant.profile import profile_lines

    err = human_to_stderr(out)
    fm = load_checkpoint(model, layout=layout, warn=warn)
    calib_X = load_sequences(calib, fm) if calib else None
    qm = quantize_for_cli(fm, int(bits), calib_X, warn=warn, profile=profile)
    text = qmodel_to_json(qm)
    write_output(out, lambda fh: fh.write(text.encode()))
    click.echo(f"wrote {out}: {qm.summary()}", err=err)
    click.echo(qm.per_unit_line(), err=err)
    for line in profile_lines(qm.calibration):
        click.echo(line, err=err)
    if (ptq := ptq_summary(qm.calibration)) is not None:
        click.echo(ptq, err=err)
