"""nRF52840 (the Arduino Nano 33 BLE): ``firmware/nrf52/``, UARTE0 on the D0/D1 pins (P1.03 TX,
P1.10 RX) through a USB-serial adapter (the native USB port is not used by the bare-metal
harness), the Cortex-M4F at 64 MHz, DWT CYCCNT. The image starts at 0x10000, after the Arduino
boot loader. QEMU emulates no nRF52: it builds offline, and is verified on the board."""

from __future__ import annotations

from edgecompile.targets.platforms.base import COUNTERS
from edgecompile.targets.platforms.mcu import McuPlatform


class Nrf52Platform(McuPlatform):
    firmware = "nrf52"
    cycle_counters = {"dwt": COUNTERS["dwt"]}
    no_twin_reason = "QEMU 7.2 emulates no nRF52 machine"


PLATFORM = Nrf52Platform
