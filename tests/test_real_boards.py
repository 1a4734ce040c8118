"""The real Cortex-M boards through the installed ``edgecompile`` command: export, offline build
with a flash/RAM report, and ``verify --emulate`` on the emulated twin of each board's SoC
(nucleo_f401re on QEMU's netduinoplus2 and microbit on microbit with the same ELF,
bluepill_f103c8 on stm32vldiscovery with the second link), bit-exact for dense, low-rank +
sparse and FastRNN models at int8 and int16. nano33ble and pico have no twin: they build, and
``verify --emulate`` exits 2 saying why."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecompile.errors import BoardError
from edgecompile.frontend.checkpoint import save_checkpoint
from edgecompile.reference import forward
from edgecompile.resources import resource_dir
from edgecompile.targets.boards import get_board, list_boards
from edgecompile.targets.platforms import platform_for

from . import real_boards_build as rb
from .helpers.models import make_inputs, make_model

EXE = Path(sys.executable).parent / "edgecompile"
REAL = ["nucleo_f401re", "bluepill_f103c8", "microbit", "nano33ble", "pico"]
TWINS = {"nucleo_f401re": "netduinoplus2", "bluepill_f103c8": "stm32vldiscovery",
         "microbit": "microbit"}
NO_TWIN = {"nano33ble": "nRF52", "pico": "RP2040"}
#: instructions per count of each twin's counter under -icount shift=0 (QEMU 7.2 clocks:
#: 168 MHz SysTick, 24 MHz SysTick, the nRF51's TIMER0 at 16 MHz); measured by
#: test_real_board_firmware.py::test_twin_runs_the_harness_bit_exact
PER_COUNT = {"nucleo_f401re": 1e9 / 168e6, "bluepill_f103c8": 1e9 / 24e6, "microbit": 62.5}
MODELS = {
    "dense": dict(D=6, H=8, C=4, seed=0),
    "lowrank_sparse": dict(D=7, H=12, C=5, wrank=3, urank=4, sparsity=0.5, seed=1),
    "fastrnn": dict(cell="FastRNN", D=6, H=10, C=3, seed=2),
}
N = 6


def cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, EDGECOMPILE_OFFLINE="1"))


def export(tmp: Path, board: str, model: str = "dense", bits: int = 8) -> Path:
    """The model's checkpoint and data in ``tmp``, exported for ``board`` with the CLI."""
    fm = make_model(**MODELS[model])
    X = make_inputs(fm, n=N, T=11).astype(np.float32)
    save_checkpoint(fm, tmp / "m.npz")
    np.save(tmp / "X.npy", X)
    np.save(tmp / "y.npy", forward(fm, X).argmax(1))
    proj = tmp / f"{board}_{model}_{bits}"
    res = cli("export", tmp / "m.npz", "--board", board, "--bits", bits, "--calib",
              tmp / "X.npy", "-o", proj, "--name", "mdl")
    assert res.returncode == 0, res.stderr
    return proj


def build_report(proj: Path) -> dict:
    res = cli("build", proj, "--offline", "--json", "-")
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def check_build_report(rep: dict, board: str) -> None:
    b = get_board(board)
    linked = rep["linked"]
    assert rep["board"] == board and rep["offline"] is True
    assert isinstance(linked["flash_used"], int) and isinstance(linked["ram_used"], int)
    assert linked["flash_budget"] == b.flash_bytes and linked["ram_budget"] == b.ram_bytes
    # harness + a small model: a few KB of flash, about a KB of RAM
    assert 3000 < linked["flash_used"] < 16384, linked
    assert 200 < linked["ram_used"] < 4096, linked
    print(f"{board}: flash {linked['flash_used']} / {b.flash_bytes} B, "
          f"RAM {linked['ram_used']} / {b.ram_bytes} B")


