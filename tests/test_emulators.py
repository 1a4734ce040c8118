"""End to end through the real toolchains and emulators: the harness with generated model
libraries on native, the emulated Uno (simavr) and the emulated M3/M4/M7 (QEMU), bit for bit
against the simulator; reset detection, parallel runs, clean shutdown, timing calibration."""

from __future__ import annotations

import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgecompile.emulators.process import emulate, run_native, run_qemu, run_simavr
from edgecompile.errors import CheckFailed
from edgecompile.link.client import Client
from edgecompile.targets.platforms import platform_for
from edgecompile.verify.parity import run_parity

from . import harness_build as hb
from .helpers import standin
from .helpers.emulator import HookedPort, reset_before
from .helpers.models import make_inputs, make_model

pytestmark = pytest.mark.slow

BOARDS = ["native", "simavr", "lm3s6965evb", "mps2_an385", "mps2_an386", "mps2_an500"]
#: The kernel backend of each board's library.
BACKEND = {"native": "native", "simavr": "avr", "lm3s6965evb": "armv7m", "mps2_an385": "armv7m",
           "mps2_an386": "armv7em", "mps2_an500": "armv7em"}
MODELS = {
    "dense": dict(D=6, H=8, C=4),
    "lowrank_sparse": dict(D=8, H=16, C=5, wrank=3, urank=4, sparsity=0.5),
    "fastrnn": dict(cell="FastRNN", D=6, H=8, C=4, update_nl="quantTanh"),
}


def start(board: str, out: Path, model_dir: Path = hb.STANDIN):
    if board == "native":
        return run_native(hb.build_native(out, model_dir))
    if board == "simavr":
        hb.need("simavr")
        return run_simavr(hb.build_avr(out, model_dir))
    hb.need("qemu-system-arm")
    return run_qemu(hb.build_cortexm(out, board, model_dir), board)


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """Generated C libraries (the real quantizer + codegen) for every model and width."""
    from edgecompile.codegen.render import render_library
    from edgecompile.quant.quantizer import quantize

    root = tmp_path_factory.mktemp("libs")
    libs = {}
    for name, cfg in MODELS.items():
        fm = make_model(**cfg)
        X = make_inputs(fm, n=8, T=12)
        for bits in (8, 16):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qm = quantize(fm, bits, X)
            for backend in set(BACKEND.values()):
                for rel, data in render_library(qm, "mdl", backend=backend).items():
                    path = root / backend / f"{name}{bits}" / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                libs[(backend, name, bits)] = (root / backend / f"{name}{bits}" / "src", fm, qm, X)
    return libs


@pytest.mark.parametrize("board", [pytest.param(b, marks=pytest.mark.slowest) if b in ("lm3s6965evb", "mps2_an500")
                                   else b for b in BOARDS])
def test_generated_models_bit_exact(board, libraries, tmp_path):
    """Dense, low-rank + sparse and FastRNN models at int8 and int16 agree bit for bit."""
    for (backend, name, bits), (src, fm, qm, X) in libraries.items():
        if backend != BACKEND[board]:
            continue
        out = tmp_path / f"{name}{bits}"
        out.mkdir()
        with start(board, out, src) as emu:
            port = emu.open()
            try:
                client = Client(port)
                client.handshake()
                report = run_parity(client, qm, X, expected_sha256=fm.sha256, trace=True)
            finally:
                port.close()
        assert report.ok, (name, bits, report.render())
        assert report.exact_match == 1.0 and report.max_abs_diff_lsb == 0
        assert report.first_divergence is None
        assert report.cycles_per_inference and report.cycles_per_inference > 0


def test_wrong_model_hash_is_a_failed_check(libraries, tmp_path):
    src, fm, qm, X = libraries[("native", "dense", 8)]
    with start("native", tmp_path, src) as emu:
        port = emu.open()
        client = Client(port)
        client.handshake()
        with pytest.raises(CheckFailed, match="another model"):
            run_parity(client, qm, X, expected_sha256="ab" * 32)
        port.close()


def test_simavr_reset_mid_sequence_is_detected(tmp_path):
    with start("simavr", tmp_path) as emu:
        port = emu.open()
        client = Client(HookedPort(port, reset_before(emu, at=5)))  # a reset before the 5th frame
        client.handshake()
        x = np.random.default_rng(5).integers(-900, 900, (40, standin.D)).astype(np.int16)
        res = client.infer(x)
        np.testing.assert_array_equal(res.logits, standin.run(x)[0])
        assert "RESET" in emu.events()
        assert client.stats.device_resets == 1 and client.stats.sequence_restarts == 1
        port.close()


