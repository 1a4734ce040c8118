"""A device played by a thread on a pty pair, and INFO replies for it: link errors without firmware."""

from __future__ import annotations

import contextlib
import os
import select
import struct
import threading
import tty
from collections.abc import Callable
from typing import Any

import numpy as np
from cobs import cobs

from edgecompile.link import protocol as pr
from edgecompile.link.framing import FrameReader, crc16

from . import standin


def info_body(proto: int = pr.PROTO_VERSION, qsha: bytes = bytes(range(32))) -> bytes:
    """A well-formed INFO reply body (protocol v1 bodies end before the quantized hash)."""
    body = (b"EC" + bytes((proto, 0, 2, 0)) + struct.pack("<HHHHHBBI", 91, standin.D, standin.H,
                                                         standin.C, 0, 8, 4, 10**9)
            + bytes.fromhex(standin.SHA256) + struct.pack("<H", 64))
    return body + (qsha if proto >= 2 else b"")


class PtyDevice:
    """The far end of a pty pair, played by a thread: it either chatters on its own (``chatter``
    returns bytes to send every 50 ms) or answers every request frame (``answer`` maps the
    request payload to the bytes to send back)."""

    def __init__(self, chatter: Callable[[], bytes] | None = None,
                 answer: Callable[[bytes], bytes] | None = None) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.chatter, self.answer = chatter, answer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PtyDevice:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)

    def _run(self) -> None:
        reader = FrameReader()
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except (BlockingIOError, OSError):
                    data = b""
                for item in reader.feed(data):
                    if self.answer is not None and isinstance(item, bytes):
                        self._send(self.answer(item))
            if self.chatter is not None:
                self._send(self.chatter())


def flipped_reply(body_of: Callable[[bytes], bytes] = lambda req: info_body()) -> Callable[[bytes], bytes]:
    """Answers each request with its reply, one payload bit flipped after the CRC was taken:
    what a noisy line does to a good frame."""
    rng = np.random.default_rng(5)

    def answer(req: bytes) -> bytes:
        payload = bytearray(bytes((req[0] | pr.REPLY_BIT, req[1], 0)) + body_of(req))
        crc = crc16(bytes(payload))
        payload[int(rng.integers(len(payload)))] ^= 1 << int(rng.integers(8))
        return b"\x00" + cobs.encode(bytes(payload) + crc.to_bytes(2, "little")) + b"\x00"

    return answer
