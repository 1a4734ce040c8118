"""Memory budgets: an estimate before building, the real numbers after linking.

Before building, :func:`estimate_project` compiles each C source of the project (model library
and harness) on its own with the board's compiler and reads the object sizes: flash (code,
weights, tables, initialised data) and static RAM (state, scratch, serial buffers), plus a small
per-family allowance for start-up code and the runtime. The stack needs ``stack_reserve_bytes``
of the board on top of the static RAM. An over-budget project gets a :class:`BoardError` that
names what to change (bits, rank, sparsity, hidden size) instead of a linker error.

After linking, :func:`linked_usage` reads the ELF's sections with ``avr-size``/``arm-none-eabi-size``.

AVR reads flash constants (``PROGMEM``: weights, tables) with LPM, whose 16-bit Z pointer reaches
only the first 64 KB of flash. On parts with more flash (the Mega 2560) the linker places all
constants right after the vector table, so they are read correctly only while they end below
0x10000: the estimate refuses constants that cannot fit there, and :func:`linked_usage` refuses
an ELF with any flash object past that address.
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
from edgecompile.targets.project import PLATFORM_SUBDIR, _defines

COMPILE_TIMEOUT_S = 60.0
SIZE_TIMEOUT_S = 20.0
#: Start-up code, vector table and runtime helpers (libgcc) not visible in the objects.
RUNTIME_FLASH_ALLOWANCE = {"avr": 400, "cortex-m": 1200, "native": 0}
RUNTIME_RAM_ALLOWANCE = {"avr": 0, "cortex-m": 8, "native": 0}

# Section classification (sizes from `size -A`). On AVR .data/.rodata live in RAM *and* flash.
_FLASH_ONLY = {
    "avr": re.compile(r"^\.(text|progmem|vectors|init\d|fini\d|trampolines|ctors|dtors)"),
    "cortex-m": re.compile(r"^\.(text|rodata|isr_vector|ARM\.ex|init_array|fini_array|preinit_array|init$|fini$)"),
}
_FLASH_AND_RAM = {
    "avr": re.compile(r"^\.(data|rodata)"),
    "cortex-m": re.compile(r"^\.data"),
}
_RAM_ONLY = re.compile(r"^\.(bss|noinit|COMMON)")
#: Flash that LPM (Z, 16 bits) reaches on AVR, and the constants' sections in an object file.
LPM_WINDOW_BYTES = 0x10000
_AVR_CONSTANTS = re.compile(r"^\.progmem")
#: Placed before the constants: the vector table (the ATmega2560 has 57 four-byte vectors).
AVR_VECTORS_ALLOWANCE = 256
#: AVR ELF data-space addresses start here (flash addresses lie below).
_AVR_DATA_SPACE = 0x800000


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


def classify(family: str, sections: list[tuple[str, int]]) -> tuple[int, int]:
    """(flash, RAM) bytes of a list of (section, size)."""
    flash = ram = 0
    if family not in _FLASH_ONLY:
        return 0, 0
    for name, size in sections:
        if _FLASH_ONLY[family].match(name):
            flash += size
        elif _FLASH_AND_RAM[family].match(name):
            flash += size
            ram += size
        elif _RAM_ONLY.match(name):
            ram += size
    return flash, ram


def _lpm_limit(board: BoardProfile) -> int | None:
    """The end of the flash LPM reaches, on AVR parts that have flash beyond it."""
    if board.family == "avr" and board.flash_bytes is not None and board.flash_bytes > LPM_WINDOW_BYTES:
        return LPM_WINDOW_BYTES
    return None


def lpm_refusal(board: BoardProfile, needed: int, stage: str) -> str:
    """The one-line reason for constants that LPM cannot reach, with what to change."""
    return (f"the model's constants do not fit the low 64 KB of flash on board '{board.id}' ({stage}): "
            f"they need {needed} B below address 0x10000 ({LPM_WINDOW_BYTES} B), the only flash "
            f"that {board.mcu} reads constants from (LPM); the rest of its {board.flash_bytes} B "
            "holds code only; try --bits 8 (halves the weights), a lower rank (wRank/uRank), more "
            "sparsity or a smaller hidden size")


def _objects_past_lpm(tool: str, elf: Path) -> list[tuple[str, int, int]]:
    """(name, address, size) of every flash data object that ends beyond the LPM window."""
    try:
        out = run_captured([tool, "-sW", str(elf)], timeout=SIZE_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise BuildError(f"'{tool}' is not installed (needed to check where the constants lie)") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"'{tool}' did not finish within {SIZE_TIMEOUT_S:.0f} s") from exc
    if out.returncode != 0:
        raise BuildError(f"'{tool} -s {elf.name}' failed: {out.stderr.strip()[:300]}")
    found = []
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) < 8 or cols[3] != "OBJECT" or not cols[1].isalnum():
            continue
        addr, size = int(cols[1], 16), int(cols[2], 0)
        if addr < _AVR_DATA_SPACE and size > 0 and addr + size > LPM_WINDOW_BYTES:
            found.append((cols[7], addr, size))
    return found


def linked_usage(elf: Path, board: BoardProfile | str) -> MemoryUse:
    """Flash and static RAM of a linked ELF, read with the board's ``size`` tool.

    On AVR parts with more than 64 KB of flash, raises :class:`BoardError` when a flash
    constant lies past 0x10000 (LPM would read the wrong bytes).
    """
    board = get_board(board)
    if board.family == "native":
        return MemoryUse(0, 0)
    flash, ram = classify(board.family, _size_sections(board.toolchain_prefix + "size", Path(elf)))
    if _lpm_limit(board) is not None:
        past = _objects_past_lpm(board.toolchain_prefix + "readelf", Path(elf))
        if past:
            end = max(a + s for _, a, s in past)
            names = ", ".join(sorted(n for n, _, _ in past)[:3])
            raise BoardError(lpm_refusal(board, end, "linked").replace(
                "; try", f" ({names} end at 0x{end:x}); try", 1))
    return MemoryUse(flash, ram)


def _machine_flags(board: BoardProfile) -> list[str]:
    if board.family == "avr":
        return [f"-mmcu={board.mcu}", f"-DF_CPU={board.f_cpu_hz}L"]
    build = (board.offline_board_json or {}).get("build", {})
    flags = [f"-mcpu={build.get('cpu', board.core)}", "-mthumb", f"-DF_CPU={board.f_cpu_hz}L",
             "-DEC_CORTEXM"]
    if build.get("fpu"):
        flags += [f"-mfpu={build['fpu']}", f"-mfloat-abi={build.get('float_abi', 'hard')}"]
    else:
        flags.append("-mfloat-abi=soft")
    return flags


def _project_sources(project_dir: Path) -> tuple[dict[str, list[Path]], list[Path]]:
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
    cm = project_dir / PLATFORM_SUBDIR / "cortexm"
    if cm.is_dir():
        incs.append(cm)
    return parts, incs


def estimate_project(project_dir: Path, board: BoardProfile | str | None = None) -> BudgetReport:
    """Estimate flash and RAM of a project before building it (see the module docstring)."""
    from edgecompile.targets.project import read_project_config

    project_dir = Path(project_dir)
    if board is None:
        board = read_project_config(project_dir)["board"]
    board = get_board(board)
    parts: dict[str, dict[str, int]] = {}
    if board.family == "native":
        return BudgetReport(board.id, "estimate", 0, None, 0, None, 0, parts)
    cc = board.toolchain_prefix + "gcc"
    if shutil.which(cc) is None:
        raise BuildError(f"'{cc}' is not installed (Debian: gcc-avr / gcc-arm-none-eabi)")
    sources, incs = _project_sources(project_dir)
    flags = ["-Os", "-std=gnu11", "-fstack-usage", "-ffunction-sections", "-fdata-sections", *_machine_flags(board),
             *_defines(board), *(f"-I{d}" for d in incs)]
    total_flash = RUNTIME_FLASH_ALLOWANCE[board.family]
    total_ram = RUNTIME_RAM_ALLOWANCE[board.family]
    lpm_limit = _lpm_limit(board)
    constants = AVR_VECTORS_ALLOWANCE
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
                secs = _size_sections(board.toolchain_prefix + "size", obj)
                f, r = classify(board.family, secs)
                constants += sum(size for name, size in secs if _AVR_CONSTANTS.match(name))
                pf += f
                pr += r
            parts[part] = {"flash": pf, "ram": pr}
            total_flash += pf
            total_ram += pr
        stack_bound = _stack_bound(Path(tmp))
    return BudgetReport(board.id, "estimate", total_flash, board.flash_bytes, total_ram,
                        board.ram_bytes, board.stack_reserve_bytes, parts, stack_bound,
                        constants if lpm_limit is not None else None, lpm_limit)


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


def _weight_bits(project_dir: Path) -> int | None:
    for h in sorted(Path(project_dir).glob("lib/*/src/*.h")):
        m = re.search(r"#define\s+\w+_WEIGHT_BITS\s+(\d+)", h.read_text(errors="replace"))
        if m:
            return int(m.group(1))
    return None


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


def check_budget(report: BudgetReport, project_dir: Path | None = None) -> BudgetReport:
    """Raise :class:`BoardError` naming the overrun and what to change; return the report if ok."""
    if report.ok:
        return report
    if report.flash_ok and report.ram_ok:
        raise BoardError(lpm_refusal(get_board(report.board), report.lpm_constants or 0, report.stage))
    bits = _weight_bits(project_dir) if project_dir is not None else None
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
    tip = advice(report, bits)
    raise BoardError(msg + (f"; {tip}" if tip else ""))
