"""Frames on the wire: ``COBS(payload || crc16_le(payload)) 0x00`` (docs/protocol.md).

COBS from the ``cobs`` package; the CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF),
which the standard library computes as ``binascii.crc_hqx(data, 0xFFFF)``.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from cobs import cobs

DELIMITER = b"\x00"
CRC_LEN = 2
#: The host drops anything longer between delimiters as garbage (devices send far less).
MAX_ENCODED_FRAME = 8192


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, as the device computes it (``ech_crc16``)."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(payload: bytes) -> bytes:
    """One frame: COBS of payload and its little-endian CRC, then the 0x00 delimiter."""
    body = bytes(payload) + crc16(payload).to_bytes(2, "little")
    return cobs.encode(body) + DELIMITER


@dataclass(frozen=True)
class BadFrame:
    """Bytes between delimiters that are not a valid frame (noise, truncation, bad CRC)."""

    reason: str
    raw: bytes


def decode_frame(raw: bytes) -> bytes | BadFrame:
    """Payload of one frame's bytes (without the delimiter), or :class:`BadFrame`."""
    if len(raw) > MAX_ENCODED_FRAME:
        return BadFrame("oversized", raw[:64])
    try:
        body = cobs.decode(raw)
    except cobs.DecodeError:
        return BadFrame("cobs", raw)
    if len(body) < CRC_LEN + 1:
        return BadFrame("short", raw)
    payload, crc = body[:-CRC_LEN], int.from_bytes(body[-CRC_LEN:], "little")
    if crc16(payload) != crc:
        return BadFrame("crc", raw)
    return payload


class FrameReader:
    """Splits a byte stream into frames; resynchronises on the next delimiter after garbage."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes | BadFrame]:
        out: list[bytes | BadFrame] = []
        start = 0
        while True:
            i = data.find(DELIMITER, start)
            if i < 0:
                self._append(data[start:])
                break
            self._append(data[start:i])
            if self._overflow:
                out.append(BadFrame("oversized", bytes(self._buf[:64])))
            elif self._buf:
                out.append(decode_frame(bytes(self._buf)))
            self._buf.clear()
            self._overflow = False
            start = i + 1
        return out

    def _append(self, chunk: bytes) -> None:
        if self._overflow:
            return
        self._buf += chunk
        if len(self._buf) > MAX_ENCODED_FRAME:
            self._overflow = True
            del self._buf[64:]

    def clear(self) -> None:
        self._buf.clear()
        self._overflow = False
