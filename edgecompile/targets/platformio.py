"""Running PlatformIO Core as a subprocess, with a project-local core dir that works offline.

PlatformIO keeps its packages and platforms in ``PLATFORMIO_CORE_DIR``. edgecompile never touches
the user's ``~/.platformio`` unless asked (``EDGECOMPILE_PIO_CORE_DIR``): each project gets
``<project>/.edgecompile/core`` holding

* ``packages/tool-scons``: a shim over the SCons from PyPI (the registry cannot be reached
  offline; PlatformIO only accepts the folder with a ``.piopm`` owned by "platformio"),
* ``appstate.json`` with ``last_version`` = the installed PlatformIO, so that PlatformIO does not
  "upgrade" its core packages over the network on first use,

and every run has telemetry and the upgrade check switched off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecompile.errors import BuildError
from edgecompile.hosttools import spawn, stop_group

#: Where the PlatformIO registry lives; probed (once, briefly) to decide online vs offline.
REGISTRY_HOST = "api.registry.platformio.org"
REGISTRY_PROBE_TIMEOUT_S = 2.0
#: Default upper bound of one ``pio`` invocation (online builds may download toolchains).
PIO_TIMEOUT_S = 900.0
CORE_SUBDIR = ".edgecompile/core"


def pio_versions() -> tuple[str, str]:
    """(installed PlatformIO version, the tool-scons version it requires)."""
    import platformio
    from platformio.dependencies import get_core_dependencies

    spec = get_core_dependencies()["tool-scons"]
    return platformio.__version__, spec.lstrip("~^=<> ")


def core_dir_for(project_dir: Path) -> Path:
    """The PlatformIO core dir used for ``project_dir`` (``EDGECOMPILE_PIO_CORE_DIR`` overrides)."""
    env = os.environ.get("EDGECOMPILE_PIO_CORE_DIR")
    return Path(env).expanduser().resolve() if env else Path(project_dir).resolve() / CORE_SUBDIR


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def prepare_core_dir(core_dir: Path) -> Path:
    """Create (idempotently) the tool-scons shim and appstate.json in ``core_dir``."""
    try:
        import SCons  # noqa: F401
    except ImportError as exc:  # pragma: no cover - packaging error
        raise BuildError("SCons is not installed (pip install 'scons>=4.4,<5')") from exc
    pio_version, scons_version = pio_versions()
    pkg = core_dir / "packages" / "tool-scons"
    _write_if_changed(pkg / "package.json",
                      json.dumps({"name": "tool-scons", "version": scons_version}) + "\n")
    _write_if_changed(pkg / ".piopm", json.dumps({
        "type": "tool", "name": "tool-scons", "version": scons_version,
        "spec": {"owner": "platformio", "id": None, "name": "tool-scons",
                 "requirements": None, "uri": None},
    }) + "\n")
    _write_if_changed(pkg / "scons.py",
                      "import sys\nfrom SCons.Script.Main import main\nsys.exit(main())\n")
    state_path = core_dir / "appstate.json"
    state = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except ValueError:
            state = {}
    if state.get("last_version") != pio_version:
        state["last_version"] = pio_version
        state.setdefault("settings", {})["check_platformio_interval"] = 36500
        state_path.write_text(json.dumps(state, indent=2) + "\n")
    return core_dir


def pio_env(core_dir: Path) -> dict[str, str]:
    """Environment variables for a ``pio`` subprocess."""
    env = dict(os.environ)
    env.update({
        "PLATFORMIO_CORE_DIR": str(core_dir),
        "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "No",
        "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "36500",
        "PLATFORMIO_DISABLE_UPGRADE_CHECK": "true",
        "PLATFORMIO_NO_ANSI": "true",
        "PLATFORMIO_DISABLE_PROGRESSBAR": "true",
        # The venv's scripts (and so SCons's python) first; PlatformIO adds toolchain dirs itself.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    return env


def registry_reachable(timeout: float = REGISTRY_PROBE_TIMEOUT_S) -> bool:
    """True if the PlatformIO registry answers one HTTPS request (proxies from the environment
    are honoured, as PlatformIO would use them); any HTTP status counts as an answer."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"https://{REGISTRY_HOST}/v3/packages", method="HEAD",
                                 headers={"User-Agent": "edgecompile"})
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


