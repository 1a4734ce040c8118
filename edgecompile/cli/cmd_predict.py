"""``edgecompile predict``: logits on the host, float or bit-exact integer."""

from __future__ import annotations

import click
import numpy as np

from edgecompile.cli.options import MODEL_ARG
from edgecompile.cli.output import human_to_stderr, save_npy, warn


@click.command()
@MODEL_ARG
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] or [T,D] (.npy).")
@click.option("--bits", type=click.Choice(["float", "8", "16"]), default="float", show_default=True,
              help="float: the float reference; 8/16: the bit-exact integer simulator, dequantized.")
@click.option("--calib", type=click.Path(), default=None, help="Raw calibration inputs for quantization.")
@click.option("--out", required=True, type=click.Path(),
              help="Where to write the logits [N,C] (.npy; -: the .npy bytes to standard output).")
def predict(model: str, data: str, bits: str, calib: str | None, out: str) -> None:
    """Compute logits for raw input sequences (float reference or integer simulator)."""
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_sequences
    from edgecompile.pipeline.evaluate import predict_logits

    err = human_to_stderr(out)
    fm = load_checkpoint(model)
    X = load_sequences(data, fm)
    calib_X = load_sequences(calib, fm) if calib else None
    logits = predict_logits(fm, X, bits, calib_X, warn=warn)
    save_npy(out, logits.astype(np.float64))
    counts = np.bincount(logits.argmax(axis=1), minlength=fm.num_classes).tolist()
    click.echo(f"wrote {out}: logits {list(logits.shape)} ({bits}); predictions per class {counts}", err=err)
