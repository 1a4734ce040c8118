"""The real Cortex-M boards' families (``stm32f1``, ``stm32f4``, ``nrf51``, ``nrf52``, ``rp2040``):
register-level HALs in ``firmware/<family>/`` over ``firmware/mcu/ech_mmio.h``, and, where QEMU
emulates the same SoC family, an *emulated twin*: ``verify --emulate`` runs the board's firmware
in that QEMU machine (``-icount shift=0``), the harness's UART on a TCP port.

QEMU ignores clock set-up, so the twin's counter ticks at the machine's own rate: the counts are
turned into instructions with a per-machine factor (``twin_instructions_per_count``, measured by
tests/test_real_board_firmware.py::test_twin_runs_the_harness_bit_exact). This module is a base
for the family modules, not a platform of its own (no ``PLATFORM``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from edgecompile.errors import BoardError
from edgecompile.resources import resource_dir
from edgecompile.targets.boards import BoardProfile
from edgecompile.targets.platforms.base import CycleUnit
from edgecompile.targets.platforms.cortexm import CortexMPlatform

#: The twin image a second link writes next to ``firmware.elf`` (the builder's name for it).
TWIN_ELF = "firmware_twin.elf"


class McuPlatform(CortexMPlatform):
    #: The QEMU machine of the same SoC family (None: QEMU has no twin for this family; a
    #: family with a twin sets ``emulator_serial = "tcp"`` too).
    twin_machine: ClassVar[str | None] = None
    #: Why there is no twin (for ``verify --emulate``'s refusal).
    no_twin_reason: ClassVar[str] = ""
    #: ``-serial`` arguments for the UARTs before the harness's one on the twin.
    twin_serial_before: ClassVar[tuple[str, ...]] = ()
    #: The twin cannot run the board's image (another memory map): a second link, TWIN_ELF.
    twin_needs_own_link: ClassVar[bool] = False
    #: cycle source (handshake name) -> (instructions per count on the twin, what counts).
    twin_instructions_per_count: ClassVar[Mapping[str, tuple[float, str]]] = {}

    def __init__(self, board: BoardProfile) -> None:
        super().__init__(board)
        em = board.emulator
        if em is not None and (em.kind, em.machine) != ("qemu", self.twin_machine):
            raise BoardError(f"board '{board.id}': platform {board.platform} runs on the QEMU "
                             f"machine {self.twin_machine or '(none)'}, not {em.kind}:{em.machine}")

    # -- project files ----------------------------------------------------------------------
    def harness_files(self) -> dict[str, bytes]:
        """The harness, the family's folder and the register-access header of every HAL."""
        files = super().harness_files()
        for p in sorted((resource_dir("firmware") / "mcu").glob("*.h")):
            if f"src/{p.name}" in files:
                raise BoardError(f"firmware file name clash in src/: {p.name}")
            files[f"src/{p.name}"] = p.read_bytes()
        return files

    # -- emulator ---------------------------------------------------------------------------
    def check_emulator(self) -> None:
        if self.board.emulator is None:
            raise BoardError(
                f"board '{self.board.id}' ({self.board.mcu}) has no emulated twin: "
                f"{self.no_twin_reason or 'QEMU emulates no chip of its family'}; it builds "
                "offline, verify it on the board with --port")

    def twin_image(self, image: Path) -> Path:
        """The image the twin runs: the board's own ELF, or the second link beside it."""
        if not self.twin_needs_own_link:
            return image
        twin = image.with_name(TWIN_ELF)
        if image.is_file() and not twin.is_file():
            raise BoardError(f"{twin} is missing (the build for {self.twin_machine}, QEMU's twin "
                             f"of board '{self.board.id}'): build the project again")
        return twin

    def emulator_argv(self, image: Path, tcp_port: int | None = None) -> list[str]:
        if self.twin_machine is None or self.board.emulator is None:
            self.check_emulator()
            raise BoardError(f"board '{self.board.id}' has no emulator; use --port")
        return ["qemu-system-arm", "-M", self.twin_machine, "-nographic", "-monitor", "none",
                "-icount", "shift=0", "-kernel", str(self.twin_image(Path(image))),
                *self.twin_serial_before, "-serial",
                f"tcp:127.0.0.1:{tcp_port},server=on,wait=off,nodelay=on"]

    # -- cycle counter ----------------------------------------------------------------------
    def cycle_unit(self, source: str, hz: float, emulated: bool) -> CycleUnit:
        if emulated and source in self.twin_instructions_per_count:
            per, what = self.twin_instructions_per_count[source]
            return CycleUnit(per, f"qemu-icount instructions ({what}, {per:.4g} per count)", None)
        return super().cycle_unit(source, hz, emulated)
