"""The host computer: the harness as a process (``firmware/native/``) serving a pty, timed with
CLOCK_MONOTONIC; nothing to flash, no memory budget."""

from __future__ import annotations

from pathlib import Path

from edgecompile.errors import BoardError
from edgecompile.targets.boards import Upload
from edgecompile.targets.platforms.base import COUNTERS, Platform


class NativePlatform(Platform):
    firmware = "native"
    cycle_counters = {"clock_gettime": COUNTERS["clock_gettime"]}
    measures_memory = False
    emulator_serial = "pty"

    def check_flashable(self) -> Upload:
        raise BoardError("the native board runs on this computer, there is nothing to flash")

    def emulator_argv(self, image: Path, tcp_port: int | None = None) -> list[str]:
        return [str(Path(image).resolve())]


PLATFORM = NativePlatform
