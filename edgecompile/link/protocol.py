"""Commands, flags and reply layouts of the device protocol (docs/protocol.md).

The C side defines the same numbers in ``firmware/harness/ech_proto.h``; a test holds the two
equal.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import LinkError

PROTO_VERSION = 1

CMD_INFO = 0x01
CMD_RESET = 0x02
CMD_STEP = 0x03
CMD_ECHO = 0x04
CMD_ERROR = 0x7F
REPLY_BIT = 0x80

STEP_RESET = 0x01
STEP_HIDDEN = 0x02
STEP_LOGITS = 0x04

HEADER_LEN = 3
STEP_REQ_FIXED = 4
INFO_BODY_LEN = 56

#: cycle source code -> (name, what one count is)
CYCLE_SOURCES = {
    1: ("avr-timer1", "cpu cycles"),
    2: ("dwt-cyccnt", "cpu cycles"),
    3: ("systick", "SysTick counts on the cpu clock"),
    4: ("posix-clock-ns", "nanoseconds"),
}

_INFO = struct.Struct("<2sBBBBHHHHHBBI32sH")
assert _INFO.size == INFO_BODY_LEN


@dataclass(frozen=True)
class DeviceInfo:
    """What the handshake (INFO) reports."""

    proto_version: int
    fw_version: str
    max_payload: int
    input_dim: int
    hidden_dim: int
    num_classes: int
    seq_len: int
    weight_bits: int
    cycle_source: str
    cycle_hz: int
    model_sha256: str
    max_steps_per_frame: int

    @classmethod
    def parse(cls, body: bytes) -> DeviceInfo:
        if len(body) != INFO_BODY_LEN:
            raise LinkError(f"handshake reply has {len(body)} bytes, expected {INFO_BODY_LEN}")
        (magic, proto, major, minor, patch, max_payload, d, h, c, t, bits, src, hz, sha,
         steps) = _INFO.unpack(body)
        if magic != b"EC":
            raise LinkError("handshake reply lacks the 'EC' magic: not an edgecompile harness")
        if proto != PROTO_VERSION:
            raise LinkError(
                f"device speaks protocol v{proto}, this host v{PROTO_VERSION}: rebuild the firmware"
            )
        return cls(proto, f"{major}.{minor}.{patch}", max_payload, d, h, c, t, bits,
                   CYCLE_SOURCES.get(src, (f"unknown-{src}", "?"))[0], hz, sha.hex(), steps)


def step_request(flags: int, t0: int, x_q) -> bytes:
    """Body of a STEP request; ``x_q`` is an int16 array ``[n, D]``."""
    import numpy as np

    x = np.ascontiguousarray(x_q, dtype="<i2")
    return struct.pack("<BBH", flags, x.shape[0], t0) + x.tobytes()
