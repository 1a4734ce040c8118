"""``edgecompile flash DIR --port PORT``: upload a built project through PlatformIO.

The board's platform says whether it can be flashed, and offline: AVR boards upload with avrdude
over the serial bootloader (``-c arduino`` for the Uno/Nano). The port is checked first (missing,
not a serial device, held by another process), the upload has a timeout, and avrdude's failures
come back as one clear line.

For tests and users without a board, :class:`SimulatedUno` runs the Uno's Optiboot bootloader
in simavr with its UART on a pty (``firmware/emulators/uno_optiboot_host.c``): the real avrdude
programs the simulated flash exactly as it would a board on a USB serial port.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecompile.errors import BoardError, BuildError, LinkError
from edgecompile.hosttools import cached, run_tool, simavr_program, spawn, stop_group
from edgecompile.targets.boards import BoardProfile, get_board
from edgecompile.targets.manifest import read_manifest
from edgecompile.targets.platformio import choose_offline, network_failure, run_pio
from edgecompile.targets.platforms import platform_for
from edgecompile.targets.probes import (
    DRIVES,
    METHODS,
    check_probe,
    copy_to_drive,
    find_drive,
    locate_drive,
    methods_for,
    run_probe,
)

#: Upper bound of one upload (avrdude gives up after ~10 sync attempts well within it).
UPLOAD_TIMEOUT_S = 120.0
#: Waiting for the simulated Uno's READY line.
SIM_START_TIMEOUT_S = 10.0
OPTIBOOT_SRC = Path("/usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot")
#: Debian's optiboot.c with the Makefile's flags plus those that make it fit 512 bytes
#: (the shipped optiboot_atmega328.hex is 532 bytes and overwrites itself: see the notes).
OPTIBOOT_FLAGS = (
    "-g -Wall -Os -fno-inline-small-functions -fno-split-wide-types -mshort-calls -mrelax "
    "-fno-caller-saves -fno-tree-scev-cprop -fno-jump-tables -fno-move-loop-invariants "
    "-mmcu=atmega328p -DF_CPU=16000000L -DBAUD_RATE=115200 -DLED_START_FLASHES=3 "
    "-Wl,--section-start=.text=0x7e00 -Wl,--section-start=.version=0x7ffe -Wl,--relax "
    "-Wl,--gc-sections -nostartfiles -nostdlib"
).split()


# --------------------------------------------------------------------------- port checks

def port_holders(port: str) -> list[str]:
    """Processes (``"pid name"``) other than this one that have ``port`` open (Linux /proc)."""
    try:
        target = os.path.realpath(port)
    except OSError:
        return []
    me = os.getpid()
    out: list[str] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == me:
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        name = (pid_dir / "comm").read_text().strip()
                        out.append(f"{pid_dir.name} {name}")
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return sorted(out)


def check_port(port: str) -> None:
    """Raise :class:`LinkError` for a missing, non-serial or busy port."""
    if not port:
        raise LinkError("no serial port given (--port PORT, e.g. /dev/ttyACM0)")
    if not os.path.exists(port):
        raise LinkError(f"serial port {port} does not exist (is the board plugged in?)")
    try:
        mode = os.stat(port).st_mode
    except OSError as exc:
        raise LinkError(f"serial port {port} cannot be used: {exc.strerror}") from exc
    if not stat.S_ISCHR(mode):
        raise LinkError(f"{port} is not a serial device")
    if not os.access(port, os.R_OK | os.W_OK):
        raise LinkError(f"no permission to use {port} (add yourself to the 'dialout' group)")
    holders = port_holders(port)
    if holders:
        raise LinkError(f"serial port {port} is busy (open in: {', '.join(holders)}); "
                        "close the serial monitor or the program using it")


_AVRDUDE_ERRORS = (
    (re.compile(r"not in sync|not responding|stk500_getsync|stk500v2_getsync"),
     "the board's bootloader does not answer on {port} (wrong port or board, or no bootloader)"),
    (re.compile(r"ser_open\(\)|can't open device"), "avrdude cannot open {port}"),
    (re.compile(r"verification error|content mismatch"), "verification after writing failed"),
    (re.compile(r"Device signature = .* expected|signature.*mismatch|Expected signature",
                re.IGNORECASE), "the chip on {port} is not the board's MCU"),
)


#: avrdude's own progress: sync attempts with a silent board, the bar of a write/read/verify.
_ATTEMPT = re.compile(r"attempt (\d+) of (\d+)")
_PERCENT = re.compile(r"^(Writing|Reading)\s*\|[ #]*\|\s*(\d+)%")
#: Seconds between two elapsed-time reports while the uploader says nothing.
_TICK_S = 1.0


class _UploadProgress:
    """Reports the upload as ``progress(elapsed s, timeout s, what)``, with what the uploader
    last said (sync attempts with a silent board, its write/verify percentage) after the unit."""

    def __init__(self, progress: Callable[[int, int, str], None] | None, timeout: float) -> None:
        self.progress = progress
        self.timeout = max(1, int(timeout))
        self.t0 = time.monotonic()
        self.status = "waiting for the uploader"
        self.stop = threading.Event()
        self.lines: list[str] = []

    @property
    def unit(self) -> str:
        return f"s of the {self.timeout} s upload timeout"

    def on_line(self, line: str) -> None:
        self.lines.append(line)
        m = _ATTEMPT.search(line)
        if m:
            self.status = f"attempt {m.group(1)} of {m.group(2)} to reach the bootloader, no answer"
        elif (m := _PERCENT.search(line.strip())) is not None:
            self.status = f"{m.group(1).lower()} {m.group(2)}%"
        else:
            return
        self.report()

    def report(self) -> None:
        if self.progress is not None:
            elapsed = int(time.monotonic() - self.t0)
            self.progress(min(elapsed, self.timeout - 1), self.timeout, f"{self.unit}: {self.status}")

    def tick(self) -> None:
        while not self.stop.wait(_TICK_S):
            self.report()

    def done(self, status: str) -> None:
        if self.progress is not None:
            elapsed = max(1, int(time.monotonic() - self.t0))
            self.progress(elapsed, elapsed, f"{self.unit}: {status}")

    def __enter__(self) -> _UploadProgress:
        if self.progress is not None:
            threading.Thread(target=self.tick, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


@dataclass
class FlashResult:
    port: str
    env: str
    seconds: float
    output: str


def flash_project(
    project_dir: Path | str,
    port: str | None,
    *,
    offline: bool | None = None,
    timeout: float = UPLOAD_TIMEOUT_S,
    echo: Callable[[str], None] | None = print,
    progress: Callable[[int, int, str], None] | None = None,
    method: str = "auto",
) -> FlashResult:
    """Build (incrementally, with the budget checks) and upload the project to ``port``.

    ``progress(done, total, what)`` receives the build steps, then the upload's: the
    uploader's sync attempts or write percentage, else the seconds elapsed of ``timeout``.

    Raises :class:`LinkError` (missing/busy port), :class:`BoardError` (a board with no upload
    path here) or :class:`BuildError` (failed upload, timeout).
    """
    from edgecompile.targets.build import build_project

    say = echo or (lambda _s: None)
    project_dir = Path(project_dir).resolve()
    board = get_board(read_manifest(project_dir).board)
    platform = platform_for(board)
    upload = platform.check_flashable()
    chosen = _choose_method(board, upload.tool, port, method)
    if chosen != "pio":
        return _flash_with_probe(project_dir, board, chosen, port, offline, timeout, echo, progress)
    if not port:
        raise LinkError(f"flashing '{board.id}' with {upload.tool} needs --port (its serial port, "
                        "e.g. /dev/ttyACM0)")
    offline = choose_offline(offline)
    if offline and not platform.uploads_offline:
        raise BoardError(f"flashing '{board.id}' needs {upload.tool} from the online "
                         "PlatformIO environment; this board's platform does not upload offline")
    check_port(port)
    result = build_project(project_dir, offline=offline, echo=echo, progress=progress)
    say(f"uploading to {port} with {upload.tool} ({result.env}), giving up after {timeout:.0f} s")
    watch = _UploadProgress(progress, timeout)
    lines = watch.lines
    try:
        with watch:
            res = run_pio(["run", "-e", result.env, "-t", "upload", "--upload-port", port],
                          project_dir, timeout=timeout, on_line=watch.on_line)
    except BuildError as exc:
        if not os.path.exists(port):
            raise LinkError(f"serial port {port} disappeared during the upload "
                            "(board unplugged?)") from exc
        raise BuildError(f"upload to {port} did not finish within {timeout:.0f} s "
                         "(board not answering?)") from exc
    if res.returncode != 0:
        for pattern, msg in _AVRDUDE_ERRORS:
            if any(pattern.search(ln) for ln in lines):
                raise BuildError("upload failed: " + msg.format(port=port))
        network = network_failure(res.output)
        if network is not None:
            raise BuildError(f"upload to {port} failed: {network}")
        tail = next((ln for ln in reversed(lines) if ln.strip() and "=====" not in ln), "")
        raise BuildError(f"upload to {port} failed: {tail.strip()}")
    verified = [ln for ln in lines if "bytes of flash verified" in ln]
    watch.done("flashed")
    say(f"flashed {port} in {res.seconds:.1f} s" + (f" ({verified[-1].split(':', 1)[-1].strip()})"
                                                    if verified else ""))
    return FlashResult(port, result.env, res.seconds, res.output)


#: Upload tools that PlatformIO's uploader runs (``pio run -t upload``).
PIO_TOOLS = ("avrdude",)
FLASH_METHODS = ("auto", "pio", *METHODS)


def _choose_method(board: BoardProfile, tool: str, port: str | None, method: str) -> str:
    """``pio`` or a probe/drive method (targets.probes) for ``board``; BoardError if it has none."""
    have = methods_for(board)
    if method not in FLASH_METHODS:
        raise BoardError(f"flash method '{method}' is not one of {', '.join(FLASH_METHODS)}")
    if method == "pio" or (method == "auto" and (tool in PIO_TOOLS or not have)):
        return "pio"
    if method != "auto":
        if method not in have:
            raise BoardError(f"board '{board.id}' cannot be flashed with {method}; it takes "
                             f"{', '.join([*have, 'pio'])}")
        return method
    if "drive" in have and ((port and os.path.isdir(port)) or
                            (not port and find_drive(DRIVES[board.id]))):
        return "drive"
    probes = [m for m in have if m != "drive"]
    if port and os.path.isdir(port) and probes:
        raise BoardError(f"board '{board.id}' has no USB drive to copy onto; --port is a debug "
                         "probe's id here")
    return next((m for m in probes if shutil.which(m) or (Path(sys.executable).parent / m).is_file()),
                probes[0] if probes else "drive")


def _flash_with_probe(project_dir: Path, board: BoardProfile, method: str, port: str | None,
                      offline: bool | None, timeout: float, echo: Callable[[str], None] | None,
                      progress: Callable[[int, int, str], None] | None) -> FlashResult:
    """Build, then program through a debug probe or copy onto the board's USB drive."""
    from edgecompile.targets.build import build_project

    say = echo or (lambda _s: None)
    mount = None
    if method == "drive":
        mount = locate_drive(board, port)  # before building: no drive is an error in seconds
    else:
        check_probe(method, board, port)  # type: ignore[arg-type]
    result = build_project(project_dir, offline=True if offline is None else offline, echo=echo,
                           progress=progress)
    if mount is not None:
        drive = DRIVES[board.id]
        image = result.elf.with_suffix(drive.suffix)
        if not image.is_file():
            raise BuildError(f"the build made no {image.name} to copy onto the {drive.volume} drive")
        t0 = time.monotonic()
        copy_to_drive(image, mount, drive, say=say)
        seconds = time.monotonic() - t0
        say(f"flashed {board.id} through its {drive.volume} drive in {seconds:.1f} s")
        return FlashResult(str(mount), result.env, seconds, "")
    say(f"programming {board.id} with {method} ({result.elf.name}), giving up after {timeout:.0f} s")
    seconds = run_probe(method, board, result.elf, port, timeout)  # type: ignore[arg-type]
    say(f"flashed {board.id} with {method} in {seconds:.1f} s")
    return FlashResult(port or method, result.env, seconds, "")


