"""Host-side programs edgecompile compiles on first use and caches: the libsimavr host programs
(``firmware/emulators/``) and the rebuilt Optiboot bootloader.

Cached under ``$EDGECOMPILE_CACHE`` (default ``~/.cache/edgecompile``), keyed by the hash of
every input (sources and flags), written atomically so parallel first uses are safe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import BuildError
from .resources import resource_dir

#: Compiling a host program or the bootloader.
TOOL_COMPILE_TIMEOUT_S = 120.0
SIMAVR_CFLAGS = ("-O2", "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                 "-isystem", "/usr/include/simavr", "-isystem", "/usr/include/simavr/parts")
SIMAVR_LIBS = ("-lsimavr", "-lutil", "-lpthread")
#: Headers the host programs share (part of every cache key).
SIMAVR_HEADERS = ("simavr_uart_pty.h",)


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
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_COMPILE_TIMEOUT_S,
                             check=False)
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
