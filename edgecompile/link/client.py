"""Typed commands over a framed serial link: handshake, reset, step, infer.

Every read has a deadline; corrupt frames are retransmitted; garbage is skipped up to the next
delimiter; a device that restarted (it answers NO_SESSION) is handshaken again and the running
sequence restarted from its first step. When no usable reply comes, the error says what the port
did instead: stayed silent, answered with something that is not the protocol (a text banner,
garbage), or sent frames that fail their CRC (noise, wrong baud rate).
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgecompile.errors import LinkError, LinkTimeout
from edgecompile.link import status as st
from edgecompile.link.framing import BadFrame, FrameReader, encode_frame
from edgecompile.link.protocol import (
    CMD_ECHO,
    CMD_ERROR,
    CMD_INFO,
    CMD_RESET,
    CMD_STEP,
    HEADER_LEN,
    REPLY_BIT,
    STEP_HIDDEN,
    STEP_LOGITS,
    STEP_RESET,
    DeviceInfo,
    runs_pay_off,
    step_request,
)
from edgecompile.link.timeouts import Timeouts, from_env

#: Most bytes taken from a ready port at once (far more than any reply).
READ_CHUNK = 65536


class DeviceError(LinkError):
    """The device answered a request with an error status."""

    def __init__(self, status: int, what: str):
        super().__init__(f"device refused {what}: {st.describe(status)}")
        self.status = status


class DeviceReset(LinkError):
    """The device lost its session (it restarted since the handshake)."""


class SequenceBroken(LinkError):
    """The device's step counter does not continue the sequence being sent."""


@dataclass
class LinkStats:
    frames_sent: int = 0
    retransmits: int = 0
    bad_frames: int = 0
    ignored_frames: int = 0
    device_resets: int = 0
    sequence_restarts: int = 0


@dataclass
class LineSeen:
    """What arrived on the port over one handshake window or one command (for diagnosis)."""

    received: int = 0
    head: bytearray = field(default_factory=bytearray)  # the first bytes received
    frames: int = 0     # non-empty chunks between delimiters, valid or not
    crc_failed: int = 0  # of them: COBS intact, CRC wrong
    sent: int = 0       # frames we sent
    refused: int = 0    # device ERROR replies: it could not read a frame we sent

    HEAD_LEN = 48

    def saw_bytes(self, data: bytes) -> None:
        self.received += len(data)
        if len(self.head) < self.HEAD_LEN:
            self.head += data[:self.HEAD_LEN - len(self.head)]

    def saw_frame(self, item: bytes | BadFrame) -> None:
        self.frames += 1
        if isinstance(item, BadFrame) and item.reason == "crc":
            self.crc_failed += 1


def preview(raw: bytes | bytearray) -> str:
    """A short, printable rendering of bytes a port sent: quoted text or a hex dump."""
    raw = bytes(raw)
    text_bytes = sum(1 for b in raw if 32 <= b < 127 or b in (9, 10, 13))
    if raw and text_bytes >= 0.8 * len(raw):
        text = "".join(chr(b) if 32 <= b < 127 else " " for b in raw)
        text = " ".join(text.split())
        if len(text) > 32:
            text = text[:32] + " ..."
        return "'" + text.replace("'", "\\'") + "'"
    shown = raw[:12].hex(" ")
    return f"binary data ({shown}{' ...' if len(raw) > 12 else ''})"


def diagnose(seen: LineSeen, port: str, seconds: float) -> str:
    """One sentence on why no usable reply came from ``port`` in ``seconds``."""
    if seen.received == 0:
        return f"no bytes from {port} in {seconds:.3g} s"
    if seen.crc_failed and 2 * seen.crc_failed >= seen.frames:
        return (f"frames from {port} fail their CRC ({seen.crc_failed} of {seen.frames}): "
                "noisy line or wrong baud rate?")
    if seen.refused:
        return (f"{port} could not read {seen.refused} of the {seen.sent} frames sent to it: "
                "noisy line or wrong baud rate?")
    return (f"{port} answers, but not with the edgecompile protocol: got {preview(seen.head)}: "
            "is the edgecompile firmware flashed?")


