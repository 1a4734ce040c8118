"""Frames: host round trips (hypothesis), garbage/oversize resync, and the C responder's parser
fed garbage, truncated, oversized and bit-flipped frames (native build under ASan+UBSan)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as stb

from edgecompile.link import protocol as pr
from edgecompile.link import status as st
from edgecompile.link.framing import (
    MAX_ENCODED_FRAME,
    BadFrame,
    FrameReader,
    crc16,
    decode_frame,
    encode_frame,
)

from . import harness_build as hb
from .helpers import standin

payloads = stb.binary(min_size=0, max_size=700)


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the catalogue check value of CRC-16/CCITT-FALSE


@given(payloads)
def test_round_trip(payload):
    frame = encode_frame(payload)
    assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
    if len(payload) + 2 >= 3:
        assert decode_frame(frame[:-1]) == payload


@given(stb.lists(payloads.filter(lambda p: len(p) >= 1), min_size=1, max_size=5),
       stb.binary(max_size=300), stb.integers(1, 64))
def test_reader_resyncs_after_garbage(frames, garbage, chunk):
    stream = garbage + b"\x00" + b"".join(b"\x00" + encode_frame(p) for p in frames)
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), chunk):
        got += reader.feed(stream[i:i + chunk])
    good = [g for g in got if not isinstance(g, BadFrame)]
    assert good[-len(frames):] == frames


def test_reader_drops_oversized_and_recovers():
    reader = FrameReader()
    items = reader.feed(b"\x01" * (MAX_ENCODED_FRAME + 100))
    assert items == []
    items = reader.feed(b"\x00" + encode_frame(b"abc"))
    assert isinstance(items[0], BadFrame) and items[0].reason == "oversized"
    assert items[1] == b"abc"


@pytest.mark.parametrize("raw,reason", [(b"\x05\x01", "cobs"), (b"\x02\x01", "short")])
def test_bad_frames_are_named(raw, reason):
    item = decode_frame(raw)
    assert isinstance(item, BadFrame) and item.reason == reason


def test_bit_flip_is_a_crc_error():
    frame = bytearray(encode_frame(b"\x01\x02\x03\x04"))
    frame[2] ^= 0x10
    item = decode_frame(bytes(frame[:-1]))
    assert isinstance(item, BadFrame) and item.reason in ("crc", "cobs")


# ---- the C side agrees with the Python side ----------------------------------------------------

def test_protocol_constants_match_c_header():
    text = (hb.HARNESS / "ech_proto.h").read_text()
    defs = {m[0]: int(m[1], 0) for m in re.findall(r"#define (ECH_\w+) (0x[0-9A-Fa-f]+|\d+)u?", text)}
    assert defs["ECH_PROTO_VERSION"] == pr.PROTO_VERSION
    for name in ("CMD_INFO", "CMD_RESET", "CMD_STEP", "CMD_ECHO", "CMD_ERROR", "STEP_RESET", "STEP_RUNS",
                 "STEP_HIDDEN", "STEP_LOGITS", "HEADER_LEN", "STEP_REQ_FIXED", "INFO_BODY_LEN"):
        assert defs["ECH_" + name] == getattr(pr, name), name
    assert defs["ECH_REPLY_BIT"] == pr.REPLY_BIT
    for code, (name, _) in pr.CYCLE_SOURCES.items():
        c_name = {"avr-timer1": "AVR_TIMER1", "dwt-cyccnt": "DWT", "systick": "SYSTICK",
                  "posix-clock-ns": "POSIX_NS", "peripheral-timer": "TIMER"}[name]
        assert defs["ECH_CYCLES_" + c_name] == code


def test_status_table_is_dense_and_named():
    table = st.status_table()
    assert sorted(table) == list(range(len(table)))
    assert table[0][0] == "OK" and st.NO_SESSION in table


# ---- the device parser, natively under ASan + UBSan --------------------------------------------

@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    """The harness + stand-in model built for the host with sanitizers, serving stdin/stdout."""
    return hb.build_native(tmp_path_factory.mktemp("fuzz"), sanitize=True)


def _run(exe: Path, data: bytes) -> list[bytes | BadFrame]:
    env = dict(os.environ, ECH_NATIVE_STDIO="1", ASAN_OPTIONS="detect_leaks=0")
    proc = subprocess.run([str(exe)], input=data, capture_output=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return FrameReader().feed(proc.stdout)


def _info(seq: int, session: int = 9) -> bytes:
    return b"\x00" + encode_frame(bytes((pr.CMD_INFO, seq, session)))


def _replies(items, cmd):
    return [i for i in items if not isinstance(i, BadFrame) and i[0] == (cmd | pr.REPLY_BIT)]


def test_device_replies_to_every_kind_of_bad_frame(responder):
    too_long = encode_frame(bytes((pr.CMD_ECHO, 1, 9)) + b"\x55" * 2000)
    flipped = bytearray(encode_frame(bytes((pr.CMD_ECHO, 2, 9, 1, 2, 3))))
    flipped[3] ^= 0x01
    stream = (_info(1) + b"\x00" + too_long + b"\x00\x07\x01\x02\x00" + bytes(flipped)
              + b"\x00" + encode_frame(b"\x01") + b"\x00" + encode_frame(bytes((0x33, 3, 9)))
              + b"\x00" + encode_frame(bytes((pr.CMD_STEP, 4, 9, 0, 1, 0, 0)))
              + b"\x00" + encode_frame(bytes((pr.CMD_STEP, 5, 9, 0x80, 0, 0, 0)))
              + b"\x00" + encode_frame(bytes((pr.CMD_RESET, 6, 1))))
    items = _run(responder, stream)
    errors = [i[2] for i in _replies(items, pr.CMD_ERROR)]
    assert errors == [st.TOO_LONG, st.BAD_FRAME, st.BAD_CRC, st.BAD_LENGTH]
    assert [i[2] for i in items if not isinstance(i, BadFrame) and i[0] == 0x33 | 0x80] == [
        st.BAD_COMMAND]
    steps = _replies(items, pr.CMD_STEP)
    assert [s[2] for s in steps] == [st.BAD_LENGTH, st.BAD_ARG]
    assert [r[2] for r in _replies(items, pr.CMD_RESET)] == [st.NO_SESSION]


def test_step_sequence_checks(responder):
    x = struct.pack("<3h", 1, 2, 3)
    body = lambda flags, t0: bytes((flags, 1)) + struct.pack("<H", t0) + x  # noqa: E731
    stream = (_info(1) + b"\x00" + encode_frame(bytes((pr.CMD_STEP, 2, 9)) + body(1, 0))
              + b"\x00" + encode_frame(bytes((pr.CMD_STEP, 3, 9)) + body(0, 0))   # repeated
              + b"\x00" + encode_frame(bytes((pr.CMD_STEP, 4, 9)) + body(0, 1)))
    steps = _replies(_run(responder, stream), pr.CMD_STEP)
    assert [s[2] for s in steps] == [st.OK, st.BAD_SEQUENCE, st.OK]
    assert [struct.unpack_from("<H", s, 3)[0] for s in (steps[0], steps[2])] == [1, 2]


@settings(max_examples=int(os.environ.get("EDGECOMPILE_FUZZ_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stb.lists(stb.binary(max_size=600), min_size=1, max_size=8))
def test_device_survives_garbage_then_answers(responder, blobs):
    """Random bytes (incl. delimiters) between valid INFO frames: no sanitizer report, and every
    INFO is answered in order (garbage never desynchronises the parser past a delimiter)."""
    stream = b"".join(blob + _info(i + 1) for i, blob in enumerate(blobs))
    infos = [i for i in _replies(_run(responder, stream), pr.CMD_INFO) if i[2] == st.OK]
    assert [i[1] for i in infos][-len(blobs):] == list(range(1, len(blobs) + 1))


def test_step_runs_compute_what_one_row_per_step_does(responder):
    """A STEP_RUNS frame (each run of equal rows sent once with its count) computes what the
    one-row-per-step frame does; a zero count, a cut run or counts that miss n are BAD_LENGTH."""
    rng = np.random.default_rng(11)
    rows = rng.integers(-900, 900, (3, 3)).astype("<i2")
    x = rows[[0, 0, 0, 1, 2, 2, 2, 2]]  # runs 3, 1, 4
    assert pr.row_runs(x) == [(0, 3), (3, 1), (4, 4)] and pr.row_runs(x[:0]) == []
    assert pr.runs_pay_off(x) and not pr.runs_pay_off(rows)
    runs = pr.step_request(0, 0, x, runs=True)
    assert runs[0] == pr.STEP_RUNS and len(runs) == 4 + 3 * 7
    lf = pr.STEP_RESET | pr.STEP_HIDDEN | pr.STEP_LOGITS

    def frame(seq, body):
        return b"\x00" + encode_frame(bytes((pr.CMD_STEP, seq, 9)) + body)

    def runs_body(n, *runs):
        return struct.pack("<BBH", lf | pr.STEP_RUNS, n, 0) + b"".join(
            bytes((k,)) + rows[i].tobytes() for k, i in runs)

    stream = (_info(1) + frame(2, pr.step_request(lf, 0, x))
              + frame(3, pr.step_request(lf, 0, x, runs=True))
              + frame(4, runs_body(8, (3, 0), (0, 1), (5, 2)))      # a zero count
              + frame(5, runs_body(8, (3, 0), (1, 1), (3, 2)))      # counts sum to 7
              + frame(6, runs_body(8, (3, 0), (1, 1), (4, 2))[:-1])  # the last run cut
              + frame(7, runs_body(0)))                              # no runs, no steps
    steps = _replies(_run(responder, stream), pr.CMD_STEP)
    assert [s[1] for s in steps] == [2, 3, 4, 5, 6, 7]
    assert [s[2] for s in steps] == [st.OK, st.OK, st.BAD_LENGTH, st.BAD_LENGTH, st.BAD_LENGTH,
                                     st.OK]
    # the same t, hidden state and logits (cycles are host nanoseconds here)
    assert steps[0][3:5] == steps[1][3:5] and steps[0][9:] == steps[1][9:]
    assert len(steps[1]) == 9 + 2 * standin.H + 4 * standin.C
    logits = np.frombuffer(steps[1][-4 * standin.C:], "<i4")
    np.testing.assert_array_equal(logits, standin.run(x)[0])
