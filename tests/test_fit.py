"""``edgecompile fit``: a real Dask search through the console script, on a LocalCluster and on
a scheduler and workers started with the dask CLI; resume, refusals, Ctrl-C, and the chosen
model built with PlatformIO against its predicted flash and RAM."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EC = str(BIN / "edgecompile")
DASK = str(BIN / "dask")
JV = ROOT / "examples" / "japanese_vowels" / "JapaneseVowels_TRAIN.ts"
FAST = ["--epochs", "2", "--seed", "3", "--quiet"]
TRIALS = 6


def run(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([EC, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """A slice of the Japanese Vowels training set: 72 sequences, 8 steps."""
    from edgecompile.train import load_training_data

    td = load_training_data(JV, length=8)
    keep = np.concatenate([np.flatnonzero(td.y == c)[:8] for c in range(9)])
    d = tmp_path_factory.mktemp("fitdata")
    np.save(d / "X.npy", td.X[keep])
    np.save(d / "y.npy", td.y[keep])
    return d / "X.npy", d / "y.npy"


def fit_args(data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["fit", "--data", str(data[0]), "--labels", str(data[1]), "--board", "uno",
            "--trials", str(TRIALS), *FAST, "-o", str(out), *extra]


@pytest.fixture(scope="module")
def local_run(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fitlocal") / "fit"
    res = run(*fit_args(data, out, "--workers", "2", "--json", str(out.parent / "a.json")))
    assert res.returncode == 0, res.stderr
    return out, json.loads((out.parent / "a.json").read_text())


def _trials_table(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("seconds")
    return rows


@pytest.mark.slow
def test_local_cluster_run_writes_outputs(local_run) -> None:
    out, rep = local_run
    assert rep["trials"] == TRIALS and rep["trained"] == TRIALS and rep["cached"] == 0
    chosen = rep["chosen"]
    assert set(chosen) >= {"hidden", "wrank", "urank", "sparsity", "cell", "bits", "accuracy_val",
                           "flash_bytes", "ram_bytes", "cycles_per_step"}
    rows = _trials_table(out)
    assert len(rows) == TRIALS
    fitting = [r for r in rows if r["fits"] == "True"]
    assert float(chosen["accuracy_val"]) == max(float(r["accuracy_val"]) for r in fitting)
    assert chosen in rep["pareto"] or any(p["accuracy_val"] >= chosen["accuracy_val"] for p in rep["pareto"])
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "trials").glob("*.json"))) == TRIALS
    # model.npz is a normal checkpoint of the chosen configuration
    res = run("inspect", str(out / "model.npz"), "--bits", "float", "--json", "-")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["hidden_dim"] == chosen["hidden"] and info["cell"] == chosen["cell"]


@pytest.mark.slow
def test_resume_skips_cached_trials(local_run, data, tmp_path) -> None:
    out, rep = local_run
    again = tmp_path / "again"
    shutil.copytree(out, again)
    res = run(*fit_args(data, again, "--json", "-", "--workers", "1"))
    assert res.returncode == 0, res.stderr
    second = json.loads(res.stdout)
    assert second["trained"] == 0 and second["cached"] == TRIALS
    assert second["chosen"] == rep["chosen"]
    # two more trials: the first six are the same candidates, so only two train
    args = fit_args(data, again, "--json", "-", "--workers", "1")
    args[args.index("--trials") + 1] = str(TRIALS + 2)
    third = json.loads(run(*args).stdout)
    assert third["trials"] == TRIALS + 2 and third["trained"] == 2 and third["cached"] == TRIALS


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
def test_dask_cli_cluster_chooses_the_same_model(local_run, data, tmp_path) -> None:
    out, rep = local_run
    sched_file = tmp_path / "scheduler.json"
    sched = subprocess.Popen([DASK, "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                              str(sched_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not sched_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        worker = subprocess.Popen([DASK, "worker", address, "--nworkers", "3", "--nthreads", "1",
                                   "--no-dashboard"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        remote = tmp_path / "remote"
        res = run(*fit_args(data, remote, "--scheduler", address, "--json", "-"))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["chosen"] == rep["chosen"]
        assert _trials_table(remote) == _trials_table(out)
    finally:
        if worker is not None:
            _kill_group(worker)
        _kill_group(sched)


@pytest.mark.slow
def test_chosen_model_builds_within_the_predicted_size(local_run, data, tmp_path) -> None:
    from edgecompile.fit import costmodel

    out, rep = local_run
    fw = tmp_path / "fw"
    res = run("export", str(out / "model.npz"), "--board", "uno", "--calib", str(data[0]),
              "--bits", str(rep["chosen"]["bits"]), "-o", str(fw))
    assert res.returncode == 0, res.stderr
    res = run("build", str(fw), "--json", str(tmp_path / "b.json"))
    assert res.returncode == 0, res.stderr
    linked = json.loads((tmp_path / "b.json").read_text())["linked"]
    assert linked["ok"]
    err = costmodel.for_board("uno").errors
    for key, target in (("flash_bytes", "flash"), ("ram_bytes", "ram")):
        predicted = rep["chosen"][key]
        measured = linked["flash_used" if target == "flash" else "ram_used"]
        assert abs(predicted - measured) / measured <= max(err[target], 0.10), (key, predicted, measured)


@pytest.mark.slow
def test_default_search_includes_every_deployable_cell(local_run) -> None:
    from edgecompile.ir.model import DEPLOYABLE_CELLS

    out, _ = local_run
    rows = _trials_table(out)
    assert "ERNN" in DEPLOYABLE_CELLS and {r["cell"] for r in rows} == set(DEPLOYABLE_CELLS), rows
    for r in rows:
        if r["cell"] == "ERNN":  # searched with 1 or 2 inner steps, in its only profile
            assert r["inner_steps"] in ("1", "2") and r["profile"] == "fast", r
        else:  # the Uno's export: fast, or precise when fast changes an argmax on calibration
            assert r["inner_steps"] == "" and r["profile"] in ("fast", "precise"), r
        assert r["error"] == "" and float(r["accuracy_val"]) >= 0.0, r


def _build_and_run(model: Path, board: str, bits: str, calib: Path, work: Path) -> dict[str, float]:
    """Flash and RAM as ``build`` links them, cycles per step as ``verify --emulate`` measures."""
    fw = work / f"fw-{board}"
    res = run("export", str(model), "--board", board, "--calib", str(calib), "--bits", bits, "-o", str(fw))
    assert res.returncode == 0, res.stderr
    res = run("build", str(fw), "--json", str(work / f"b-{board}.json"))
    assert res.returncode == 0, res.stderr
    x = work / "x2.npy"
    np.save(x, np.load(calib)[:2])
    res = run("verify", str(fw), "--emulate", "--data", str(x), "--json", str(work / f"v-{board}.json"))
    assert res.returncode == 0, res.stderr
    linked = json.loads((work / f"b-{board}.json").read_text())["linked"]
    verify = json.loads((work / f"v-{board}.json").read_text())
    assert linked["ok"] and verify["mismatched"] == []
    return {"flash": linked["flash_used"], "ram": linked["ram_used"], "cycles": verify["cycles_per_step"]}


@pytest.mark.slow
def test_ernn_trial_builds_and_runs_within_the_predicted_costs(local_run, data, tmp_path) -> None:
    """An ERNN the search trained, built and run on the emulated Uno and micro:bit against the
    cost model's prediction from the trial's stored features (ERNN's one profile on both)."""
    from edgecompile.fit import costmodel

    out, _ = local_run
    rows = {r["key"]: r for r in _trials_table(out)}
    ernn = sorted(k for k, r in rows.items() if r["cell"] == "ERNN")
    assert ernn, "the search tried no ERNN"
    key = ernn[0]
    record = json.loads((out / "trials" / f"{key}.json").read_text())
    assert record["profile"] == "fast" and record["inner_steps"] in (1, 2)
    for board in ("uno", "microbit"):
        model = costmodel.for_board(board)
        predicted = model.predict(record["features"])
        if board == "uno":  # what the search reported is this very prediction
            assert int(rows[key]["flash_bytes"]) == predicted.flash_bytes
        measured = _build_and_run(out / "trials" / f"{key}.npz", board, rows[key]["bits"], data[0], tmp_path)
        for target, value, limit in (("flash", predicted.flash_bytes, 0.10), ("ram", predicted.ram_bytes, 0.10),
                                     ("cycles", predicted.cycles_per_step, 0.15)):
            err = abs(value - measured[target]) / measured[target]
            assert err <= max(model.errors[target], limit), (board, target, value, measured[target])


@pytest.mark.slow
def test_no_model_fits_names_the_smallest(local_run, data, tmp_path) -> None:
    out, _ = local_run
    tight = tmp_path / "tight"
    shutil.copytree(out, tight)
    (tight / "model.npz").unlink()
    res = run(*fit_args(data, tight, "--max-ms-per-step", "0.001"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error: ")
    assert "smallest tried" in lines[0] and "0.001 ms/step" in lines[0]
    rows = _trials_table(tight)
    smallest = min(rows, key=lambda r: int(r["flash_bytes"]))
    assert f"needs {smallest['flash_bytes']} B flash" in lines[0]
    assert not (tight / "model.npz").exists()


def test_refuses_a_foreign_directory_and_unknown_boards(data, tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    res = run(*fit_args(data, mine))
    assert res.returncode == 2 and "not a fit directory" in res.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    args = fit_args(data, tmp_path / "x")
    args[args.index("--board") + 1] = "nucleo_f401re"
    res = run(*args)
    assert res.returncode == 2 and "no fitted cost model" in res.stderr and "uno" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    args = fit_args(data, tmp_path / "y", "--cells", "LSTM")
    res = run(*args)
    assert res.returncode == 2 and "FastGRNN" in res.stderr and "FastRNN" in res.stderr
    assert "ERNN" in res.stderr


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_stops_the_cluster_and_keeps_finished_trials(data, tmp_path) -> None:
    out = tmp_path / "interrupted"
    args = fit_args(data, out, "--workers", "2")
    # a search far longer than the wait for its first trials, even on a loaded machine
    args[args.index("--trials") + 1] = "400"
    args[args.index("--epochs") + 1] = "30"
    proc = subprocess.Popen([EC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as in a terminal, even when the tests run in the background
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "trials").glob("*.json"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        family = _descendants(proc.pid)
        assert family, "the local cluster runs worker processes"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        stopped = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert stopped < 8.0
    assert err.strip().splitlines()[-1] == "edgecompile: interrupted"
    time.sleep(1.0)
    assert not [p for p in family if _alive(p)], "dask processes outlived the command"
    kept = list((out / "trials").glob("*.json"))
    assert len(kept) >= 2
    for rec in kept:  # whole records, each with its checkpoint
        assert json.loads(rec.read_text())["accuracy_val"] is not None
        assert rec.with_suffix(".npz").is_file()
    assert not (out / "model.npz").exists()


# ---------------------------------------------------------------------------- properties

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), inputs=st.integers(1, 20), bits=st.sampled_from([(8,), (16,), (8, 16)]),
       cells=st.sampled_from([("FastGRNN", "FastRNN"), ("FastGRNN", "FastRNN", "ERNN"), ("ERNN",)]))
def test_batches_are_deterministic_new_and_in_the_space(seed, inputs, bits, cells) -> None:
    from edgecompile.fit.space import HIDDEN, Space, next_batch

    space = Space(cells, bits, inputs)
    proposed: list = []
    for b in range(3):
        elite = sorted(proposed)[:3]
        batch = next_batch(space, seed, b, proposed, elite, 100)
        assert batch == next_batch(space, seed, b, list(proposed), elite, 100)
        assert not set(batch) & set(proposed) and len(set(batch)) == len(batch)
        for c in batch:
            assert c.hidden in HIDDEN and c.bits in bits and c.wrank < max(inputs, 1) + (c.wrank == 0)
            assert c.urank < c.hidden and (c.wrank == 0 or c.wrank < inputs)
            assert c.cell in cells
            # ERNN takes 1 or 2 inner steps a time step; the other cells none
            assert c.inner_steps in ((1, 2) if c.cell == "ERNN" else (0,)), c
        proposed += batch


def test_inner_steps_enter_an_ernn_configuration_only() -> None:
    from edgecompile.fit.search import trial_key
    from edgecompile.fit.space import Candidate

    k1 = Candidate("ERNN", 16, 0, 4, 0.5, 8, inner_steps=1)
    k2 = Candidate("ERNN", 16, 0, 4, 0.5, 8, inner_steps=2)
    assert json.loads(k1.canonical())["inner_steps"] == 1 and json.loads(k2.canonical())["inner_steps"] == 2
    assert k1.train_seed(0) != k2.train_seed(0)
    assert trial_key(k1, "d", 0, 2) != trial_key(k2, "d", 0, 2)
    assert "K=2" in k2.text() and "K=" not in Candidate("FastRNN", 16, 0, 4, 0.5, 8).text()
    # a FastRNN's configuration is the six coordinates it had before ERNN joined the space
    rnn = Candidate("FastRNN", 16, 0, 4, 0.5, 8)
    assert json.loads(rnn.canonical()) == {"cell": "FastRNN", "hidden": 16, "wrank": 0, "urank": 4,
                                           "sparsity": 0.5, "bits": 8}
    # the fast profile's trial is another trial than the precise one
    assert trial_key(rnn, "d", 0, 2, "auto") != trial_key(rnn, "d", 0, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=12))
def test_pareto_front_is_exactly_the_undominated(points) -> None:
    from edgecompile.fit.search import pareto_front

    recs = [{"key": str(i), "accuracy_val": a / 10, "flash_bytes": f, "cycles_per_step": c, "cell": "FastRNN",
             "hidden": 8, "wrank": 0, "urank": 0, "sparsity": 0.0, "bits": 8}
            for i, (a, f, c) in enumerate(points)]
    front = {r["key"] for r in pareto_front(recs)}
    for r in recs:
        beaten = any(o["accuracy_val"] >= r["accuracy_val"] and o["flash_bytes"] <= r["flash_bytes"]
                     and o["cycles_per_step"] <= r["cycles_per_step"]
                     and (o["accuracy_val"], o["flash_bytes"], o["cycles_per_step"])
                     != (r["accuracy_val"], r["flash_bytes"], r["cycles_per_step"]) for o in recs)
        assert (r["key"] in front) == (not beaten)


#: The limits of the cost model's worst held-out error, per target.
COST_LIMITS = {"flash": 0.10, "ram": 0.10, "cycles": 0.15}


@pytest.mark.parametrize("board,target", [
    *[("uno", t) for t in COST_LIMITS],
    *[("microbit", t) for t in COST_LIMITS],
])
def test_shipped_cost_model_meets_its_accuracy_on_held_out_builds(board: str, target: str) -> None:
    """The held-out measurements stored with the coefficients, predicted again here."""
    from edgecompile.fit import costmodel

    data = json.loads(costmodel.COSTMODEL_PATH.read_text())
    assert set(data["boards"]) == {"uno", "microbit"}
    rec = data["boards"][board]
    model = costmodel.for_board(board)
    held = [s for i, s in enumerate(rec["samples"]) if i % 4 == 3]
    assert len(held) >= 5
    errs = costmodel.relative_errors(model, [s["features"] for s in held], [s["measured"] for s in held])
    assert max(errs[target]) <= COST_LIMITS[target], (board, target, max(errs[target]))


@pytest.mark.parametrize("board", ["uno", "microbit"])
def test_shipped_samples_carry_the_features_of_the_current_cost_model(board: str, tmp_path) -> None:
    """The held-out check above is only worth something if the stored features are the ones the
    cost model computes today: every eighth shipped sample, its checkpoint regenerated from its
    seed and quantized again in the profile its export took, gives the stored features exactly."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fit_costmodel

    from edgecompile.fit import costmodel

    samples = json.loads(costmodel.COSTMODEL_PATH.read_text())["boards"][board]["samples"]
    for sample in samples[::8]:
        again = {k: v for k, v in fit_costmodel.refeature(sample, tmp_path)["features"].items() if v}
        assert again == sample["features"], (board, sample["index"],
                                             {k: (v, sample["features"].get(k)) for k, v in again.items()
                                              if sample["features"].get(k) != v})


def test_straight_code_costs_follow_the_written_multiply_adds() -> None:
    """ARMv6-M straight code (model_mac): nothing for a zero weight, ADDS/SUBS for +-1, a shift
    more for a power of two, MOVS and MULS more otherwise, and a literal load past 255."""
    from edgecompile.fit.costmodel import straight_ops

    assert straight_ops(np.array([[0, 0], [0, 0]])) == 0
    assert straight_ops(np.array([[1, -1]])) == 2
    assert straight_ops(np.array([[2, -64, 128]])) == 6
    assert straight_ops(np.array([[3, -127, 255]])) == 9
    assert straight_ops(np.array([[257, -300, 1024]])) == 4 + 4 + 2


def _quantized_sample(spec: dict, index: int, profile: str):
    """A benchmark sample's checkpoint (regenerated from its seed) quantized in ``profile``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fit_costmodel

    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.quant.quantizer import quantize

    ckpt, X = fit_costmodel.sample_model(spec, index)
    with tempfile.TemporaryDirectory(prefix="ec-sample-") as tmp:
        np.savez(Path(tmp) / "m.npz", **ckpt)
        model = load_checkpoint(Path(tmp) / "m.npz")
    return quantize(model, spec["bits"], calib=X, profile=profile)


@settings(max_examples=20, deadline=None)
@given(inputs=st.integers(2, 20), hidden=st.sampled_from([4, 8, 12, 16]), bits=st.sampled_from([8, 16]),
       cell=st.sampled_from(["FastRNN", "FastGRNN"]), profile=st.sampled_from(["fast", "precise"]))
def test_dense_rows_split_at_eight_inputs_in_both_step_forms(inputs: int, hidden: int, bits: int, cell: str,
                                                             profile: str) -> None:
    """Full dense W and U: every row a dot product of D (W) or H (U) inputs, written out up to 8
    inputs, else a loop of 4 products a turn and a tail of D mod 4. The row-by-row count covers
    both matrices; the ARMv6-M fast step's covers W only (it sums U's rows inside the unit
    loop) and nothing in the precise profile."""
    from edgecompile.fit.costmodel import features

    spec = {"cell": cell, "hidden": hidden, "inputs": inputs, "classes": 3, "steps": 8, "wrank": None,
            "urank": None, "sparsity": 0.0, "bits": bits}
    qm = _quantized_sample(spec, 0, profile)
    f = features(qm, 8)

    def split(n: int, rows: int) -> dict[str, int]:
        short = n <= 8
        return {"rows_short": rows * short, "macs_short": rows * n * short, "rows_long": rows * (not short),
                "macs_long": rows * n * (not short), "tail_long": rows * (n % 4) * (not short)}

    w, u = split(inputs, hidden), split(hidden, hidden)
    assert {k: f[f"dot_{k}"] for k in w} == {k: w[k] + u[k] for k in w}
    fast = profile == "fast"
    m0 = {"m0_rs_rows": w["rows_short"], "m0_rs_macs": w["macs_short"], "m0_rl_rows": w["rows_long"],
          "m0_rl_macs": w["macs_long"], "m0_rl_tail": w["tail_long"]}
    assert {k: f[k] for k in m0} == {k: v * fast for k, v in m0.items()}
    assert (f["m0_u_rows"], f["m0_u_macs"]) == (hidden * fast, hidden * hidden * fast)


@pytest.mark.parametrize("index", range(6))
def test_every_cost_model_feature_is_read_by_some_term_set(index: int) -> None:
    """No feature the cost model computes goes unread: each is a term of some board's set, or
    an indicator or a factor of a split term (benchmark specs of every cell, both profiles)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fit_costmodel

    from edgecompile.fit.costmodel import STORED_FEATURES, features

    rng = np.random.default_rng([index, 11])
    cells = ("ERNN",) if index % 3 == 2 else ("FastGRNN", "FastRNN")
    spec = fit_costmodel.random_spec(rng, cells)
    profile = "fast" if cells == ("ERNN",) or index % 2 else "precise"
    f = features(_quantized_sample(spec, index, profile), spec["steps"])
    assert set(f) - STORED_FEATURES == set(), (spec, profile)
