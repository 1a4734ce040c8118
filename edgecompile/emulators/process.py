"""Emulated boards as context managers: the harness as a native process, AVR boards under simavr
(through ``firmware/emulators/simavr_host.c``), Cortex-M boards under qemu-system-arm. The
board's platform gives the command line and how the UART comes out (a pty the emulator announces,
or a TCP port picked here); this module runs it.

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
from typing import IO, TYPE_CHECKING

from edgecompile.errors import LinkError
from edgecompile.hosttools import spawn, stop_group
from edgecompile.link.timeouts import DEFAULT, Timeouts
from edgecompile.targets.boards import BoardProfile, list_boards
from edgecompile.targets.platforms import Platform, platform_for

if TYPE_CHECKING:
    from serial import SerialBase


class _Lines(threading.Thread):
    """Reads a child's output lines into a queue (and keeps the pipe from filling up)."""

    def __init__(self, stream: IO[bytes]) -> None:
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

    def wait_for(self, prefix: str, deadline: float, proc: subprocess.Popen[bytes]) -> str:
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
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None
        self._t0 = 0.0
        self._out: _Lines | None = None
        self._err: _Lines | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Emulator:
        self.launch()
        return self.wait_started()

    def launch(self) -> None:
        """Start the process (from the main thread it dies with this one); :meth:`wait_started`
        then waits until its port is ready. ``start()`` does both."""
        self._t0 = time.monotonic()
        try:
            self.proc = spawn(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        except OSError as exc:
            raise LinkError(f"cannot start {self.kind} ({self.argv[0]}): {exc}") from exc
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out = _Lines(self.proc.stdout)
        self._err = _Lines(self.proc.stderr)

    def wait_started(self) -> Emulator:
        """Wait until the launched emulator's port is ready (stopped if it does not come up)."""
        try:
            self._wait_ready(self._t0 + self.timeouts.emulator_start_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - self._t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self._out is not None and self.proc is not None
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

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the port ------------------------------------------------------------------------------
    def open(self) -> SerialBase:
        """A pyserial port on the emulated UART (retried until the emulator listens)."""
        from edgecompile.link.client import open_port

        if self.url is None:
            raise LinkError(f"{self.kind} is not running")
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
        assert self.proc is not None, "reset() of an emulator that is not running"
        self.proc.send_signal(signal.SIGUSR1)


class _TcpEmulator(Emulator):
    """An emulator whose UART listens on a TCP port given on its command line."""

    def __init__(self, platform: Platform, image: Path, timeouts: Timeouts = DEFAULT) -> None:
        self.platform = platform
        self.image = Path(image)
        self.port_no = 0
        assert platform.board.emulator is not None
        super().__init__(platform.board.emulator.kind, [], timeouts)

    def start(self) -> Emulator:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.launch()
            try:
                return self.wait_started()
            except LinkError as exc:
                if not port_taken(exc):
                    raise
        raise LinkError(f"{self.kind}: no free TCP port after 3 tries")

    def launch(self) -> None:
        self.port_no = free_tcp_port()
        self.argv = self.platform.emulator_argv(self.image, self.port_no)
        if shutil.which(self.argv[0]) is None:
            raise LinkError(f"{self.argv[0]} not found (apt-get install {self.argv[0]})")
        super().launch()

    def _wait_ready(self, deadline: float) -> None:
        self.url = f"socket://127.0.0.1:{self.port_no}"
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LinkError(f"{self.kind} exited: {self.stderr_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port_no), timeout=0.2):
                return  # listening (the emulator accepts the real client after this probe closes)
            time.sleep(0.02)
        raise LinkError(f"{self.kind} did not listen on port {self.port_no}: {self.stderr_tail()}")


def port_taken(exc: BaseException) -> bool:
    """The emulator could not bind its TCP port (taken between probe and bind): try again."""
    return isinstance(exc, LinkError) and "in use" in str(exc).lower()


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_board(board: BoardProfile | str, image: str | Path, timeouts: Timeouts = DEFAULT) -> Emulator:
    """The emulator of ``board`` running ``image`` (not started: use it as a context manager)."""
    platform = platform_for(board)
    em = platform.board.emulator
    if em is None or platform.emulator_serial is None:
        raise LinkError(f"board '{platform.board.id}' has no emulator; use --port")
    if platform.emulator_serial == "tcp":
        return _TcpEmulator(platform, Path(image), timeouts)
    return Emulator(em.kind, platform.emulator_argv(Path(image)), timeouts)


def _emulated_board(kind: str, machine: str) -> BoardProfile:
    """The first board that runs in ``kind`` as ``machine``, else the board of that id."""
    for board in list_boards():
        if board.emulator is not None and (board.emulator.kind, board.emulator.machine) == (kind, machine):
            return board
    for board in list_boards():
        if board.emulator is not None and board.emulator.kind == kind and machine in (board.id, *board.aliases):
            return board
    raise LinkError(f"no board runs in {kind} as {machine!r}")


def run_native(exe: str | Path, timeouts: Timeouts = DEFAULT) -> Emulator:
    """The harness built for the host (``firmware/native``), serving a pty."""
    return run_board("native", exe, timeouts)


def run_simavr(elf: str | Path, mcu: str = "atmega328p", timeouts: Timeouts = DEFAULT) -> Emulator:
    """An AVR ELF under libsimavr as the first board with that MCU, its UART0 on a fresh pty."""
    return run_board(_emulated_board("simavr", mcu), elf, timeouts)


def run_qemu(elf: str | Path, machine: str, timeouts: Timeouts = DEFAULT) -> Emulator:
    """A Cortex-M ELF under qemu-system-arm as the board of that machine (or of that board id),
    the harness's UART on a TCP port."""
    return run_board(_emulated_board("qemu", machine), elf, timeouts)


@contextlib.contextmanager
def emulate(board: BoardProfile | str, image: str | Path) -> Iterator[Emulator]:
    """Start the emulator of ``board`` on ``image``; stopped when the block ends."""
    with run_board(board, image) as emu:
        yield emu


@contextlib.contextmanager
def emulate_many(board: BoardProfile | str, image: str | Path, count: int,
                 timeouts: Timeouts = DEFAULT) -> Iterator[list[Emulator]]:
    """``count`` emulators of ``board`` on ``image``, started side by side (each on its own pty
    or TCP port); all are stopped when the block ends, or when any fails to start."""
    emus = [run_board(board, image, timeouts) for _ in range(max(1, count))]
    errors: dict[int, BaseException] = {}

    def wait(k: int) -> None:
        try:
            emus[k].wait_started()
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            errors[k] = exc

    try:
        for emu in emus:  # processes from this thread: they die with it
            emu.launch()
        threads = [threading.Thread(target=wait, args=(k,), daemon=True) for k in range(len(emus))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, exc in sorted(errors.items()):
            if not port_taken(exc):
                raise exc
            emus[k].start()  # its TCP port was taken meanwhile: a new one
        yield emus
    finally:
        for emu in emus:
            emu.stop()
