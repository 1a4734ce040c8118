"""Flashing Cortex-M boards without PlatformIO's uploader: debug probes and USB drives.

Three ways, chosen per board (:func:`methods_for`) from its JSON ``upload`` record and its MCU:

- ``drive``: DAPLink (``MICROBIT``) and ST-LINK (``NOD_F401RE``) interface chips show a USB
  mass-storage drive; a ``.bin`` copied onto it programs the target. The Pico's boot ROM shows
  ``RPI-RP2`` (hold BOOTSEL while plugging in) and takes a ``.uf2``. The drive is found under
  ``/media``, ``/run/media``, ``/Volumes`` (or ``$EDGECOMPILE_MOUNT_ROOTS``, ``:``-separated), or
  given as ``--port /path/to/mount``; it must carry the file its firmware writes (``DETAILS.TXT``
  for DAPLink / ST-LINK, ``INFO_UF2.TXT`` for UF2 boot loaders).
- ``pyocd``: pyOCD with its built-in targets only (no CMSIS pack download): nRF51, nRF52840,
  RP2040. ``--port`` is the probe's unique id (``pyocd list``), or empty for the only probe.
- ``openocd``: Debian's OpenOCD, ``interface/stlink.cfg`` or ``interface/cmsis-dap.cfg`` with the
  chip's ``target/*.cfg``: every Cortex-M board here (STM32F1/F4 have no built-in pyOCD target).

No probe and no drive is a one-line :class:`BoardError` (exit status 2) within seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgecompile.errors import BoardError, BuildError
from edgecompile.hosttools import run_captured
from edgecompile.targets.boards import BoardProfile

Method = Literal["drive", "pyocd", "openocd"]
METHODS: tuple[Method, ...] = ("drive", "pyocd", "openocd")
#: Where desktop systems mount USB drives (udisks, macOS).
MOUNT_ROOTS = ("/media", "/run/media", "/Volumes")
#: Upper bound of one probe session (pyOCD/OpenOCD give up on a missing probe within ~2 s).
PROBE_TIMEOUT_S = 120.0
#: How long to watch the drive after the copy (the interface chip takes the file and remounts).
DRIVE_SETTLE_S = 5.0


@dataclass(frozen=True)
class Drive:
    """A USB mass-storage drive that programs the board when an image is copied onto it."""

    volume: str  # the volume label
    marker: str  # a file the interface firmware puts on the drive
    suffix: str  # the image it takes (.bin, .uf2)


@dataclass(frozen=True)
class ChipTargets:
    pyocd: str | None  # a built-in pyOCD target (None: only with a CMSIS pack, not used here)
    openocd: str  # OpenOCD's target script


#: By MCU prefix (the board JSON's ``mcu``).
CHIPS: dict[str, ChipTargets] = {
    "stm32f401": ChipTargets(None, "target/stm32f4x.cfg"),
    "stm32f103": ChipTargets(None, "target/stm32f1x.cfg"),
    "nrf51822": ChipTargets("nrf51", "target/nrf51.cfg"),
    "nrf52840": ChipTargets("nrf52840", "target/nrf52.cfg"),
    "rp2040": ChipTargets("rp2040", "target/rp2040.cfg"),
}
#: By board id: the drive of its interface chip / boot ROM.
DRIVES: dict[str, Drive] = {
    "nucleo_f401re": Drive("NOD_F401RE", "DETAILS.TXT", ".bin"),
    "microbit": Drive("MICROBIT", "DETAILS.TXT", ".bin"),
    "pico": Drive("RPI-RP2", "INFO_UF2.TXT", ".uf2"),
}
#: The board JSON's upload protocol -> OpenOCD's interface script (anything else: a CMSIS-DAP
#: probe on the SWD pins, e.g. a Picoprobe or a J-Link in CMSIS-DAP mode).
OPENOCD_INTERFACES = {"stlink": "interface/stlink.cfg", "cmsis-dap": "interface/cmsis-dap.cfg"}


def chip_targets(board: BoardProfile) -> ChipTargets | None:
    return next((t for prefix, t in CHIPS.items() if board.mcu.startswith(prefix)), None)


def methods_for(board: BoardProfile) -> list[Method]:
    """The probe/drive methods that can flash ``board``, in the order ``auto`` tries them."""
    out: list[Method] = []
    if board.id in DRIVES:
        out.append("drive")
    chip = chip_targets(board)
    if chip is not None and chip.pyocd is not None:
        out.append("pyocd")
    if chip is not None:
        out.append("openocd")
    return out


def mount_roots() -> list[Path]:
    env = os.environ.get("EDGECOMPILE_MOUNT_ROOTS")
    return [Path(p) for p in (env.split(os.pathsep) if env else MOUNT_ROOTS) if p]


def find_drive(drive: Drive) -> list[Path]:
    """Mounted volumes named ``drive.volume`` (``<root>/NAME`` or ``<root>/<user>/NAME``)."""
    found: list[Path] = []
    for root in mount_roots():
        if not root.is_dir():
            continue
        cands = [root / drive.volume]
        try:
            cands += [d / drive.volume for d in sorted(root.iterdir()) if d.is_dir()]
        except OSError:
            pass
        found += [c for c in cands if c.is_dir() and (c / drive.marker).is_file()]
    return found


def check_drive(path: Path, drive: Drive) -> None:
    """Refuse a directory that is not the board's drive (no marker file, or another board)."""
    if not path.is_dir():
        raise BoardError(f"{path} is not a mounted drive (expected the {drive.volume} drive)")
    marker = path / drive.marker
    if not marker.is_file():
        raise BoardError(f"{path} has no {drive.marker}: it is not the {drive.volume} drive "
                         "of the board")
    if drive.marker == "INFO_UF2.TXT":
        text = marker.read_text(errors="replace")
        board_id = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                         if ln.lower().startswith("board-id:")), None)
        if board_id is not None and board_id != drive.volume:
            raise BoardError(f"{path} is the UF2 drive of board '{board_id}', not {drive.volume}")
    if not os.access(path, os.W_OK):
        raise BoardError(f"no permission to write to {path}")


