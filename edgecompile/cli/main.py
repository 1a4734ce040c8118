"""The command line: a thin layer over the Python API (every command is scriptable from Python)."""

from __future__ import annotations

import json
import signal
import sys
import traceback
import warnings
from typing import NoReturn

import click
import numpy as np

from edgecompile import __version__
from edgecompile.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EdgecompileError, Terminated, one_line
from edgecompile.files import check_output, is_stdout, write_output


def _warn(message: str) -> None:
    click.echo(f"edgecompile: {message}", err=True)


def _write_json(path: str | None, report: dict) -> None:
    """The report as JSON to ``path`` (``-``: standard output); nothing without a path."""
    if path is not None:
        text = json.dumps(report, indent=2, sort_keys=True) + "\n"
        write_output(path, lambda fh: fh.write(text.encode()))


def _save_npy(path: str, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended; ``-``: standard output)."""
    write_output(path, lambda fh: np.save(fh, array))


def _to_stderr(*outputs: str | None) -> bool:
    """Check ``outputs`` before any work; True when one is standard output (the human text then
    goes to stderr)."""
    for p in outputs:
        if p is not None:
            check_output(p)
    if sum(is_stdout(p) for p in outputs) > 1:
        raise EdgecompileError("only one output can be standard output (-)")
    return any(is_stdout(p) for p in outputs)


class _Group(click.Group):
    """Every failure becomes one line on stderr and an exit status (see :mod:`edgecompile.errors`):
    :class:`EdgecompileError` its own (1 or 2), numeric overflow, lack of memory and unexpected
    OS errors 2, Ctrl-C 130, SIGTERM 143, anything else 3 (an internal error)."""

    def invoke(self, ctx: click.Context):
        def fail(message: str, code: int) -> NoReturn:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgecompile: {message}", err=True)
            sys.exit(code)

        previous = _install_signal_handlers()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # no numpy warning leaks to stderr
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                BrokenPipeError):
            raise
        except EdgecompileError as exc:
            fail(f"error: {one_line(exc)}", exc.exit_code)
        except Terminated as exc:
            fail(f"terminated ({signal.Signals(exc.signum).name})", exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except (FloatingPointError, RuntimeWarning) as exc:
            fail(f"error: numeric overflow ({one_line(exc)}): an input or model value is out of "
                 "range", EXIT_BAD_INPUT)
        except MemoryError:
            fail("error: out of memory (an input is too large for this machine)", EXIT_BAD_INPUT)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"error: {where}{exc.strerror or one_line(exc)}", EXIT_BAD_INPUT)
        except Exception as exc:
            fail(f"internal error: {type(exc).__name__}: {one_line(exc)} "
                 "(run with --debug for the traceback)", EXIT_INTERNAL)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
    raise Terminated(signum)


def _install_signal_handlers() -> dict[int, object]:
    """SIGTERM and SIGHUP raise :class:`Terminated` (a KeyboardInterrupt), so ``finally``
    blocks run and child processes are stopped; returns the handlers to restore."""
    previous: dict[int, object] = {}
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None or signal.getsignal(signum) is not signal.SIG_DFL:
            continue
        try:
            previous[signum] = signal.signal(signum, _raise_terminated)
        except ValueError:  # not the main thread
            break
    return previous


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
    from edgecompile.link.timeouts import check_environment

    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    check_environment()


MODEL_ARG = click.argument("model", type=click.Path(dir_okay=True))


@main.command()
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

    err = _to_stderr(json_path)
    fm = load_checkpoint(model)
    report = inspect_report(fm)
    click.echo(render_report(report), err=err)
    if bits:
        from edgecompile.analysis.inspection import quant_report, render_quant_report
        from edgecompile.frontend.data import load_sequences
        from edgecompile.pipeline.evaluate import quantize_for_cli

        calib_X = load_sequences(calib, fm) if calib else None
        report["quantized"] = quant_report(quantize_for_cli(fm, int(bits), calib_X, warn=_warn))
        click.echo(render_quant_report(report["quantized"]), err=err)
    _write_json(json_path, report)


@main.command()
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

    err = _to_stderr(out)
    fm = load_checkpoint(model)
    X = load_sequences(data, fm)
    calib_X = load_sequences(calib, fm) if calib else None
    logits = predict_logits(fm, X, bits, calib_X, warn=_warn)
    _save_npy(out, logits.astype(np.float64))
    counts = np.bincount(logits.argmax(axis=1), minlength=fm.num_classes).tolist()
    click.echo(f"wrote {out}: logits {list(logits.shape)} ({bits}); predictions per class {counts}", err=err)


@main.command()
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

    err = _to_stderr(json_path)
    fm = load_checkpoint(model)
    X = load_sequences(data, fm)
    y = load_labels(labels, X.shape[0], fm.num_classes)
    calib_X = load_sequences(calib, fm) if calib else None
    report = run_evaluation(fm, X, y, bits, calib_X, warn=_warn)
    click.echo(render_evaluation(report), err=err)
    _write_json(json_path, report)


@main.command()
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

    err = _to_stderr(out)
    fm = load_checkpoint(model)
    calib_X = load_sequences(calib, fm) if calib else None
    qm = quantize_for_cli(fm, int(bits), calib_X, warn=_warn)
    text = qmodel_to_json(qm)
    write_output(out, lambda fh: fh.write(text.encode()))
    click.echo(f"wrote {out}: {qm.summary()}", err=err)


@main.command()
@MODEL_ARG
@click.option("--board", required=True, help="Target board id (see `edgecompile boards`), e.g. uno, native.")
@click.option("--bits", type=click.Choice(["8", "16"]), default=None,
              help="Weight width [default: 8; a quantized-model .json keeps its own].")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Project directory to create [default: ./<name>_<board>].")
@click.option("--force", is_flag=True,
              help="Replace a project exported there before: the files its manifest lists and the build "
                   "outputs go, other files stay.")
@click.option("--name", default=None, help="C name of the model library [default: the checkpoint's stem].")
@click.option("--zip", "zip_library", is_flag=True,
              help="Also write <name>.zip: the library for the Arduino IDE's "
                   "Sketch > Include Library > Add .ZIP Library (docs/arduino.md).")
def export(model: str, board: str, bits: str | None, calib: str | None, out_dir: str | None,
           force: bool, name: str | None, zip_library: bool) -> None:
    """Write a PlatformIO project (model library + firmware harness) for a board.

    MODEL is a checkpoint (.npz or a directory of .npy) or a quantized model (.json from
    `edgecompile quantize`). The output is byte-identical for identical input, written
    atomically, with edgecompile-manifest.json listing the sha256 of every file.
    """
    from edgecompile.pipeline.export import export_project

    result = export_project(model, board, bits=int(bits) if bits else None, calib=calib,
                            out_dir=out_dir, force=force, name=name, warn=_warn, zip_library=zip_library)
    click.echo(f"wrote {result.out_dir}: {len(result.manifest['files']) + 1} files, library "
               f"lib/{result.name}/ for {result.board}; {result.qmodel.summary()}")


@main.command()
@click.option("--data", required=True, type=click.Path(),
              help="Raw training inputs: X.npy [N,T,D], or a UEA/UCR .ts file (labels inside).")
@click.option("--labels", type=click.Path(), default=None,
              help="Class ids 0..C-1 (.npy); optional with a labelled .ts file.")
@click.option("--cell", type=click.Choice(["FastGRNN", "FastRNN"]), default="FastGRNN", show_default=True)
@click.option("--hidden", type=click.IntRange(1), default=32, show_default=True, help="Hidden size H.")
@click.option("--wrank", type=click.IntRange(1), default=None, help="Rank of W = W1 @ W2 (default: full).")
@click.option("--urank", type=click.IntRange(1), default=None, help="Rank of U = U1 @ U2 (default: full).")
@click.option("--sparsity", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Fraction of zeros in each of W/W1/W2/U/U1/U2 (three-stage schedule).")
@click.option("--epochs", type=click.IntRange(1), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=0.01, show_default=True,
              help="Adam learning rate.")
@click.option("--val-split", type=click.FloatRange(0.0, 0.9), default=0.2, show_default=True,
              help="Fraction of each class held out for validation / early stopping (0: none).")
@click.option("--patience", type=click.IntRange(1), default=None,
              help="Early stopping: epochs without validation gain [default: max(10, epochs/5)].")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning after training.")
@click.option("--qat-bits", type=click.Choice(["8", "16"]), default="8", show_default=True)
@click.option("--qat-epochs", type=click.IntRange(1), default=None,
              help="QAT epochs [default: max(5, epochs/5)].")
@click.option("--length", type=click.IntRange(1), default=None,
              help="Pad (at the front) or cut every series to T steps [default: the longest].")
@click.option("--pad", type=click.Choice(["edge", "zero"]), default="edge", show_default=True,
              help="Front padding of short series: repeat the first frame, or zeros.")
@click.option("--gate-nl", type=click.Choice(["sigmoid", "quantSigm"]), default="sigmoid", show_default=True)
@click.option("--update-nl", type=click.Choice(["tanh", "quantTanh"]), default="tanh", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the training report as JSON (-: standard output).")
@click.option("-o", "--out", required=True, type=click.Path(), help="Checkpoint to write (.npz; -: standard output).")
def train(data: str, labels: str | None, out: str, quiet: bool, json_path: str | None,
          length: int | None, pad: str, qat_bits: str, **options) -> None:
    """Train a FastGRNN/FastRNN (low rank, sparse, optional QAT) with NumPy.

    Writes an EdgeML-layout checkpoint with per-channel mean/std. Deterministic for a seed.
    """
    from edgecompile.frontend.checkpoint import save_checkpoint
    from edgecompile.train import TrainConfig, load_training_data
    from edgecompile.train import train as run_training

    err = _to_stderr(out, json_path)
    td = load_training_data(data, labels, length, pad)
    options["val_fraction"] = options.pop("val_split")
    cfg = TrainConfig(qat_bits=int(qat_bits), **options)
    cfg.check()
    n, steps, dims = td.X.shape
    if not quiet:
        click.echo(f"training {cfg.cell} D={dims} H={cfg.hidden} C={int(td.y.max()) + 1} on {n} "
                   f"sequences of T={steps}", err=True)
        if td.class_labels:
            click.echo(f"class ids 0..{len(td.class_labels) - 1} are the file's labels "
                       f"{' '.join(td.class_labels)}", err=True)
    total = cfg.epochs + (cfg.qat_epochs or max(5, cfg.epochs // 5)) * cfg.qat
    if quiet:
        result = run_training(td.X, td.y, cfg, td.lengths)
    elif not sys.stderr.isatty():  # logs: one line every tenth of the epochs
        every = max(1, total // 10)

        def log_line(log) -> None:
            if log.epoch % every == 0:
                click.echo(f"epoch {log.epoch}/{total} {_epoch_line(log)}", err=True)

        result = run_training(td.X, td.y, cfg, td.lengths, log_line)
    else:
        with click.progressbar(length=total, label="training", file=sys.stderr, show_pos=True,
                               item_show_func=lambda log: log and _epoch_line(log)) as bar:
            result = run_training(td.X, td.y, cfg, td.lengths, lambda log: bar.update(1, log))
    save_checkpoint(result.model, out)
    report = result.report()
    report.update(output=out, data=data, seq_len=steps,
                  class_labels=td.class_labels)
    _write_json(json_path, report)
    val = "-" if result.val_acc is None else f"{result.val_acc:.1%}"
    click.echo(f"wrote {out}: train accuracy {result.train_acc:.1%}, validation {val} "
               f"(epoch {result.best_epoch} of {len(result.history)}"
               f"{', stopped early' if result.stopped_early else ''}), {result.seconds:.1f} s", err=err)


def _epoch_line(log) -> str:
    best = "" if log.best_val_acc is None else f" (best {log.best_val_acc:.1%})"
    val = "" if log.val_acc is None else f" val {log.val_acc:.1%}{best}"
    return f"[{log.stage}] loss {log.loss:.3f} train {log.train_acc:.1%}{val}"


@main.command()
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the list as JSON (-: standard output, the table then goes to stderr).")
def boards(json_path: str | None) -> None:
    """List the supported boards with memory budgets and emulators."""
    from edgecompile.targets.boards import list_boards, render_boards

    err = _to_stderr(json_path)
    found = list_boards()
    click.echo(render_boards(found), err=err)
    _write_json(json_path, {"boards": [b.summary() for b in found]})


PROJECT_ARG = click.argument("project_dir", metavar="DIR", type=click.Path(file_okay=False))
OFFLINE_OPT = click.option(
    "--offline/--online", default=None,
    help="Local platform over Debian toolchains (no network), or the standard PlatformIO "
         "platform. Default: offline when the PlatformIO registry cannot be reached.")


@main.command()
@PROJECT_ARG
@OFFLINE_OPT
@click.option("-v", "--verbose", is_flag=True, help="Show every line of PlatformIO's output.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the build report (sizes, budget) as JSON (-: standard output, the log "
                   "then goes to stderr).")
def build(project_dir: str, offline: bool | None, verbose: bool, json_path: str | None) -> None:
    """Build an exported project with PlatformIO, checking the board's memory budget.

    The budget is checked before building (an estimate from the compiled sources) and after
    linking (the ELF's sizes); a firmware that cannot fit stops with exit status 2.
    """
    from edgecompile.targets.build import build_project

    err = _to_stderr(json_path)
    result = build_project(project_dir, offline=offline, echo=lambda line: click.echo(line, err=err),
                           verbose=verbose)
    _write_json(json_path, result.to_dict())


@main.command()
@PROJECT_ARG
@click.option("--port", required=True, help="Serial port of the board (e.g. /dev/ttyACM0).")
@OFFLINE_OPT
@click.option("--timeout", type=click.FloatRange(1.0), default=None,
              help="Give up the upload after this many seconds [default: 120].")
def flash(project_dir: str, port: str, offline: bool | None, timeout: float | None) -> None:
    """Upload a built project to a board through PlatformIO (avrdude for AVR boards)."""
    from edgecompile.targets.flash import UPLOAD_TIMEOUT_S, flash_project

    flash_project(project_dir, port, offline=offline, echo=click.echo,
                  timeout=timeout or UPLOAD_TIMEOUT_S)


@main.command()
@click.argument("project_dir", metavar="DIR", type=click.Path())
@click.option("--port", default=None, help="Serial device or pyserial URL (socket://, rfc2217://, ...).")
@click.option("--emulate", is_flag=True, help="Build if needed and run on the board's emulator.")
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] (.npy).")
@click.option("--labels", default=None, type=click.Path(), help="Class labels y [N] (.npy).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the report as JSON (-: standard output, the text then goes to stderr).")
@click.option("--trace", is_flag=True,
              help="Also compare hidden states step by step; name the first (step, unit) that differs.")
@click.pass_context
def verify(ctx: click.Context, project_dir: str, port: str | None, emulate: bool, data: str,
           labels: str | None, json_path: str | None, trace: bool) -> None:
    """Prove over serial that the device computes exactly what the host predicts.

    Exit 0 when every logit is equal, 1 on any mismatch or a device running another model,
    2 on bad input or an unusable port. With --debug every frame is hex-dumped to stderr.
    """
    from edgecompile.pipeline.verify import verify_project

    err = _to_stderr(json_path)
    bar = {}

    def progress(done: int, total: int) -> None:
        if total < 20:
            return
        if "bar" not in bar:
            bar["bar"] = click.progressbar(length=total, label="verifying", file=sys.stderr)
            bar["bar"].__enter__()
        bar["bar"].update(done - bar["bar"].pos)
        if done == total:
            bar.pop("bar").__exit__(None, None, None)

    log = (lambda line: click.echo(line, err=True)) if ctx.obj.get("debug") else None
    report = verify_project(project_dir, data=data, labels=labels, port=port, emulate=emulate,
                            trace=trace, progress=progress,
                            echo=lambda line: click.echo(line, err=True), log=log)
    click.echo(report.render(), err=err)
    _write_json(json_path, report.to_json())
    if not report.ok:
        sys.exit(1)


@main.command()
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
def robustness(model: str, data: str, labels: str, calib: str | None, bits: str, eps_text: str | None,
               draws: int, seed: int, json_path: str | None, out_dir: str) -> None:
    """Spectra, pseudospectra and accuracy under bounded perturbation, float vs quantized.

    Writes DIR/index.html with its plots; see docs/robustness.md for what each number means.
    """
    from edgecompile.analysis import check_out_dir, parse_eps, render_report, robustness_report, write_report_page
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_labels, load_sequences

    err = _to_stderr(json_path)
    check_out_dir(out_dir)
    eps = parse_eps(eps_text)
    fm = load_checkpoint(model)
    X = load_sequences(data, fm)
    y = load_labels(labels, X.shape[0], fm.num_classes)
    calib_X = load_sequences(calib, fm) if calib else None
    report = robustness_report(fm, X, y, int(bits), calib_X, eps, draws=draws, seed=seed, warn=_warn)
    page = write_report_page(report, out_dir, f"edgecompile robustness report: {model}")
    _write_json(json_path, report.to_json())
    click.echo(render_report(report), err=err)
    click.echo(f"wrote {page} ({report.seconds:.1f} s)", err=err)


if __name__ == "__main__":  # pragma: no cover
    main()
