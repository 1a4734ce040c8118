"""The link client against real ports: loop:// (echo), a silent pty, and the harness built as a
native process on a pty, with garbage, corrupted bytes and a lost session injected."""

from __future__ import annotations

import os
import re
import struct
import time

import numpy as np
import pytest
import serial
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.emulators.process import run_native
from edgecompile.errors import LinkError, LinkTimeout
from edgecompile.link import protocol as pr
from edgecompile.link.client import Client, LineSeen, diagnose, open_port
from edgecompile.link.framing import BadFrame, FrameReader, crc16, encode_frame
from edgecompile.link.timeouts import Timeouts

from . import harness_build as hb
from .helpers import standin
from .helpers.ptydevice import PtyDevice, flipped_reply, info_body


@pytest.fixture(scope="module")
def native_exe(tmp_path_factory):
    return hb.build_native(tmp_path_factory.mktemp("native"))


@pytest.fixture
def device(native_exe):
    with run_native(native_exe) as emu:
        port = emu.open()
        try:
            yield port
        finally:
            port.close()


def test_echo_port_fails_fast_and_says_so():
    t0 = time.monotonic()
    with pytest.raises(LinkError, match="echoes"):
        Client(open_port("loop://")).handshake()
    assert time.monotonic() - t0 < 2.0


def test_silent_port_fails_within_seconds():
    master, slave = os.openpty()
    try:
        port = serial.Serial(os.ttyname(slave), 115200)
        t0 = time.monotonic()
        with pytest.raises(LinkTimeout, match="no bytes from"):
            Client(port).handshake()  # default timeouts: the user-facing behaviour
        elapsed = time.monotonic() - t0
        assert 1.0 < elapsed < 6.0
        port.close()
    finally:
        os.close(master)
        os.close(slave)


def test_missing_port_is_a_link_error():
    with pytest.raises(LinkError, match="cannot open port"):
        open_port("/dev/does-not-exist-edgecompile")


def test_handshake_reports_the_model(device):
    info = Client(device).handshake()
    assert (info.input_dim, info.hidden_dim, info.num_classes) == (standin.D, standin.H, standin.C)
    assert info.model_sha256 == standin.SHA256
    assert info.cycle_source == "posix-clock-ns" and info.cycle_hz == 10**9
    assert info.max_steps_per_frame == 64 and info.proto_version == pr.PROTO_VERSION


@pytest.mark.parametrize("trace", [False, True])
def test_infer_matches_the_model(device, trace):
    client = Client(device)
    client.handshake()
    rng = np.random.default_rng(1)
    for T in (0, 1, 63, 64, 65, 200):
        x = rng.integers(-32768, 32768, size=(T, standin.D)).astype(np.int16)
        got = client.infer(x, trace=trace)
        logits, hidden = standin.run(x)
        np.testing.assert_array_equal(got.logits, logits)
        if trace:
            np.testing.assert_array_equal(got.hidden, hidden)


def test_step_returns_hidden_on_request(device):
    client = Client(device)
    client.handshake()
    x = np.array([[5, -6, 7], [100, 200, -300]], dtype=np.int16)
    rep = client.step(x, t0=0, reset=True, hidden=True)
    assert rep.t == 2 and rep.logits is None
    np.testing.assert_array_equal(rep.hidden, standin.run(x)[1][-1])
    with pytest.raises(LinkError, match="out of step"):
        client.step(x, t0=0)  # the device is at t=2


