"""Flashing Cortex-M boards: the USB drive of DAPLink / ST-LINK / the Pico's boot ROM (a
directory that looks like the drive), pyOCD and OpenOCD with no probe attached; all through the
installed console script."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .targets_helpers import export_real, make_project

CLI = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "edgecompile")
DETAILS = ("# DAPLink Firmware - see https://daplink.io\nUnique ID: 9900000000000000000000000000\n"
           "HIC ID: 97969901\nInterface Version: 0253\n")
INFO_UF2 = "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300):
    full = {**os.environ, **(env or {})}
    t0 = time.monotonic()
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=full)
    return res, time.monotonic() - t0


def one_line_error(res) -> str:
    # Progress lines ("flash: 2/2 build steps ...") may come first; the error is one line.
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("flash: ")]
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def fake_drive(root: Path, volume: str, marker: str, text: str) -> Path:
    d = root / "user" / volume
    d.mkdir(parents=True)
    (d / marker).write_text(text)
    return d


def test_no_drive_mounted_is_one_line_within_seconds(tmp_path):
    project = make_project(tmp_path, "nucleo_f401re")
    roots = tmp_path / "media"
    roots.mkdir()
    res, seconds = run(["flash", str(project), "--method", "drive"],
                       {"EDGECOMPILE_MOUNT_ROOTS": str(roots)})
    assert res.returncode == 2 and seconds < 10
    assert "no NOD_F401RE drive mounted under" in one_line_error(res)
    assert not (project / ".pio").exists()  # refused before building


def test_a_directory_that_is_not_the_drive_is_refused(tmp_path):
    project = make_project(tmp_path, "pico")
    other = tmp_path / "stick"
    other.mkdir()
    res, _ = run(["flash", str(project), "--port", str(other)])
    assert res.returncode == 2 and "has no INFO_UF2.TXT" in one_line_error(res)
    wrong = fake_drive(tmp_path, "RPI-RP2", "INFO_UF2.TXT", INFO_UF2.replace("RPI-RP2", "ADA-QTPY"))
    res, _ = run(["flash", str(project), "--port", str(wrong)])
    assert res.returncode == 2 and "UF2 drive of board 'ADA-QTPY'" in one_line_error(res)
    res, _ = run(["flash", str(project), "--method", "drive"], {"EDGECOMPILE_MOUNT_ROOTS": str(tmp_path / "x")})
    assert res.returncode == 2 and "hold BOOTSEL" in one_line_error(res)


@pytest.mark.parametrize("method, board", [("pyocd", "microbit"), ("openocd", "nucleo_f401re"),
                                           ("openocd", "bluepill_f103c8")])
def test_no_probe_attached_is_one_line_within_seconds(tmp_path, method, board):
    project = make_project(tmp_path, board)
    res, seconds = run(["flash", str(project), "--method", method])
    assert res.returncode == 2 and seconds < 15, (res.stderr, seconds)
    line = one_line_error(res)
    assert f"found no debug probe for '{board}'" in line
    assert not (project / ".pio").exists()


def test_methods_a_board_does_not_have_are_refused(tmp_path):
    project = make_project(tmp_path, "bluepill_f103c8")
    res, _ = run(["flash", str(project), "--method", "drive"])
    assert res.returncode == 2 and "cannot be flashed with drive" in one_line_error(res)
    res, _ = run(["flash", str(project), "--method", "pyocd"])
    assert res.returncode == 2 and "cannot be flashed with pyocd" in one_line_error(res)
    uno = make_project(tmp_path, "uno")
    res, _ = run(["flash", str(uno)])
    assert res.returncode == 2 and "needs --port" in one_line_error(res)


def _take_like_an_interface_chip(drive: Path, name: str, got: list[bytes], stop: threading.Event,
                                 fail: bool = False):
    """What DAPLink / the RP2040 boot ROM do with an image: take it, then the file is gone (and
    with ``fail``, the remounted drive holds a FAIL.TXT)."""
    while not stop.is_set():
        f = drive / name
        if f.is_file() and f.stat().st_size:
            time.sleep(0.05)
            got.append(f.read_bytes())
            if fail:
                (drive / "FAIL.TXT").write_text("The interface firmware FAILED to reset/halt the target MCU\n")
            f.unlink()
            return
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("board, volume, marker, text, suffix", [
    ("nucleo_f401re", "NOD_F401RE", "DETAILS.TXT", "Version: V2J40M27\nBuild:   Nov 13 2022\n", ".bin"),
    ("pico", "RPI-RP2", "INFO_UF2.TXT", INFO_UF2, ".uf2"),
])
def test_flash_onto_the_board_drive(tmp_path, board, volume, marker, text, suffix):
    """export -> offline build -> flash finds the drive under a mount root and copies the image;
    FAIL.TXT from the interface chip is a one-line error."""
    project = export_real(tmp_path, board)
    drive = fake_drive(tmp_path / "media", volume, marker, text)
    got: list[bytes] = []
    stop = threading.Event()
    t = threading.Thread(target=_take_like_an_interface_chip, args=(drive, "firmware" + suffix, got, stop))
    t.start()
    try:
        res, _ = run(["flash", str(project), "--offline"], {"EDGECOMPILE_MOUNT_ROOTS": str(tmp_path / "media")})
    finally:
        stop.set()
        t.join()
    assert res.returncode == 0, res.stderr
    assert f"through its {volume} drive" in res.stdout + res.stderr
    image = (project / ".pio" / "build" / f"{board}_offline" / ("firmware" + suffix)).read_bytes()
    assert got == [image] and len(image) > 1000
    if suffix == ".uf2":
        assert image[:8] == bytes.fromhex("5546320a57515d9e")  # UF2 block magic
    stale = drive / "FAIL.TXT"
    stale.write_text("an old verdict: ignored\n")
    t = threading.Thread(target=_take_like_an_interface_chip, args=(drive, "firmware" + suffix, got, stop, True))
    stop.clear()
    t.start()
    try:
        res, seconds = run(["flash", str(project), "--offline", "--port", str(drive)])
    finally:
        stop.set()
        t.join()
    assert res.returncode == 2 and seconds < 30
    assert f"the {volume} drive refused the image: The interface firmware FAILED" in one_line_error(res)
