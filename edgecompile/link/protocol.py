"""Commands, flags and reply layouts of the device protocol (docs/protocol.md).

The C side defines the same numbers in ``firmware/harness/ech_proto.h``; a test holds the two
equal.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy.typing as npt

from edgecompile.errors import LinkError

PROTO_VERSION = 3
#: Device protocol versions this host works with: v3 added STEP_RUNS, which is sent only to v3.
COMPATIBLE_VERSIONS = (2, 3)

CMD_INFO = 0x01
CMD_RESET = 0x02
CMD_STEP = 0x03
CMD_ECHO = 0x04
CMD_ERROR = 0x7F
REPLY_BIT = 0x80

STEP_RESET = 0x01
STEP_HIDDEN = 0x02
STEP_LOGITS = 0x04
STEP_RUNS = 0x08

HEADER_LEN = 3
STEP_REQ_FIXED = 4
INFO_BODY_LEN = 88

#: cycle source code -> (name, what one count is)
CYCLE_SOURCES = {
    1: ("avr-timer1", "cpu cycles"),
    2: ("dwt-cyccnt", "cpu cycles"),
    3: ("systick", "SysTick counts on the cpu clock"),
    4: ("posix-clock-ns", "nanoseconds"),
    5: ("peripheral-timer", "peripheral timer counts at cycle_hz"),
}

_INFO = struct.Struct("<2sBBBBHHHHHBBI32sH32s")
assert _INFO.size == INFO_BODY_LEN


class ProtocolMismatch(LinkError):
    """The device runs edgecompile firmware of another protocol version: another build."""

    exit_code = 1


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
    #: the quantized model the firmware was built from ("" when the binding does not say)
    qmodel_sha256: str = ""

    @classmethod
    def parse(cls, body: bytes) -> DeviceInfo:
        if len(body) < 3 or body[:2] != b"EC":
            raise LinkError("handshake reply lacks the 'EC' magic: not an edgecompile harness")
        if body[2] not in COMPATIBLE_VERSIONS:
            raise ProtocolMismatch(
                f"the board runs edgecompile firmware of protocol v{body[2]}, this host speaks "
                f"v{PROTO_VERSION}: flash this project")
        if len(body) != INFO_BODY_LEN:
            raise LinkError(f"handshake reply has {len(body)} bytes, expected {INFO_BODY_LEN}")
        (_magic, proto, major, minor, patch, max_payload, d, h, c, t, bits, src, hz, sha,
         steps, qsha) = _INFO.unpack(body)
        return cls(proto, f"{major}.{minor}.{patch}", max_payload, d, h, c, t, bits,
                   CYCLE_SOURCES.get(src, (f"unknown-{src}", "?"))[0], hz, sha.hex(), steps,
                   "" if not any(qsha) else qsha.hex())


def step_request(flags: int, t0: int, x_q: npt.ArrayLike, *, runs: bool = False) -> bytes:
    """Body of a STEP request; ``x_q`` is an int16 array ``[n, D]``. With ``runs`` (protocol
    v3) the rows go as runs of equal rows, ``count u8, row i16[D]`` each, and the flag
    STEP_RUNS is added."""
    import numpy as np

    x = np.ascontiguousarray(x_q, dtype="<i2")
    head = struct.pack("<BBH", flags | (STEP_RUNS if runs else 0), x.shape[0], t0)
    if not runs:
        return head + x.tobytes()
    return head + b"".join(bytes((count,)) + x[start].tobytes() for start, count in row_runs(x))


def row_runs(x_q: npt.ArrayLike) -> list[tuple[int, int]]:
    """``(first row, count)`` of each run of equal consecutive rows of ``x_q [n, D]``."""
    import numpy as np

    x = np.asarray(x_q)
    if x.shape[0] == 0:
        return []
    new = np.ones(x.shape[0], dtype=bool)
    new[1:] = np.any(x[1:] != x[:-1], axis=1)
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, x.shape[0]))
    return [(int(a), int(c)) for a, c in zip(starts, counts, strict=True)]


def runs_pay_off(x_q: npt.ArrayLike) -> bool:
    """True when the runs form of ``x_q`` is shorter than one row per step."""
    import numpy as np

    x = np.asarray(x_q)
    return x.shape[0] > 0 and len(row_runs(x)) * (1 + 2 * x.shape[1]) < 2 * x.size
