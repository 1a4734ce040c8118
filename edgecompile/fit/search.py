"""The search: batches of trials on a Dask cluster, cached in the fit directory, then the choice.

A fit directory holds ``fit-dir.json`` (what makes it one), ``trials/<key>.json`` and
``trials/<key>.npz`` (one finished trial and its checkpoint, ``key`` a hash of the candidate,
the data, the seed and the training length), and the outputs ``model.npz``, ``trials.csv`` and
``pareto.png``. Re-running on the same directory skips every cached trial. The costs are
predicted from each trial's stored features with the current cost model, so refitting the cost
model does not retrain anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.errors import CodegenError, DataError
from edgecompile.files import write_atomic
from edgecompile.fit.costmodel import STORED_FEATURES, BoardCostModel
from edgecompile.fit.space import Candidate, Space, next_batch
from edgecompile.fit.trial import TrialData, run_trial
from edgecompile.targets.boards import BoardProfile
from edgecompile.targets.budget import BudgetReport

MARKER = "fit-dir.json"
FORMAT = "edgecompile-fit"
FORMAT_VERSION = 1
#: Fraction of each class held out for validation (a split drawn from the search seed).
VAL_FRACTION = 0.25

ProgressFn = Callable[[int, int, str], None]
#: The feature names a cached trial must hold (those the cost model's terms read, less those
#: that :meth:`BoardCostModel.terms` derives).
FEATURES = STORED_FEATURES


@dataclass
class Limits:
    board: BoardProfile
    max_ms_per_step: float | None

    def max_cycles(self) -> float | None:
        if self.max_ms_per_step is None:
            return None
        if not self.board.f_cpu_hz:
            raise DataError(f"board '{self.board.id}' has no clock rate: --max-ms-per-step "
                            "cannot be converted to cycles")
        return self.max_ms_per_step * 1e-3 * self.board.f_cpu_hz

    def budget(self, flash: int, ram: int) -> BudgetReport:
        b = self.board
        return BudgetReport(b.id, "estimate", flash, b.flash_bytes, ram, b.ram_bytes,
                            b.stack_reserve_bytes)


@dataclass
class Outcome:
    records: list[dict[str, Any]]  # every trial, in proposal order, costs filled in
    chosen: dict[str, Any] | None
    pareto: list[dict[str, Any]]
    ran: int  # trials trained by this run (the others came from the cache)
    cached: int
    checkpoints: dict[str, Path] = field(default_factory=dict)


# ---------------------------------------------------------------------------- fit directory

def open_fit_dir(path: Path) -> None:
    """Create ``path`` as a fit directory, or accept an existing one; refuse anything else."""
    if path.exists() and not path.is_dir():
        raise CodegenError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        marker = path / MARKER
        try:
            ok = json.loads(marker.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise CodegenError(f"{path}: a non-empty directory that is not a fit directory "
                               f"(no {MARKER}); give an empty or new directory")
    (path / "trials").mkdir(parents=True, exist_ok=True)
    if not (path / MARKER).is_file():
        text = json.dumps({"format": FORMAT, "version": FORMAT_VERSION}, indent=2) + "\n"
        write_atomic(path / MARKER, lambda fh: fh.write(text.encode()))


def data_digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(X, dtype="<f8"), np.ascontiguousarray(y, dtype="<i8")):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def trial_key(cand: Candidate, digest: str, seed: int, epochs: int, profile: str = "precise") -> str:
    """The cache key of a trial; ``profile`` is what its quantizer was asked for (only another
    than precise enters the text, so that a precise trial keeps its key)."""
    text = f"{cand.canonical()}|{digest}|{seed}|{epochs}|{VAL_FRACTION}|{FORMAT_VERSION}"
    if profile != "precise":
        text += f"|{profile}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _load_cached(trials: Path, key: str) -> dict[str, Any] | None:
    """A finished trial's record, or None: missing, unreadable, without its checkpoint, or with
    features from an older cost model that lacks some the current one needs (trained again)."""
    try:
        rec = json.loads((trials / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict):
        return None
    if rec.get("error") is None and not (trials / f"{key}.npz").is_file():
        return None
    feats = rec.get("features")
    if rec.get("error") is None and (not isinstance(feats, dict) or not FEATURES <= feats.keys()):
        return None
    return rec


def _store(trials: Path, key: str, record: dict[str, Any], ckpt: bytes | None) -> None:
    if ckpt is not None:  # the checkpoint first: a record on disk always has its model
        write_atomic(trials / f"{key}.npz", lambda fh: fh.write(ckpt))
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_atomic(trials / f"{key}.json", lambda fh: fh.write(text.encode()))


# ---------------------------------------------------------------------------- costs and choice

def add_costs(rec: dict[str, Any], cost: BoardCostModel, limits: Limits) -> dict[str, Any]:
    rec = dict(rec)
    rec.setdefault("inner_steps", 0)
    rec.setdefault("profile", None)
    if rec.get("features") is None:
        rec.update(flash_bytes=None, ram_bytes=None, cycles_per_step=None, ms_per_step=None,
                   fits=False)
        return rec
    c = cost.predict(rec["features"])
    hz = limits.board.f_cpu_hz
    max_cycles = limits.max_cycles()
    budget = limits.budget(c.flash_bytes, c.ram_bytes)
    rec.update(flash_bytes=c.flash_bytes, ram_bytes=c.ram_bytes, cycles_per_step=c.cycles_per_step,
               ms_per_step=None if not hz else round(1e3 * c.cycles_per_step / hz, 4),
               fits_flash=budget.flash_ok, fits_ram=budget.ram_ok,
               fits_latency=max_cycles is None or c.cycles_per_step <= max_cycles)
    rec["fits"] = bool(rec["fits_flash"] and rec["fits_ram"] and rec["fits_latency"])
    return rec


def _rank(rec: dict[str, Any]) -> tuple:
    """Best first: accuracy, then less flash, fewer cycles, then the configuration."""
    return (-rec["accuracy_val"], rec["flash_bytes"], rec["cycles_per_step"], candidate_of(rec))


def choose(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    fitting = [r for r in records if r.get("fits")]
    return min(fitting, key=_rank) if fitting else None


def pareto_front(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials no other trial beats on accuracy, flash and cycles at once (best accuracy first)."""
    ok = [r for r in records if r.get("accuracy_val") is not None]
    front = []
    for r in ok:
        dominated = any(
            o["accuracy_val"] >= r["accuracy_val"] and o["flash_bytes"] <= r["flash_bytes"]
            and o["cycles_per_step"] <= r["cycles_per_step"]
            and (o["accuracy_val"], -o["flash_bytes"], -o["cycles_per_step"])
            != (r["accuracy_val"], -r["flash_bytes"], -r["cycles_per_step"])
            for o in ok)
        if not dominated:
            front.append(r)
    return sorted(front, key=_rank)


