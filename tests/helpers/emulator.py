"""Driving a running emulator from a test: a port whose writes can be intercepted, a core reset
that waits for the emulator to report it, and the run of a self-checking image to its END line."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecompile.emulators.process import Emulator


class HookedPort:
    """A serial port wrapper calling ``hook(n, data)`` before the n-th write (from 1) and writing
    what it returns. The wrapper has no file descriptor, so a client on it reads by polling."""

    def __init__(self, port, hook: Callable[[int, bytes], bytes]) -> None:
        self.port, self.hook, self.n = port, hook, 0

    timeout = property(lambda s: s.port.timeout, lambda s, v: setattr(s.port, "timeout", v))
    in_waiting = property(lambda s: s.port.in_waiting)

    def write(self, data):
        self.n += 1
        return self.port.write(self.hook(self.n, bytes(data)))

    def read(self, n):
        return self.port.read(n)

    def flush(self):
        self.port.flush()

    def reset_input_buffer(self):
        self.port.reset_input_buffer()


def reset_and_wait(emu: Emulator, timeout_s: float = 5.0) -> None:
    """A real core reset of the emulated device; returns once the emulator has reported it (or
    after ``timeout_s``: the test's own check of the RESET event then fails)."""
    emu.reset()
    deadline = time.monotonic() + timeout_s
    while "RESET" not in emu.events() and time.monotonic() < deadline:
        time.sleep(0.01)


def reset_before(emu: Emulator, at: int) -> Callable[[int, bytes], bytes]:
    """A ``HookedPort`` hook resetting ``emu`` (``reset_and_wait``) just before the ``at``-th write."""
    def hook(n: int, data: bytes) -> bytes:
        if n == at:
            reset_and_wait(emu)
        return data
    return hook


def run_to_end(emu: Emulator, label: str, timeout_s: float) -> str:
    """Start a self-checking image waiting for ``g`` on its serial port and return everything it
    prints up to and including its ``END`` line; fails after ``timeout_s`` without one."""
    port = emu.open()
    try:
        port.write(b"g")
        buf = b""
        deadline = time.monotonic() + timeout_s
        while b"END\r\n" not in buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"{label}: no END within {timeout_s:.0f} s; got {buf[-300:]!r}")
            buf += port.read(4096)
    finally:
        port.close()
    return buf.decode("ascii")
