"""Host-side programs edgecompile compiles on first use and caches: the libsimavr host programs
(``firmware/emulators/``) and the rebuilt Optiboot bootloader; and how every child process is
started and stopped.

Cached under ``$EDGECOMPILE_CACHE`` (default ``~/.cache/edgecompile``), keyed by the hash of
every input (sources and flags), written atomically so parallel first uses are safe.

Child processes (PlatformIO and what it runs, emulators, compilers) start with :func:`spawn`
in a session and process group of their own, so a terminal's Ctrl-C reaches only edgecompile,
which then stops the whole group with :func:`stop_group` (SIGTERM, SIGKILL after a grace
period, then waits until no member is left), also on KeyboardInterrupt and SIGTERM. On Linux
the direct child also gets SIGTERM if edgecompile itself dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecompile.errors import BuildError
from edgecompile.resources import resource_dir

#: Compiling a host program or the bootloader.
TOOL_COMPILE_TIMEOUT_S = 120.0
SIMAVR_CFLAGS = ("-O2", "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                 "-isystem", "/usr/include/simavr", "-isystem", "/usr/include/simavr/parts")
SIMAVR_LIBS = ("-lsimavr", "-lutil", "-lpthread")
#: Headers the host programs share (part of every cache key).
SIMAVR_HEADERS = ("simavr_uart_pty.h",)


#: After SIGTERM to a child's process group, wait this long before SIGKILL.
STOP_GRACE_S = 2.0
#: After SIGKILL, wait at most this long for the group to be gone.
KILL_WAIT_S = 5.0
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up here: no dlopen in a forked child


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: SIGTERM to the child when ``parent`` ends (Linux), and no start at all
    if it has already ended."""

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **kwargs)`` in a new session and process group (its id is the
    child's pid). From the main thread the child also ends with this process (the parent-death
    signal follows the thread that forked, so other threads do not set it)."""
    if threading.current_thread() is threading.main_thread():
        kwargs.setdefault("preexec_fn", _die_with_parent(os.getpid()))
    return subprocess.Popen(list(cmd), start_new_session=True, **kwargs)


def group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` is alive (zombies do not count)."""
    try:
        entries = list(Path("/proc").glob("[0-9]*/stat"))
    except OSError:
        entries = []
    if not entries:  # no /proc: ask the kernel whether the group still exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat_path in entries:
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """Stop ``proc`` (started by :func:`spawn`) and every process of its group: SIGTERM, SIGKILL
    after ``grace`` s, then wait until the child is reaped and no group member is left.

    Safe to call more than once and on a finished process. A KeyboardInterrupt while waiting
    escalates to SIGKILL at once; the wait is finished and the (first) interrupt raised
    afterwards.
    """
    pgid = proc.pid
    interrupted: BaseException | None = None
    killed = grace <= 0
    if proc.poll() is None or group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL if killed else signal.SIGTERM)
    deadline = time.monotonic() + (KILL_WAIT_S if killed else grace)
    while True:
        try:
            if proc.poll() is not None and not group_alive(pgid):
                break
            if time.monotonic() >= deadline:
                if killed:
                    break  # an unkillable (D state) member: do not hang
                _signal_group(pgid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + KILL_WAIT_S
            time.sleep(0.01)
        except KeyboardInterrupt as exc:
            interrupted = interrupted or exc  # the first one is raised
            _signal_group(pgid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + KILL_WAIT_S
    if interrupted is not None:
        raise interrupted


def run_captured(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` (own process group), capture its output as text; the whole group is stopped
    on a timeout (``subprocess.TimeoutExpired``), an error or an interrupt."""
    proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True, errors="replace")
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        stop_group(proc, grace=0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        raise
    if group_alive(proc.pid):  # a member that outlived the child (e.g. a daemonised helper)
        stop_group(proc, grace=0)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def cache_dir() -> Path:
    """``$EDGECOMPILE_CACHE`` or ``$XDG_CACHE_HOME/edgecompile`` (``~/.cache``), created."""
    base = os.environ.get("EDGECOMPILE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgecompile")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached(name: str, inputs: list[bytes], make: Callable[[Path], None]) -> Path:
    """A file in the cache keyed by the hash of ``inputs``, made atomically by ``make(tmp)``."""
    key = hashlib.sha256(b"\0".join(inputs)).hexdigest()[:16]
    out = cache_dir() / f"{name}-{key}"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".tmp-") as tmp:
        target = Path(tmp) / out.name
        make(target)
        os.replace(target, out)
    return out


def run_tool(cmd: list[str], what: str) -> None:
    """Run a compiler step; any failure is a one-line :class:`BuildError`."""
    try:
        res = run_captured(cmd, TOOL_COMPILE_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: '{cmd[0]}' is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: took longer than {TOOL_COMPILE_TIMEOUT_S:.0f} s") from exc
    if res.returncode != 0:
        raise BuildError(f"{what} failed (is libsimavr-dev installed?): {res.stderr.strip()[:400]}")


def simavr_program(name: str) -> Path:
    """``firmware/emulators/<name>.c`` compiled against libsimavr (cached)."""
    folder = resource_dir("firmware") / "emulators"
    src = folder / f"{name}.c"
    if not src.is_file():
        raise BuildError(f"{src} is missing")
    if shutil.which("gcc") is None:
        raise BuildError("gcc is not installed (needed for the simavr host programs)")

    def make(target: Path) -> None:
        run_tool(["gcc", *SIMAVR_CFLAGS, str(src), "-o", str(target), *SIMAVR_LIBS], f"compiling {src.name}")

    inputs = [src.read_bytes(), *((folder / h).read_bytes() for h in SIMAVR_HEADERS),
              " ".join(SIMAVR_CFLAGS + SIMAVR_LIBS).encode()]
    return cached(name, inputs, make)
