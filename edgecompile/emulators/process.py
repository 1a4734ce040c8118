"""Emulated boards as context managers: the harness as a native process, the Uno under simavr
(through ``firmware/emulators/simavr_host.c``), Cortex-M boards under qemu-system-arm.

Each yields an :class:`Emulator` whose ``open()`` returns a pyserial port. Every emulator runs
in a process group of its own; leaving the ``with`` block (normally, on an error, on Ctrl-C or
SIGTERM) stops the whole group: SIGTERM, then SIGKILL, and waits until it is gone. Started
from the main thread, the emulator also gets SIGTERM if this Python process dies
(``PR_SET_PDEATHSIG``). Every run gets its own pty or TCP port, so parallel runs do not clash.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgecompile.errors import LinkError
from edgecompile.hosttools import simavr_program, spawn, stop_group
from edgecompile.link.timeouts import DEFAULT, Timeouts

QEMU_MACHINES = ("lm3s6965evb", "mps2-an385", "mps2-an386", "mps2-an500")
#: Instructions per SysTick count (CLKSOURCE = cpu clock) under ``-icount shift=0``, measured
#: with a timed loop of known length (tests/test_emulators.py::test_qemu_systick_calibration).
#: QEMU 7.2 clocks the lm3s6965evb's SysTick at 12.5 MHz, the MPS2 boards' at 25 MHz.
QEMU_INSTRUCTIONS_PER_SYSTICK = {"lm3s6965evb": 80, "mps2-an385": 40, "mps2-an386": 40,
                                 "mps2-an500": 40}


def build_simavr_host() -> Path:
    """The libsimavr host program that bridges a simulated UART to a pty (compiled once, cached)."""
    return simavr_program("simavr_host")


class _Lines(threading.Thread):
    """Reads a child's output lines into a queue (and keeps the pipe from filling up)."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        self.start()

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.all.append(line)
            self.lines.put(line)

    def wait_for(self, prefix: str, deadline: float, proc: subprocess.Popen) -> str:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(prefix)
            try:
                line = self.lines.get(timeout=min(left, 0.1))
            except queue.Empty:
                if proc.poll() is not None and self.lines.empty():
                    raise EOFError(prefix) from None
                continue
            if line.startswith(prefix):
                return line


