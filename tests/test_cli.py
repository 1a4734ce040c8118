"""The command line through the INSTALLED console script (as users and scripts call it).

Every malformed input: exactly one line on stderr, no traceback, exit status 2, nothing written.
Expected numbers are computed here from the raw arrays, never taken from the code under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecompile.cli import main
from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.reference import forward
from tests.helpers.models import make_arrays

EXE = Path(sys.executable).parent / "edgecompile"
D, H, C, T = 4, 6, 3, 5


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


def grnn(**kw) -> dict[str, np.ndarray]:
    return make_arrays("FastGRNN", D=D, H=H, C=C, T=T, seed=11, **kw)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as fh:  # exactly this name (np.savez would append .npz)
        np.savez(fh, **arrays)
    return path


def save_dir(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.mkdir()
    for k, v in arrays.items():
        np.save(path / f"{k}.npy", v)
    return path


def _drop(a: dict, key: str) -> dict:
    return {k: v for k, v in a.items() if k != key}


# Each case builds its files in a directory and returns the command line and the regex that the
# single stderr line must match (key, found shape, expected shape where it is a shape problem).
def case_missing_key(d: Path):
    return ["predict", save_npz(d / "m.npz", _drop(grnn(), "FCbias"))], r"m\.npz: missing key 'FCbias'"


def case_unknown_key(d: Path):
    return ["predict", save_npz(d / "m.npz", dict(grnn(), extra=np.ones(3)))], r"unknown key 'extra'"


def case_w_and_low_rank(d: Path):
    a = dict(grnn(), W1=np.ones((D, 2), np.float32), W2=np.ones((2, H), np.float32))
    return ["predict", save_npz(d / "m.npz", a)], r"both W and W1/W2 given"


def case_shape_u(d: Path):
    a = dict(grnn(urank=2), U2=np.ones((2, H + 1), np.float32))
    return ["predict", save_npz(d / "m.npz", a)], rf"U2 has shape \[2,{H + 1}\], expected \[2,{H}\]"


def case_shape_bias(d: Path):
    return (["predict", save_dir(d / "m", dict(grnn(), Bg=np.ones((2, H), np.float32)))],
            rf"Bg has shape \[2,{H}\], expected \[{H}\] or \[1,{H}\]")


def case_shape_mean(d: Path):
    a = dict(grnn(), mean=np.zeros(D + 1, np.float32), std=np.ones(D + 1, np.float32))
    return ["predict", save_npz(d / "m.npz", a)], rf"mean has shape \[{D + 1}\], expected \[{D}\] or \[T\*{D}\]"


def case_nan(d: Path):
    a = grnn()
    a["W"][1, 2] = np.nan
    return ["predict", save_npz(d / "m.npz", a)], r"W contains NaN or Inf"


def case_inf(d: Path):
    return ["predict", save_dir(d / "m", dict(grnn(), nu=np.array(np.inf, np.float32)))], r"nu contains NaN or Inf"


def case_empty(d: Path):
    return ["predict", save_npz(d / "m.npz", dict(grnn(), FC=np.zeros((H, 0), np.float32)))], \
        rf"FC is empty \(shape \[{H},0\]\)"


def case_string_w(d: Path):
    return ["predict", save_npz(d / "m.npz", dict(grnn(), W=np.full((D, H), "x")))], \
        r"W has dtype <U1, expected a float array"


def case_bool_u(d: Path):
    return ["predict", save_dir(d / "m", dict(grnn(), U=np.ones((H, H), bool)))], \
        r"U has dtype bool, expected a float array"


def case_not_zip(d: Path):
    (d / "m.npz").write_text("W,U\n1,2\n")
    return ["predict", d / "m.npz"], r"m\.npz: not a \.npz checkpoint"


def case_truncated(d: Path):
    blob = save_npz(d / "full.npz", grnn()).read_bytes()
    (d / "full.npz").unlink()
    (d / "m.npz").write_bytes(blob[: len(blob) * 2 // 3])
    return ["predict", d / "m.npz"], r"m\.npz: not a \.npz checkpoint \(not a zip archive, or truncated\)"


def case_corrupt_member(d: Path):
    blob = bytearray(save_npz(d / "full.npz", grnn()).read_bytes())
    (d / "full.npz").unlink()
    blob[60:90] = b"\x00" * 30  # inside the first member's data: the central directory survives
    (d / "m.npz").write_bytes(bytes(blob))
    return ["predict", d / "m.npz"], r"m\.npz: unreadable \.npz"


def case_missing_file(d: Path):
    return ["predict", d / "nothing.npz"], r"nothing\.npz: no such file or directory"


def case_unreadable_member(d: Path):
    m = save_dir(d / "m", _drop(grnn(), "U"))
    (m / "U.npy").mkdir()  # a directory where the U.npy file should be
    return ["predict", m], r"U\.npy: not a regular file \(directory\)"


def case_dangling_link(d: Path):
    m = save_dir(d / "m", _drop(grnn(), "FC"))
    (m / "FC.npy").symlink_to(d / "gone.npy")
    return ["predict", m], r"FC\.npy: dangling symlink"


def case_permission(d: Path):
    m = save_npz(d / "m.npz", grnn())
    m.chmod(0)
    return ["predict", m], r"m\.npz: cannot read \(Permission denied\)"


def case_data_d(d: Path):
    np.save(d / "X.npy", np.zeros((2, T, D + 1), np.float32))
    return ["predict", save_npz(d / "m.npz", grnn())], rf"X\.npy: D={D + 1} but the model takes D={D}"


def case_data_t(d: Path):
    np.save(d / "X.npy", np.zeros((2, T + 1, D), np.float32))
    return ["predict", save_npz(d / "m.npz", grnn(norm="TD"))], rf"T={T + 1} but the model's mean/std cover T={T}"


def case_data_nan(d: Path):
    X = np.zeros((2, T, D))
    X[1, 2, 3] = np.nan
    np.save(d / "X.npy", X)
    return ["predict", save_npz(d / "m.npz", grnn())], r"X\.npy: contains NaN or Inf"


def case_data_strings(d: Path):
    np.save(d / "X.npy", np.full((2, T, D), "a"))
    return ["predict", save_npz(d / "m.npz", grnn())], r"X\.npy: dtype <U1, expected float sequences"


def case_out_unwritable(d: Path):
    return (["predict", save_npz(d / "m.npz", grnn()), "--out", d / "no" / "dir" / "logits.npy"],
            r"logits\.npy: cannot write \(no such directory: .*no/dir\)")


def case_labels_out_of_range(d: Path):
    np.save(d / "y.npy", np.array([0, C]))
    return (["evaluate", save_npz(d / "m.npz", grnn()), "--bits", "float", "--labels", d / "y.npy",
             "--json", d / "report.json"], rf"y\.npy: labels must lie in \[0, {C - 1}\]")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_one_line_exit_2_nothing_written(name: str, tmp_path: Path) -> None:
    if name == "permission" and os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    np.save(tmp_path / "X.npy", np.zeros((2, T, D), np.float32))
    args, pattern = CASES[name](tmp_path)
    if args[0] == "predict":
        args += ["--data", tmp_path / "X.npy"] + ([] if "--out" in args else ["--out", tmp_path / "logits.npy"])
    if args[0] == "evaluate":
        args += ["--data", tmp_path / "X.npy"]
    before = snapshot(tmp_path)
    result = run(*args, cwd=tmp_path)
    if name == "permission":
        (tmp_path / "m.npz").chmod(0o644)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecompile: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert snapshot(tmp_path) == before  # nothing written, not even a temporary file


def test_debug_shows_a_traceback(tmp_path: Path) -> None:
    np.save(tmp_path / "X.npy", np.zeros((2, T, D), np.float32))
    model = save_npz(tmp_path / "m.npz", _drop(grnn(), "FC"))
    result = run("--debug", "predict", model, "--data", "X.npy", "--out", "l.npy", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "CheckpointError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("edgecompile: error: ")
    assert not (tmp_path / "l.npy").exists()


def test_predict_writes_float_logits_to_exactly_the_given_path(tmp_path: Path) -> None:
    a = grnn(wrank=2, norm="TD")
    model = save_dir(tmp_path / "m", a)
    X = np.random.default_rng(5).normal(0.0, 3.0, (7, T, D)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "one.npy", X[3])  # a single [T, D] sequence
    for data, out, n in (("X.npy", "logits", 7), ("one.npy", "one_logits.npy", 1)):
        result = run("predict", model, "--data", data, "--bits", "float", "--out", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        logits = np.load(tmp_path / out)  # no ".npy" appended to "logits"
        assert logits.shape == (n, C) and logits.dtype == np.float64
        expected = forward(model_from_arrays(a), X if n == 7 else X[3:4].astype(np.float64))
        np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.npy", "logits", "m", "one.npy", "one_logits.npy"]


def expected_inspect(a: dict[str, np.ndarray]) -> dict:
    """The inspect numbers, from the raw arrays and README's definitions."""
    matrices = {"W": [k for k in ("W", "W1", "W2") if k in a], "U": [k for k in ("U", "U1", "U2") if k in a]}
    weight_keys = matrices["W"] + matrices["U"] + ["FC"]
    param_keys = [k for k in a if k not in ("mean", "std", "gate_nonlinearity", "update_nonlinearity")]
    params = sum(a[k].size for k in param_keys)
    weights = sum(a[k].size for k in weight_keys)
    return {
        "cell": "FastRNN" if "B" in a else "FastGRNN",
        "input_dim": a[matrices["W"][0]].shape[0],
        "hidden_dim": a["FC"].shape[0],
        "num_classes": a["FC"].shape[1],
        "ranks": {m: (a[ks[0]].shape[1] if len(ks) == 2 else None) for m, ks in matrices.items()},
        "nonzeros": {m: sum(int(np.count_nonzero(a[k])) for k in ks) for m, ks in matrices.items()}
        | {"FC": int(np.count_nonzero(a["FC"]))},
        "params": params,
        "bytes": {"float32": 4 * params, "int16": 2 * params, "int8": weights + 2 * (params - weights)},
        "macs_per_step": sum(a[k].shape[0] * a[k].shape[1] for k in matrices["W"] + matrices["U"]),
    }