# ----------------------------------------------------------------- cached host-side tools

def optiboot_hex() -> Path:
    """Debian's Optiboot for the Uno rebuilt to fit its 512-byte boot section (cached)."""
    src = OPTIBOOT_SRC / "optiboot.c"
    if not src.is_file():
        raise BuildError(f"{src} is missing (Debian package arduino-core-avr)")

    def make(target: Path) -> None:
        elf = target.with_suffix(".elf")
        run_tool(["avr-gcc", *OPTIBOOT_FLAGS, f"-I{OPTIBOOT_SRC}", str(src), "-o", str(elf)],
                  "building Optiboot")
        run_tool(["avr-objcopy", "-O", "ihex", str(elf), str(elf.with_suffix(".ihex"))],
                  "converting Optiboot")
        text = elf.with_suffix(".ihex").read_text().splitlines()
        # Drop the start-address record (type 03): libsimavr's hex reader does not take it.
        target.write_text("\n".join(ln for ln in text if ln[7:9] != "03") + "\n")

    deps = [src.read_bytes(), (OPTIBOOT_SRC / "boot.h").read_bytes(),
            (OPTIBOOT_SRC / "pin_defs.h").read_bytes(), " ".join(OPTIBOOT_FLAGS).encode()]
    return cached("optiboot_atmega328.hex", deps, make)