class Port(Protocol):
    """What the client needs of a port: pyserial's ``Serial`` and its URL handlers have it."""

    timeout: float | None

    def write(self, data: bytes, /) -> int | None: ...
    def flush(self) -> None: ...
    def read(self, size: int = 1, /) -> bytes: ...
    def reset_input_buffer(self) -> None: ...


@dataclass(frozen=True)
class StepReply:
    t: int
    cycles: int
    hidden: np.ndarray | None
    logits: np.ndarray | None


@dataclass(frozen=True)
class InferResult:
    logits: np.ndarray          # int64 [C]
    cycles: int                 # counts of info.cycle_source over all steps + classifier
    hidden: np.ndarray | None = None   # int16 [T, H] when traced


@dataclass
class Client:
    """A protocol client over a pyserial port (or anything with read/write/in_waiting/timeout).

    ``log`` receives one line per frame (``TX``/``RX`` + hex) when set (``--trace`` style).
    """

    port: Port
    timeouts: Timeouts = field(default_factory=from_env)
    log: Callable[[str], None] | None = None
    stats: LinkStats = field(default_factory=LinkStats)
    info: DeviceInfo | None = None
    #: the port's name in messages (default: the pyserial port's path or URL)
    name: str = ""

    def __post_init__(self) -> None:
        self._reader = FrameReader()
        self._pending: list[bytes | BadFrame] = []
        self._seq = 0
        self._session = 0
        self._seen = LineSeen()
        self._cancel = threading.Event()
        if not self.name:
            names = [getattr(self.port, a, None) for a in ("port", "name")]
            self.name = next((n for n in names if isinstance(n, str) and n), "the port")
        # A port with a file descriptor (a serial device, pty or socket) is waited on for
        # readiness and then read in one chunk (``timeout = 0``: what is there); others
        # (wrappers, ``loop://``) are polled with ``poll_s`` reads.
        self._fd = _fileno(self.port)
        self.port.timeout = 0 if self._fd is not None else self.timeouts.poll_s

    # ---- transport -------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 marks device frame errors
        return self._seq

    def _write(self, frame: bytes) -> None:
        if self.log:
            self.log("TX " + frame.hex(" "))
        try:
            # the leading delimiter ends whatever garbage the device may have buffered
            self.port.write(b"\x00" + frame)
            self.port.flush()
        except Exception as exc:  # pyserial raises SerialException / OSError
            raise LinkError(f"cannot write to the port: {exc}") from exc
        self.stats.frames_sent += 1
        self._seen.sent += 1

    def _read_frame(self, deadline: float) -> bytes | BadFrame:
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkTimeout("no reply")
            if self._cancel.is_set():
                raise LinkError("cancelled")
            try:
                if self._fd is not None:
                    ready, _, _ = select.select([self._fd], [], [], min(left, self.timeouts.poll_s))
                    data = self.port.read(READ_CHUNK) if ready else b""
                else:
                    waiting = getattr(self.port, "in_waiting", 0)
                    data = self.port.read(max(1, waiting))
            except Exception as exc:
                raise LinkError(f"cannot read from the port: {exc}") from exc
            if data:
                self._seen.saw_bytes(data)
                self._pending.extend(self._reader.feed(data))
        item = self._pending.pop(0)
        self._seen.saw_frame(item)
        if self.log:
            if isinstance(item, BadFrame):
                self.log(f"RX bad frame ({item.reason}): {item.raw[:48].hex(' ')}")
            else:
                self.log("RX " + item.hex(" "))
        return item

    def drain(self) -> None:
        """Forget buffered input (after a restart)."""
        self._pending.clear()
        self._reader.clear()
        try:
            self.port.reset_input_buffer()
        except Exception:  # noqa: BLE001 - sockets/loop ports may not support it
            pass

    def command(self, cmd: int, body: bytes = b"", *, timeout: float | None = None,
                what: str = "", retries: int | None = None, new_window: bool = True) -> bytes:
        """Send one request and return the body of its OK reply; raise on anything else.

        The frame is sent again (same request id) after a reply that could not be read, a
        frame error from the device, or silence, up to ``retries`` times; then
        :class:`LinkTimeout` says what the port did instead (:func:`diagnose`).
        ``new_window=False`` keeps counting into the caller's window (the handshake's).
        """
        retries = self.timeouts.frame_retries if retries is None else retries
        if new_window:
            self._seen = LineSeen()
        started = time.monotonic()
        what = what or f"command 0x{cmd:02x}"
        seq = self._next_seq()
        payload = bytes((cmd, seq, self._session)) + body
        frame = encode_frame(payload)
        timeout = timeout or self.timeouts.reply_timeout(len(frame))
        for attempt in range(retries + 1):
            if attempt:
                self.stats.retransmits += 1
            self._write(frame)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    item = self._read_frame(deadline)
                except LinkTimeout:
                    if attempt < retries:
                        break
                    raise LinkTimeout(self._failure(what, started, retries)) from None
                if isinstance(item, BadFrame):
                    # Most likely our reply, damaged: no other reply is coming, so wait only a
                    # little for one (the damage may have been noise before it), then resend.
                    self.stats.bad_frames += 1
                    deadline = min(deadline, time.monotonic() + self.timeouts.bad_frame_grace_s)
                    continue
                if item == payload:
                    raise LinkError("the port echoes requests back: no device behind it?")
                if len(item) < HEADER_LEN:
                    self.stats.bad_frames += 1
                    continue
                if item[0] == (CMD_ERROR | REPLY_BIT):
                    self.stats.bad_frames += 1
                    self._seen.refused += 1
                    break  # the device could not read a frame: retransmit
                if item[0] != (cmd | REPLY_BIT) or item[1] != seq:
                    self.stats.ignored_frames += 1  # stale reply or noise that passed the CRC
                    continue
                status = item[2]
                if status == st.OK:
                    return item[HEADER_LEN:]
                if status == st.NO_SESSION:
                    self.stats.device_resets += 1
                    raise DeviceReset(f"the device restarted (during {what})")
                if status == st.BAD_SEQUENCE:
                    raise SequenceBroken(f"device step counter out of step (during {what})")
                raise DeviceError(status, what)
        raise LinkTimeout(self._failure(what, started, retries))

    def _failure(self, what: str, started: float, retries: int) -> str:
        tries = f"{retries + 1} tries" if retries else "1 try"
        return f"{what}: {diagnose(self._seen, self.name, time.monotonic() - started)} ({tries})"

    # ---- commands ----------------------------------------------------------------------------
    def handshake(self) -> DeviceInfo:
        """INFO until the device answers (a board may be booting); new session byte each time."""
        session = (os.getpid() + int(time.monotonic() * 1000)) % 255 + 1
        if session == self._session:
            session = session % 255 + 1
        end = time.monotonic() + self.timeouts.handshake_window_s
        self._seen = LineSeen()
        refused: DeviceError | None = None
        while time.monotonic() < end:
            self._session = session
            try:
                body = self.command(CMD_INFO, timeout=self.timeouts.handshake_reply_s,
                                    what="handshake", retries=0, new_window=False)
            except LinkTimeout:
                continue
            except DeviceError as exc:
                refused = exc
                continue
            self.info = DeviceInfo.parse(body)
            return self.info
        if refused is not None:
            raise LinkError(f"handshake with {self.name} failed: {refused}")
        seen = diagnose(self._seen, self.name, self.timeouts.handshake_window_s)
        if self._seen.received == 0:
            seen += ": is the board connected and the edgecompile firmware running on it?"
        raise LinkTimeout(seen)

    def reset(self) -> None:
        self.command(CMD_RESET, what="reset")

    def echo(self, data: bytes) -> bytes:
        return self.command(CMD_ECHO, data, what="echo")

    def step(self, x_q: np.ndarray, *, t0: int, reset: bool = False, hidden: bool = False,
             logits: bool = False) -> StepReply:
        """Run ``n`` steps (``x_q`` int16 ``[n, D]``) starting at step index ``t0``."""
        info = self._need_info()
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or x_q.shape[1] != info.input_dim:
            raise ValueError(f"x_q must be [n, {info.input_dim}], got {list(x_q.shape)}")
        if x_q.shape[0] > info.max_steps_per_frame:
            raise ValueError(f"at most {info.max_steps_per_frame} steps per frame")
        flags = (STEP_RESET if reset else 0) | (STEP_HIDDEN if hidden else 0) | (
            STEP_LOGITS if logits else 0)
        # repeated rows (a padded sequence) go once, with their count, to v3 firmware
        body = step_request(flags, t0, x_q, runs=info.proto_version >= 3 and runs_pay_off(x_q))
        timeout = self.timeouts.reply_timeout(len(body) + 64, steps=x_q.shape[0])
        rep = self.command(CMD_STEP, body, timeout=timeout, what=f"step t={t0}")
        t, cycles = struct.unpack_from("<HI", rep)
        pos = 6
        h = lg = None
        if hidden:
            h = np.frombuffer(rep, dtype="<i2", count=info.hidden_dim, offset=pos).astype(np.int16)
            pos += 2 * info.hidden_dim
        if logits:
            lg = np.frombuffer(rep, dtype="<i4", count=info.num_classes, offset=pos).astype(np.int64)
            pos += 4 * info.num_classes
        if pos != len(rep):
            raise LinkError(f"step reply has {len(rep)} bytes, expected {pos}")
        if t != t0 + x_q.shape[0]:
            raise SequenceBroken(f"device at step {t} after a frame expected to end at "
                                 f"{t0 + x_q.shape[0]}")
        return StepReply(t, cycles, h, lg)

    def infer(self, x_q: np.ndarray, *, trace: bool = False) -> InferResult:
        """Whole sequence ``[T, D]`` -> int logits and cycles; restarts the sequence on a device
        reset or a broken step count (up to ``sequence_attempts`` times).

        With ``trace`` every step is its own frame and returns the hidden state.
        """
        x_q = np.asarray(x_q, dtype=np.int16)
        last: Exception | None = None
        for attempt in range(self.timeouts.sequence_attempts):
            if attempt:
                self.stats.sequence_restarts += 1
            try:
                return self._infer_once(x_q, trace)
            except DeviceReset as exc:
                last = exc
                self._rehandshake()
            except SequenceBroken as exc:
                last = exc
        raise LinkError(f"sequence failed {self.timeouts.sequence_attempts} times: {last}")

    def _infer_once(self, x_q: np.ndarray, trace: bool) -> InferResult:
        info = self._need_info()
        T = x_q.shape[0]
        chunk = 1 if trace else max(1, info.max_steps_per_frame)
        cycles = 0
        hidden: list[np.ndarray] = []
        if T == 0:
            rep = self.step(x_q[:0], t0=0, reset=True, logits=True)
            assert rep.logits is not None  # asked for
            return InferResult(rep.logits, rep.cycles)
        for t0 in range(0, T, chunk):
            part = x_q[t0:t0 + chunk]
            last = t0 + chunk >= T
            rep = self.step(part, t0=t0, reset=(t0 == 0), hidden=trace, logits=last)
            cycles += rep.cycles
            if trace:
                assert rep.hidden is not None  # asked for
                hidden.append(rep.hidden)
        assert rep.logits is not None  # asked for with the last step
        return InferResult(rep.logits, cycles, np.stack(hidden) if trace else None)

    def infer_all(self, xs: Sequence[np.ndarray] | np.ndarray, *, trace: bool = False
                  ) -> Iterator[InferResult]:
        """:meth:`infer` of every sequence of ``xs``, in order."""
        for x in xs:
            yield self.infer(x, trace=trace)

    def cancel(self) -> None:
        """End a read in progress in another thread (and every later one) with a LinkError."""
        self._cancel.set()

    def _rehandshake(self) -> None:
        before = self.info
        self.drain()
        after = self.handshake()
        if before is not None and (after.model_sha256, after.qmodel_sha256) != (
                before.model_sha256, before.qmodel_sha256):
            raise LinkError("the device came back running a different model")

    def _need_info(self) -> DeviceInfo:
        if self.info is None:
            self.handshake()
        assert self.info is not None
        return self.info


def _fileno(port: object) -> int | None:
    """The port's file descriptor when it has a real one, else None."""
    fileno = getattr(port, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except Exception:  # noqa: BLE001 - not open, or a port type without one
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def open_port(url: str, baudrate: int = 115200) -> Any:
    """A pyserial port from a device path or any pyserial URL (``socket://``, ``loop://``...)."""
    import serial

    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0.05, write_timeout=2.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise LinkError(f"cannot open port {url}: {exc}") from exc
