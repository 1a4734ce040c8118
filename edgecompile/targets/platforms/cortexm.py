"""Cortex-M, common to every Arm family: arm-none-eabi-gcc, the shared start-up code and linker
script (``firmware/cortexm/``), section accounting. A board whose family has no module of its
own yet uses this one: the model library exports and builds, the parity harness does not."""

from __future__ import annotations

import re
from typing import ClassVar

from edgecompile.targets.platforms.base import COUNTERS, Platform


class CortexMPlatform(Platform):
    shared_firmware: ClassVar[tuple[str, ...]] = ("cortexm",)
    toolchain_prefix = "arm-none-eabi-"
    cycle_counters = {"dwt": COUNTERS["dwt"], "systick": COUNTERS["systick"]}
    runtime_flash_allowance = 1200
    runtime_ram_allowance = 8
    flash_sections = re.compile(
        r"^\.(text|rodata|isr_vector|ARM\.ex|init_array|fini_array|preinit_array|init$|fini$)")
    flash_and_ram_sections = re.compile(r"^\.data")

    def machine_flags(self) -> list[str]:
        build = (self.board.offline_board_json or {}).get("build", {})
        flags = [f"-mcpu={build.get('cpu', self.board.core)}", "-mthumb",
                 f"-DF_CPU={self.board.f_cpu_hz}L", "-DEC_CORTEXM"]
        if build.get("fpu"):
            flags += [f"-mfpu={build['fpu']}", f"-mfloat-abi={build.get('float_abi', 'hard')}"]
        else:
            flags.append("-mfloat-abi=soft")
        return flags


PLATFORM = CortexMPlatform
