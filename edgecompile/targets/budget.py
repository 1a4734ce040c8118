"""Memory budgets: an estimate before building, the real numbers after linking.

Before building, :func:`estimate_project` compiles each C source of the project (model library
and harness) on its own with the board's compiler and reads the object sizes: flash (code,
weights, tables, initialised data) and static RAM (state, scratch, serial buffers), plus the board platform's
allowance for start-up code and the runtime. The stack needs ``stack_reserve_bytes``
of the board on top of the static RAM. An over-budget project gets a :class:`BoardError` that
names what to change (bits, rank, sparsity, hidden size) instead of a linker error.

After linking, :func:`linked_usage` reads the ELF's sections with the board's ``size`` tool.
Which sections are flash and which RAM, the allowances, and any window the constants must fit
(AVR's LPM reaches only the low 64 KB) are the platform's (``targets.platforms``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecompile.errors import BoardError, BuildError
from edgecompile.hosttools import run_captured
from edgecompile.targets.boards import BoardProfile, get_board
from edgecompile.targets.platforms import Platform, platform_for
from edgecompile.targets.project import PLATFORM_SUBDIR, _defines

COMPILE_TIMEOUT_S = 60.0
SIZE_TIMEOUT_S = 20.0
@dataclass
class MemoryUse:
    """Bytes of flash and of static RAM (data + bss), with a breakdown by part."""

    flash: int
    ram: int
    parts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class BudgetReport:
    """Usage against a board's budget. ``stage`` is "estimate" (before building) or "linked"."""

    board: str
    stage: str
    flash_used: int
    flash_budget: int | None
    ram_used: int
    ram_budget: int | None
    stack_reserve: int
    parts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Sum of every function's stack frame (GCC -fstack-usage): a bound on the deepest call chain
    #: when nothing recurses (None: not measured, or a function has a dynamic frame).
    stack_bound: int | None = None
    #: AVR with more than 64 KB of flash: bytes of constants (+ the vector table) that must lie
    #: below ``lpm_limit`` (None: no such limit on this board, or not measured).
    lpm_constants: int | None = None
    lpm_limit: int | None = None

    @property
    def stack_free(self) -> int | None:
        """RAM left for the stack once static data is placed."""
        return None if self.ram_budget is None else self.ram_budget - self.ram_used

    @property
    def flash_ok(self) -> bool:
        return self.flash_budget is None or self.flash_used <= self.flash_budget

    @property
    def ram_ok(self) -> bool:
        return self.ram_budget is None or self.ram_used + self.stack_reserve <= self.ram_budget

    @property
    def lpm_ok(self) -> bool:
        return self.lpm_limit is None or self.lpm_constants is None or self.lpm_constants <= self.lpm_limit

    @property
    def ok(self) -> bool:
        return self.flash_ok and self.ram_ok and self.lpm_ok

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(stack_free=self.stack_free, ok=self.ok)
        return d

    def render(self) -> str:
        def pct(used: int, total: int | None) -> str:
            return "no limit" if total is None else f"{100.0 * used / total:5.1f}% of {total} B"

        word = "estimate" if self.stage == "estimate" else "linked"
        lines = [f"{word}: flash {self.flash_used} B ({pct(self.flash_used, self.flash_budget)})",
                 f"{word}: RAM   {self.ram_used} B static ({pct(self.ram_used, self.ram_budget)})"]
        if self.ram_budget is not None:
            lines[-1] += (f", {self.stack_free} B left for the stack"
                          f" (needs >= {self.stack_reserve} B)")
        if self.stack_bound is not None:
            lines.append(f"{word}: stack <= {self.stack_bound} B (sum of all frames)")
            if self.stack_free is not None and self.stack_bound > self.stack_free:
                lines[-1] += " -- more than the free RAM if every function were on one call chain"
        return "\n".join(lines)