@pytest.mark.parametrize(
    "arrays",
    [
        make_arrays("FastGRNN", D=6, H=16, C=4, wrank=3, urank=4, sparsity=0.5, T=9, norm="TD", seed=2),
        make_arrays("FastRNN", D=5, H=7, C=2, wrank=None, urank=2, sparsity=0.25, norm=None,
                    update_nl="quantTanh", seed=4),
    ],
    ids=["grnn-lowrank-sparse", "rnn-full-W"],
)
def test_inspect_text_and_json(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    want = expected_inspect(arrays)
    model = save_npz(tmp_path / "m.npz", arrays)
    result = run("inspect", model, "--json", "report.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("cell", "input_dim", "hidden_dim", "num_classes", "params", "bytes", "macs_per_step"):
        assert report[key] == want[key], key
    for m in ("W", "U"):
        assert report["matrices"][m]["rank"] == want["ranks"][m]
    for m in ("W", "U", "FC"):
        assert report["matrices"][m]["nonzeros"] == want["nonzeros"][m]
    assert re.fullmatch(r"[0-9a-f]{64}", report["model_sha256"])

    text = result.stdout
    header = f"{want['cell']}  D={want['input_dim']}  H={want['hidden_dim']}  C={want['num_classes']}"
    assert text.splitlines()[0].startswith(header)
    for m in ("W", "U"):
        rank = want["ranks"][m] or "full"
        assert re.search(rf"^{m}\s+\S+\s+{rank}\s+\d+\s+{want['nonzeros'][m]}\s", text, re.M), text
    b = want["bytes"]
    assert f"parameters: {want['params']}" in text
    assert f"float32 {b['float32']}, int16 {b['int16']}, int8 {b['int8']}" in text
    assert f"MACs per step: {want['macs_per_step']}" in text
    assert f"model sha256: {report['model_sha256']}" in text


CONTRACT = ["inspect", "predict", "evaluate", "export", "build", "flash", "verify", "train", "boards"]


@pytest.mark.parametrize("command", CONTRACT)
def test_every_contract_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {command} ")