def locate_drive(board: BoardProfile, port: str | None) -> Path:
    """The board's drive: ``port`` when given (a mount point), else the one mounted."""
    drive = DRIVES[board.id]
    if port:
        path = Path(port)
        check_drive(path, drive)
        return path
    found = find_drive(drive)
    where = ", ".join(str(r) for r in mount_roots())
    if not found:
        hint = " (hold BOOTSEL while plugging the Pico in)" if drive.suffix == ".uf2" else ""
        raise BoardError(f"no {drive.volume} drive mounted under {where}{hint}; plug the board "
                         "in, or give the mount point with --port")
    if len(found) > 1:
        raise BoardError(f"{len(found)} {drive.volume} drives are mounted "
                         f"({', '.join(map(str, found))}): choose one with --port")
    return found[0]


def copy_to_drive(image: Path, mount: Path, drive: Drive, settle: float = DRIVE_SETTLE_S,
                  say: Callable[[str], None] = lambda _s: None) -> Path:
    """Copy ``image`` onto the drive (flushed to the device), then watch for the interface chip's
    verdict: a ``FAIL.TXT`` is a :class:`BuildError`; the file taken (gone, or the drive
    remounted) or ``settle`` seconds of silence is success."""
    target = mount / ("firmware" + drive.suffix)
    fail = mount / "FAIL.TXT"

    def verdict() -> bytes | None:
        try:
            return fail.read_bytes()
        except OSError:
            return None

    stale = verdict()  # a FAIL.TXT from an earlier copy is not this one's verdict
    try:
        data = image.read_bytes()
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise BuildError(f"copying {image.name} to {mount} failed: {exc.strerror or exc}") from exc
    say(f"copied {image.name} ({len(data)} B) to {target}")
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        try:
            now = verdict()
            if now is not None and now != stale:
                reason = " ".join(now.decode(errors="replace").split())[:200]
                raise BuildError(f"the {drive.volume} drive refused the image: {reason}")
            if not target.exists():
                break
        except OSError:
            break  # the drive went away: the interface chip is programming / rebooting
        time.sleep(0.05)
    return target


