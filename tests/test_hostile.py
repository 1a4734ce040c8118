"""Hostile inputs through the INSTALLED console script: special files, lying .npy headers,
duplicate npz members, values that overflow, bad environment values, signals, internal errors.

Every refusal: exit status 2 (or the documented one), exactly one line on stderr naming the
problem, no traceback, no numpy warning, nothing written, and no hang (every call has a timeout).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.models import make_arrays

EXE = Path(sys.executable).parent / "edgecompile"
D, H, C, T = 4, 6, 3, 5
TIMEOUT_S = 60
JV = Path(__file__).resolve().parent.parent / "examples" / "japanese_vowels"


def exe() -> str:
    found = str(EXE) if EXE.exists() else shutil.which("edgecompile")
    assert found, "the edgecompile console script is not installed (pip install -e .)"
    return found


def run(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([exe(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env={**os.environ, **(env or {})})


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


def grnn(**kw) -> dict[str, np.ndarray]:
    return make_arrays("FastGRNN", D=D, H=H, C=C, T=T, seed=5, **kw)


def npz_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we mean to write
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, a, allow_pickle=False)
    return buffer.getvalue()


def lying_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """A .npy header that claims ``shape`` followed by no data at all."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def model_npz(d: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    path = d / "m.npz"
    path.write_bytes(npz_bytes([(f"{k}.npy", npy_bytes(v)) for k, v in (arrays or grnn()).items()]))
    return path


def assert_refused(result: subprocess.CompletedProcess, pattern: str, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "Warning" not in result.stderr
    return lines[0]


# ---- special files: refused before they are opened, with what they are -------------------------

def _special(d: Path) -> dict[str, tuple[Path, str]]:
    os.mkfifo(d / "fifo.npy")
    (d / "loop_a.npy").symlink_to(d / "loop_b.npy")
    (d / "loop_b.npy").symlink_to(d / "loop_a.npy")
    (d / "dangling.npy").symlink_to(d / "gone.npy")
    (d / "adir.npy").mkdir()
    return {
        "fifo": (d / "fifo.npy", r"fifo\.npy: not a regular file \(FIFO\)"),
        "dev_zero": (Path("/dev/zero"), r"/dev/zero: not a regular file \(character device\)"),
        "loop": (d / "loop_a.npy", r"loop_a\.npy: symlink loop"),
        "dangling": (d / "dangling.npy", r"dangling\.npy: dangling symlink"),
        "directory": (d / "adir.npy", r"adir\.npy: not a regular file \(directory\)"),
    }


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "loop", "dangling", "directory"])
@pytest.mark.parametrize("role", ["model", "data", "calib", "labels"])
def test_special_files_are_refused_not_read(tmp_path: Path, kind: str, role: str) -> None:
    special, pattern = _special(tmp_path)[kind]
    if kind == "directory" and role == "model":
        pytest.skip("a directory is a valid checkpoint (of .npy files)")
    model = model_npz(tmp_path)
    np.save(tmp_path / "X.npy", np.zeros((2, T, D)))
    np.save(tmp_path / "y.npy", np.zeros(2, np.int64))
    args = {"model": model, "data": tmp_path / "X.npy", "calib": tmp_path / "X.npy",
            "labels": tmp_path / "y.npy", role: special}
    before = snapshot(tmp_path)
    result = run("evaluate", args["model"], "--data", args["data"], "--labels", args["labels"],
                 "--calib", args["calib"], "--json", tmp_path / "r.json", cwd=tmp_path)
    assert_refused(result, pattern)
    assert snapshot(tmp_path) == before


def test_special_members_of_a_checkpoint_directory(tmp_path: Path) -> None:
    for name in ("U", "FC"):
        m = tmp_path / f"m_{name}"
        m.mkdir()
        for k, v in grnn().items():
            if k != name:
                np.save(m / f"{k}.npy", v)
    os.mkfifo(tmp_path / "m_U" / "U.npy")
    (tmp_path / "m_FC" / "FC.npy").symlink_to("/dev/zero")
    assert_refused(run("inspect", tmp_path / "m_U", cwd=tmp_path), r"U\.npy: not a regular file \(FIFO\)")
    assert_refused(run("inspect", tmp_path / "m_FC", cwd=tmp_path),
                   r"FC\.npy: not a regular file \(character device\)")
    assert_refused(run("train", "--data", "/dev/zero", "--labels", "y.npy", "-o", "m.npz", cwd=tmp_path),
                   r"/dev/zero: not a regular file \(character device\)")
    os.mkfifo(tmp_path / "train.ts")
    assert_refused(run("train", "--data", tmp_path / "train.ts", "-o", "m.npz", cwd=tmp_path),
                   r"train\.ts: not a regular file \(FIFO\)")