# ---------------------------------------------------------------------------- cluster

@contextlib.contextmanager
def cluster_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: on ``scheduler`` (an existing cluster, left running), or on a new
    LocalCluster of ``workers`` single-threaded processes, closed on the way out (Ctrl-C too)."""
    from dask.distributed import Client, LocalCluster

    # After Ctrl-C the command ends without the interpreter's shutdown, and multiprocessing's
    # resource tracker (a child process started with these -W options) would then print a
    # warning about the cluster's semaphores after the one-line message.
    quiet_tracker = "ignore::UserWarning:multiprocessing.resource_tracker"
    if quiet_tracker not in sys.warnoptions:
        sys.warnoptions.append(quiet_tracker)
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise DataError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    else:
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.CRITICAL)
        client = Client(cluster)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=2)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=3)


# ---------------------------------------------------------------------------- search

def search(client: Any, out_dir: Path, space: Space, data: TrialData, digest: str, *, seed: int,
           trials: int, epochs: int, cost: BoardCostModel, limits: Limits,
           progress: ProgressFn | None = None) -> Outcome:
    """Run ``trials`` candidates in batches on ``client`` (cached ones skipped), each quantized
    as ``export`` does by default (``--profile auto``: fast, unless the calibration data shows it
    changing an argmax that precise gets right); see the module doc."""
    from dask.distributed import as_completed

    store = out_dir / "trials"
    proposed: list[Candidate] = []
    records: dict[Candidate, dict[str, Any]] = {}
    keys: dict[Candidate, str] = {}
    ran = cached = 0
    scattered = None
    batch = 0
    while len(proposed) < trials:
        elite = sorted((r for r in records.values() if r.get("fits")), key=_rank)
        new = next_batch(space, seed, batch, proposed,
                         [candidate_of(r) for r in elite],
                         trials - len(proposed))
        batch += 1
        if not new:
            break
        proposed += new
        todo = []
        for c in new:
            keys[c] = trial_key(c, digest, seed, epochs, "auto")
            rec = _load_cached(store, keys[c])
            if rec is not None:
                records[c] = add_costs(rec, cost, limits)
                cached += 1
            else:
                todo.append(c)
        if progress:
            progress(len(records), trials, f"trials: {_best_text(records)}")
        if not todo:
            continue
        if scattered is None:
            scattered = client.scatter(data, broadcast=True)
        futures = {client.submit(run_trial, c, scattered, epochs, seed, "auto",
                                 key=f"fit-{keys[c]}", pure=False): c
                   for c in todo}
        try:
            for fut in as_completed(list(futures)):
                c = futures[fut]
                rec, ckpt = fut.result()
                rec["key"] = keys[c]
                _store(store, keys[c], rec, ckpt)
                records[c] = add_costs(rec, cost, limits)
                ran += 1
                if progress:
                    progress(len(records), trials, f"trials: {_best_text(records)}")
        finally:
            unfinished = [f for f in futures if not f.done()]
            if unfinished:
                with contextlib.suppress(Exception):
                    client.cancel(unfinished)
    ordered = []
    for c in proposed:
        rec = dict(records[c])
        rec["key"] = keys[c]
        ordered.append(rec)
    checkpoints = {keys[c]: store / f"{keys[c]}.npz" for c in proposed}
    return Outcome(ordered, choose(ordered), pareto_front(ordered), ran, cached, checkpoints)


def _best_text(records: dict[Candidate, dict[str, Any]]) -> str:
    best = choose(list(records.values()))
    if best is None:
        return "none fits yet"
    return f"best fitting {best['accuracy_val']:.1%} ({candidate_of(best).text()})"


def candidate_of(rec: dict[str, Any]) -> Candidate:
    """The candidate of a trial record (one cached without ``inner_steps`` has none)."""
    return Candidate(**{k: rec.get(k, 0) if k == "inner_steps" else rec[k]
                        for k in Candidate.__dataclass_fields__})
