"""``edgecompile predict``: logits on the host, float or bit-exact integer."""

from __future__ import annotations

import click
import numpy as np

from edgecompile.cli.options import LAYOUT_OPT, MODEL_ARG, PROFILE_OPT
from edgecompile.cli.output import human_to_stderr, save_npy, warn, write_json
from edgecompile.ir.model import Layout


@click.command()
@MODEL_ARG
@click.option("--data", type=click.Path(), default=None, help="Raw inputs X [N,T,D] or [T,D] (.npy).")
@click.option("--raw-int16", "raw_int16", type=click.Path(), default=None,
              help="Instead of --data: raw int16 sensor values [N,T,D] or [T,D] (integer .npy), quantized "
                   "as <name>_step_raw does; MODEL is a project or quantized model exported with --raw-scale.")
@click.option("--bits", type=click.Choice(["float", "8", "16"]), default=None,
              help="8/16: the bit-exact integer simulator, dequantized; float: the float reference "
                   "[default: 8; a quantized model or project keeps its own].")
@click.option("--calib", type=click.Path(), default=None, help="Raw calibration inputs for quantization.")
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Where to write the logits [N,C] (float64 .npy; -: the .npy bytes to standard output).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write n, num_classes, bits, predictions per class and the output path as JSON "
                   "(-: standard output, the text then goes to stderr).")
@LAYOUT_OPT
@PROFILE_OPT
def predict(model: str, data: str | None, bits: str | None, calib: str | None, out: str,
            json_path: str | None, layout: Layout | None, profile: str | None,
            raw_int16: str | None = None) -> None:
    """Compute logits for raw input sequences (integer simulator or float reference).

    MODEL is a checkpoint (.npz or a directory of .npy), a quantized model (.json from
    `edgecompile quantize` or an export) or an exported project directory: the last two give
    exactly the logits the flashed device computes (`verify --out` saves those).
    """
    from edgecompile.pipeline.evaluate import load_data, load_model_source, predict_logits, resolve_bits

    if (data is None) == (raw_int16 is None):
        from edgecompile.errors import DataError

        raise DataError("give the inputs as one of --data (float sequences) or --raw-int16 (raw int16 values)")
    err = human_to_stderr(out, json_path)
    source = load_model_source(model, layout=layout, warn=warn)
    width = resolve_bits(source, bits, calib)
    if raw_int16 is not None:
        logits = _raw_logits(source, raw_int16, width)
    else:
        assert data is not None
        X = load_data(data, source)
        calib_X = load_data(calib, source) if calib else None
        logits = predict_logits(source, X, width, calib_X, warn=warn, profile=profile).astype(np.float64)
    counts = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1]).tolist()
    report = {"n": int(logits.shape[0]), "num_classes": int(logits.shape[1]),
              "bits": None if width == "float" else int(width),
              "reference": "float" if width == "float" else "integer",
              "source": source.kind, "predictions_per_class": counts, "output": out}
    save_npy(out, logits)
    write_json(json_path, report)
    what = "float" if width == "float" else f"int{width}"
    click.echo(f"wrote {out}: logits {list(logits.shape)} ({what}); predictions per class {counts}",
               err=err)


def _raw_logits(source: object, path: str, width: str) -> np.ndarray:
    """``--raw-int16``: the integer simulator on the raws quantized as ``<name>_step_raw`` does,
    or (``--bits float``) the float reference on ``raw * raw_scale + raw_offset``."""
    from edgecompile.errors import DataError
    from edgecompile.pipeline.evaluate import ModelSource
    from edgecompile.reference import forward
    from edgecompile.sim.rawinput import load_raw, quantize_raw_inputs, raw_as_real
    from edgecompile.sim.simulator import dequantize_logits, simulate

    assert isinstance(source, ModelSource)
    qm = source.qmodel
    if qm is None or qm.raw_scale is None:
        raise DataError(f"--raw-int16: {source.what} carries no raw unit; export it (or quantize it) "
                        f"with --raw-scale and give that project or quantized model")
    raw = load_raw(path, qm)
    if width == "float":
        assert source.float_model is not None
        return np.asarray(forward(source.float_model, raw_as_real(qm, raw)), dtype=np.float64)
    return np.asarray(dequantize_logits(qm, simulate(qm, quantize_raw_inputs(qm, raw))), dtype=np.float64)