def initial_sp(elf: Path) -> int:
    """Word 0 of the vector table: the initial stack pointer."""
    out = subprocess.run(["arm-none-eabi-objdump", "-h", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    row = next(ln.split() for ln in out.splitlines() if " .isr_vector " in ln)
    return int(struct.unpack_from("<I", elf.read_bytes(), int(row[5], 16))[0])


def verify_on_twin(tmp: Path, board: str, model: str, bits: int) -> dict:
    proj = export(tmp, board, model, bits)
    res = cli("verify", proj, "--emulate", "--data", tmp / "X.npy", "--labels", tmp / "y.npy",
              "--json", "-")
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads(res.stdout)
    assert rep["exact_match"] == 1.0 and rep["mismatched"] == [] and rep["n"] == N
    assert rep["max_abs_diff_lsb"] == 0 and rep["bits"] == bits and rep["board"] == board
    # twin counts are instructions (no clock time), scaled by the machine's factor
    assert "qemu-icount instructions" in rep["cycle_source"] and rep["ms_per_step"] is None
    assert f"{PER_COUNT[board]:.4g} per count" in rep["cycle_source"]
    assert rep["cycles_per_step"] > 50 and rep["flash_bytes"] > 3000
    print(f"{board} {model} int{bits}: {rep['cycles_per_step']:.0f} instructions/step")
    return rep


# ---- default tier: one model per twin, the two boards without one ------------------------------

@pytest.mark.parametrize("board", sorted(TWINS))
def test_twin_builds_with_report_and_is_bit_exact(tmp_path, board):
    proj = export(tmp_path, board)
    check_build_report(build_report(proj), board)
    build = proj / ".pio" / "build" / f"{board}_offline"
    if board == "bluepill_f103c8":  # the real image's stack lies past the twin's 8 KB of RAM
        assert initial_sp(build / "firmware.elf") == 0x20005000
        assert initial_sp(build / "firmware_twin.elf") == 0x20002000
    else:
        assert not (build / "firmware_twin.elf").exists()
    res = cli("verify", proj, "--emulate", "--data", tmp_path / "X.npy", "--json", "-")
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads(res.stdout)
    assert rep["exact_match"] == 1.0 and rep["board"] == board
    assert f"{PER_COUNT[board]:.4g} per count" in rep["cycle_source"]


@pytest.mark.parametrize("board", sorted(NO_TWIN))
def test_board_without_twin_builds_and_refuses_emulate(tmp_path, board):
    proj = export(tmp_path, board)
    res = cli("verify", proj, "--emulate", "--data", tmp_path / "X.npy")
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), res.stderr
    assert f"QEMU 7.2 emulates no {NO_TWIN[board]}" in lines[0] and "--port" in lines[0]
    assert not (proj / ".pio").exists()  # refused before building anything
    check_build_report(build_report(proj), board)
    elf = proj / ".pio" / "build" / f"{board}_offline" / "firmware.elf"
    assert initial_sp(elf) == 0x20040000
    if board == "pico":
        boot2 = rb.load_module("boot2")
        flat = subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), "/dev/stdout"],
                              capture_output=True, check=True).stdout
        assert flat[:256] == boot2.pad_boot2(flat[:252].rstrip(b"\0"))  # boot2 + its CRC32
        uf2 = (elf.parent / "firmware.uf2").read_bytes()
        assert uf2 == rb.load_module("uf2").elf_to_uf2(elf.read_bytes())
        m0, m1, _flags, addr = struct.unpack_from("<4I", uf2)
        assert (m0, m1, addr) == (0x0A324655, 0x9E5D5157, 0x10000000)
        assert uf2[32:32 + 256] == flat[:256]


def test_real_boards_have_their_families_and_clocks():
    """Each board's platform, kernel backend and clock are the firmware's: F_CPU in the board
    JSON equals the ECH_CLOCK_HZ its family's config header documents."""
    want = {"nucleo_f401re": ("stm32f4", "armv7em"), "bluepill_f103c8": ("stm32f1", "armv7m"),
            "microbit": ("nrf51", "armv6m"), "nano33ble": ("nrf52", "armv7em"),
            "pico": ("rp2040", "armv6m")}
    for board, (family, backend) in want.items():
        b = get_board(board)
        p = platform_for(b)
        assert (b.platform, p.firmware, b.kernel_backend) == (family, family, backend)
        cfg = (resource_dir("firmware") / family / "ech_hal_config.h").read_text()
        m = re.search(r"#define ECH_CLOCK_HZ (\d+)ul", cfg)
        assert m and int(m[1]) == b.f_cpu_hz, (board, b.f_cpu_hz)
        assert b.offline_board_json is not None
        assert b.offline_board_json["build"]["f_cpu"] == f"{b.f_cpu_hz}L"
        assert "src/ech_mmio.h" in p.harness_files()
        assert (b.emulator is None) == (board in NO_TWIN)
    assert "src/boot2.S" not in platform_for("pico").harness_files()


def test_twin_counts_are_instructions_and_real_counts_are_cycles():
    for board, per in PER_COUNT.items():
        p = platform_for(board)
        source = "peripheral-timer" if board == "microbit" else "systick"
        twin = p.cycle_unit(source, float(get_board(board).f_cpu_hz or 0), emulated=True)
        assert twin.scale == pytest.approx(per) and twin.hz is None
        real_source = "peripheral-timer" if board == "microbit" else "dwt-cyccnt"
        real = p.cycle_unit(real_source, 16e6, emulated=False)
        assert real.scale == 1.0 and real.hz == 16e6 and "cpu cycles" in real.name
    assert platform_for("pico").cycle_unit("systick", 125e6, emulated=False).name == \
        "cpu cycles (SysTick)"


def test_former_board_ids_are_aliases(tmp_path):
    for n in ("385", "386", "500"):
        b = get_board(f"mps2-an{n}")
        assert b.id == f"mps2_an{n}" and b.aliases == (f"mps2-an{n}",)
        assert b.emulator is not None and b.emulator.machine == f"mps2-an{n}"
    ids = [b.id for b in list_boards()]
    assert all("-" not in i for i in ids), ids
    with pytest.raises(BoardError, match="valid boards: .*mps2_an385"):
        get_board("mps2-an999")
    res = cli("boards", "--json", "-")
    assert res.returncode == 0, res.stderr
    recs = {r["id"]: r for r in json.loads(res.stdout)["boards"]}
    assert recs["mps2_an385"]["aliases"] == ["mps2-an385"] and recs["pico"]["aliases"] == []
    assert recs["microbit"]["emulator"] == {"kind": "qemu", "machine": "microbit"}
    # a project exported under a former id records the board's id
    proj = export(tmp_path, "mps2-an385")
    assert json.loads((proj / "edgecompile-manifest.json").read_text())["board"] == "mps2_an385"


# ---- slow tier: the whole matrix --------------------------------------------------------------

MATRIX = [(b, m, bits) for b in sorted(TWINS) for m in MODELS for bits in (8, 16)]


@pytest.mark.slow
@pytest.mark.slowest
@pytest.mark.parametrize("board,model,bits", MATRIX, ids=[f"{b}-{m}-int{n}" for b, m, n in MATRIX])
def test_twin_bit_exact_matrix(tmp_path, board, model, bits):
    verify_on_twin(tmp_path, board, model, bits)
