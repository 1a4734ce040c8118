"""``edgecompile build DIR``: budget estimate, ``pio run``, linked sizes against the budget."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecompile.errors import BoardError, BuildError
from edgecompile.targets.boards import BoardProfile, get_board
from edgecompile.targets.budget import BudgetReport, check_budget, estimate_project, linked_usage
from edgecompile.targets.manifest import read_manifest
from edgecompile.targets.platformio import PIO_TIMEOUT_S, choose_offline, run_pio

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


def build_project(
    project_dir: Path | str,
    offline: bool | None = None,
    *,
    echo: Callable[[str], None] | None = print,
    verbose: bool = False,
    timeout: float = PIO_TIMEOUT_S,
) -> BuildResult:
    """Build an exported project with PlatformIO.

    ``offline``: True uses the local platform (no network, Debian toolchains); False the standard
    platform; None decides (``EDGECOMPILE_OFFLINE``, else a short registry probe). ``echo``
    receives progress and the memory report (None: silent; ``verbose``: every pio line).
    Raises :class:`BoardError` when the firmware cannot fit (before or after linking) and
    :class:`BuildError` when the build fails.
    """
    say = echo or (lambda _s: None)
    project_dir = Path(project_dir).resolve()
    manifest = read_manifest(project_dir)
    board = get_board(manifest.board)
    t0 = time.monotonic()

    estimate = estimate_project(project_dir, board)
    say(estimate.render())
    check_budget(estimate, manifest.bits)

    offline = choose_offline(offline)
    env = select_env(board, offline)
    say(f"building {board.id} with PlatformIO, environment {env}"
        f" ({'offline, local platform' if env.endswith('_offline') else 'standard platform'})")
    steps = [0]

    def on_line(line: str) -> None:
        if verbose:
            say(line)
        elif _PROGRESS.match(line):
            steps[0] += 1
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
        detail = errs[0] if errs else (lines[-1] if lines else "no output")
        raise BuildError(f"PlatformIO build of {env} failed: {detail}")

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
