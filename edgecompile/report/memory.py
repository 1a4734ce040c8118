"""Memory of a linked firmware by part, for the report's bars: the model library's constants
and code, the harness, and the rest (runtime, core, vector table); static RAM by part, and the
board's stack reserve.

Symbols of the linked ELF (``readelf -sW``, with their sizes and sections) are attributed by
name to the object files PlatformIO built (``nm --defined-only`` on the model library's and the
harness's ``.o`` files); what no symbol accounts for is the rest.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgecompile.hosttools import run_captured
from edgecompile.targets.boards import BoardProfile

TOOL_TIMEOUT_S = 20.0


@dataclass
class MemoryParts:
    """Bytes per part. ``flash`` and ``ram`` map part names to bytes, in drawing order."""

    flash_total: int
    ram_total: int
    flash_budget: int | None
    ram_budget: int | None
    stack_reserve: int
    flash: dict[str, int] = field(default_factory=dict)
    ram: dict[str, int] = field(default_factory=dict)


def _run(cmd: list[str]) -> str | None:
    try:
        res = run_captured(cmd, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def _defined(nm: str, objects: list[Path]) -> set[str]:
    names: set[str] = set()
    for obj in objects:
        out = _run([nm, "--defined-only", str(obj)]) or ""
        for line in out.splitlines():
            cols = line.split()
            if len(cols) == 3 and cols[1] not in "aA":
                names.add(cols[2])
    return names


def _sections(readelf: str, elf: Path) -> dict[int, str]:
    """Section index -> "code", "const" (flash, not executable) or "ram" (writable)."""
    kinds: dict[int, str] = {}
    out = _run([readelf, "-SW", str(elf)]) or ""
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+"
                         r"[0-9a-f]+\s+(\S*)", out, re.M):
        idx, flags = int(m[1]), m[3]
        if "A" not in flags:
            continue
        kinds[idx] = "ram" if "W" in flags else "code" if "X" in flags else "const"
    return kinds


def memory_parts(elf: Path, board: BoardProfile, toolchain_prefix: str, lib_name: str,
                 flash_total: int, ram_total: int) -> MemoryParts:
    """The parts of ``elf`` (a PlatformIO build: its objects lie beside it); ``lib_name`` is the
    model library's folder under ``lib/``."""
    build = Path(elf).parent
    lib_objs = [p for p in build.glob("lib*/*/*.o") if p.parent.name == lib_name]
    src_objs = sorted((build / "src").rglob("*.o"))
    lib_names = _defined(toolchain_prefix + "nm", lib_objs)
    src_names = _defined(toolchain_prefix + "nm", src_objs) - lib_names
    kinds = _sections(toolchain_prefix + "readelf", Path(elf))
    flash = {"model constants": 0, "kernel code": 0, "harness": 0}
    ram = {"model state": 0, "harness": 0}
    out = _run([toolchain_prefix + "readelf", "-sW", str(elf)]) or ""
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 8 or not cols[0].endswith(":") or not cols[2].isdigit() or not cols[6].isdigit():
            continue
        size, kind, name = int(cols[2]), kinds.get(int(cols[6])), cols[7]
        if size == 0 or kind is None or cols[3] not in ("FUNC", "OBJECT"):
            continue
        part = "model" if name in lib_names else "harness" if name in src_names else None
        if part is None:
            continue
        if kind == "ram":
            ram["model state" if part == "model" else "harness"] += size
        elif part == "model":
            flash["model constants" if cols[3] == "OBJECT" else "kernel code"] += size
        else:
            flash["harness"] += size
    flash["runtime and core"] = max(0, flash_total - sum(flash.values()))
    ram["runtime and core"] = max(0, ram_total - sum(ram.values()))
    return MemoryParts(flash_total, ram_total, board.flash_bytes, board.ram_bytes,
                       board.stack_reserve_bytes, flash, ram)
