"""tests/c/matrix_run.h, the model runs and result lines shared by the matrix device programs
(avr_matrix.c under simavr, hal_matrix.c under QEMU), on the host: clean under gcc and clang with
the strict flags and -Wconversion, each line in the format the device tests parse, its hash the
FNV-1a those tests expect of the simulator's states, every sequence and step of a model run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .cbuild import STRICT
from .test_avr_matrix import fnv_states

SRC = Path(__file__).resolve().parent / "c" / "matrix_run_host.c"
COMPILERS = ("gcc", "clang")


@pytest.fixture(scope="module")
def exes(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for cc in COMPILERS:
        if shutil.which(cc) is None:
            continue
        exe = tmp_path_factory.mktemp(cc) / "matrix_run"
        proc = subprocess.run([cc, *STRICT, "-Wconversion", "-Wsign-conversion", "-O2", str(SRC), "-o", str(exe)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and not proc.stderr.strip(), f"{cc}: {proc.stderr}"
        out[cc] = exe
    if not out:
        pytest.skip("neither gcc nor clang installed")
    return out


def run(exe: Path, records: list[tuple[int, np.ndarray, np.ndarray]]) -> str:
    """The program's output for records (sequence number, states [T, H], logits [C])."""
    text = "\n".join(" ".join(map(str, [seq, *states.shape, len(logits), *states.ravel(), *logits]))
                     for seq, states, logits in records)
    proc = subprocess.run([str(exe)], input=(text + "\n").encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.returncode
    return proc.stdout.decode("ascii")


def test_hash_is_fnv1a_over_the_state_bytes(exes):
    """Published FNV-1a-32 values: the empty input (no step) and "foobar" as three int16 states,
    low byte first, one per step."""
    foobar = np.array([[0x6F66], [0x626F], [0x7261]], dtype=np.int64)
    for cc, exe in exes.items():
        lines = run(exe, [(0, np.zeros((0, 4), dtype=np.int64), np.array([1])), (1, foobar, np.array([-1]))])
        assert lines == "R m 00000000 811c9dc5 00000001\r\nR m 00000001 bf9cf968 ffffffff\r\nEND\r\n", cc


@st.composite
def records(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray]:
    steps, hidden, classes = draw(st.integers(0, 6)), draw(st.integers(1, 40)), draw(st.integers(1, 12))
    states = draw(st.lists(st.integers(-32768, 32767), min_size=steps * hidden, max_size=steps * hidden))
    logits = draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=classes, max_size=classes))
    return (draw(st.integers(0, 2**32 - 1)), np.array(states, dtype=np.int64).reshape(steps, hidden),
            np.array(logits, dtype=np.int64))


@settings(max_examples=40, deadline=None)
@given(recs=st.lists(records(), min_size=1, max_size=5))
def test_lines_match_what_the_device_tests_expect(exes, recs):
    want = "".join(f"R m {seq:08x} {fnv_states(states[None])[0]:08x}"
                   + "".join(f" {int(v) & 0xFFFFFFFF:08x}" for v in logits) + "\r\n"
                   for seq, states, logits in recs) + "END\r\n"
    for cc, exe in exes.items():
        assert run(exe, recs) == want, cc


def test_run_covers_every_sequence_and_step(exes):
    """EC_MATRIX_RUN on a model whose state is its input (one logit h[0] - h[1]): two sequences of
    three steps over the inputs 1..12, each hashed over its own three steps."""
    xs = np.arange(1, 13, dtype=np.int64).reshape(2, 3, 2)
    want = "".join(f"R fk {i:08x} {fnv_states(xs[i][None])[0]:08x} ffffffff\r\n" for i in range(2)) + "END\r\n"
    for cc, exe in exes.items():
        proc = subprocess.run([str(exe), "run"], capture_output=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.decode("ascii") == want, (cc, proc.stdout)
