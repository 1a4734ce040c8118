"""Arm MPS2 AN385 (M3), AN386 (M4), AN500 (M7) in QEMU: the CMSDK APB UART (``firmware/mps2/``)."""

from __future__ import annotations

from edgecompile.targets.platforms.qemu import QemuPlatform


class Mps2Platform(QemuPlatform):
    firmware = "mps2"
    # QEMU 7.2 clocks the MPS2 boards' SysTick at 25 MHz.
    instructions_per_systick = {"mps2-an385": 40, "mps2-an386": 40, "mps2-an500": 40}


PLATFORM = Mps2Platform
