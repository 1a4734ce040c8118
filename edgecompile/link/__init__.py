"""The serial link to a device running the edgecompile harness (docs/protocol.md).

Layers, dependencies pointing down: ``framing`` (COBS + CRC-16) → ``protocol`` (commands and
layouts) → ``client`` (typed commands, timeouts, retries, resync, reset detection).
Emulated boards whose ports the client opens live in :mod:`edgecompile.emulators`.
"""

from edgecompile.link.client import Client, DeviceError, DeviceReset, InferResult, SequenceBroken, StepReply, open_port
from edgecompile.link.protocol import DeviceInfo
from edgecompile.link.timeouts import Timeouts

__all__ = ["Client", "DeviceError", "DeviceInfo", "DeviceReset", "InferResult", "SequenceBroken", "StepReply",
           "Timeouts", "open_port"]
