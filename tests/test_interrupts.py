"""Ctrl-C (SIGINT) and SIGTERM end every child of the command: PlatformIO with SCons and the
compilers under it, avrdude, simavr, QEMU and the host-tool compilers.

Each case runs the installed console script, watches its descendants through /proc (parent
chains, plus any process whose command line or working directory names the test's unique
directory), sends the signal when a chosen child is running, and then checks that the command
exits promptly with 130 (SIGINT) or 143 (SIGTERM), without a traceback, and that no process
it started is still alive.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.hosttools import group_alive, spawn, stop_group
from edgecompile.targets.flash import SimulatedUno, port_holders

from .helpers.models import make_arrays, make_inputs

EDGECOMPILE = str(Path(sys.executable).with_name("edgecompile"))
#: The command must exit this soon after the signal.
EXIT_WITHIN_S = 6.0
#: Waiting for the child that triggers the signal.
TRIGGER_TIMEOUT_S = 90.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")


@dataclass
class Proc:
    pid: int
    start: str  # /proc/PID/stat starttime: tells a live process from a reused pid
    argv: list[str]  # the latest command line (a fork shows its parent's until it execs)
    seen: list[list[str]] = field(default_factory=list)  # every command line seen

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name if self.argv else ""

    @property
    def words(self) -> set[str]:
        """Program names in the first words (``python -m platformio``, ``python scons.py``)."""
        return {Path(a).name for argv in self.seen for a in argv[:3]}

    def update(self, argv: list[str]) -> None:
        if argv and argv != self.argv:
            self.argv = argv
        if argv and argv not in self.seen:
            self.seen.append(argv)


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, starttime) of ``pid``, None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), fields[19]


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


@dataclass
class Tracker:
    """Every process descended from ``root`` or naming ``mark`` (a unique directory)."""

    root: int
    mark: str
    procs: dict[int, Proc] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def _names_mark(self, pid: int, argv: list[str]) -> bool:
        return any(self.mark in a for a in argv) or _cwd(pid).startswith(self.mark)

    def scan(self) -> None:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(int(entry))
                if st is not None:
                    stats[int(entry)] = st
        known = {p for p, info in self.procs.items() if stats.get(p, ("", 0, ""))[2] == info.start}
        known.add(self.root)
        changed = True
        while changed:
            changed = False
            for pid, (_state, ppid, start) in stats.items():
                if pid in known or pid == os.getpid():
                    continue
                argv = _argv(pid)
                if ppid in known or (pid not in self.procs and self._names_mark(pid, argv)):
                    if pid != self.root and (pid not in self.procs
                                             or self.procs[pid].start != start):
                        self.procs[pid] = Proc(pid, start, argv)
                    known.add(pid)
                    changed = True
        for pid in known - {self.root}:
            self.procs[pid].update(_argv(pid))

    def run(self) -> None:
        while not self.stop.is_set():
            self.scan()
            time.sleep(0.005)

    def alive(self) -> list[Proc]:
        """Tracked processes still running (zombies count as gone), and any new one that
        names the mark."""
        self.scan()
        out = []
        for p in self.procs.values():
            st = _stat(p.pid)
            if st is not None and st[2] == p.start and st[0] not in ("Z", "X"):
                out.append(p)
        return out


def _ancestors(tracker: Tracker, pid: int) -> list[Proc]:
    chain = []
    while pid in tracker.procs:
        st = _stat(pid)
        if st is None:
            break
        pid = st[1]
        if pid in tracker.procs:
            chain.append(tracker.procs[pid])
    return chain


def interrupt(args: list[str], sig: signal.Signals, mark: Path,
              trigger: Callable[[Tracker], bool], after_s: float = 0.0) -> tuple[Tracker, str]:
    """Run ``edgecompile ARGS``; once ``trigger(tracker)`` holds (and ``after_s`` later) send
    ``sig``; check the exit and that nothing it started is left. Returns (tracker, stderr)."""
    proc = subprocess.Popen(
        [EDGECOMPILE, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
        # A background shell starts jobs with SIGINT ignored; the user's terminal would not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    tracker = Tracker(proc.pid, str(mark))
    watcher = threading.Thread(target=tracker.run, daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + TRIGGER_TIMEOUT_S
        while not trigger(tracker):
            assert proc.poll() is None, f"ended (status {proc.returncode}) before the trigger"
            assert time.monotonic() < deadline, "the trigger never came"
            time.sleep(0.005)
        time.sleep(after_s)
        assert proc.poll() is None, f"ended (status {proc.returncode}) before the signal"
        tracker.stop.set()
        watcher.join()
        tracker.scan()
        proc.send_signal(sig)
        t0 = time.monotonic()
        _out, err = proc.communicate(timeout=EXIT_WITHIN_S + 10)
        took = time.monotonic() - t0
        left = tracker.alive()
        assert not left, "left running: " + "; ".join(f"{p.pid} {' '.join(p.argv)[:120]}"
                                                     for p in left)
        assert took < EXIT_WITHIN_S, f"took {took:.1f} s to exit"
        assert proc.returncode == 128 + sig, (proc.returncode, err)
        assert "Traceback" not in err, err
        # One message, the last line (progress lines may come before it).
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("edgecompile: "), err
        assert sum(ln.startswith("edgecompile:") for ln in lines) == 1, err
        return tracker, err
    finally:
        tracker.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for p in tracker.alive():  # never leave anything behind for the next test
            try:
                os.kill(p.pid, signal.SIGKILL)
            except OSError:
                pass


def running(name: str, under: str | None = None) -> Callable[[Tracker], bool]:
    """Trigger: a live descendant whose program is ``name`` (below one named ``under``)."""

    def check(tracker: Tracker) -> bool:
        for p in list(tracker.procs.values()):
            if name not in {Path(a).name for a in p.argv[:3]}:
                continue
            st = _stat(p.pid)
            if st is None or st[2] != p.start or st[0] in ("Z", "X"):
                continue
            if under is None or any(under in " ".join(a.argv[:2]) for a in _ancestors(tracker, p.pid)):
                return True
        return False

    return check


# --------------------------------------------------------------------------- projects

def _export(root: Path, board: str, model_path: Path, calib_path: Path) -> Path:
    out = root / board
    subprocess.run([EDGECOMPILE, "export", str(model_path), "--board", board, "--calib",
                    str(calib_path), "-o", str(out)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model, data, and exported projects: uno and mps2-an385 built, one uno left unbuilt."""
    root = tmp_path_factory.mktemp("interrupts")
    arrays = make_arrays(D=4, H=8, C=3)
    model = model_from_arrays(arrays)
    model_path = root / "model.npz"
    np.savez(model_path, **arrays)
    calib = root / "calib.npy"
    np.save(calib, make_inputs(model, n=32, T=12))
    data = root / "X.npy"
    np.save(data, make_inputs(model, n=1500, T=12, seed=3))
    out = {"root": root, "data": data}
    for board in ("uno", "mps2_an385"):
        out[board] = _export(root / "built", board, model_path, calib)
        subprocess.run([EDGECOMPILE, "build", str(out[board]), "--offline"], check=True,
                       capture_output=True, timeout=300)
    out["fresh"] = _export(root / "fresh", "uno", model_path, calib)
    return out


