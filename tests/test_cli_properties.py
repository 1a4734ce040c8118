"""Properties of the INSTALLED console script under generated hostile inputs.

hypothesis mutates a valid checkpoint (dropped/renamed keys, wrong shapes, transposes, NaN/Inf,
huge values, wrong dtypes, truncated files, garbage bytes, duplicate members, lying headers) and
valid data, then runs ``inspect``, ``predict``, ``evaluate`` or ``export``. Whatever the input:
exit status 0 or 2; on failure exactly one stderr line ``edgecompile: error: ...`` and nothing
written; never a traceback or a numpy warning; every call under a timeout.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.models import make_arrays

EXE = Path(sys.executable).parent / "edgecompile"
D, H, C, T, N = 3, 5, 3, 4, 3
TIMEOUT_S = 60
KEYS = ["W", "W1", "W2", "U", "U1", "U2", "Bg", "Bh", "zeta", "nu", "B", "alpha", "beta", "FC",
        "FCbias", "mean", "std", "gate_nonlinearity", "update_nonlinearity"]
COMMANDS = ["inspect", "inspect8", "predict", "predict8", "evaluate", "export"]
DEFAULT = settings(max_examples=40, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MORE = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def exe() -> str:
    found = str(EXE) if EXE.exists() else shutil.which("edgecompile")
    assert found, "the edgecompile console script is not installed (pip install -e .)"
    return found


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


def npy_bytes(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, a, allow_pickle=a.dtype.hasobject)
    return buffer.getvalue()


def npz_bytes(members: list[tuple[str, bytes]], compress: bool) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate member names are written on purpose
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(buffer, "w", mode) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return buffer.getvalue()


def lying_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# ---- array mutations ------------------------------------------------------------------------

def _mutate_array(a: np.ndarray, how: str, where: float) -> np.ndarray:
    if how == "transpose":
        return np.ascontiguousarray(a.T) if a.ndim == 2 else a.reshape(-1, 1)
    if how == "add_row":
        return np.concatenate([a, a[:1]]) if a.ndim and a.size else np.ones(2, np.float32)
    if how == "flatten":
        return a.reshape(-1)
    if how == "to_3d":
        return a.reshape(1, 1, -1)
    if how == "empty":
        return a.reshape(-1)[:0]
    if how in ("nan", "inf", "huge32", "huge64", "tiny", "big"):
        if a.dtype.kind not in "fiu":  # metadata strings: nothing numeric to spoil
            return a
        b = np.array(a, dtype=np.float64 if how in ("huge64", "tiny") else np.float32)
        if b.dtype.kind != "f" or b.size == 0:
            return b
        value = {"nan": np.nan, "inf": -np.inf, "huge32": 3e38, "huge64": 1e300, "tiny": 1e-320,
                 "big": 1e4}[how]
        b.reshape(-1)[int(where * (b.size - 1))] = value
        return b
    dtype = {"bool": bool, "complex": np.complex64, "int8": np.int8, "uint64": np.uint64,
             "str": "<U3", "bytes": "S2", "float16": np.float16, "object": object}[how]
    try:
        return a.astype(dtype)
    except (ValueError, TypeError):
        return np.zeros(a.shape, dtype)


ARRAY_MUTATIONS = ["transpose", "add_row", "flatten", "to_3d", "empty", "nan", "inf", "huge32",
                   "huge64", "tiny", "big", "bool", "complex", "int8", "uint64", "str", "bytes",
                   "float16", "object"]


@st.composite
def checkpoints(draw: st.DrawFn) -> dict:
    cell = draw(st.sampled_from(["FastGRNN", "FastRNN"]))
    rank = draw(st.sampled_from([None, 2]))
    nl = draw(st.sampled_from(["tanh", "quantTanh", "sigmoid"]))
    arrays = make_arrays(cell, D=D, H=H, C=C, T=T, wrank=rank, urank=rank,
                         norm=draw(st.sampled_from([None, "D", "TD"])), update_nl=nl,
                         seed=draw(st.integers(0, 3)))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "rename", "array", "array", "meta"]))
        keys = sorted(arrays)
        key = draw(st.sampled_from(keys))
        if op == "drop" and len(arrays) > 1:
            del arrays[key]
        elif op == "rename":
            arrays[draw(st.sampled_from(KEYS + ["extra", "w", "W.npy", ""]))] = arrays.pop(key)
        elif op == "meta":
            arrays[draw(st.sampled_from(["gate_nonlinearity", "update_nonlinearity"]))] = np.array(
                draw(st.sampled_from(["quantSigm", "relu", "", "tanh"])))
        else:
            arrays[key] = _mutate_array(arrays[key], draw(st.sampled_from(ARRAY_MUTATIONS)),
                                        draw(st.floats(0, 1)))
    return {
        "arrays": arrays,
        "container": draw(st.sampled_from(["npz", "npz_compressed", "dir"])),
        "damage": draw(st.sampled_from(["none", "none", "truncate", "garbage", "duplicate",
                                        "lying_header", "append", "random_file"])),
        "where": draw(st.floats(0, 1)),
        "garbage": draw(st.binary(min_size=1, max_size=64)),
    }


def write_checkpoint(d: Path, spec: dict) -> Path:
    arrays, damage, where = spec["arrays"], spec["damage"], spec["where"]
    members = [(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items()]
    if damage == "duplicate" and members:
        name, _ = members[int(where * (len(members) - 1))]
        members.append((name, npy_bytes(np.zeros((2, 2), np.float32))))
    if damage == "lying_header" and members:
        i = int(where * (len(members) - 1))
        members[i] = (members[i][0], lying_header((40000, 40000, 8)))
    if spec["container"] == "dir":
        path = d / "model"
        path.mkdir()
        for name, data in members:
            if name in ("", ".npy") or "/" in name:
                continue
            if damage in ("truncate", "garbage") and name == members[0][0]:
                cut = int(where * len(data))
                data = data[:cut] if damage == "truncate" else data[:cut] + spec["garbage"] + data[cut:]
            (path / name).write_bytes(data)
        return path
    blob = npz_bytes(members, spec["container"] == "npz_compressed")
    cut = int(where * len(blob))
    if damage == "truncate":
        blob = blob[:cut]
    elif damage == "garbage":
        blob = blob[:cut] + spec["garbage"] + blob[cut + len(spec["garbage"]):]
    elif damage == "append":
        blob += spec["garbage"]
    elif damage == "random_file":
        blob = spec["garbage"]
    path = d / "model.npz"
    path.write_bytes(blob)
    return path


# ---- data mutations -------------------------------------------------------------------------

DATA_MUTATIONS = ["none", "nan", "inf", "huge", "big", "wrong_d", "wrong_t", "two_d", "one_d",
                  "empty", "str", "complex", "truncate", "lying_header", "garbage", "npz"]


def write_data(d: Path, name: str, how: str, where: float, garbage: bytes) -> Path:
    X = np.random.default_rng(1).normal(size=(N, T, D))
    path = d / name
    if how in ("nan", "inf", "huge", "big"):
        X.reshape(-1)[int(where * (X.size - 1))] = {"nan": np.nan, "inf": np.inf, "huge": 1.7e308,
                                                    "big": 1e200}[how]
    X = {"wrong_d": X[:, :, :-1], "wrong_t": X[:, :-1], "two_d": X[0], "one_d": X[0, 0],
         "empty": X[:0], "str": X.astype("<U4"), "complex": X.astype(complex)}.get(how, X)
    data = npy_bytes(X)
    cut = int(where * len(data))
    if how == "truncate":
        data = data[:cut]
    elif how == "lying_header":
        data = lying_header((100000, 100000, 100))
    elif how == "garbage":
        data = data[:cut] + garbage + data[cut + len(garbage):]
    elif how == "npz":
        data = npz_bytes([("X.npy", data)], True)
    path.write_bytes(data)
    return path


# ---- the property ---------------------------------------------------------------------------

def run_command(d: Path, command: str, model: Path, data: Path, calib: Path | None,
                labels: Path) -> list[str]:
    bits = ["--bits", "8"] if command.endswith("8") else []
    calib_args = ["--calib", str(calib)] if calib else []
    args = {
        "inspect": ["inspect", model, *bits, *calib_args, "--json", d / "out" / "r.json"],
        "predict": ["predict", model, "--data", data, *bits, *calib_args, "--out", d / "out" / "o.npy"],
        "evaluate": ["evaluate", model, "--data", data, "--labels", labels, *calib_args,
                     "--json", d / "out" / "r.json"],
        "export": ["export", model, "--board", "native", *calib_args, "-o", d / "out" / "fw"],
    }[command.rstrip("8")]
    (d / "out").mkdir()
    before = snapshot(d)
    result = subprocess.run([exe(), *map(str, args)], cwd=d, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    lines = result.stderr.splitlines()
    context = (args, result.returncode, result.stderr[-2000:])
    assert result.returncode in (0, 2), context
    assert "Traceback" not in result.stderr + result.stdout, context
    assert "Warning:" not in result.stderr, context
    assert all(ln.startswith("edgecompile: ") for ln in lines), context
    if result.returncode:
        assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), context
        assert snapshot(d) == before, context  # nothing written, not even a temporary file
    else:
        assert len(list((d / "out").iterdir())) == 1, context
    return lines


def check_checkpoint(spec: dict, command: str, with_calib: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_checkpoint(d, spec)
        data = write_data(d, "X.npy", "none", 0.0, b"")
        np.save(d / "y.npy", np.arange(N) % C)
        run_command(d, command, model, data, data if with_calib else None, d / "y.npy")


def check_data(how: str, role: str, where: float, garbage: bytes, command: str, labels: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        arrays = make_arrays("FastGRNN", D=D, H=H, C=C, T=T, norm="TD", seed=2)
        model = write_checkpoint(d, {"arrays": arrays, "container": "npz", "damage": "none",
                                     "where": 0.0, "garbage": b""})
        good = write_data(d, "good.npy", "none", 0.0, b"")
        bad = write_data(d, "bad.npy", how, where, garbage)
        y = {"ok": np.arange(N) % C, "range": np.full(N, C), "short": np.zeros(N - 1, np.int64),
             "float": np.full(N, 0.5), "neg": np.full(N, -1)}[labels]
        np.save(d / "y.npy", y)
        data, calib = (bad, None) if role == "data" else (good, bad)
        if command.startswith("inspect") and role == "data":
            data, calib = good, bad
        run_command(d, command, model, data, calib, d / "y.npy")


@pytest.mark.slow
@DEFAULT
@given(spec=checkpoints(), command=st.sampled_from(COMMANDS), with_calib=st.booleans())
def test_mutated_checkpoints(spec: dict, command: str, with_calib: bool) -> None:
    check_checkpoint(spec, command, with_calib)


@pytest.mark.slow
@pytest.mark.slowest
@DEFAULT
@given(how=st.sampled_from(DATA_MUTATIONS), role=st.sampled_from(["data", "calib"]),
       where=st.floats(0, 1), garbage=st.binary(min_size=1, max_size=32),
       command=st.sampled_from(COMMANDS), labels=st.sampled_from(["ok", "ok", "range", "short", "float", "neg"]))
def test_mutated_data(how: str, role: str, where: float, garbage: bytes, command: str, labels: str) -> None:
    check_data(how, role, where, garbage, command, labels)


@pytest.mark.slowest
@MORE
@given(spec=checkpoints(), command=st.sampled_from(COMMANDS), with_calib=st.booleans())
def test_mutated_checkpoints_more(spec: dict, command: str, with_calib: bool) -> None:
    check_checkpoint(spec, command, with_calib)


@pytest.mark.slowest
@MORE
@given(how=st.sampled_from(DATA_MUTATIONS), role=st.sampled_from(["data", "calib"]),
       where=st.floats(0, 1), garbage=st.binary(min_size=1, max_size=32),
       command=st.sampled_from(COMMANDS), labels=st.sampled_from(["ok", "ok", "range", "short", "float", "neg"]))
def test_mutated_data_more(how: str, role: str, where: float, garbage: bytes, command: str, labels: str) -> None:
    check_data(how, role, where, garbage, command, labels)


@pytest.mark.slow
@pytest.mark.slowest
def test_special_paths_in_every_role() -> None:
    """Not generated but exhaustive: every command x every input role x special file kinds."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        os.mkfifo(d / "fifo")
        (d / "loop").symlink_to(d / "loop")
        model = write_checkpoint(d, {"arrays": make_arrays("FastGRNN", D=D, H=H, C=C, T=T, seed=2),
                                     "container": "npz", "damage": "none", "where": 0.0, "garbage": b""})
        good = write_data(d, "good.npy", "none", 0.0, b"")
        np.save(d / "y.npy", np.arange(N) % C)
        for special in (d / "fifo", d / "loop", Path("/dev/zero"), Path("/dev/null")):
            for command, role in (("inspect", "model"), ("inspect8", "calib"), ("predict", "model"),
                                  ("predict", "data"), ("predict8", "calib"), ("evaluate", "labels"),
                                  ("export", "model"), ("export", "calib")):
                sub = d / "run"
                sub.mkdir()
                paths = {"model": model, "data": good, "calib": good, "labels": d / "y.npy", role: special}
                lines = run_command(sub, command, paths["model"], paths["data"],
                                    paths["calib"] if role == "calib" else None, paths["labels"])
                assert len(lines) == 1 and ("not a regular file" in lines[0] or "symlink loop" in lines[0]), lines
                shutil.rmtree(sub)
