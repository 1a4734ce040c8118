"""The link client against real ports: loop:// (echo), a silent pty, and the harness built as a
native process on a pty, with garbage, corrupted bytes and a lost session injected."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import serial

from edgecompile.errors import LinkError, LinkTimeout
from edgecompile.link import protocol as pr
from edgecompile.link.client import Client, open_port
from edgecompile.link.emulators import run_native
from edgecompile.link.framing import encode_frame
from edgecompile.link.timeouts import Timeouts

from . import harness_build as hb
from . import standin


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
        with pytest.raises(LinkTimeout, match="no handshake reply"):
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