class Emulator:
    """One running emulated board. Use as a context manager (``with run_*(...) as emu:``)."""

    def __init__(self, kind: str, argv: Sequence[str], timeouts: Timeouts = DEFAULT) -> None:
        self.kind = kind
        self.argv = list(argv)
        self.timeouts = timeouts
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._out: _Lines | None = None
        self._err: _Lines | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Emulator:
        t0 = time.monotonic()
        try:
            self.proc = spawn(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        except OSError as exc:
            raise LinkError(f"cannot start {self.kind} ({self.argv[0]}): {exc}") from exc
        try:
            self._out = _Lines(self.proc.stdout)
            self._err = _Lines(self.proc.stderr)
            self._wait_ready(t0 + self.timeouts.emulator_start_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        try:
            pty = self._out.wait_for("PTY ", deadline, self.proc)
            self._out.wait_for("READY", deadline, self.proc)
        except (TimeoutError, EOFError) as exc:
            raise LinkError(f"{self.kind} did not come up: {self.stderr_tail()}") from exc
        self.url = pty.split(" ", 1)[1]

    def stderr_tail(self) -> str:
        if self.proc and self.proc.poll() is not None and self._err:
            self._err.join(timeout=1.0)
        lines = self._err.all[-5:] if self._err else []
        return " | ".join(lines) or "(no output)"

    def stop(self) -> None:
        """Stop the emulator's process group (SIGTERM, SIGKILL after ``emulator_stop_s``) and
        wait until it is gone; a no-op once stopped."""
        if self.proc is not None:
            stop_group(self.proc, self.timeouts.emulator_stop_s)

    def events(self) -> list[str]:
        return list(self._out.all) if self._out else []

    def __enter__(self) -> Emulator:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the port ------------------------------------------------------------------------------
    def open(self):
        """A pyserial port on the emulated UART (retried until the emulator listens)."""
        from edgecompile.link.client import open_port

        deadline = time.monotonic() + self.timeouts.emulator_start_s
        while True:
            try:
                return open_port(self.url)
            except LinkError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise LinkError(
                        f"{self.kind}: cannot open {self.url}: {self.stderr_tail()}") from None
                time.sleep(0.02)

    def reset(self) -> None:
        """Reset the emulated core (simavr only): for tests of reset detection."""
        if self.kind != "simavr":
            raise NotImplementedError("reset() is implemented for simavr")
        self.proc.send_signal(signal.SIGUSR1)


class _QemuEmulator(Emulator):
    def __init__(self, elf: Path, machine: str, timeouts: Timeouts = DEFAULT) -> None:
        self.elf = Path(elf)
        self.machine = machine
        self.port_no = 0
        super().__init__("qemu", [], timeouts)

    def start(self) -> Emulator:
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise LinkError("qemu-system-arm not found (apt-get install qemu-system-arm)")
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port_no = free_tcp_port()
            self.argv = [qemu, "-M", self.machine, "-nographic", "-monitor", "none",
                         "-icount", "shift=0", "-kernel", str(self.elf), "-serial",
                         f"tcp:127.0.0.1:{self.port_no},server=on,wait=off,nodelay=on"]
            try:
                return super().start()
            except LinkError as exc:
                if "in use" not in str(exc).lower():
                    raise
        raise LinkError("qemu: no free TCP port after 3 tries")

    def _wait_ready(self, deadline: float) -> None:
        self.url = f"socket://127.0.0.1:{self.port_no}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LinkError(f"qemu exited: {self.stderr_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port_no), timeout=0.2):
                return  # listening (QEMU accepts the real client after this probe closes)
            time.sleep(0.02)
        raise LinkError(f"qemu did not listen on port {self.port_no}: {self.stderr_tail()}")


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_native(exe: str | Path, timeouts: Timeouts = DEFAULT) -> Emulator:
    """The harness built for the host (firmware/hal/native), serving a pty."""
    env_exe = str(Path(exe).resolve())
    return Emulator("native", [env_exe], timeouts)


def run_simavr(elf: str | Path, mcu: str = "atmega328p", f_cpu: int = 16_000_000,
               timeouts: Timeouts = DEFAULT) -> Emulator:
    """An AVR ELF under libsimavr, its UART0 on a fresh pty."""
    host = build_simavr_host()
    return Emulator("simavr", [str(host), "-m", mcu, "-f", str(f_cpu), str(Path(elf).resolve())],
                    timeouts)


def run_qemu(elf: str | Path, machine: str, timeouts: Timeouts = DEFAULT) -> Emulator:
    """A Cortex-M ELF under qemu-system-arm (``-icount shift=0``), UART0 on a TCP port."""
    if machine not in QEMU_MACHINES:
        raise LinkError(f"unknown QEMU machine {machine!r}; one of {', '.join(QEMU_MACHINES)}")
    return _QemuEmulator(Path(elf), machine, timeouts)


@contextlib.contextmanager
def emulate(kind: str, image: str | Path, machine: str | None = None,
            f_cpu: int | None = None) -> Iterator[Emulator]:
    """Start the emulator ``kind`` (``native`` | ``simavr`` | ``qemu``) on ``image``."""
    if kind == "native" or kind == "process":
        emu = run_native(image)
    elif kind == "simavr":
        emu = run_simavr(image, machine or "atmega328p", f_cpu or 16_000_000)
    elif kind == "qemu":
        emu = run_qemu(image, machine or "mps2-an385")
    else:
        raise LinkError(f"no emulator of kind {kind!r}")
    with emu:
        yield emu