class SimulatedUno:
    """An Uno with Optiboot in simavr, its UART on a pty: a port that avrdude can program.

    ::

        with SimulatedUno() as uno:
            flash_project(project, uno.port)
            uno.wait_event("APP_START")
            image = uno.dump_flash()

    Events (lines of the host program): PTY, READY, RESET, APP_START, DUMP, EXIT.
    """

    def __init__(self, link: str | Path | None = None, max_seconds: float = 600.0) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ec-uno-")
        self.port = str(link or Path(self._tmp.name) / "uno.pty")
        self.dump_path = Path(self._tmp.name) / "flash.bin"
        self.max_seconds = max_seconds
        self.events: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimulatedUno:
        cmd = [str(simavr_program("uno_optiboot_host")), "-l", self.port, "-d", str(self.dump_path),
               "-t", str(self.max_seconds), str(optiboot_hex())]
        self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, errors="replace")
        try:
            threading.Thread(target=self._reader, daemon=True).start()
            self.wait_event("READY", SIM_START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def _reader(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put("EXIT eof")

    def wait_event(self, name: str, timeout: float = 10.0) -> str:
        """Wait for the next event line starting with ``name``; LinkError on timeout/exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(f"simulated Uno: no {name} within {timeout:.0f} s "
                                f"(events: {' | '.join(self.events[-5:])})")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            self.events.append(line)
            if line.startswith(name):
                return line
            if line.startswith("EXIT"):
                raise LinkError(f"simulated Uno stopped ({line}) while waiting for {name}")

    def dump_flash(self, timeout: float = 5.0) -> bytes:
        """The simulated chip's whole flash (32 KB)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        line = self.wait_event("DUMP", timeout)
        if line.strip() == "DUMP failed":
            raise LinkError("simulated Uno: flash dump failed")
        return self.dump_path.read_bytes()

    def close(self) -> None:
        """Stop the simulator's process group and wait until it is gone; remove its files."""
        try:
            if self.proc is not None:
                stop_group(self.proc, 5.0)
        finally:
            self._tmp.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.close()


def hex_to_bin(hex_path: Path) -> bytes:
    """The bytes an Intel hex file puts at address 0.. (gaps as 0xFF)."""
    mem: dict[int, int] = {}
    base = 0
    for line in Path(hex_path).read_text().splitlines():
        if not line.startswith(":"):
            continue
        raw = bytes.fromhex(line[1:])
        n, addr, kind = raw[0], (raw[1] << 8) | raw[2], raw[3]
        if kind == 0:
            for i in range(n):
                mem[base + addr + i] = raw[4 + i]
        elif kind == 2:
            base = ((raw[4] << 8) | raw[5]) << 4
        elif kind == 4:
            base = ((raw[4] << 8) | raw[5]) << 16
    if not mem:
        return b""
    out = bytearray(b"\xff" * (max(mem) + 1))
    for a, v in mem.items():
        out[a] = v
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgecompile.targets.flash [--link PATH]``: a simulated Uno to flash by hand
    (``edgecompile flash DIR --port PATH`` in another terminal); Ctrl-C stops it."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgecompile.targets.flash",
                                 description="Run an Uno with Optiboot in simavr on a pty.")
    ap.add_argument("--link", default="/tmp/edgecompile-uno", help="symlink to the pty")
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    args = ap.parse_args(argv)
    with SimulatedUno(args.link, max_seconds=args.seconds) as uno:
        print(f"simulated Uno with Optiboot on {uno.port}: edgecompile flash DIR --port {uno.port}",
              flush=True)
        try:
            while True:
                print(uno.wait_event("", args.seconds), flush=True)
        except (KeyboardInterrupt, LinkError):
            pass
    return 0


__all__ = ["FlashResult", "SimulatedUno", "check_port", "flash_project", "hex_to_bin",
           "optiboot_hex", "port_holders"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