def _size_sections(tool: str, path: Path) -> list[tuple[str, int]]:
    try:
        out = run_captured([tool, "-A", "-d", str(path)], timeout=SIZE_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise BuildError(f"'{tool}' is not installed (needed to measure memory use)") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"'{tool}' did not finish within {SIZE_TIMEOUT_S:.0f} s") from exc
    if out.returncode != 0:
        raise BuildError(f"'{tool} -A {path.name}' failed: {out.stderr.strip()[:300]}")
    secs = []
    for line in out.stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s+\d+\s*$", line.strip())
        if m and m.group(1) not in ("Total",):
            secs.append((m.group(1), int(m.group(2))))
    return secs


def linked_usage(elf: Path, board: BoardProfile | str) -> MemoryUse:
    """Flash and static RAM of a linked ELF, read with the board's ``size`` tool.

    Raises :class:`BoardError` when the platform refuses the layout (on AVR parts with more
    than 64 KB of flash: a flash constant past 0x10000, which LPM would read wrong).
    """
    platform = platform_for(board)
    if not platform.measures_memory:
        return MemoryUse(0, 0)
    flash, ram = platform.classify(_size_sections(platform.toolchain_prefix + "size", Path(elf)))
    platform.check_linked(Path(elf))
    return MemoryUse(flash, ram)


def _project_sources(project_dir: Path, platform: Platform) -> tuple[dict[str, list[Path]], list[Path]]:
    """{part: C files} and the include dirs, as PlatformIO would see them."""
    parts: dict[str, list[Path]] = {}
    incs: list[Path] = []
    src = project_dir / "src"
    if src.is_dir():
        parts["harness"] = sorted(src.rglob("*.c"))
        incs.append(src)
    lib = project_dir / "lib"
    if lib.is_dir():
        for d in sorted(p for p in lib.iterdir() if p.is_dir()):
            root = d / "src" if (d / "src").is_dir() else d
            parts[f"lib/{d.name}"] = sorted(root.rglob("*.c"))
            incs.append(root)
    for shared in platform.shared_firmware:
        if (project_dir / PLATFORM_SUBDIR / shared).is_dir():
            incs.append(project_dir / PLATFORM_SUBDIR / shared)
    return parts, incs


def estimate_project(project_dir: Path, board: BoardProfile | str | None = None) -> BudgetReport:
    """Estimate flash and RAM of a project before building it (see the module docstring)."""
    from edgecompile.targets.project import read_project_config

    project_dir = Path(project_dir)
    if board is None:
        board = read_project_config(project_dir)["board"]
    board = get_board(board)
    platform = platform_for(board)
    parts: dict[str, dict[str, int]] = {}
    if not platform.measures_memory:
        return BudgetReport(board.id, "estimate", 0, None, 0, None, 0, parts)
    cc = platform.toolchain_prefix + "gcc"
    if shutil.which(cc) is None:
        raise BuildError(f"'{cc}' is not installed (Debian: gcc-avr / gcc-arm-none-eabi)")
    sources, incs = _project_sources(project_dir, platform)
    flags = ["-Os", "-std=gnu11", "-fstack-usage", "-ffunction-sections", "-fdata-sections",
             *platform.machine_flags(), *_defines(board), *(f"-I{d}" for d in incs)]
    total_flash = platform.runtime_flash_allowance
    total_ram = platform.runtime_ram_allowance
    constants_limit = platform.constants_limit()
    constants = platform.constants_allowance()
    parts["runtime"] = {"flash": total_flash, "ram": total_ram}
    with tempfile.TemporaryDirectory(prefix="ec-budget-") as tmp:
        for part, files in sources.items():
            pf = pr = 0
            for i, c in enumerate(files):
                obj = Path(tmp) / f"{part.replace('/', '_')}_{i}.o"
                try:
                    res = run_captured([cc, *flags, "-c", str(c), "-o", str(obj)],
                                       timeout=COMPILE_TIMEOUT_S)
                except subprocess.TimeoutExpired as exc:
                    raise BuildError(f"compiling {c.name} for the estimate took longer than "
                                     f"{COMPILE_TIMEOUT_S:.0f} s") from exc
                if res.returncode != 0 and "is too large" in res.stderr:
                    raise BoardError(
                        f"{c.relative_to(project_dir)} holds an array larger than "
                        f"{board.mcu} can address; try --bits 8, a lower rank, more sparsity "
                        "or a smaller hidden size")
                if res.returncode != 0:
                    first = next((ln for ln in res.stderr.splitlines() if "error" in ln),
                                 res.stderr.strip()[:300])
                    raise BuildError(f"{c.relative_to(project_dir)} does not compile: {first}")
                secs = _size_sections(platform.toolchain_prefix + "size", obj)
                f, r = platform.classify(secs)
                constants += platform.constants_bytes(secs)
                pf += f
                pr += r
            parts[part] = {"flash": pf, "ram": pr}
            total_flash += pf
            total_ram += pr
        stack_bound = _stack_bound(Path(tmp))
    return BudgetReport(board.id, "estimate", total_flash, board.flash_bytes, total_ram,
                        board.ram_bytes, board.stack_reserve_bytes, parts, stack_bound,
                        constants if constants_limit is not None else None, constants_limit)


