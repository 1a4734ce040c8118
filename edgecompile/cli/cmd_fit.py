"""``edgecompile fit``: the most accurate model that fits a board, searched on a Dask cluster."""

from __future__ import annotations

import csv
import io
import typing
from pathlib import Path
from typing import Any

import click

from edgecompile.cli.output import human_to_stderr, write_json
from edgecompile.cli.progress import reporter
from edgecompile.errors import BoardError, DataError

if typing.TYPE_CHECKING:
    from edgecompile.fit.search import Limits

CHOSEN_KEYS = ("hidden", "wrank", "urank", "sparsity", "cell", "inner_steps", "bits", "profile",
               "accuracy_val", "flash_bytes", "ram_bytes", "cycles_per_step")
CSV_KEYS = ("key", "cell", "hidden", "wrank", "urank", "sparsity", "bits", "inner_steps", "profile",
            "accuracy_val", "accuracy_train", "flash_bytes", "ram_bytes", "cycles_per_step",
            "ms_per_step", "fits", "seconds", "error")


def supported_cells() -> tuple[str, ...]:
    """Every cell that trains, quantizes and compiles (the model IR's ``DEPLOYABLE_CELLS``)."""
    from edgecompile.ir.model import DEPLOYABLE_CELLS

    return DEPLOYABLE_CELLS


def _public(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: rec.get(k) for k in CHOSEN_KEYS}
    out["wrank"] = rec["wrank"] or None  # null: a full matrix
    out["urank"] = rec["urank"] or None
    out["inner_steps"] = rec.get("inner_steps") or None  # null: a cell without inner steps
    out["ms_per_step"] = rec.get("ms_per_step")
    out["fits"] = bool(rec.get("fits"))
    return out


def _csv(records: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_KEYS)
    for r in records:
        w.writerow(["full" if k in ("wrank", "urank") and r[k] == 0 else
                    "" if r.get(k) is None or (k == "inner_steps" and not r[k]) else r.get(k)
                    for k in CSV_KEYS])
    return buf.getvalue().encode()


@click.command()
@click.option("--data", required=True, type=click.Path(),
              help="Raw training inputs: X.npy [N,T,D], or a UEA/UCR .ts file (labels inside).")
@click.option("--labels", type=click.Path(), default=None,
              help="Class ids 0..C-1 (.npy); optional with a labelled .ts file.")
@click.option("--board", required=True, help="Board whose flash, RAM and clock bound the search.")
@click.option("--max-ms-per-step", type=click.FloatRange(0.0, min_open=True), default=None,
              help="Latency limit per time step: predicted cycles / the board's clock.")
@click.option("--bits", type=click.Choice(["8", "16", "auto"]), default="8", show_default=True,
              help="Weight width; auto searches 8 and 16.")
@click.option("--cells", default=None,
              help="Comma-separated cells to search [default: every deployable cell; ERNN with "
                   "K = 1 or 2 inner steps].")
