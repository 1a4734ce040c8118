"""STM32F4 (the Nucleo-F401RE): ``firmware/stm32f4/``, USART2 (the ST-LINK virtual COM port) on
PA2/PA3, the core on the 16 MHz HSI, DWT CYCCNT. Twin: QEMU's ``netduinoplus2`` (STM32F405) runs
the same ELF; the harness's USART2 is QEMU's second ``-serial``."""

from __future__ import annotations

from edgecompile.targets.platforms.base import COUNTERS
from edgecompile.targets.platforms.mcu import McuPlatform


class Stm32f4Platform(McuPlatform):
    firmware = "stm32f4"
    cycle_counters = {"dwt": COUNTERS["dwt"]}
    emulator_serial = "tcp"
    twin_machine = "netduinoplus2"
    twin_serial_before = ("-serial", "null")  # USART1
    # QEMU 7.2 ignores the clock set-up: SysTick runs on the machine's 168 MHz SYSCLK and reads
    # 0 from CYCCNT, so the harness reports SysTick counts.
    twin_instructions_per_count = {"systick": (1e9 / 168e6, "SysTick at 168 MHz")}


PLATFORM = Stm32f4Platform
