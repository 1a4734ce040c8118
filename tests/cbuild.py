"""Compile a generated model library with a host compiler plus tests/c/ec_driver.c, and run it.

Compiled drivers are cached per (sources, flags) for the test run, in a directory removed when it ends.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

DRIVER = Path(__file__).resolve().parent / "c" / "ec_driver.c"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
PLAIN = ["-O2"]
_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
_CACHE: dict[str, Path] = {}


@functools.cache
def _root() -> Path:
    """The drivers' directory: made on the first build, removed when the test process exits."""
    root = Path(tempfile.mkdtemp(prefix="ec_cbuild_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def write_tree(files: dict[str, bytes], root: Path) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def build_driver(lib_files: dict[str, bytes], flags: list[str], cc: str = "gcc") -> Path:
    """Build the driver against the library files of ``render_library`` (keys ``src/...``)."""
    digest = hashlib.sha256(repr((sorted(lib_files.items()), flags, cc, DRIVER.read_bytes())).encode())
    key = digest.hexdigest()[:20]
    if key in _CACHE:
        return _CACHE[key]
    work = _root() / key
    write_tree(lib_files, work)
    srcs = sorted(str(p) for p in (work / "src").glob("*.c"))
    exe = work / "driver"
    cmd = [cc, *STRICT, *flags, "-I", str(work / "src"), str(DRIVER), *srcs, "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"compile failed: {' '.join(cmd)}\n{proc.stderr}")
    _CACHE[key] = exe
    return exe


def run_driver(exe: Path, x: np.ndarray, H: int, C: int, mode: str = "int"):
    """Run on ``x [n, T, D]`` (int16, or float32 in float mode).

    Returns ``(states [n,T,H] int16, logits [n,C] int64, classes [n], predict_logits [n,C])``.
    """
    n, steps, _ = x.shape
    dtype = np.int16 if mode == "int" else np.float32
    with tempfile.TemporaryDirectory(dir=exe.parent) as tmp:
        fin, fout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        fin.write_bytes(np.array([n, steps], "<i4").tobytes() + np.ascontiguousarray(x, dtype=dtype).tobytes())
        proc = subprocess.run([str(exe), mode, str(fin), str(fout)], capture_output=True, text=True, env=_ENV)
        if proc.returncode != 0:
            raise AssertionError(f"driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        if proc.stderr:  # a sanitizer report that did not abort is still a failure
            raise AssertionError(f"driver wrote to stderr:\n{proc.stderr[-4000:]}")
        raw = fout.read_bytes()
    states, logits, classes, plogits = [], [], [], []
    off = 0
    for _ in range(n):
        states.append(np.frombuffer(raw, "<i2", steps * H, off).reshape(steps, H))
        off += 2 * steps * H
        logits.append(np.frombuffer(raw, "<i4", C, off))
        off += 4 * C
        classes.append(int(np.frombuffer(raw, "<i4", 1, off)[0]))
        off += 4
        plogits.append(np.frombuffer(raw, "<i4", C, off))
        off += 4 * C
    assert off == len(raw), "driver output has an unexpected size"
    return (np.array(states, dtype=np.int16).reshape(n, steps, H), np.array(logits, dtype=np.int64),
            np.array(classes), np.array(plogits, dtype=np.int64))
