"""Real offline PlatformIO builds (local platform, Debian toolchains) and budget checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecompile.cli import main
from edgecompile.errors import BoardError
from edgecompile.targets.boards import get_board
from edgecompile.targets.build import build_project
from tests.helpers.netns import unshare_ok

from .targets_helpers import FIXTURES, export_real, make_project, set_define

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
_PIO_USED = re.compile(r"^(RAM|Flash):.*\(used (\d+) bytes from (\d+) bytes\)")


def _build(project: Path, **kw):
    lines: list[str] = []
    res = build_project(project, offline=True, echo=lines.append, verbose=True, **kw)
    pio = {m.group(1): int(m.group(2)) for m in map(_PIO_USED.match, lines) if m}
    return res, pio, lines


@pytest.mark.parametrize("board", ["uno", "lm3s6965evb", "mps2_an385", "mps2_an386", "mps2_an500",
                                   "native"])
def test_exported_project_builds_offline(tmp_path, board):
    """`export` (generated library + parity harness) through real PlatformIO, local platform."""
    project = export_real(tmp_path, board)
    res, pio, lines = _build(project)
    b = get_board(board)
    assert res.env == b.pio_env_offline and res.offline and res.elf.is_file()
    assert any(ln.startswith("estimate: flash") for ln in lines)
    if b.family == "native":
        assert os.access(res.elf, os.X_OK)
        return
    assert res.image is not None and res.image.suffix == (".hex" if b.family == "avr" else ".bin")
    # Our post-link numbers agree with PlatformIO's own size check.
    assert (res.linked.flash_used, res.linked.ram_used) == (pio["Flash"], pio["RAM"])
    assert res.linked.ok and res.linked.flash_budget == b.flash_bytes
    # The pre-build estimate is an upper bound that is not wildly off.
    assert res.linked.flash_used <= res.estimate.flash_used <= 2 * res.linked.flash_used + 1500
    assert res.linked.ram_used - 16 <= res.estimate.ram_used <= res.linked.ram_used + 64


@pytest.mark.parametrize("board", ["lm3s6965evb", "mps2_an500"])
def test_cortexm_startup_code_runs_in_qemu(tmp_path, board):
    """Vector table, .data copy, .bss zeroing and constructors, checked on the emulated core."""
    project = make_project(tmp_path, board, harness=False, src=FIXTURES / "cortexm_hello" / "src")
    res, _, _ = _build(project)
    machine = get_board(board).emulator.machine  # the QEMU machine: mps2-an500 for board mps2_an500
    proc = subprocess.Popen(["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none",
                             "-kernel", str(res.elf), "-serial", "stdio"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out = b""
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        for _ in range(200):
            chunk = proc.stdout.read() or b""
            out += chunk
            if b"\n" in out.split(b"EC_STARTUP", 1)[-1] and b"EC_STARTUP" in out:
                break
            subprocess.run(["sleep", "0.05"], check=False)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert b"EC_STARTUP PASS" in out, out


def test_budget_refusals_before_building(tmp_path):
    project = make_project(tmp_path, "uno")
    set_define(project, "TINY_PAD_BYTES", 30000)
    with pytest.raises(BoardError) as err:
        build_project(project, offline=True, echo=None)
    msg = str(err.value)
    assert "'uno' (estimate)" in msg and "of flash, the board has 32256 B" in msg
    assert "lib/tiny" in msg and "rank" in msg and "sparsity" in msg and "hidden size" in msg
    assert not (project / ".pio").exists()  # refused before PlatformIO ran

    set_define(project, "TINY_PAD_BYTES", 0)
    set_define(project, "TINY_SCRATCH_BYTES", 1600)
    res = CliRunner().invoke(main, ["build", str(project), "--offline"])
    assert res.exit_code == 2
    err_lines = [ln for ln in res.output.splitlines() if ln.startswith("edgecompile: error:")]
    assert len(err_lines) == 1 and "of static RAM + 512 B of stack" in err_lines[0]
    assert "hidden size" in err_lines[0]
    assert not (project / ".pio").exists()


def test_arduino_sketch_with_a_c_library_builds_offline(tmp_path):
    """Debian's Arduino AVR core as the offline platform's `arduino` framework."""
    exported = export_real(tmp_path / "export", "uno")
    for lib in (FIXTURES / "standin" / "lib", exported / "lib"):  # hand-written and generated
        project = make_project(tmp_path / lib.parent.name, "uno", harness=False,
                               framework="arduino", src=FIXTURES / "sketch", lib=lib)
        assert "framework = arduino" in (project / "platformio.ini").read_text()
        res, pio, _ = _build(project)
        syms = subprocess.run(["avr-nm", "-C", str(res.elf)], capture_output=True, text=True,
                              timeout=30, check=True).stdout
        name = "tiny" if lib.parent.name == "standin" else "kws"
        assert f" {name}_step" in syms and "HardwareSerial::begin" in syms
    assert pio["Flash"] > 2000  # the core (Serial, timers) is in


@pytest.mark.skipif(not unshare_ok(), reason="unshare -n needs root or user namespaces")
def test_build_without_network(tmp_path):
    """Fresh project and core dir, no network namespace: `build` picks offline by itself; with
    --offline, strace sees not one inet socket connect."""
    env = dict(os.environ, EDGECOMPILE_OFFLINE="")
    project = export_real(tmp_path / "auto", "uno")
    cmd = [sys.executable, "-m", "edgecompile.cli", "build", str(project)]
    res = subprocess.run(["unshare", "-n", *cmd], capture_output=True, text=True, timeout=300,
                         env=env, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "environment uno_offline" in res.stdout and "linked: flash" in res.stdout

    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    project = export_real(tmp_path / "strict", "mps2_an385")
    log = tmp_path / "strace.log"
    res = subprocess.run(["unshare", "-n", "strace", "-f", "-qq", "-e", "trace=connect,execve",
                          "-o", str(log), *cmd[:-1], str(project), "--offline"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    text = log.read_text()
    assert 'execve("/usr/bin/arm-none-eabi-gcc' in text  # the trace covered the whole build
    assert [ln for ln in text.splitlines() if "AF_INET" in ln] == []


@pytest.mark.parametrize("label,shape,bits", [
    ("fastgrnn_int8", dict(D=12, H=32, C=9, wrank=6, urank=8, sparsity=0.5), 8),
    ("dense_int16", dict(D=5, H=16, C=4), 16),
])
def test_issue_5_uno_fits_generated_models(tmp_path, label, shape, bits):
    """Issue 5 point 5: kernel + parity harness on the Uno within 32,256 B of flash and 2048 B of
    SRAM with >= 512 B left for the stack, for the generated library (not a stand-in)."""
    project = export_real(tmp_path, "uno", bits=bits, **shape)
    res, pio, _ = _build(project)
    assert res.linked.flash_used == pio["Flash"] <= 32256
    assert res.linked.ram_used == pio["RAM"]
    assert res.linked.stack_free >= 512
    # Every frame of every function together still fits in what is left: no stack overflow
    # whatever the call chain.
    assert res.estimate.stack_bound is not None
    assert res.estimate.stack_bound + 64 <= res.linked.stack_free
