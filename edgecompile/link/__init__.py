"""The serial link to a device running the edgecompile harness (docs/protocol.md).

Layers, dependencies pointing down: ``framing`` (COBS + CRC-16) → ``protocol`` (commands and
layouts) → ``client`` (typed commands, timeouts, retries, resync, reset detection);
``emulators`` starts emulated boards whose ports the client opens.
"""

from .client import Client, DeviceError, DeviceReset, InferResult, SequenceBroken, StepReply, open_port
from .emulators import Emulator, emulate, run_native, run_qemu, run_simavr
from .protocol import DeviceInfo
from .timeouts import Timeouts

__all__ = [
    "Client", "DeviceError", "DeviceInfo", "DeviceReset", "Emulator", "InferResult",
    "SequenceBroken", "StepReply", "Timeouts", "emulate", "open_port", "run_native", "run_qemu",
    "run_simavr",
]
