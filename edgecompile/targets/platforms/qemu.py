"""Cortex-M boards that exist only in QEMU: ``qemu-system-arm -icount shift=0``, the UART on a
TCP port, SysTick counts turned into instructions with a per-machine calibration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from edgecompile.errors import BoardError
from edgecompile.targets.boards import BoardProfile, Upload
from edgecompile.targets.platforms.base import COUNTERS, CycleCounter, CycleUnit
from edgecompile.targets.platforms.cortexm import CortexMPlatform

#: QEMU does not emulate DWT CYCCNT; SysTick on the CPU clock counts instructions under icount.
SYSTICK_ICOUNT = CycleCounter("systick", COUNTERS["systick"].unit)


class QemuPlatform(CortexMPlatform):
    cycle_counters = {"systick-icount": SYSTICK_ICOUNT}
    emulator_serial = "tcp"
    #: Instructions per SysTick count (CLKSOURCE = cpu clock) under ``-icount shift=0`` for each
    #: machine, measured with a timed loop of known length
    #: (tests/test_emulators.py::test_qemu_systick_calibration).
    instructions_per_systick: ClassVar[Mapping[str, int]] = {}

    def __init__(self, board: BoardProfile) -> None:
        super().__init__(board)
        if board.emulator is None or board.emulator.machine not in self.instructions_per_systick:
            raise BoardError(f"board '{board.id}': platform {board.platform} runs the QEMU "
                             f"machines {', '.join(self.instructions_per_systick)}")

    @property
    def machine(self) -> str:
        assert self.board.emulator is not None
        return self.board.emulator.machine

    def check_flashable(self) -> Upload:
        raise BoardError(f"board '{self.board.id}' exists only in QEMU ({self.machine}): there "
                         "is nothing to flash; use 'edgecompile verify --emulate'")

    def cycle_unit(self, source: str, hz: float, emulated: bool) -> CycleUnit:
        if emulated and source == SYSTICK_ICOUNT.source:
            per = self.instructions_per_systick[self.machine]
            return CycleUnit(float(per), f"qemu-icount instructions (SysTick, {per} per count)",
                             None)
        return super().cycle_unit(source, hz, emulated)

    def emulator_argv(self, image: Path, tcp_port: int | None = None) -> list[str]:
        return ["qemu-system-arm", "-M", self.machine, "-nographic", "-monitor", "none",
                "-icount", "shift=0", "-kernel", str(image), "-serial",
                f"tcp:127.0.0.1:{tcp_port},server=on,wait=off,nodelay=on"]
