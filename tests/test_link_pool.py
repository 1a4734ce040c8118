"""Several emulator instances fed side by side (``ClientPool``): results in input order and bit
exact, and every check of a single link still bites on any one of them: a corrupted frame is
retransmitted, a reset mid-run restarts the sequence, a device that stops answering ends the
whole run with one line, within its deadlines. Real QEMU and simavr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgecompile.emulators.process import emulate_many
from edgecompile.errors import LinkTimeout
from edgecompile.link.client import Client
from edgecompile.link.pool import ClientPool
from edgecompile.link.timeouts import Timeouts

from . import harness_build as hb
from .helpers import standin
from .helpers.emulator import HookedPort, reset_before
from .helpers.models import make_inputs, make_model

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("edgecompile"))


@pytest.fixture(scope="module")
def mps2_elf(tmp_path_factory):
    hb.need("qemu-system-arm")
    return hb.build_cortexm(tmp_path_factory.mktemp("mps2"), "mps2_an385")


def sequences(n: int, seed: int = 3) -> list[np.ndarray]:
    """Random stand-in inputs; some longer than one STEP frame (32 steps on Cortex-M)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-900, 900, (int(rng.integers(1, 70)), standin.D)).astype(np.int16)
            for _ in range(n)]


def pool_of(emus, wrap=None, timeouts: Timeouts | None = None):
    ports = [e.open() for e in emus]
    clients = [Client(wrap(k, p) if wrap else p, **({"timeouts": timeouts} if timeouts else {}))
               for k, p in enumerate(ports)]
    pool = ClientPool(clients)
    pool.handshake()
    return pool, ports


def check_all(pool, xs):
    got = list(pool.infer_all(xs))
    assert len(got) == len(xs)
    for x, res in zip(xs, got, strict=True):
        np.testing.assert_array_equal(res.logits, standin.run(x)[0])


def test_pool_results_are_in_order_and_bit_exact(mps2_elf):
    xs = sequences(24)
    with emulate_many("mps2_an385", mps2_elf, 3) as emus:
        assert len({e.url for e in emus}) == 3
        pool, ports = pool_of(emus)
        check_all(pool, xs)
        # every instance did a share of the work (beyond its handshake)
        assert all(c.stats.frames_sent > 2 for c in pool.clients)
        assert pool.stats.frames_sent == sum(c.stats.frames_sent for c in pool.clients)
        for p in ports:
            p.close()