def _tool(name: str) -> str | None:
    """The tool's path: next to this Python (pyOCD in the venv) or on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else shutil.which(name)


def probe_command(method: Method, board: BoardProfile, elf: Path, port: str | None) -> list[str]:
    """The pyOCD / OpenOCD command line that programs ``elf`` into ``board`` and resets it."""
    chip = chip_targets(board)
    if chip is None:
        raise BoardError(f"board '{board.id}' ({board.mcu}) has no probe target here")
    if method == "pyocd":
        if chip.pyocd is None:
            raise BoardError(f"pyOCD has no built-in target for {board.mcu} (a CMSIS pack would "
                             "be needed); use --method openocd")
        exe = _tool("pyocd")
        if exe is None:
            raise BoardError("pyOCD is not installed (pip install pyocd); or use --method openocd")
        cmd = [exe, "flash", "--no-wait", "-t", chip.pyocd, "--format", "elf"]
        if port:
            cmd += ["-u", port]
        return [*cmd, str(elf)]
    exe = _tool("openocd")
    if exe is None:
        raise BoardError("OpenOCD is not installed (apt-get install openocd)")
    protocol = board.upload.protocol if board.upload is not None else ""
    iface = OPENOCD_INTERFACES.get(protocol, "interface/cmsis-dap.cfg")
    cmd = [exe, "-f", iface]
    if port:  # the probe's serial number
        cmd += ["-c", f"adapter serial {port}"]
    elf_tcl = str(elf).replace("\\", "/").replace("{", "").replace("}", "")
    return [*cmd, "-f", chip.openocd, "-c", f"program {{{elf_tcl}}} verify reset exit"]


_NO_PROBE = ("No connected debug probes", "No available debug probes", "open failed",
             "unable to find", "No device found", "Can't find", "could not find", "not found",
             "init failed", "unable to open", "No probe")


#: Seconds for the probe check before building (both tools answer within ~2 s).
PROBE_CHECK_TIMEOUT_S = 20.0


def check_probe(method: Method, board: BoardProfile, port: str | None) -> None:
    """Refuse, before any build, when the tool is missing or no probe answers (BoardError)."""
    cmd = probe_command(method, board, Path("firmware.elf"), port)
    if method == "pyocd":
        cmd = [cmd[0], "list", "--probes"]
    else:
        cmd = [*cmd[:-2], "-c", "init", "-c", "shutdown"]
    name = "pyOCD" if method == "pyocd" else "OpenOCD"
    try:
        res = run_captured(cmd, PROBE_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BoardError(f"{name} did not answer within {PROBE_CHECK_TIMEOUT_S:.0f} s") from exc
    text = res.stdout + "\n" + res.stderr
    listed = method == "pyocd" and (not port or port in text) and "No available debug probes" not in text
    if (method == "pyocd" and not listed) or (method == "openocd" and res.returncode != 0):
        which = f" with id {port}" if port else ""
        drive = (f", or copy onto its {DRIVES[board.id].volume} drive (--method drive)"
                 if board.id in DRIVES else "")
        raise BoardError(f"{name} found no debug probe{which} for '{board.id}': plug in its "
                         f"ST-LINK / CMSIS-DAP probe{drive}")


def run_probe(method: Method, board: BoardProfile, elf: Path, port: str | None,
              timeout: float = PROBE_TIMEOUT_S) -> float:
    """Program ``elf`` through a debug probe; seconds taken. :class:`BoardError` when no probe
    answers, :class:`BuildError` when programming fails or times out."""
    cmd = probe_command(method, board, elf, port)
    name = "pyOCD" if method == "pyocd" else "OpenOCD"
    t0 = time.monotonic()
    try:
        res = run_captured(cmd, timeout)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{name} did not finish within {timeout:.0f} s (probe not answering?)"
                         ) from exc
    if res.returncode != 0:
        lines = [ln.strip() for ln in (res.stdout + "\n" + res.stderr).splitlines() if ln.strip()]
        which = f" with id {port}" if port else ""
        if any(k.lower() in ln.lower() for ln in lines for k in _NO_PROBE):
            raise BoardError(f"{name} found no debug probe{which} for '{board.id}' (plug in the "
                             "board's ST-LINK / CMSIS-DAP probe, or copy onto its USB drive "
                             "with --method drive where it has one)")
        err = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "no output")
        raise BuildError(f"{name} failed to program '{board.id}': {err[:300]}")
    return time.monotonic() - t0


__all__ = ["CHIPS", "DRIVES", "METHODS", "Drive", "check_probe", "copy_to_drive", "find_drive", "locate_drive",
           "methods_for", "probe_command", "run_probe"]
