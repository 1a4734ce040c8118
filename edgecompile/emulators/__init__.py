"""Emulated boards: simavr, QEMU and native harness processes, each serving the serial protocol.

:func:`emulate` starts the emulator a board's platform describes and yields a port the link
client opens.
"""

from edgecompile.emulators.process import (
    Emulator,
    emulate,
    emulate_many,
    run_board,
    run_native,
    run_qemu,
    run_simavr,
)

__all__ = ["Emulator", "emulate", "emulate_many", "run_board", "run_native", "run_qemu", "run_simavr"]
