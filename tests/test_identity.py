"""Firmware identity through the installed console script: a board that still runs an older build
of the project (another --bits, another --calib) is told to be flashed, exit 1, before any parity
run; a board running this build passes. Run on the emulated Uno (simavr) and a QEMU board, and the
link messages of ``verify --port`` on pty pairs played by a thread."""

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

from edgecompile.ir.qmodel import load_qmodel
from edgecompile.link import protocol as pr
from edgecompile.link.framing import encode_frame

from .helpers.ptydevice import PtyDevice, flipped_reply, info_body

EXE = Path(sys.executable).parent / "edgecompile"
TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny"


def cli(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    full = dict(os.environ, EDGECOMPILE_OFFLINE="1", **(env or {}))
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0][len("edgecompile: error: "):]


def qsha(project: Path) -> str:
    return load_qmodel(project / "model.qmodel.json").quantized_sha256()


def plant_firmware(old: Path, new: Path) -> None:
    """Put the firmware built for ``old`` into ``new``: what a board flashed with ``old`` runs."""
    for elf in (old / ".pio" / "build").glob("*/firmware.elf"):
        dest = new / ".pio" / "build" / elf.parent.name / elf.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(elf, dest)
        os.utime(dest)  # newer than the project's sources: verify takes it as built


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("identity")
    X = np.load(TINY / "X.npy")
    np.save(d / "X.npy", X[:6])
    np.save(d / "calib_a.npy", X)
    np.save(d / "calib_b.npy", X[:4] * 0.25)  # another --calib: other Q formats
    return {"dir": d, "X": d / "X.npy", "a": d / "calib_a.npy", "b": d / "calib_b.npy"}


@pytest.mark.slow
@pytest.mark.parametrize("board", ["uno", pytest.param("mps2_an385", marks=pytest.mark.slowest)])
def test_stale_build_on_the_board_is_named_not_a_parity_failure(data, board):
    d = data["dir"] / board
    model = TINY / "model.npz"
    p8, p16, pcal = d / "int8", d / "int16", d / "calib"
    assert cli("export", model, "--board", board, "--calib", data["a"], "-o", p8).returncode == 0
    res = cli("build", p8)
    assert res.returncode == 0, res.stderr
    assert cli("export", model, "--board", board, "--bits", "16", "--calib", data["a"],
               "-o", p16).returncode == 0
    assert cli("export", model, "--board", board, "--calib", data["b"], "-o",
               pcal).returncode == 0
    h8, h16, hcal = qsha(p8), qsha(p16), qsha(pcal)
    assert len({h8, h16, hcal}) == 3  # three different builds of one float model
    plant_firmware(p8, p16)
    plant_firmware(p8, pcal)

    ok = cli("verify", p8, "--emulate", "--data", data["X"])
    assert ok.returncode == 0, ok.stderr
    assert "PARITY OK" in ok.stdout

    res = cli("verify", p16, "--emulate", "--data", data["X"])
    assert res.returncode == 1
    msg = one_error_line(res)
    assert msg == (f"the board runs another build of this model (int8, quantized sha256 "
                   f"{h8[:12]}...); this project is int16 ({h16[:12]}...): flash this project")
    assert "PARITY" not in res.stdout

    res = cli("verify", pcal, "--emulate", "--data", data["X"])
    assert res.returncode == 1
    msg = one_error_line(res)
    assert msg == (f"the board runs another build of this model (int8, quantized sha256 "
                   f"{h8[:12]}...); this project is int8 ({hcal[:12]}...) (other calibration "
                   "or quantization): flash this project")
    assert "PARITY" not in res.stdout


def test_identity_is_in_the_generated_binding(data):
    out = data["dir"] / "binding"
    assert cli("export", TINY / "model.npz", "--board", "uno", "--calib", data["a"],
               "-o", out).returncode == 0
    text = (out / "lib" / "model" / "src" / "edgecompile_model.h").read_text()
    assert f'#define ECM_QMODEL_SHA256 "{qsha(out)}"' in text
    manifest = json.loads((out / "edgecompile-manifest.json").read_text())
    assert manifest["qmodel_sha256"] == qsha(out)  # what verify expects the board to report
    # the same model, quantized the same way, read back from its JSON: the same identity
    again = data["dir"] / "binding2"
    assert cli("export", out / "model.qmodel.json", "--board", "uno", "-o",
               again).returncode == 0
    assert (again / "lib" / "model" / "src" / "edgecompile_model.h").read_text() == text


# ---- verify --port: what the port did, in one line ----------------------------------------------

QUICK_ENV = {"EDGECOMPILE_HANDSHAKE_WINDOW_S": "1", "EDGECOMPILE_HANDSHAKE_REPLY_S": "0.25"}


@pytest.fixture(scope="module")
def project(data) -> Path:
    out = data["dir"] / "portproj"
    assert cli("export", TINY / "model.npz", "--board", "uno", "--calib", data["a"],
               "-o", out).returncode == 0
    return out


def verify_port(project: Path, data: dict, dev: PtyDevice) -> tuple[int, str]:
    res = cli("verify", project, "--port", dev.path, "--data", data["X"], env=QUICK_ENV,
              timeout=30)
    return res.returncode, one_error_line(res)


def test_verify_port_text_banner(project, data):
    with PtyDevice(chatter=lambda: b"Hello, world!\r\n") as dev:
        code, msg = verify_port(project, data, dev)
    assert code == 2
    # the preview starts wherever the port was opened in the banner's loop
    assert re.fullmatch(rf"{re.escape(dev.path)} answers, but not with the edgecompile protocol: "
                        r"got '[^']*Hello, world![^']* \.\.\.': is the edgecompile firmware "
                        r"flashed\?", msg), msg


def test_verify_port_bit_flips(project, data):
    with PtyDevice(answer=flipped_reply()) as dev:
        code, msg = verify_port(project, data, dev)
    assert code == 2
    assert re.fullmatch(rf"frames from {re.escape(dev.path)} fail their CRC \((\d+) of \1\): "
                        r"noisy line or wrong baud rate\?", msg), msg


def test_verify_port_silent(project, data):
    with PtyDevice() as dev:
        code, msg = verify_port(project, data, dev)
    assert code == 2
    assert msg.startswith(f"no bytes from {dev.path} in 1 s: ")


def test_verify_port_old_protocol_is_another_build(project, data):
    with PtyDevice(answer=lambda req: b"\x00" + encode_frame(
            bytes((req[0] | pr.REPLY_BIT, req[1], 0)) + info_body(proto=1))) as dev:
        code, msg = verify_port(project, data, dev)
    assert code == 1
    assert msg == (f"the board runs edgecompile firmware of protocol v1, this host speaks "
                   f"v{pr.PROTO_VERSION}: flash this project")
