"""``edgecompile train``: FastGRNN/FastRNN/ERNN training with NumPy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from edgecompile.cli.output import human_to_stderr, write_json
from edgecompile.cli.progress import reporter
from edgecompile.ir.model import NONLINEARITIES

if TYPE_CHECKING:
    from edgecompile.train import EpochLog


@click.command()
@click.option("--data", required=True, type=click.Path(),
              help="Raw training inputs: X.npy [N,T,D], or a UEA/UCR .ts file (labels inside).")
@click.option("--labels", type=click.Path(), default=None,
              help="Class ids 0..C-1 (.npy); optional with a labelled .ts file.")
@click.option("--cell", type=click.Choice(["FastGRNN", "FastRNN", "ERNN"]), default="FastGRNN", show_default=True)
@click.option("--inner-steps", type=click.IntRange(1), default=None,
              help="ERNN: inner steps K toward the equilibrium per time step [default: 1].")
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
@click.option("--gate-nl", type=click.Choice(NONLINEARITIES), default="sigmoid", show_default=True,
              help="FastGRNN's gate nonlinearity.")
@click.option("--update-nl", type=click.Choice(NONLINEARITIES), default=None,
              help="The update nonlinearity [default: tanh; ERNN: relu].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress (bar or lines).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the training report as JSON (-: standard output).")
@click.option("-o", "--out", required=True, type=click.Path(), help="Checkpoint to write (.npz; -: standard output).")
def train(data: str, labels: str | None, out: str, quiet: bool, json_path: str | None,
          length: int | None, pad: str, qat_bits: str, **options: Any) -> None:
    """Train a FastGRNN/FastRNN/ERNN (low rank, sparse, optional QAT) with NumPy.

    Writes an EdgeML-layout checkpoint with per-channel mean/std. Deterministic for a seed.
    """
    from edgecompile.frontend.checkpoint import save_checkpoint
    from edgecompile.train import TrainConfig, load_training_data
    from edgecompile.train import train as run_training

    err = human_to_stderr(out, json_path)
    if options["inner_steps"] is not None and options["cell"] != "ERNN":
        from edgecompile.errors import DataError

        raise DataError(f"--inner-steps applies to --cell ERNN only, not {options['cell']}")
    td = load_training_data(data, labels, length, pad)
    options["val_fraction"] = options.pop("val_split")
    cfg = TrainConfig(qat_bits=int(qat_bits), **options)
    cfg.check()
    n, steps, dims = td.X.shape
    if not quiet:
        inner = f" K={cfg.inner_steps}" if cfg.cell == "ERNN" else ""
        click.echo(f"training {cfg.cell} D={dims} H={cfg.hidden}{inner} C={int(td.y.max()) + 1} on {n} "
                   f"sequences of T={steps}", err=True)
        if td.class_labels:
            click.echo(f"class ids 0..{len(td.class_labels) - 1} are the file's labels "
                       f"{' '.join(td.class_labels)}", err=True)
    total = cfg.epochs + (cfg.qat_epochs or max(5, cfg.epochs // 5)) * cfg.qat
    with reporter("train", enabled=not quiet) as progress:
        def on_epoch(log: EpochLog) -> None:
            progress(log.epoch, total, "epochs", _epoch_line(log))

        result = run_training(td.X, td.y, cfg, td.lengths, on_epoch)
        if result.history:  # early stopping: the last line says where it ended
            progress(len(result.history), len(result.history), "epochs",
                     _epoch_line(result.history[-1]))
    save_checkpoint(result.model, out)
    report = result.report()
    report.update(output=out, data=data, seq_len=steps,
                  class_labels=td.class_labels)
    write_json(json_path, report)
    val = "-" if result.val_acc is None else f"{result.val_acc:.1%}"
    click.echo(f"wrote {out}: train accuracy {result.train_acc:.1%}, validation {val} "
               f"(epoch {result.best_epoch} of {len(result.history)}"
               f"{', stopped early' if result.stopped_early else ''}), {result.seconds:.1f} s", err=err)


def _epoch_line(log: EpochLog) -> str:
    best = "" if log.best_val_acc is None else f" (best {log.best_val_acc:.1%})"
    val = "" if log.val_acc is None else f" val {log.val_acc:.1%}{best}"
    return f"[{log.stage}] loss {log.loss:.3f} train {log.train_acc:.1%}{val}"
