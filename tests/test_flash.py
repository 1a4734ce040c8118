"""Flashing: port checks, upload errors, and the real avrdude programming Optiboot in simavr."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner

from edgecompile.cli import main
from edgecompile.errors import BoardError, BuildError, LinkError
from edgecompile.targets.flash import SimulatedUno, check_port, flash_project, hex_to_bin

from .targets_helpers import STANDIN_MAIN, export_real, make_project


@pytest.fixture(scope="module")
def tool_cache(tmp_path_factory):
    """A fresh cache: the host program and Optiboot are compiled once in this module."""
    old = os.environ.get("EDGECOMPILE_CACHE")
    os.environ["EDGECOMPILE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("EDGECOMPILE_CACHE", None)
    else:
        os.environ["EDGECOMPILE_CACHE"] = old


def test_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(LinkError, match="does not exist"):
        check_port(str(tmp_path / "ttyACM9"))
    project = make_project(tmp_path, "uno")
    res = CliRunner().invoke(main, ["flash", str(project), "--port", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist (is the board plugged in?)" in res.output
    assert not (project / ".pio").exists()  # nothing built before the port was checked


def test_a_file_is_not_a_port(tmp_path):
    f = tmp_path / "port"
    f.write_text("")
    with pytest.raises(LinkError, match="not a serial device"):
        check_port(str(f))


def test_busy_port_names_the_process(tmp_path):
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    with open(name, "rb") as fh:
        holder = subprocess.Popen(["sleep", "30"], stdin=fh)
    try:
        time.sleep(0.1)
        with pytest.raises(LinkError, match=rf"busy \(open in: {holder.pid} sleep\)"):
            check_port(name)
        holder.terminate()
        holder.wait(timeout=10)
        check_port(name)  # free again
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        os.close(master)


def test_emulated_boards_are_not_flashed(tmp_path):
    project = make_project(tmp_path, "mps2_an385")
    with pytest.raises(BoardError, match=r"exists only in QEMU \(mps2-an385\).*verify --emulate"):
        flash_project(project, "/dev/null", echo=None)
    res = CliRunner().invoke(main, ["flash", str(project), "--port", "/dev/null", "--offline"])
    assert res.exit_code == 2 and "exists only in QEMU" in res.output
    assert not (project / ".pio").exists()
    native = make_project(tmp_path, "native")
    with pytest.raises(BoardError, match="runs on this computer"):
        flash_project(native, "/dev/null", echo=None)


def test_offline_upload_only_where_the_platform_has_one(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")
    project = make_project(tmp_path, "nucleo_f401re", harness=False)
    # PlatformIO's uploader (stlink) exists only online; offline the probes and the drive flash it
    # (tests/test_flash_methods.py).
    with pytest.raises(BoardError, match="needs stlink from the online PlatformIO environment"):
        flash_project(project, "/dev/null", echo=None, method="pio")


@pytest.mark.slow
def test_flash_uno_through_optiboot_in_simavr(tmp_path, tool_cache):
    """build -> avrdude over a pty -> Optiboot in simavr writes the flash -> the app starts;
    a second upload replaces the first application."""
    first = make_project(tmp_path / "first", "uno", harness=False, src=STANDIN_MAIN)
    project = export_real(tmp_path, "uno")  # a real export: generated library + harness
    with SimulatedUno() as uno:
        flash_project(first, uno.port, offline=True, echo=None)
        uno.wait_event("APP_START", 10)
        t0 = time.monotonic()
        res = CliRunner().invoke(main, ["flash", str(project), "--port", uno.port, "--offline"])
        seconds = time.monotonic() - t0
        assert res.exit_code == 0, res.output
        assert "bytes of flash verified" in res.output
        uno.wait_event("APP_START", 10)
        image = uno.dump_flash()
    firmware = hex_to_bin(project / ".pio" / "build" / "uno_offline" / "firmware.hex")
    old = hex_to_bin(first / ".pio" / "build" / "uno_offline" / "firmware.hex")
    assert len(firmware) > len(old) > 200 and firmware[:len(old)] != old
    assert image[: len(firmware)] == firmware
    assert image[len(firmware):0x7E00] == b"\xff" * (0x7E00 - len(firmware))
    assert uno.events.count("RESET") == 2  # each avrdude open reset the chip, like DTR
    assert seconds < 30


def _answer_garbage(master: int, stop: threading.Event) -> None:
    os.set_blocking(master, False)
    while not stop.is_set():
        try:
            data = os.read(master, 64)
            os.write(master, b"\x15" * len(data))  # STK_NOSYNC, never in sync
        except OSError:
            time.sleep(0.01)


@pytest.mark.slow
def test_failed_upload_and_timeout_are_clear_errors(tmp_path):
    project = make_project(tmp_path, "uno")
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    stop = threading.Event()
    try:
        # Silence: stopped by the timeout, no hang.
        t0 = time.monotonic()
        with pytest.raises(BuildError, match="did not finish within 3 s"):
            flash_project(project, name, offline=True, timeout=3, echo=None)
        assert time.monotonic() - t0 < 20
        # Something answers, but not a bootloader: avrdude gives up, we say why.
        threading.Thread(target=_answer_garbage, args=(master, stop), daemon=True).start()
        with pytest.raises(BuildError, match="bootloader does not answer"):
            flash_project(project, name, offline=True, timeout=60, echo=None)
    finally:
        stop.set()
        time.sleep(0.05)
        os.close(master)
