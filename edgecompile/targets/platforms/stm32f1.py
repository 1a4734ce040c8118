"""STM32F1 (the Blue Pill, STM32F103C8): ``firmware/stm32f1/``, USART1 on PA9/PA10, the core on
the 8 MHz HSI, DWT CYCCNT. Twin: QEMU's ``stm32vldiscovery`` (STM32F100RB, 8 KB RAM, 128 KB
flash) runs the same sources linked a second time for its memory map: the board's initial stack
pointer (top of 20 KB of RAM) lies past the twin's RAM. The builder writes that link as
``firmware_twin.elf`` (board JSON ``build.ec_twin_ram_size`` / ``ec_twin_flash_size``)."""

from __future__ import annotations

from edgecompile.targets.platforms.base import COUNTERS
from edgecompile.targets.platforms.mcu import McuPlatform


class Stm32f1Platform(McuPlatform):
    firmware = "stm32f1"
    cycle_counters = {"dwt": COUNTERS["dwt"]}
    emulator_serial = "tcp"
    twin_machine = "stm32vldiscovery"
    twin_needs_own_link = True
    # QEMU 7.2: SysTick on the STM32F100's 24 MHz SYSCLK, CYCCNT reads 0.
    twin_instructions_per_count = {"systick": (1e9 / 24e6, "SysTick at 24 MHz")}


PLATFORM = Stm32f1Platform
