"""What a board family knows, in one class: the shape of microTVM's Project API.

A :class:`Platform` is built for one :class:`~edgecompile.targets.boards.BoardProfile` and
answers, for that board: the project files (harness + the family's ``firmware/<family>/``
folder), the build environment (toolchain, machine flags), memory accounting (which ELF sections
are flash, which RAM, runtime allowances, address windows), flashing, the cycle counter and how
its counts turn into a unit, and the emulator command line. The portable parts (the budget
arithmetic, PlatformIO, the emulator processes, the serial link) call these methods and hold no
family knowledge of their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from edgecompile.errors import BoardError
from edgecompile.resources import resource_dir
from edgecompile.targets.boards import BoardProfile, Upload

#: Files of ``firmware/harness`` and of a family folder copied into a project's ``src/``.
HARNESS_SUFFIXES = (".c", ".h", ".def", ".inc")
FAMILY_SUFFIXES = (".c", ".h", ".S", ".s", ".inc")
#: Sections that hold static RAM only, on every family.
RAM_ONLY_SECTIONS = re.compile(r"^\.(bss|noinit|COMMON)")
_NEVER = re.compile(r"(?!)")


@dataclass(frozen=True)
class CycleCounter:
    """One way of timing steps: what the device reports in its handshake and what a count is."""

    source: str  # the handshake's cycle_source (link.protocol)
    unit: str  # what one count is, for reports


#: The counters the harness implements, by the board JSON's ``cycle_counter`` name.
COUNTERS: dict[str, CycleCounter] = {
    "timer1": CycleCounter("avr-timer1", "cpu cycles (AVR Timer1)"),
    "dwt": CycleCounter("dwt-cyccnt", "cpu cycles (DWT CYCCNT)"),
    "systick": CycleCounter("systick", "cpu cycles (SysTick)"),
    "clock_gettime": CycleCounter("posix-clock-ns", "nanoseconds (host clock)"),
}
_BY_SOURCE = {c.source: c for c in COUNTERS.values()}


@dataclass(frozen=True)
class CycleUnit:
    """Device counts times ``scale`` give the unit ``name`` (a report's ``cycle_source``)."""

    scale: float
    name: str
    hz: float | None  # units per second; None when they are not time (emulated instructions)


class Platform:
    """One SoC family. Subclasses set the class attributes and override what differs."""

    #: Folder under ``firmware/`` with the family's HAL, config and cycle counter (None: the
    #: family has no parity harness yet, only the model library is exported).
    firmware: ClassVar[str | None] = None
    #: Folders under ``firmware/`` shipped inside the offline PlatformIO platform (start-up code
    #: and linker script shared by several families).
    shared_firmware: ClassVar[tuple[str, ...]] = ()
    #: Prefix of the GNU tools (``<prefix>gcc``, ``<prefix>size``, ...).
    toolchain_prefix: ClassVar[str] = ""
    #: The board JSON's ``cycle_counter`` values this family implements.
    cycle_counters: ClassVar[Mapping[str, CycleCounter]] = {}
    #: Start-up code, vector table and runtime helpers (libgcc) not visible in the objects.
    runtime_flash_allowance: ClassVar[int] = 0
    runtime_ram_allowance: ClassVar[int] = 0
    #: Sections in flash only, and sections in flash and RAM (initialised data).
    flash_sections: ClassVar[re.Pattern[str]] = _NEVER
    flash_and_ram_sections: ClassVar[re.Pattern[str]] = _NEVER
    #: False where the linked size is not a budget (the host).
    measures_memory: ClassVar[bool] = True
    #: True where PlatformIO's offline environment can upload (a Debian tool does it).
    uploads_offline: ClassVar[bool] = False
    #: How the emulator exposes the harness's UART: a pty it announces, or a TCP port we pick.
    emulator_serial: ClassVar[Literal["pty", "tcp"] | None] = None

    def __init__(self, board: BoardProfile) -> None:
        self.board = board
        if board.cycle_counter not in self.cycle_counters:
            raise BoardError(
                f"board '{board.id}': cycle_counter '{board.cycle_counter}' is not one of "
                f"{', '.join(self.cycle_counters) or 'none'} (platform {board.platform})")
        if board.emulator is not None and self.emulator_serial is None:
            raise BoardError(f"board '{board.id}': platform {board.platform} has no emulator")

    # -- project files ----------------------------------------------------------------------
    def harness_files(self) -> dict[str, bytes]:
        """The parity harness flattened into ``src/``: ``firmware/harness`` plus the family's
        folder. Raises :class:`BoardError` for a family without a harness."""
        board = self.board
        if self.firmware is None:
            raise BoardError(f"board '{board.id}' has no firmware harness yet (no HAL for "
                             f"{board.mcu}); export the library alone or pick an emulated board")
        fw = resource_dir("firmware")
        sources = [p for p in sorted((fw / "harness").glob("*")) if p.suffix in HARNESS_SUFFIXES]
        family_dir = fw / self.firmware
        hal = ([p for p in sorted(family_dir.glob("*")) if p.suffix in FAMILY_SUFFIXES]
               if family_dir.is_dir() else [])
        if not sources or not hal:
            raise BoardError(f"the firmware harness for '{board.id}' is missing from this "
                             f"installation (firmware/harness/ and firmware/{self.firmware}/)")
        files: dict[str, bytes] = {}
        for p in sources + hal:
            key = f"src/{p.name}"
            if key in files:
                raise BoardError(f"firmware file name clash in src/: {p.name}")
            files[key] = p.read_bytes()
        return files

    # -- build ------------------------------------------------------------------------------
    def machine_flags(self) -> list[str]:
        """Compiler flags that select the core (what the offline platform passes too)."""
        return []

    # -- memory accounting ------------------------------------------------------------------
    def classify(self, sections: list[tuple[str, int]]) -> tuple[int, int]:
        """(flash, RAM) bytes of a list of (section, size) from ``size -A``."""
        flash = ram = 0
        for name, size in sections:
            if self.flash_sections.match(name):
                flash += size
            elif self.flash_and_ram_sections.match(name):
                flash += size
                ram += size
            elif RAM_ONLY_SECTIONS.match(name):
                ram += size
        return flash, ram

    def constants_limit(self) -> int | None:
        """The flash address below which the model's constants must end (None: anywhere)."""
        return None

    def constants_bytes(self, sections: list[tuple[str, int]]) -> int:
        """Bytes of an object's sections that count against :meth:`constants_limit`."""
        return 0

    def constants_allowance(self) -> int:
        """Bytes placed before the constants (e.g. the vector table)."""
        return 0

    def constants_refusal(self, needed: int, stage: str) -> str:
        """The one-line reason for constants past :meth:`constants_limit`, with what to change."""
        return (f"the model's constants ({needed} B) do not fit below 0x{self.constants_limit() or 0:x} "
                f"on board '{self.board.id}' ({stage}); try --bits 8, a lower rank, more sparsity "
                "or a smaller hidden size")

    def check_linked(self, elf: Path) -> None:
        """Refuse a linked ELF the family cannot run as laid out (:class:`BoardError`)."""

    # -- flashing ---------------------------------------------------------------------------
    def check_flashable(self) -> Upload:
        """The board's upload method; :class:`BoardError` when it cannot be flashed."""
        if self.board.upload is None:
            raise BoardError(f"board '{self.board.id}' has no upload method")
        return self.board.upload

    def flash_methods(self) -> list[str]:
        """How ``flash`` can program the board: ``pio`` (PlatformIO's uploader, e.g. avrdude),
        ``drive``, ``pyocd``, ``openocd`` (targets.probes); empty when nothing can be flashed."""
        from edgecompile.targets.probes import methods_for

        try:
            upload = self.check_flashable()
        except BoardError:
            return []
        probes: list[str] = list(methods_for(self.board))
        return ["pio"] if upload.tool == "avrdude" or not probes else probes

    # -- capabilities -----------------------------------------------------------------------
    def capabilities(self) -> dict[str, object]:
        """What the board supports, for ``edgecompile boards``: the harnesses (``baremetal``
        on the family's HAL, ``arduino`` on the Arduino core's Serial: offline for AVR, online
        for the Arm boards), the emulator (``twin``: a real board run in QEMU's machine of the
        same SoC family) and the flash methods."""
        b = self.board
        harness = ["baremetal"] if self.firmware is not None else []
        if b.family == "avr" or (b.family == "cortex-m" and b.online):
            harness.append("arduino")
        emu = None if b.emulator is None or self.emulator_serial is None else {
            "kind": b.emulator.kind, "machine": b.emulator.machine,
            "twin": b.emulator.kind == "qemu" and b.upload is not None}
        return {"harness": harness, "arduino_offline": b.family == "avr", "emulator": emu,
                "flash": self.flash_methods(), "upload_tool": None if b.upload is None else b.upload.tool}

    # -- cycle counter ----------------------------------------------------------------------
    @property
    def cycle_counter(self) -> CycleCounter:
        return self.cycle_counters[self.board.cycle_counter]

    def cycle_unit(self, source: str, hz: float, emulated: bool) -> CycleUnit:
        """How to read the counts of a device whose handshake reported ``source`` at ``hz``
        counts per second (``emulated``: the board runs in its emulator)."""
        counter = self.cycle_counter if source == self.cycle_counter.source else _BY_SOURCE.get(source)
        return CycleUnit(1.0, source if counter is None else counter.unit, hz)

    # -- emulator ---------------------------------------------------------------------------
    def check_emulator(self) -> None:
        """Refuse ``verify --emulate`` on a board without an emulator (:class:`BoardError`,
        naming why)."""
        if self.board.emulator is None or self.emulator_serial is None:
            raise BoardError(f"board '{self.board.id}' has no emulator; use --port")

    def emulator_argv(self, image: Path, tcp_port: int | None = None) -> list[str]:
        """The emulator's command line running ``image`` (``tcp_port``: where the UART listens,
        for an emulator whose serial is "tcp")."""
        raise BoardError(f"board '{self.board.id}' has no emulator; use --port")
