"""AVR (Uno, Nano, Mega 2560): avr-gcc, avrdude over the serial bootloader, Timer1, simavr.

AVR reads flash constants (``PROGMEM``: weights, tables) with LPM, whose 16-bit Z pointer reaches
only the first 64 KB of flash. On parts with more flash (the Mega 2560) the linker places all
constants right after the vector table, so they are read correctly only while they end below
0x10000: the estimate counts the constants against that window, and :meth:`check_linked` refuses
an ELF with any flash object past that address.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

from edgecompile.errors import BoardError, BuildError
from edgecompile.hosttools import run_captured, simavr_program
from edgecompile.targets.platforms.base import COUNTERS, CycleUnit, Platform

#: Flash that LPM (Z, 16 bits) reaches.
LPM_WINDOW_BYTES = 0x10000
#: Placed before the constants: the vector table (the ATmega2560 has 57 four-byte vectors).
VECTORS_ALLOWANCE = 256
#: ELF data-space addresses start here (flash addresses lie below).
_DATA_SPACE = 0x800000
_CONSTANTS = re.compile(r"^\.progmem")
READELF_TIMEOUT_S = 20.0


class AvrPlatform(Platform):
    firmware = "avr"
    toolchain_prefix = "avr-"
    cycle_counters = {"timer1": COUNTERS["timer1"]}
    runtime_flash_allowance = 400
    # On AVR .data/.rodata live in RAM *and* flash (copied at start-up).
    flash_sections = re.compile(r"^\.(text|progmem|vectors|init\d|fini\d|trampolines|ctors|dtors)")
    flash_and_ram_sections = re.compile(r"^\.(data|rodata)")
    uploads_offline = True  # Debian's avrdude
    emulator_serial = "pty"

    def machine_flags(self) -> list[str]:
        return [f"-mmcu={self.board.mcu}", f"-DF_CPU={self.board.f_cpu_hz}L"]

    def constants_limit(self) -> int | None:
        flash = self.board.flash_bytes
        return LPM_WINDOW_BYTES if flash is not None and flash > LPM_WINDOW_BYTES else None

    def constants_bytes(self, sections: list[tuple[str, int]]) -> int:
        return sum(size for name, size in sections if _CONSTANTS.match(name))

    def constants_allowance(self) -> int:
        return VECTORS_ALLOWANCE

    def constants_refusal(self, needed: int, stage: str) -> str:
        b = self.board
        return (f"the model's constants do not fit the low 64 KB of flash on board '{b.id}' "
                f"({stage}): they need {needed} B below address 0x10000 ({LPM_WINDOW_BYTES} B), "
                f"the only flash that {b.mcu} reads constants from (LPM); the rest of its "
                f"{b.flash_bytes} B holds code only; try --bits 8 (halves the weights), a lower "
                "rank (wRank/uRank), more sparsity or a smaller hidden size")

    def check_linked(self, elf: Path) -> None:
        if self.constants_limit() is None:
            return
        past = self._objects_past_lpm(elf)
        if past:
            end = max(a + s for _, a, s in past)
            names = ", ".join(sorted(n for n, _, _ in past)[:3])
            raise BoardError(self.constants_refusal(end, "linked").replace(
                "; try", f" ({names} end at 0x{end:x}); try", 1))

    def _objects_past_lpm(self, elf: Path) -> list[tuple[str, int, int]]:
        """(name, address, size) of every flash data object that ends beyond the LPM window."""
        tool = self.toolchain_prefix + "readelf"
        try:
            out = run_captured([tool, "-sW", str(elf)], timeout=READELF_TIMEOUT_S)
        except FileNotFoundError as exc:
            raise BuildError(f"'{tool}' is not installed (needed to check where the constants "
                             "lie)") from exc
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"'{tool}' did not finish within {READELF_TIMEOUT_S:.0f} s") from exc
        if out.returncode != 0:
            raise BuildError(f"'{tool} -s {elf.name}' failed: {out.stderr.strip()[:300]}")
        found = []
        for line in out.stdout.splitlines():
            cols = line.split()
            if len(cols) < 8 or cols[3] != "OBJECT" or not cols[1].isalnum():
                continue
            addr, size = int(cols[1], 16), int(cols[2], 0)
            if addr < _DATA_SPACE and size > 0 and addr + size > LPM_WINDOW_BYTES:
                found.append((cols[7], addr, size))
        return found

    def cycle_unit(self, source: str, hz: float, emulated: bool) -> CycleUnit:
        unit = super().cycle_unit(source, hz, emulated)
        return replace(unit, name=unit.name + ", simavr cycle-exact") if emulated else unit

    def emulator_argv(self, image: Path, tcp_port: int | None = None) -> list[str]:
        """The ELF under libsimavr (``firmware/emulators/simavr_host.c``), UART0 on a pty."""
        b = self.board
        return [str(simavr_program("simavr_host")), "-m", b.mcu, "-f", str(b.f_cpu_hz),
                str(Path(image).resolve())]


PLATFORM = AvrPlatform