def test_symlinks_to_regular_files_are_followed(tmp_path: Path) -> None:
    (tmp_path / "link.npz").symlink_to(model_npz(tmp_path))
    np.save(tmp_path / "X.npy", np.zeros((2, T, D)))
    (tmp_path / "Xlink.npy").symlink_to(tmp_path / "X.npy")
    result = run("predict", "link.npz", "--data", "Xlink.npy", "--out", "out.npy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "out.npy").shape == (2, C)


# ---- .npy headers that lie, npz members that collide ------------------------------------------

def test_npy_header_larger_than_the_file(tmp_path: Path) -> None:
    (tmp_path / "X.npy").write_bytes(lying_header((200000, 200000)))
    model = model_npz(tmp_path)
    line = assert_refused(run("predict", model, "--data", "X.npy", "--out", "o.npy", cwd=tmp_path),
                          r"X\.npy: not a readable \.npy array \(the header claims shape \(200000, 200000\)")
    assert "320,000,000,000 bytes" in line
    # one byte short of what the header claims
    full = npy_bytes(np.zeros((2, T, D)))
    (tmp_path / "X.npy").write_bytes(full[:-1])
    assert_refused(run("predict", model, "--data", "X.npy", "--out", "o.npy", cwd=tmp_path),
                   r"X\.npy: not a readable \.npy array \(the header claims shape \(2, 5, 4\)")
    # in a checkpoint directory
    m = tmp_path / "m"
    m.mkdir()
    for k, v in grnn().items():
        np.save(m / f"{k}.npy", v)
    (m / "W.npy").write_bytes(lying_header((100000, 100000, 100)))
    assert_refused(run("inspect", m, cwd=tmp_path), r"W\.npy: not a readable \.npy array \(the header claims")
    assert not (tmp_path / "o.npy").exists()


def test_npz_member_header_larger_than_the_member(tmp_path: Path) -> None:
    members = [(f"{k}.npy", npy_bytes(v)) for k, v in grnn().items() if k != "FC"]
    members.append(("FC.npy", lying_header((300000, 300000))))
    (tmp_path / "m.npz").write_bytes(npz_bytes(members))
    assert_refused(run("inspect", "m.npz", cwd=tmp_path),
                   r"m\.npz: member FC\.npy: not a readable \.npy array \(the header claims shape "
                   r"\(300000, 300000\)")


def test_duplicate_npz_members_are_refused(tmp_path: Path) -> None:
    arrays = grnn()
    members = [(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items()]
    members.append(("W.npy", npy_bytes(np.zeros_like(arrays["W"]))))
    (tmp_path / "dup.npz").write_bytes(npz_bytes(members))
    assert_refused(run("inspect", "dup.npz", cwd=tmp_path), r"dup\.npz: two members named 'W'")
    # W.npy and W name the same key for np.load too
    members[-1] = ("W", npy_bytes(arrays["W"]))
    (tmp_path / "dup2.npz").write_bytes(npz_bytes(members))
    assert_refused(run("inspect", "dup2.npz", cwd=tmp_path), r"dup2\.npz: two members named 'W'")


# ---- values that overflow -------------------------------------------------------------------

def test_data_not_finite_after_normalisation(tmp_path: Path) -> None:
    arrays = grnn()
    arrays["std"] = np.full(D, 0.5, np.float32)  # (1e308 - mean) / 0.5 overflows float64
    model = model_npz(tmp_path, arrays)
    X = np.zeros((2, T, D))
    X[1, 3, 2] = 1e308
    np.save(tmp_path / "huge.npy", X)
    np.save(tmp_path / "ok.npy", np.zeros((2, T, D)))
    np.save(tmp_path / "y.npy", np.zeros(2, np.int64))
    pattern = r"huge\.npy: not finite after normalisation"
    for args in (["predict", model, "--data", "huge.npy", "--out", "o.npy"],
                 ["predict", model, "--data", "ok.npy", "--bits", "8", "--calib", "huge.npy", "--out", "o.npy"],
                 ["evaluate", model, "--data", "huge.npy", "--labels", "y.npy", "--bits", "float"],
                 ["evaluate", model, "--data", "ok.npy", "--labels", "y.npy", "--calib", "huge.npy"],
                 ["inspect", model, "--bits", "8", "--calib", "huge.npy", "--json", "r.json"],
                 ["export", model, "--board", "native", "--calib", "huge.npy", "-o", "fw"]):
        assert_refused(run(*args, cwd=tmp_path), pattern)
    # finite after normalisation, but x @ W would overflow float64
    X[1, 3, 2] = 1e307
    np.save(tmp_path / "big.npy", X)
    assert_refused(run("predict", model, "--data", "big.npy", "--out", "o.npy", cwd=tmp_path),
                   r"big\.npy: normalised inputs reach \|x\| = 2e\+307; x @ W would overflow float64")
    for name in ("o.npy", "r.json", "fw"):
        assert not (tmp_path / name).exists()


def test_checkpoint_values_beyond_float32(tmp_path: Path) -> None:
    arrays = grnn()
    arrays["U"] = arrays["U"].astype(np.float64)
    arrays["U"][0, 0] = 1e300
    assert_refused(run("inspect", model_npz(tmp_path, arrays), cwd=tmp_path),
                   r"U has a value beyond the float32 range")


def test_overflow_elsewhere_is_one_line_exit_2(tmp_path: Path) -> None:
    """Training normalises data itself: an overflow there is still one line, exit 2, no warning."""
    X = np.random.default_rng(0).normal(size=(8, T, D))
    X[0, 0, 0] = 1e308
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(8) % 2)
    result = run("train", "--data", "X.npy", "--labels", "y.npy", "--epochs", "1", "--quiet", "-o", "m.npz",
                 cwd=tmp_path)
    assert_refused(result, r"^edgecompile: error: ")
    assert not (tmp_path / "m.npz").exists()


# ---- messages -------------------------------------------------------------------------------

@pytest.mark.parametrize("rank", [None, 2])
def test_transposed_w_is_named(tmp_path: Path, rank: int | None) -> None:
    arrays = grnn(wrank=rank, urank=rank)
    key = "W" if rank is None else "W1"
    for k in ("W",) if rank is None else ("W1", "W2"):
        arrays[k] = np.ascontiguousarray(arrays[k].T)
    # W alone transposed with a square U is how edgeml-pytorch 0.3.0 stores a model: detected
    # then; read as [in,out] it is W to blame
    line = assert_refused(run("inspect", model_npz(tmp_path, arrays), "--layout", "in-out", cwd=tmp_path),
                          rf"m\.npz: {key} has shape \[\d+,\d+\], expected \[\d+,\d+\] \(.*transposed")
    assert " U" not in line and "U1" not in line, line


@pytest.mark.parametrize("name,value,allowed", [
    ("POLL_S", "abc", r"a number of seconds > 0 and <= 5"),
    ("POLL_S", "-1", r"a number of seconds > 0 and <= 5"),
    ("POLL_S", "0", r"a number of seconds > 0"),
    ("HANDSHAKE_WINDOW_S", "nan", r"a number of seconds > 0"),
    ("REPLY_BASE_S", "inf", r"a number of seconds > 0"),
    ("FRAME_RETRIES", "2.5", r"an integer >= 0 and <= 100"),
    ("SEQUENCE_ATTEMPTS", "0", r"an integer >= 1"),
    ("OFFLINE", "maybe", r"one of 1, true, yes, 0, false, no"),
])
def test_bad_environment_values(tmp_path: Path, name: str, value: str, allowed: str) -> None:
    var = "EDGECOMPILE_" + name
    for args in (["boards"], ["inspect", model_npz(tmp_path)]):
        assert_refused(run(*args, cwd=tmp_path, env={var: value}),
                       rf"^edgecompile: error: {var}='{re.escape(value)}': expected {allowed}")


def test_good_environment_values_are_accepted(tmp_path: Path) -> None:
    env = {"EDGECOMPILE_POLL_S": " 0.02 ", "EDGECOMPILE_FRAME_RETRIES": "0", "EDGECOMPILE_OFFLINE": "YES",
           "EDGECOMPILE_PER_STEP_S": "0"}
    result = run("boards", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr


# ---- interrupts and internal errors ---------------------------------------------------------

@pytest.mark.parametrize("signum,code,message", [
    (signal.SIGINT, 130, "edgecompile: interrupted"),
    (signal.SIGTERM, 143, "edgecompile: terminated (SIGTERM)"),
])
def test_signals_end_the_command_cleanly(tmp_path: Path, signum: int, code: int, message: str) -> None:
    proc = subprocess.Popen(
        [exe(), "train", "--data", str(JV / "JapaneseVowels_TRAIN.ts"), "--epochs", "100000",
         "--patience", "100000", "-o", "m.npz"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # Ctrl-C as in a terminal, even when the tests run in the background
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = proc.stderr.readline()  # "training FastGRNN ..." once the data is loaded
        assert first.startswith("training "), first
        proc.send_signal(signum)
        try:
            _, rest = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, rest = proc.communicate()
            pytest.fail(f"still running {TIMEOUT_S} s after the signal: {rest[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, rest
    lines = [ln for ln in rest.splitlines() if not ln.startswith(("class ids", "epoch "))]
    assert lines == [message], rest
    assert not (tmp_path / "m.npz").exists()


def test_unexpected_exception_is_an_internal_error(tmp_path: Path) -> None:
    """A bug (here: a loader that raises what no code expects) is exit 3 and one line."""
    script = ("import sys, edgecompile.frontend.checkpoint as c\n"
              "def broken(path, **kwargs): raise RuntimeError('broken\\nloader')\n"
              "c.load_checkpoint = broken\n"
              "from edgecompile.cli import main\n"
              "sys.argv[0] = 'edgecompile'\n"
              "main()\n")
    base = [sys.executable, "-c", script]
    result = subprocess.run([*base, "inspect", "m.npz"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert_refused(result, r"^edgecompile: internal error: RuntimeError: broken loader "
                           r"\(run with --debug for the traceback\)$", code=3)
    debug = subprocess.run([*base, "--debug", "inspect", "m.npz"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=TIMEOUT_S)
    assert debug.returncode == 3
    assert "Traceback" in debug.stderr and debug.stderr.rstrip().splitlines()[-1].startswith(
        "edgecompile: internal error: RuntimeError")
