"""RP2040 (the Raspberry Pi Pico): ``firmware/rp2040/``, UART0 on GP0/GP1, the Cortex-M0+ at
125 MHz from PLL_SYS on the 12 MHz crystal, SysTick on the CPU clock (no DWT CYCCNT on the M0+).
The second-stage boot loader ``boot2.S`` (standard QSPI flash, 03h reads) is assembled by the
offline platform, padded with its CRC32 (``boot2.py``) into the 256-byte ``.boot2`` section that
``rp2040.ld.in`` puts first in flash; ``uf2.py`` writes ``firmware.uf2`` for the RPI-RP2 drive.
QEMU emulates no RP2040: it builds offline, and is verified on the board. The M0+ has no DSP
instructions: its kernel backend is armv6m."""

from __future__ import annotations

import re

from edgecompile.targets.platforms.base import COUNTERS
from edgecompile.targets.platforms.mcu import McuPlatform


class Rp2040Platform(McuPlatform):
    firmware = "rp2040"
    # the linker script, boot2.S and the Python helpers are used by the offline platform
    shared_firmware = ("cortexm", "rp2040")
    cycle_counters = {"systick": COUNTERS["systick"]}
    no_twin_reason = "QEMU 7.2 emulates no RP2040 machine"
    runtime_flash_allowance = McuPlatform.runtime_flash_allowance + 256  # .boot2
    flash_sections = re.compile(
        r"^\.(boot2|text|rodata|isr_vector|ARM\.ex|init_array|fini_array|preinit_array|init$|fini$)")

    def harness_files(self) -> dict[str, bytes]:
        """Without ``boot2.S``: it is not part of the program but assembled on its own."""
        return {k: v for k, v in super().harness_files().items() if k != "src/boot2.S"}


PLATFORM = Rp2040Platform
