"""``edgecompile build DIR``: budget estimate, ``pio run``, linked sizes against the budget."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecompile.errors import BoardError, BuildError
from edgecompile.targets.boards import BoardProfile, get_board
from edgecompile.targets.budget import BudgetReport, check_budget, estimate_project, linked_usage
from edgecompile.targets.manifest import read_manifest
from edgecompile.targets.platformio import (
    PIO_TIMEOUT_S,
    choose_offline,
    network_failure,
    platform_installed,
    require_registry,
    run_pio,
)

#: ``progress(done, total, what)``: see :mod:`edgecompile.cli.progress`.
ProgressFn = Callable[[int, int, str], None]
#: Steps PlatformIO prints besides one per compiled file: release mode, size check, image.
_FIXED_STEPS = 4
_SOURCES = (".c", ".cpp", ".cc", ".S")
ARDUINO_CORE = Path("/usr/share/arduino/hardware/arduino/avr/cores/arduino")
#: Files of a framework whose sources cannot be counted here (an online framework package).
_FRAMEWORK_GUESS = 25

#: Lines of PlatformIO's output shown as progress.
_PROGRESS = re.compile(r"^(Compiling|Linking|Archiving|Building|Checking size|Installing|Downloading)\b")
_ERROR = re.compile(r"(error:|Error:|\*\*\*|undefined reference|overflowed|will not fit)")


@dataclass
class BuildResult:
    """What :func:`build_project` produced."""

    project_dir: Path
    board: BoardProfile
    env: str
    offline: bool
    elf: Path
    image: Path | None  # .hex (AVR) / .bin (Cortex-M) / None (native: the ELF runs)
    seconds: float
    estimate: BudgetReport
    linked: BudgetReport

    def to_json(self) -> dict:
        return {"board": self.board.id, "env": self.env, "offline": self.offline,
                "elf": str(self.elf), "image": None if self.image is None else str(self.image),
                "seconds": round(self.seconds, 3), "estimate": self.estimate.to_dict(),
                "linked": self.linked.to_dict()}


def select_env(board: BoardProfile, offline: bool) -> str:
    return board.pio_env_offline if offline or not board.online else board.pio_env_online


def expected_steps(project_dir: Path, env: str) -> int:
    """About how many progress lines (compile, archive, link, ...) a clean build of ``env``
    prints: the ETA of the build's progress."""
    def count(root: Path) -> int:
        return sum(1 for p in root.rglob("*") if p.suffix in _SOURCES and p.is_file()) \
            if root.is_dir() else 0

    libs = [d for d in (project_dir / "lib").glob("*/src") if d.is_dir()]
    n = count(project_dir / "src") + sum(count(d) for d in libs) + len(libs) + _FIXED_STEPS
    ini = project_dir / "platformio.ini"
    text = ini.read_text(errors="replace") if ini.is_file() else ""
    section = re.search(rf"^\[env:{re.escape(env)}\](.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section and re.search(r"^\s*framework\s*=\s*\S", section.group(1), re.M):
        n += (count(ARDUINO_CORE) if env.endswith("_offline") else _FRAMEWORK_GUESS) + 1
    return n


def build_project(
    project_dir: Path | str,
    offline: bool | None = None,
    *,
    echo: Callable[[str], None] | None = print,
    verbose: bool = False,
    timeout: float = PIO_TIMEOUT_S,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build an exported project with PlatformIO.

    ``offline``: True uses the local platform (no network, Debian toolchains); False the standard
    platform; None decides (``EDGECOMPILE_OFFLINE``, else a short registry probe). ``echo``
    receives the memory report and, without ``progress``, PlatformIO's steps (None: silent;
    ``verbose``: every pio line). ``progress(done, total, what)`` receives the steps (the
    memory estimate, then PlatformIO's compile steps). An online build whose platform is not
    installed yet fails at once when the PlatformIO registry cannot be reached.
    Raises :class:`BoardError` when the firmware cannot fit (before or after linking) and
    :class:`BuildError` when the build fails.
    """
    say = echo or (lambda _s: None)
    project_dir = Path(project_dir).resolve()
    manifest = read_manifest(project_dir)
    board = get_board(manifest.board)
    t0 = time.monotonic()

    if progress is not None:
        progress(0, 1, "memory estimate")
    estimate = estimate_project(project_dir, board)
    if progress is not None:
        progress(1, 1, "memory estimate")
    say(estimate.render())
    check_budget(estimate, manifest.bits)

    probed = offline is None
    offline = choose_offline(offline)
    env = select_env(board, offline)
    online_platform = (board.online or {}).get("platform")
    if (not env.endswith("_offline") and online_platform
            and not platform_installed(project_dir, online_platform)):
        if not probed or os.environ.get("EDGECOMPILE_OFFLINE", "").strip():
            # Chosen without a probe (--online, EDGECOMPILE_OFFLINE=0): find out now, not
            # after PlatformIO's minute of retries.
            require_registry(f"the standard {online_platform} platform")
    say(f"building {board.id} with PlatformIO, environment {env}"
        f" ({'offline, local platform' if env.endswith('_offline') else 'standard platform'})")
    steps = [0]
    total = [expected_steps(project_dir, env)]
    if progress is not None:
        progress(0, total[0], "build steps")

    def on_line(line: str) -> None:
        if verbose:
            say(line)
        if _PROGRESS.match(line):
            steps[0] += 1
            total[0] = max(total[0], steps[0] + 1)  # the image and size steps are still to come
            if progress is not None:
                progress(steps[0], total[0], f"build steps: {line.strip()}")
            elif not verbose:
                say(f"  [{steps[0]:>3}] {line}")

    res = run_pio(["run", "-e", env], project_dir, timeout=timeout, on_line=on_line)
    if res.returncode != 0:
        lines = res.output.splitlines()
        errs = [ln.strip() for ln in lines if _ERROR.search(ln)]
        fit = [ln.strip() for ln in lines
               if "overflowed" in ln or "will not fit" in ln or "leaves less than the reserved stack" in ln]
        if fit:
            raise BoardError(f"the firmware does not fit board '{board.id}' (linker): {fit[0]}; "
                             "try --bits 8, a lower rank, more sparsity or a smaller hidden size")
        network = network_failure(res.output)
        if network is not None:
            raise BuildError(f"PlatformIO build of {env} failed: {network}")
        detail = errs[0] if errs else next((ln.strip() for ln in reversed(lines) if ln.strip()),
                                           "no output")
        raise BuildError(f"PlatformIO build of {env} failed: {detail}")
    if progress is not None:
        progress(steps[0], steps[0], "build steps")

    build_dir = project_dir / ".pio" / "build" / env
    elf = next((p for p in (build_dir / "firmware.elf", build_dir / "program",
                            build_dir / "firmware", build_dir / "program.elf") if p.is_file()), None)
    if elf is None:
        raise BuildError(f"PlatformIO reported success but {build_dir} holds no firmware")
    image = next((p for p in (build_dir / "firmware.hex", build_dir / "firmware.bin")
                  if p.is_file()), None)
    use = linked_usage(elf, board)
    linked = BudgetReport(board.id, "linked", use.flash, board.flash_bytes, use.ram,
                          board.ram_bytes, board.stack_reserve_bytes, estimate.parts,
                          estimate.stack_bound)
    seconds = time.monotonic() - t0
    say(linked.render())
    check_budget(linked, manifest.bits)
    say(f"built {elf.relative_to(project_dir)} in {seconds:.1f} s")
    return BuildResult(project_dir, board, env, env.endswith("_offline"), elf, image, seconds,
                       estimate, linked)