class Meddler:
    """A pyserial port wrapper that injects faults into the byte streams."""

    def __init__(self, port, garbage_every=0, flip_write=None, flip_read=None, steal_at=None):
        self.port = port
        self.garbage_every = garbage_every
        self.flip_write = set(flip_write or ())
        self.flip_read = set(flip_read or ())
        self.steal_at = steal_at
        self.writes = 0
        self.reads = 0
        self.rng = np.random.default_rng(7)

    timeout = property(lambda s: s.port.timeout, lambda s, v: setattr(s.port, "timeout", v))
    in_waiting = property(lambda s: s.port.in_waiting)

    def write(self, data):
        self.writes += 1
        if self.steal_at == self.writes:
            # Another handshake reaches the device first: it drops our session, as a reboot does.
            self.port.write(b"\x00" + encode_frame(bytes((pr.CMD_INFO, 0, 0xEE))))
        if self.garbage_every and self.writes % self.garbage_every == 0:
            self.port.write(self.rng.integers(1, 256, 40, dtype=np.uint8).tobytes())
        if self.writes in self.flip_write:
            data = bytearray(data)
            data[len(data) // 2] ^= 0x04
        return self.port.write(bytes(data))

    def read(self, n):
        data = self.port.read(n)
        if data:
            self.reads += 1
            if self.reads in self.flip_read:
                data = bytearray(data)
                data[len(data) // 2] ^= 0x40
                data = bytes(data)
        return data

    def flush(self):
        self.port.flush()

    def reset_input_buffer(self):
        self.port.reset_input_buffer()


def _check(client, T=150, seed=3):
    x = np.random.default_rng(seed).integers(-3000, 3000, size=(T, standin.D)).astype(np.int16)
    np.testing.assert_array_equal(client.infer(x).logits, standin.run(x)[0])


def test_garbage_on_the_line_is_resynchronised(device):
    client = Client(Meddler(device, garbage_every=2))
    client.handshake()
    _check(client)
    assert client.stats.retransmits >= 1  # garbage glued to a request spoils it; sent again


def test_corrupted_request_and_reply_are_retried(device):
    client = Client(Meddler(device, flip_write=[3, 5], flip_read=[4]))
    client.handshake()
    for seed in range(3):
        _check(client, T=20, seed=seed)
    assert client.stats.retransmits >= 2 and client.stats.bad_frames >= 2


def test_lost_session_mid_sequence_rehandshakes_and_restarts(device):
    meddler = Meddler(device, steal_at=4)
    client = Client(meddler)
    client.handshake()
    _check(client, T=300)
    assert client.stats.device_resets == 1 and client.stats.sequence_restarts == 1


def test_step_timeout_is_bounded(native_exe):
    """A device that dies mid-run: the client gives up within its reply deadlines."""
    with run_native(native_exe) as emu:
        port = emu.open()
        client = Client(port, timeouts=Timeouts(reply_base_s=0.3, frame_retries=1))
        client.handshake()
        emu.stop()
        t0 = time.monotonic()
        with pytest.raises(LinkError):
            client.infer(np.zeros((10, standin.D), np.int16))
        assert time.monotonic() - t0 < 10
        port.close()


# ---- what the port did instead of answering: silent, not the protocol, or bad CRCs ----------

QUICK = Timeouts(handshake_window_s=1.0, handshake_reply_s=0.25, reply_base_s=0.3,
                 bad_frame_grace_s=0.1)


def handshake_error(dev: PtyDevice) -> str:
    port = serial.Serial(dev.path, 115200)
    try:
        with pytest.raises(LinkError) as info:
            Client(port, timeouts=QUICK).handshake()
    finally:
        port.close()
    return str(info.value)


def test_text_banner_is_not_the_protocol():
    with PtyDevice(chatter=lambda: b"Hello from my sketch v1.2\r\n") as dev:
        msg = handshake_error(dev)
    assert msg.startswith(f"{dev.path} answers, but not with the edgecompile protocol: got "
                          "'Hello from my sketch v1.2")
    assert "is the edgecompile firmware flashed?" in msg


def test_binary_garbage_is_not_the_protocol():
    rng = np.random.default_rng(2)
    with PtyDevice(answer=lambda req: rng.integers(0, 256, 90, dtype=np.uint8).tobytes()) as dev:
        msg = handshake_error(dev)
    assert "answers, but not with the edgecompile protocol: got binary data (" in msg
    assert "CRC" not in msg


def test_bit_flipped_replies_are_crc_failures_not_silence():
    with PtyDevice(answer=flipped_reply()) as dev:
        msg = handshake_error(dev)
    m = re.fullmatch(rf"frames from {re.escape(dev.path)} fail their CRC \((\d+) of (\d+)\): "
                     r"noisy line or wrong baud rate\?", msg)
    assert m and int(m[1]) == int(m[2]) >= 2, msg


def test_silent_pty_says_no_bytes():
    with PtyDevice() as dev:
        msg = handshake_error(dev)
    assert msg.startswith(f"no bytes from {dev.path} in 1 s")


def test_old_protocol_firmware_is_another_build():
    with PtyDevice(answer=lambda req: b"\x00" + encode_frame(
            bytes((req[0] | pr.REPLY_BIT, req[1], 0)) + info_body(proto=1))) as dev:
        msg = handshake_error(dev)
    assert "protocol v1" in msg and "flash this project" in msg


def test_handshake_reports_the_quantized_model():
    with PtyDevice(answer=lambda req: b"\x00" + encode_frame(
            bytes((req[0] | pr.REPLY_BIT, req[1], 0)) + info_body())) as dev:
        port = serial.Serial(dev.path, 115200)
        try:
            info = Client(port, timeouts=QUICK).handshake()
        finally:
            port.close()
    assert info.qmodel_sha256 == bytes(range(32)).hex() and info.weight_bits == 8


def test_standin_binding_reports_no_quantized_model(device):
    assert Client(device).handshake().qmodel_sha256 == ""  # zeros: the binding does not say


class FlipFrames:
    """A port wrapper that, once ``armed``, flips one bit of the CRC of every frame read (the
    frame decoded and encoded again: COBS stays intact, the CRC fails, whatever its bytes)."""

    def __init__(self, port):
        self.port, self.armed, self._held = port, False, bytearray()

    timeout = property(lambda s: s.port.timeout, lambda s, v: setattr(s.port, "timeout", v))
    in_waiting = property(lambda s: s.port.in_waiting)
    write = property(lambda s: s.port.write)
    flush = property(lambda s: s.port.flush)
    reset_input_buffer = property(lambda s: s.port.reset_input_buffer)

    def read(self, n):
        self._held += self.port.read(n)
        end = self._held.rfind(0)
        if end < 0:
            return b""
        out, self._held = bytes(self._held[:end + 1]), self._held[end + 1:]
        if not self.armed:
            return out
        frames = []
        for raw in out.split(b"\0")[:-1]:
            if raw:
                body = bytearray(cobs.decode(raw))
                body[-1] ^= 0x01
                raw = cobs.encode(bytes(body))
            frames.append(raw + b"\0")
        return b"".join(frames)


def test_bit_flips_after_the_handshake_are_named(device):
    port = FlipFrames(device)
    client = Client(port, timeouts=QUICK, name="the test board")
    client.handshake()
    port.armed = True
    t0 = time.monotonic()
    with pytest.raises(LinkTimeout, match=r"echo: frames from the test board fail their CRC "
                                          r"\((\d+) of \1\): noisy line or wrong baud rate\? "
                                          r"\(4 tries\)"):
        client.echo(b"hello")
    assert time.monotonic() - t0 < 5


def test_loop_port_with_flipped_bits_is_crc_not_echo():
    port = FlipFrames(open_port("loop://"))
    port.armed = True
    with pytest.raises(LinkTimeout, match=r"frames from loop:// fail their CRC"):
        Client(port, timeouts=QUICK, name="loop://").handshake()


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=1, max_size=120), data=st.data())
def test_any_single_bit_flip_is_a_crc_failure(payload, data):
    """A flipped bit in any payload or CRC byte (the COBS structure intact) never passes as a
    frame, and a stream of such frames is diagnosed as CRC failures."""
    body = bytearray(payload + crc16(payload).to_bytes(2, "little"))
    i = data.draw(st.integers(0, len(body) - 1))
    bit = data.draw(st.integers(0, 7))
    body[i] ^= 1 << bit
    frame = cobs.encode(bytes(body)) + b"\x00"
    seen = LineSeen()
    seen.saw_bytes(frame * 3)
    for item in FrameReader().feed(frame * 3):
        assert isinstance(item, BadFrame) and item.reason == "crc"
        seen.saw_frame(item)
    assert diagnose(seen, "P", 1.0) == "frames from P fail their CRC (3 of 3): noisy line or wrong baud rate?"


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=80))
def test_any_text_banner_is_quoted(text):
    raw = (text + "\r\n").encode()
    seen = LineSeen()
    seen.saw_bytes(raw)
    for item in FrameReader().feed(raw):
        seen.saw_frame(item)
    msg = diagnose(seen, "P", 1.0)
    assert msg.startswith("P answers, but not with the edgecompile protocol: got '")
    shown = " ".join(text.split())[:20].replace("'", "\\'")
    assert shown in msg


