"""TI Stellaris lm3s6965evb (M3) in QEMU: the PL011 UART (``firmware/lm3s/``)."""

from __future__ import annotations

from edgecompile.targets.platforms.qemu import QemuPlatform


class Lm3sPlatform(QemuPlatform):
    firmware = "lm3s"
    # QEMU 7.2 clocks the lm3s6965evb's SysTick at 12.5 MHz.
    instructions_per_systick = {"lm3s6965evb": 80}


PLATFORM = Lm3sPlatform