def _stack_bound(obj_dir: Path) -> int | None:
    """Sum of the frames in GCC's ``.su`` files; None if any frame is dynamic (alloca, VLA)."""
    total = 0
    for su in obj_dir.glob("*.su"):
        for line in su.read_text().splitlines():
            cols = line.rsplit("\t", 2)
            if len(cols) != 3 or not cols[1].isdigit():
                continue
            if "dynamic" in cols[2] and "bounded" not in cols[2]:
                return None
            total += int(cols[1])
    return total


def advice(report: BudgetReport, weight_bits: int | None = None) -> str:
    """What to change so that the model fits, in one sentence."""
    model_parts = {k: v for k, v in report.parts.items() if k.startswith("lib/")}
    hints = []
    if not report.flash_ok:
        if weight_bits == 16:
            hints.append("--bits 8 (halves the weights)")
        hints += ["a lower rank (wRank/uRank)", "more sparsity", "a smaller hidden size"]
    if not report.ram_ok:
        if not hints:
            hints.append("a smaller hidden size")
        if weight_bits == 16 and "--bits 8 (halves the weights)" not in hints:
            hints.append("--bits 8")
        harness = report.parts.get("harness", {}).get("ram", 0)
        if harness and harness > sum(v.get("ram", 0) for v in model_parts.values()):
            hints.append("smaller serial buffers in the harness")
    return "try " + ", ".join(hints) if hints else ""


def check_budget(report: BudgetReport, weight_bits: int | None = None) -> BudgetReport:
    """Raise :class:`BoardError` naming the overrun and what to change (``weight_bits``: the
    project's, from its manifest); return the report if ok."""
    if report.ok:
        return report
    if report.flash_ok and report.ram_ok:
        raise BoardError(platform_for(report.board).constants_refusal(report.lpm_constants or 0,
                                                                      report.stage))
    what = []
    if not report.flash_ok:
        what.append(f"needs {report.flash_used} B of flash, the board has {report.flash_budget} B")
    if not report.ram_ok:
        what.append(f"needs {report.ram_used} B of static RAM + {report.stack_reserve} B of stack, "
                    f"the board has {report.ram_budget} B")
    biggest = sorted(((v["flash"] + v["ram"], k) for k, v in report.parts.items()), reverse=True)
    top = f" (largest part: {biggest[0][1]})" if biggest else ""
    msg = (f"the firmware does not fit board '{report.board}' ({report.stage}): "
           + "; ".join(what) + top)
    tip = advice(report, weight_bits)
    raise BoardError(msg + (f"; {tip}" if tip else ""))
