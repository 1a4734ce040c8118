"""The harness is portable C99: clean under -std=c99 -Wall -Wextra -Werror -pedantic on gcc,
clang, avr-gcc and arm-none-eabi-gcc (every family folder), and small on the Uno."""

from __future__ import annotations

import subprocess

import pytest

from . import harness_build as hb


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_native_build_is_warning_free(tmp_path, cc):
    assert hb.build_native(tmp_path, cc=cc).exists()


@pytest.mark.parametrize("mcu", ["atmega328p", "atmega2560"])
def test_avr_build_is_small(tmp_path, mcu):
    elf = hb.build_avr(tmp_path, mcu=mcu)
    out = subprocess.run(["avr-size", "-A", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines()
             if ln.startswith(".") and len(ln.split()) >= 2}
    ram = sizes.get(".data", 0) + sizes.get(".bss", 0)
    flash = sizes.get(".text", 0) + sizes.get(".data", 0)
    # Harness + stand-in model: the frame buffer (59 + 2 bytes here) dominates the RAM.
    assert ram <= 160, sizes
    assert flash <= 3500, sizes


@pytest.mark.parametrize("board", hb.QEMU_BOARDS)
def test_cortexm_build_is_warning_free(tmp_path, board):
    assert hb.build_cortexm(tmp_path, board).exists()


@pytest.mark.parametrize("board,cpu", [("mps2_an385", "cortex-m0plus"), ("lm3s6965evb", "cortex-m4"),
                                       ("mps2_an385", "cortex-m7")])
def test_cortexm_compiles_for_every_core(tmp_path, board, cpu):
    srcs, inc = hb._sources(hb.STANDIN, board)
    for src in srcs:
        subprocess.run([hb.need("arm-none-eabi-gcc"), *hb.WARN, "-Os", f"-mcpu={cpu}", "-mthumb",
                        "-DF_CPU=48000000", *inc, "-c", src, "-o",
                        str(tmp_path / (src.rsplit("/", 1)[-1] + ".o"))], check=True)