def test_pool_corrupted_request_is_retransmitted(mps2_elf):
    def flip(k, port):
        def hook(n, data):
            if k == 1 and n in (2, 4):  # two requests of the second instance, damaged
                data = bytearray(data)
                data[len(data) // 2] ^= 0x10
            return bytes(data)
        return HookedPort(port, hook)

    xs = sequences(16, seed=4)
    with emulate_many("mps2_an385", mps2_elf, 2) as emus:
        pool, ports = pool_of(emus, flip)
        check_all(pool, xs)
        assert pool.clients[1].stats.retransmits >= 2 and pool.clients[1].stats.bad_frames >= 2
        assert pool.clients[0].stats.retransmits == 0
        for p in ports:
            p.close()


def test_pool_reset_mid_run_restarts_the_sequence(tmp_path):
    hb.need("simavr")
    elf = hb.build_avr(tmp_path)
    with emulate_many("uno", elf, 2) as emus:
        def reset(k, port):  # a real core reset of one instance, mid-sequence
            return HookedPort(port, reset_before(emus[0], at=6) if k == 0 else lambda n, data: data)

        rng = np.random.default_rng(8)
        xs = [rng.integers(-900, 900, (12, standin.D)).astype(np.int16) for _ in range(8)]
        pool, ports = pool_of(emus, reset)
        check_all(pool, xs)
        assert "RESET" in emus[0].events() and "RESET" not in emus[1].events()
        assert pool.stats.device_resets == 1 and pool.stats.sequence_restarts == 1
        for p in ports:
            p.close()


def test_pool_device_that_stops_answering_ends_the_run(mps2_elf):
    quick = Timeouts(reply_base_s=0.4, per_step_s=0.0, frame_retries=1)
    with emulate_many("mps2_an385", mps2_elf, 2) as emus:
        def freeze(k, port):
            def hook(n, data):
                if k == 1 and n == 4:
                    os.kill(emus[1].proc.pid, signal.SIGSTOP)  # the board hangs
                return data
            return HookedPort(port, hook)

        pool, ports = pool_of(emus, freeze, quick)
        t0 = time.monotonic()
        try:
            with pytest.raises(LinkTimeout) as info:
                list(pool.infer_all(sequences(400, seed=5)))
            took = time.monotonic() - t0
        finally:
            os.kill(emus[1].proc.pid, signal.SIGCONT)
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith("step t=")
        assert "no bytes from" in msg and msg.endswith("(2 tries)")
        assert took < 10  # two reply deadlines, not the 400 sequences
        assert not [t for t in threading.enumerate() if t.name.startswith("link-")]
        for p in ports:
            p.close()


# ---- through the command line -------------------------------------------------------------

def make_project(root: Path, n: int):
    from edgecompile.frontend.checkpoint import save_checkpoint
    from edgecompile.pipeline.export import export_project

    fm = make_model(D=5, H=8, C=3, seed=2)
    X = make_inputs(fm, n=n, T=7)
    save_checkpoint(fm, root / "m.npz")
    np.save(root / "X.npy", X.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_project(str(root / "m.npz"), "mps2_an385", bits=8, calib=str(root / "X.npy"),
                       out_dir=str(root / "proj"), force=False, name="m", warn=lambda _m: None)
    return root / "proj"


def cli(*args, env=None):
    full = {**os.environ, "EDGECOMPILE_OFFLINE": "1", **(env or {})}
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=full,
                          timeout=300)


def test_verify_on_several_instances_gives_what_one_gives(tmp_path):
    hb.need("qemu-system-arm")
    proj = make_project(tmp_path, n=100)
    reports = {}
    for k in ("1", "3"):
        res = cli("verify", proj, "--emulate", "--data", tmp_path / "X.npy", "--json",
                  tmp_path / f"r{k}.json", "-o", tmp_path / f"l{k}.npy",
                  env={"EDGECOMPILE_EMULATOR_INSTANCES": k})
        assert res.returncode == 0, res.stderr
        assert "PARITY OK" in res.stdout + res.stderr
        reports[k] = json.loads((tmp_path / f"r{k}.json").read_text())
    np.testing.assert_array_equal(np.load(tmp_path / "l1.npy"), np.load(tmp_path / "l3.npy"))
    pred = cli("predict", proj, "--data", tmp_path / "X.npy", "-o", tmp_path / "host.npy")
    assert pred.returncode == 0, pred.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "l3.npy"), np.load(tmp_path / "host.npy"))
    for key in ("n", "exact_match", "max_abs_diff_lsb", "mismatched", "cycle_source"):
        assert reports["1"][key] == reports["3"][key], key
    # counts: the same up to SysTick's resolution, one count (40 instructions) per timed call
    # (T = 7 steps + the classifier)
    assert abs(reports["1"]["cycles_per_inference"] - reports["3"]["cycles_per_inference"]) <= 40 * 8
    assert reports["3"]["n"] == 100 and reports["3"]["exact_match"] == 1.0


@pytest.mark.parametrize("value", ["x", "-1", "65", "2.5"])
def test_bad_instance_count_is_one_line_exit_2(tmp_path, value):
    res = cli("verify", tmp_path, "--emulate", "--data", tmp_path / "X.npy",
              env={"EDGECOMPILE_EMULATOR_INSTANCES": value})
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("edgecompile: error: ")
    assert "EDGECOMPILE_EMULATOR_INSTANCES" in res.stderr
