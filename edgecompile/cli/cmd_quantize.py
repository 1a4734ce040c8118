"""``edgecompile quantize``: save the QuantizedModel as JSON."""

from __future__ import annotations

import click

from edgecompile.cli.options import MODEL_ARG
from edgecompile.cli.output import human_to_stderr, warn
from edgecompile.files import write_output


@click.command()
@MODEL_ARG
@click.option("--bits", type=click.Choice(["8", "16"]), default="8", show_default=True, help="Weight width.")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Where to write the quantized model (.json; -: standard output).")
def quantize(model: str, bits: str, calib: str | None, out: str) -> None:
    """Quantize a checkpoint and save the QuantizedModel (readable JSON; `export` takes it too)."""
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_sequences
    from edgecompile.ir.qmodel import qmodel_to_json
    from edgecompile.pipeline.evaluate import quantize_for_cli

    err = human_to_stderr(out)
    fm = load_checkpoint(model)
    calib_X = load_sequences(calib, fm) if calib else None
    qm = quantize_for_cli(fm, int(bits), calib_X, warn=warn)
    text = qmodel_to_json(qm)
    write_output(out, lambda fh: fh.write(text.encode()))
    click.echo(f"wrote {out}: {qm.summary()}", err=err)
