"""The command line: a thin layer over the Python API (every command is scriptable from Python)."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click
import numpy as np

from . import __version__
from .errors import EdgecompileError, NotAvailableYet


def _write_json(path: str | None, report: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


class _Group(click.Group):
    """Maps :class:`EdgecompileError` to one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgecompileError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgecompile: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecompile")
@click.option("--debug", is_flag=True, help="Show a traceback with errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Put trained FastGRNN/FastRNN models on microcontrollers, bit-exactly.

    \b
    Typical flow:
      edgecompile inspect model.npz --bits 8
      edgecompile evaluate model.npz --data X.npy --labels y.npy --bits 8 --calib X.npy
      edgecompile export model.npz --board uno --calib X.npy -o fw/
      edgecompile build fw/
      edgecompile verify fw/ --emulate --data X.npy --labels y.npy
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


MODEL_ARG = click.argument("model", type=click.Path(dir_okay=True))


@main.command()
@MODEL_ARG
@click.option("--bits", type=click.Choice(["8", "16"]), default=None,
              help="Also quantize at this weight width and show formats and nonlinearity errors.")
@click.option("--calib", type=click.Path(), default=None, help="Raw calibration inputs [N,T,D] (.npy).")
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write the report as JSON.")
def inspect(model: str, bits: str | None, calib: str | None, json_path: str | None) -> None:
    """Show a checkpoint's cell, dimensions, ranks, sparsity, size and cost per step."""
    from .checkpoint import load_checkpoint
    from .inspect import inspect_report, render_report

    fm = load_checkpoint(model)
    report = inspect_report(fm)
    click.echo(render_report(report))
    _write_json(json_path, report)


@main.command()
@MODEL_ARG
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] or [T,D] (.npy).")
@click.option("--bits", type=click.Choice(["float", "8", "16"]), default="float", show_default=True,
              help="float: the float reference; 8/16: the bit-exact integer simulator, dequantized.")
@click.option("--calib", type=click.Path(), default=None, help="Raw calibration inputs for quantization.")
@click.option("--out", required=True, type=click.Path(), help="Where to write the logits [N,C] (.npy).")
def predict(model: str, data: str, bits: str, calib: str | None, out: str) -> None:
    """Compute logits for raw input sequences (float reference or integer simulator)."""
    from .checkpoint import load_checkpoint
    from .data import load_sequences
    from .reference import forward

    fm = load_checkpoint(model)
    X = load_sequences(data, fm)
    if bits != "float":
        raise NotAvailableYet("predict --bits 8|16 is not available yet (quantization issue)")
    logits = forward(fm, X)
    np.save(out, logits.astype(np.float64))
    pred = logits.argmax(axis=1)
    click.echo(f"wrote {out}: logits {list(logits.shape)}; predicted classes {np.bincount(pred, minlength=fm.num_classes).tolist()} per class")


def _not_yet(name: str, what: str):
    def command(**_kwargs):
        raise NotAvailableYet(f"'{name}' is not available yet ({what})")
    return command


for _name, _help, _what in (
    ("evaluate", "Accuracy of the float model and the quantized model on labelled data.", "quantization issue"),
    ("export", "Write a PlatformIO project (model library + firmware harness) for a board.", "C generation issue"),
    ("build", "Build an exported project with PlatformIO, checking the board's memory budget.", "boards issue"),
    ("flash", "Upload a built project to a board through PlatformIO.", "boards issue"),
    ("verify", "Prove over serial that the device computes exactly what the host predicts.", "serial parity issue"),
    ("train", "Train a FastGRNN/FastRNN (low rank, sparse, optional QAT) with NumPy.", "training issue"),
):
    main.command(_name, help=_help + " (not available yet)",
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(
        click.argument("args", nargs=-1, type=click.UNPROCESSED)(_not_yet(_name, _what))
    )


@main.command()
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write the list as JSON.")
def boards(json_path: str | None) -> None:
    """List the supported boards with memory budgets and emulators."""
    raise NotAvailableYet("'boards' is not available yet (boards issue)")


if __name__ == "__main__":  # pragma: no cover
    main()
