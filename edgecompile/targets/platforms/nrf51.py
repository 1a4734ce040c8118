"""nRF51 (the BBC micro:bit v1, nRF51822): ``firmware/nrf51/``, UART0 on P0.24/P0.25 (the
interface chip's USB serial), the Cortex-M0 on the 16 MHz HFCLK. The M0 has no DWT CYCCNT:
TIMER0 at 16 MHz counts CPU cycles (cycle source ``peripheral-timer``). Twin: QEMU's
``microbit`` runs the same ELF. The M0 has no DSP instructions: its kernel backend is armv6m."""

from __future__ import annotations

from edgecompile.targets.platforms.base import CycleCounter
from edgecompile.targets.platforms.mcu import McuPlatform

NRF51_TIMER0 = CycleCounter("peripheral-timer", "cpu cycles (nRF51 TIMER0 at 16 MHz)")


class Nrf51Platform(McuPlatform):
    firmware = "nrf51"
    cycle_counters = {"nrf51-timer0": NRF51_TIMER0}
    emulator_serial = "tcp"
    twin_machine = "microbit"
    # QEMU 7.2 clocks the nRF51's TIMER0 at 16 MHz on its 1 GHz icount clock.
    twin_instructions_per_count = {"peripheral-timer": (1e9 / 16e6, "nRF51 TIMER0 at 16 MHz")}


PLATFORM = Nrf51Platform