@click.option("--trials", type=click.IntRange(1), default=32, show_default=True, help="Candidates to train.")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True, help="Training epochs per trial.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Processes of the local Dask cluster [default: the cores].")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the trials on an existing Dask cluster instead.")
@click.option("--quiet", is_flag=True, help="No progress (bar or lines).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the result as JSON (-: standard output).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Fit directory (new, empty, or an earlier fit directory to resume).")
def fit(data: str, labels: str | None, board: str, max_ms_per_step: float | None, bits: str,
        cells: str | None, trials: int, epochs: int, seed: int, workers: int | None,
        scheduler: str | None, quiet: bool, json_path: str | None, out: str) -> None:
    """Search the most accurate model that fits BOARD (flash, RAM, latency), on Dask.

    Trains --trials candidates (cell, hidden size, ranks, sparsity, bits; an ERNN's inner steps),
    quantizes each in the profile export takes for BOARD, scores it with the bit-exact integer
    simulator on a held-out validation split, predicts its firmware's flash, RAM and cycles per
    step from the board's fitted cost model, and writes OUT/model.npz (the
    chosen checkpoint), OUT/trials.csv and OUT/pareto.png. Deterministic for a seed on any
    cluster; finished trials are cached in OUT/trials/ and a re-run skips them.
    """
    import numpy as np

    from edgecompile.files import write_atomic
    from edgecompile.fit import costmodel
    from edgecompile.fit.plot import pareto_png
    from edgecompile.fit.search import VAL_FRACTION, Limits, cluster_client, data_digest, open_fit_dir, search
    from edgecompile.fit.space import Space
    from edgecompile.fit.trial import TrialData
    from edgecompile.targets.boards import get_board
    from edgecompile.train import load_training_data
    from edgecompile.train.trainer import stratified_split

    err = human_to_stderr(json_path)
    profile = get_board(board)
    cost = costmodel.for_board(profile.id)
    limits = Limits(profile, max_ms_per_step)
    limits.max_cycles()
    known = supported_cells()
    chosen_cells = known if cells is None else tuple(c.strip() for c in cells.split(",") if c.strip())
    bad = [c for c in chosen_cells if c not in known]
    if bad or not chosen_cells:
        raise DataError(f"--cells {cells!r}: expected a comma-separated list of {', '.join(known)}")
    if workers is not None and scheduler is not None:
        raise DataError("give at most one of --workers and --scheduler")
    td = load_training_data(data, labels)
    train_idx, val_idx = stratified_split(td.y, VAL_FRACTION, np.random.default_rng(seed))
    if val_idx.size == 0:
        raise DataError(f"{data}: too few sequences per class for a validation split")
    lengths = None if td.lengths is None else td.lengths[train_idx]
    tdata = TrialData(td.X[train_idx], td.y[train_idx], lengths, td.X[val_idx], td.y[val_idx])
    space = Space(cells=tuple(dict.fromkeys(chosen_cells)),
                  bits=(8, 16) if bits == "auto" else (int(bits),), inputs=int(td.X.shape[2]))
    out_dir = Path(out)
    open_fit_dir(out_dir)
    if not quiet:
        where = scheduler or f"a local Dask cluster of {workers or 'one process per core'}"
        click.echo(f"fit: {trials} trials for {profile.id} on {where}; {train_idx.size} training, "
                   f"{val_idx.size} validation sequences", err=True)
    with reporter("fit", enabled=not quiet) as progress, cluster_client(workers, scheduler) as client:
        outcome = search(client, out_dir, space, tdata, data_digest(td.X, td.y), seed=seed,
                         trials=trials, epochs=epochs, cost=cost, limits=limits, progress=progress)
    csv_bytes = _csv(outcome.records)
    write_atomic(out_dir / "trials.csv", lambda fh: fh.write(csv_bytes))
    png = pareto_png(outcome.records, outcome.pareto, outcome.chosen, limits)
    write_atomic(out_dir / "pareto.png", lambda fh: fh.write(png))
    chosen = outcome.chosen
    report = {"board": profile.id, "chosen": None if chosen is None else _public(chosen),
              "pareto": [_public(r) for r in outcome.pareto], "trials": len(outcome.records),
              "trained": outcome.ran, "cached": outcome.cached, "seed": seed, "epochs": epochs,
              "max_ms_per_step": max_ms_per_step,
              "model": None if chosen is None else str(out_dir / "model.npz")}
    if chosen is None:
        write_json(json_path, report)
        raise BoardError(_no_fit(outcome.records, limits))
    ckpt = outcome.checkpoints[chosen["key"]].read_bytes()
    write_atomic(out_dir / "model.npz", lambda fh: fh.write(ckpt))
    write_json(json_path, report)
    ms = "" if chosen["ms_per_step"] is None else f", {chosen['ms_per_step']:.3g} ms/step"
    click.echo(f"wrote {out_dir / 'model.npz'}: {_describe(chosen)}, validation accuracy "
               f"{chosen['accuracy_val']:.1%}, predicted flash {chosen['flash_bytes']} B, RAM "
               f"{chosen['ram_bytes']} B, {chosen['cycles_per_step']:.0f} cycles/step{ms} "
               f"({outcome.ran} trained, {outcome.cached} cached)", err=err)


def _describe(rec: dict[str, Any]) -> str:
    from edgecompile.fit.search import candidate_of

    return candidate_of(rec).text()


def _no_fit(records: list[dict[str, Any]], limits: Limits) -> str:
    done = [r for r in records if r.get("flash_bytes") is not None]
    b = limits.board
    lat = "" if limits.max_ms_per_step is None else f", {limits.max_ms_per_step:g} ms/step"
    budget = f"{b.flash_bytes} B flash, {b.ram_bytes} B RAM ({b.stack_reserve_bytes} B of it stack){lat}"
    if not done:
        return f"no trial finished, so no model fits board '{b.id}' ({budget})"
    small = min(done, key=lambda r: (r["flash_bytes"], r["cycles_per_step"], r["key"]))
    ms = "" if small["ms_per_step"] is None else f", {small['ms_per_step']:.3g} ms/step"
    return (f"none of the {len(records)} models tried fits board '{b.id}' ({budget}); the smallest "
            f"tried, {_describe(small)}, needs {small['flash_bytes']} B flash, {small['ram_bytes']} "
            f"B RAM{ms}")