#: Lines of PlatformIO's output that mean a network failure.
_NETWORK_ERROR = re.compile(
    r"HTTPClientError|InternetConnectionError|not connected to the Internet|ConnectionError|"
    r"Max retries exceeded|Name or service not known|Temporary failure in name resolution|"
    r"Network is unreachable|Could not resolve host|SSLError|ReadTimeout|ConnectTimeout")
_INSTALLING = re.compile(r"(?:Platform|Tool|Library|Package) Manager: Installing (\S+)|"
                         r"^(?:Installing|Downloading|Unpacking) (\S+)")
OFFLINE_HINT = ("build offline with --offline (edgecompile's local platform over Debian's "
                "toolchains, no network)")


def require_registry(what: str, timeout: float = REGISTRY_PROBE_TIMEOUT_S) -> None:
    """Raise :class:`BuildError` at once (within ``timeout`` s) when the PlatformIO registry
    cannot be reached and ``what`` (e.g. "the standard atmelavr platform") needs it."""
    if not registry_reachable(timeout):
        raise BuildError(f"the PlatformIO registry ({REGISTRY_HOST}) cannot be reached within "
                         f"{timeout:g} s, and {what} needs it: {OFFLINE_HINT}")


def platform_installed(project_dir: Path, platform: str) -> bool:
    """True if the standard PlatformIO ``platform`` is already in the project's core dir (an
    online build then needs no network for it)."""
    return (core_dir_for(project_dir) / "platforms" / platform).is_dir()


def network_failure(output: str) -> str | None:
    """One line naming what PlatformIO failed to fetch, when ``output`` shows a network error."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if not _NETWORK_ERROR.search(line):
            continue
        fetching = None
        for prev in reversed(lines[:i]):
            m = _INSTALLING.search(prev.strip())
            if m:
                fetching = m.group(1) or m.group(2)
                break
        detail = line.strip().rstrip(":").strip() or "network error"
        if " " not in detail:  # a bare exception name (PlatformIO's HTTPClientError is empty)
            detail += ": no answer from the server"
        target = f"download {fetching}" if fetching else "reach the network"
        return f"PlatformIO could not {target} ({detail}); {OFFLINE_HINT}"
    return None


def choose_offline(offline: bool | None) -> bool:
    """``offline`` as given, else ``EDGECOMPILE_OFFLINE=1``, else probe the registry."""
    if offline is not None:
        return offline
    env = os.environ.get("EDGECOMPILE_OFFLINE", "").strip().lower()
    if env in ("1", "true", "yes"):
        return True
    if env in ("0", "false", "no"):
        return False
    return not registry_reachable()


@dataclass
class PioResult:
    returncode: int
    output: str
    seconds: float


def run_pio(
    args: Sequence[str],
    project_dir: Path,
    *,
    timeout: float = PIO_TIMEOUT_S,
    on_line: Callable[[str], None] | None = None,
) -> PioResult:
    """Run ``python -m platformio ARGS`` in ``project_dir`` with its own core dir.

    Output lines go to ``on_line`` as they come; the process is killed after ``timeout`` s
    (raises :class:`BuildError`). PlatformIO runs in a process group of its own (with SCons,
    the compilers and avrdude under it): on any exit from here but its own end (timeout,
    error, KeyboardInterrupt) the whole group is stopped and waited for, so that nothing is
    left running and the serial port is free again when this returns or raises.
    """
    project_dir = Path(project_dir).resolve()
    core = prepare_core_dir(core_dir_for(project_dir))
    cmd = [sys.executable, "-m", "platformio", *args]
    t0 = time.monotonic()
    env = pio_env(core)
    lines: list[str] = []
    timed_out = threading.Event()
    done = False

    def _kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, _kill)
    timer.daemon = True
    try:
        proc = spawn(cmd, cwd=project_dir, env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                     errors="replace")
    except OSError as exc:
        raise BuildError(f"cannot run PlatformIO: {exc}") from exc
    try:
        timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        proc.wait()
        done = True
    finally:
        timer.cancel()
        # Also after a normal end: a member the run left behind must not outlive it.
        stop_group(proc, grace=0 if timed_out.is_set() or done else 1.0)
        with contextlib.suppress(OSError, ValueError):
            proc.stdout.close()  # type: ignore[union-attr]  # piped above
    if timed_out.is_set():
        raise BuildError(f"'pio {' '.join(args)}' took longer than {timeout:.0f} s and was stopped")
    return PioResult(proc.returncode, "".join(lines), time.monotonic() - t0)