# ------------------------------------------------------------------------------ build

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("moment", ["platformio-starting", "compiling"])
def test_build_interrupted(work: dict[str, Path], sig: signal.Signals, moment: str) -> None:
    project = work["fresh"]
    shutil.rmtree(project / ".pio", ignore_errors=True)
    trigger = (running("platformio") if moment == "platformio-starting"
               else running("cc1", under="scons"))
    tracker, _err = interrupt(["build", str(project), "--offline"], sig, project, trigger)
    names = set().union(*(p.words for p in tracker.procs.values()))
    assert "platformio" in names
    if moment == "compiling":
        assert "scons.py" in names and "cc1" in names


# ----------------------------------------------------------------------------- verify

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("board,program", [("uno", "simavr_host"),
                                           ("mps2_an385", "qemu-system-arm")])
def test_verify_emulate_interrupted(work: dict[str, Path], board: str, program: str,
                                    sig: signal.Signals) -> None:
    project = work[board]
    elf = next((project / ".pio" / "build").glob("*/firmware.elf"))

    def emulator_running(tracker: Tracker) -> bool:
        return any(p.name.startswith(program) and any(str(elf) in a for a in p.argv)
                   for p in tracker.alive())

    # 0.4 s after the start: the link is up and sequences are on the wire.
    interrupt(["verify", str(project), "--emulate", "--data", str(work["data"])], sig,
              project, emulator_running, after_s=0.4)


