"""libFuzzer run of the device frame parser under ASan+UBSan (tests/fuzz/ech_fuzz.c).

Seconds: ``EDGECOMPILE_FUZZ_SECONDS`` (default 20). Zero crashes allowed.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from edgecompile.link import protocol as pr
from edgecompile.link.framing import encode_frame

from . import harness_build as hb

FUZZ_SRC = Path(__file__).resolve().parent / "fuzz" / "ech_fuzz.c"


def _seeds() -> list[bytes]:
    x = struct.pack("<6h", 1, -2, 3, 400, -500, 32767)
    frames = [
        bytes((pr.CMD_INFO, 1, 7)),
        bytes((pr.CMD_RESET, 2, 7)),
        bytes((pr.CMD_STEP, 3, 7, pr.STEP_RESET | pr.STEP_HIDDEN | pr.STEP_LOGITS, 2, 0, 0)) + x,
        bytes((pr.CMD_ECHO, 4, 7)) + b"hello\x00world",
    ]
    return [b"\x00" + encode_frame(frames[0]) + encode_frame(f) for f in frames]


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_frame", [1, pytest.param(64, marks=pytest.mark.slowest)])
def test_libfuzzer_frame_parser(tmp_path, steps_per_frame):
    clang = hb.need("clang")
    exe = tmp_path / "ech_fuzz"
    inc = [f"-I{hb.HARNESS}", f"-I{hb.FIRMWARE / 'native'}", f"-I{hb.STANDIN}"]
    build = subprocess.run(
        [clang, "-g", "-O1", "-std=c99", "-Wall", "-Wextra", "-Werror",
         "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
         f"-DECH_MAX_STEPS_PER_FRAME={steps_per_frame}", *inc, str(FUZZ_SRC),
         str(hb.HARNESS / "ech_proto.c"), str(hb.STANDIN / "standin.c"), "-o", str(exe)],
        capture_output=True, text=True)
    if build.returncode != 0 and "fuzzer" in build.stderr and "cannot find" in build.stderr:
        pytest.skip("clang without libFuzzer runtime")
    assert build.returncode == 0, build.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(_seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    default = "20"
    seconds = int(os.environ.get("EDGECOMPILE_FUZZ_SECONDS", default)) // 2
    run = subprocess.run([str(exe), f"-max_total_time={seconds}", "-max_len=2048",
                          "-print_final_stats=1", str(corpus)],
                         capture_output=True, text=True, timeout=seconds + 120)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done" in run.stderr
    execs = [ln for ln in run.stderr.splitlines() if "stat::number_of_executed_units" in ln]
    assert execs and int(execs[0].split(":")[-1]) > 1000