def test_requests_the_device_cannot_read_are_named(device):
    client = Client(Meddler(device, flip_write=range(2, 100)), timeouts=QUICK)
    client.handshake()
    with pytest.raises(LinkTimeout, match=r"^echo: the port could not read \d+ of the \d+ frames "
                                          r"sent to it: noisy line or wrong baud rate\? \(4 tries\)$"):
        client.echo(b"hello")
    assert client.stats.bad_frames >= 4


def test_padded_sequence_sends_its_padding_once(device):
    """A v3 device gets a padded sequence as STEP_RUNS: fewer bytes, the same logits."""
    sent: list[str] = []
    client = Client(device, log=sent.append)
    assert client.handshake().proto_version == 3
    rng = np.random.default_rng(21)
    body = rng.integers(-2000, 2000, (10, standin.D)).astype(np.int16)
    for x in (np.concatenate([np.repeat(body[:1], 30, axis=0), body]),    # padded in front
              np.concatenate([body, np.repeat(body[-1:], 30, axis=0)])):  # or at the end
        sent.clear()
        np.testing.assert_array_equal(client.infer(x).logits, standin.run(x)[0])
        frames = [bytes.fromhex(line[3:]) for line in sent if line.startswith("TX ")]
        assert len(frames) == 1
        assert len(frames[0]) < (1 + 2 * standin.D) * 10 + 20  # 10 runs, not 40 rows


def test_v2_device_gets_every_row():
    """A board with protocol v2 firmware is still verified: it gets one row per step."""
    requests: list[bytes] = []

    def answer(req: bytes) -> bytes:
        requests.append(req)
        if req[0] == pr.CMD_INFO:
            body = info_body(proto=2)
        else:
            n = req[4]
            body = struct.pack("<HI", n, 5) + struct.pack(f"<{standin.C}i", *range(standin.C))
        return b"\x00" + encode_frame(bytes((req[0] | pr.REPLY_BIT, req[1], 0)) + body)

    with PtyDevice(answer=answer) as dev:
        port = serial.Serial(dev.path, 115200)
        try:
            client = Client(port, timeouts=QUICK)
            assert client.handshake().proto_version == 2
            x = np.zeros((6, standin.D), np.int16)  # all rows equal
            assert client.infer(x).logits.tolist() == list(range(standin.C))
        finally:
            port.close()
    step = requests[-1]
    assert step[0] == pr.CMD_STEP and step[3] & pr.STEP_RUNS == 0
    assert len(step) == 3 + 4 + 2 * standin.D * 6