def test_parallel_runs_do_not_clash(tmp_path):
    boards = ["simavr", "simavr", "mps2_an385", "mps2_an385", "native"]
    errors: list[BaseException] = []
    urls: list[str] = []
    together = threading.Barrier(len(boards), timeout=60)  # all running at the same time

    def one(i: int, board: str) -> None:
        try:
            out = tmp_path / str(i)
            out.mkdir()
            with start(board, out) as emu:
                urls.append(emu.url)
                port = emu.open()
                client = Client(port)
                client.handshake()
                together.wait()
                for seed in range(3):
                    x = np.random.default_rng(seed + 10 * i).integers(
                        -500, 500, (17, standin.D)).astype(np.int16)
                    assert np.array_equal(client.infer(x).logits, standin.run(x)[0])
                port.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            together.abort()

    threads = [threading.Thread(target=one, args=(i, b)) for i, b in enumerate(boards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(set(urls)) == len(boards)


@pytest.mark.parametrize("board", ["native", "simavr", "mps2_an385"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_no_orphan_process_on_failure(board, exc, tmp_path):
    procs = []
    with pytest.raises(exc):
        with start(board, tmp_path) as emu:
            procs.append(emu.proc)
            raise exc("boom")
    assert procs[0].poll() is not None


def test_emulate_context_manager_and_startup_time(tmp_path):
    elf = hb.build_avr(tmp_path)
    t0 = time.monotonic()
    with emulate("uno", elf) as emu:
        assert emu.startup_s is not None and emu.startup_s < 5
        port = emu.open()
        client = Client(port)
        client.handshake()
        first_reply = time.monotonic() - t0
        t1 = time.monotonic()
        for _ in range(20):
            assert client.echo(b"\x00\x01" * 16) == b"\x00\x01" * 16
        rtt = (time.monotonic() - t1) / 20
        port.close()
    assert first_reply < 5 and rtt < 0.1


@pytest.mark.parametrize("board", hb.QEMU_BOARDS)
def test_qemu_systick_calibration(board, tmp_path):
    """The instructions-per-SysTick-count calibration that each QEMU board's platform reports
    cycles with is right."""
    fam = hb.family_dir(board)
    cal = Path(__file__).resolve().parent / "fixtures" / "cal" / "systick_cal.c"
    elf = tmp_path / "cal.elf"
    subprocess.run(hb.cortexm_command(tmp_path, board, [str(cal), *map(str, sorted(fam.glob("*.c")))],
                                      [f"-I{hb.HARNESS}", f"-I{fam}"], elf, warn=[]), check=True)
    with run_qemu(elf, board) as emu:
        port = emu.open()
        port.timeout = 5
        for _ in range(2):  # the second reading runs from the translation cache
            port.write(b"x")
            line = port.readline()
        port.close()
    counts = int(line, 16)
    unit = platform_for(board).cycle_unit("systick", 25e6, emulated=True)
    assert unit.hz is None  # instructions, not time
    assert abs(200_000 / counts - unit.scale) < 0.5


def test_avr_timer1_extension_across_overflows(tmp_path):
    """Hundreds of single-step frames span several 16-bit Timer1 wraps; with the 32-bit
    extension every step's count stays small and steady (a lost or doubled overflow would show
    as a step of ~65536 or ~4e9 cycles)."""
    with start("simavr", tmp_path) as emu:
        port = emu.open()
        client = Client(port)
        client.handshake()
        zero = np.zeros((1, standin.D), np.int16)
        counts = [client.step(zero, t0=t, reset=(t == 0)).cycles for t in range(250)]
        port.close()
    assert sum(counts) > 4 * 65536
    assert max(counts) - min(counts) < 100, (min(counts), max(counts))


def test_mega2560_under_simavr(tmp_path):
    elf = hb.build_avr(tmp_path, mcu="atmega2560")
    with run_simavr(elf, mcu="atmega2560") as emu:
        port = emu.open()
        client = Client(port)
        assert client.handshake().cycle_source == "avr-timer1"
        x = np.random.default_rng(2).integers(-999, 999, (30, standin.D)).astype(np.int16)
        np.testing.assert_array_equal(client.infer(x).logits, standin.run(x)[0])
        port.close()