def test_host_tool_compile_interrupted(work: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The first verify on the Uno compiles the simavr host program: interrupted there, gcc
    and its passes end and the cache keeps no partial program."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGECOMPILE_CACHE", str(cache))
    project = work["uno"]
    interrupt(["verify", str(project), "--emulate", "--data", str(work["data"])],
              signal.SIGINT, tmp_path, running("cc1"))
    assert not any(cache.glob("simavr_host*")) and not any(cache.glob(".tmp-*"))


# ------------------------------------------------------------------------------ flash

@pytest.fixture(scope="module")
def uno() -> SimulatedUno:
    with SimulatedUno() as sim:
        yield sim


@pytest.mark.slow  # about 10 s each: every flash first rebuilds incrementally
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_flash_interrupted_during_upload(work: dict[str, Path], uno: SimulatedUno,
                                         sig: signal.Signals) -> None:
    project = work["uno"]
    interrupt(["flash", str(project), "--port", uno.port, "--offline"], sig, project,
              running("avrdude"), after_s=0.3)
    assert port_holders(uno.port) == []  # avrdude is gone: the port is free again


# ------------------------------------------------------------------ the process groups

def test_stop_group_ends_members_that_ignore_sigterm() -> None:
    """Grandchildren are stopped with the child; SIGTERM ignored means SIGKILL after the grace."""
    proc = spawn(["sh", "-c", "trap '' TERM; sleep 60 & sleep 60 & echo started; wait"],
                 stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    members = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
               if (_stat(pid) or ("", 0, ""))[1] == proc.pid]
    assert len(members) == 2 and all(os.getpgid(pid) == proc.pid for pid in members)
    t0 = time.monotonic()
    stop_group(proc, grace=0.3)
    took = time.monotonic() - t0
    assert proc.returncode == -signal.SIGKILL and not group_alive(proc.pid)
    assert 0.3 <= took < 3.0
    proc.stdout.close()
    stop_group(proc)  # again: a no-op


def test_second_interrupt_while_stopping_kills_at_once() -> None:
    """Ctrl-C pressed again during the grace period: SIGKILL now, and the interrupt still
    reaches the caller once the group is gone."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    proc = spawn(["sh", "-c", "trap '' TERM; sleep 60 & echo started; wait"],
                 stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            stop_group(proc, grace=30.0)
    finally:
        timer.cancel()
        proc.stdout.close()
    assert time.monotonic() - t0 < 3.0
    assert proc.returncode == -signal.SIGKILL and not group_alive(proc.pid)


def test_spawned_child_ends_with_its_parent() -> None:
    """A parent that dies without any clean-up (SIGKILL) still takes its child along."""
    code = ("import subprocess, sys, time\n"
            "from edgecompile.hosttools import spawn\n"
            "p = spawn(['sleep', '60'])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    start = (_stat(child) or ("", 0, ""))[2]
    assert start
    parent.kill()
    parent.wait(10)
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = _stat(child)
        if st is None or st[2] != start or st[0] in ("Z", "X"):
            break
        time.sleep(0.01)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its parent")
