"""Builds the device harness with a model library straight from the compilers (no PlatformIO),
for the link/emulator tests: native (optionally ASan+UBSan), AVR (avr-gcc) and the QEMU Cortex-M
boards (arm-none-eabi-gcc with firmware/cortexm's start-up code and linker script). Board data
(CPU, clock, memory map, family folder) comes from ``boards/*.json`` through the board's platform."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgecompile.targets.boards import get_board, list_boards
from edgecompile.targets.platforms import platform_for

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
HARNESS = FIRMWARE / "harness"
CORTEXM = FIRMWARE / "cortexm"
STANDIN = Path(__file__).resolve().parent / "fixtures" / "standin"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

#: The boards that exist only in QEMU (nothing to upload; the real boards' twins are in
#: real_boards_build.py).
QEMU_BOARDS = sorted(b.id for b in list_boards()
                     if b.emulator is not None and b.emulator.kind == "qemu" and b.upload is None)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed")
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"build failed: {' '.join(cmd)}\n{proc.stderr}")


def family_dir(board: str) -> Path:
    """``firmware/<family>/`` of the board's platform."""
    fw = platform_for(board).firmware
    assert fw is not None, f"{board} has no harness"
    return FIRMWARE / fw


def _sources(model_dir: Path, board: str) -> tuple[list[str], list[str]]:
    fam = family_dir(board)
    srcs = sorted(str(p) for p in HARNESS.glob("*.c"))
    srcs += sorted(str(p) for p in fam.glob("*.c"))
    srcs += sorted(str(p) for p in model_dir.glob("*.c"))
    inc = [f"-I{HARNESS}", f"-I{fam}", f"-I{model_dir}"]
    return srcs, inc


def build_native(out: Path, model_dir: Path = STANDIN, sanitize: bool = False,
                 cc: str = "gcc", extra: list[str] | None = None) -> Path:
    srcs, inc = _sources(model_dir, "native")
    exe = out / ("harness_native_san" if sanitize else "harness_native")
    flags = ["-O1", "-g"] + (["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
                             if sanitize else ["-O2"])
    _run([need(cc), *WARN, *flags, *inc, *(extra or []), *srcs, "-o", str(exe), "-lutil"])
    return exe


def build_avr(out: Path, model_dir: Path = STANDIN, mcu: str = "atmega328p",
              f_cpu: int = 16_000_000) -> Path:
    srcs, inc = _sources(model_dir, "uno")
    elf = out / "harness_avr.elf"
    _run([need("avr-gcc"), *WARN, "-Os", f"-mmcu={mcu}", f"-DF_CPU={f_cpu}UL", *inc, *srcs,
          "-o", str(elf)])
    return elf


def linker_script(out: Path, board: str) -> Path:
    """firmware/cortexm/cortexm.ld.in with the board's memory map, as the offline platform fills it."""
    build = get_board(board).offline_board_json or {}
    ld = (CORTEXM / "cortexm.ld.in").read_text()
    for key, val in (("FLASH_ORIGIN", build["build"]["ec_flash_origin"]),
                     ("FLASH_SIZE", hex(build["upload"]["maximum_size"])),
                     ("RAM_ORIGIN", build["build"]["ec_ram_origin"]),
                     ("RAM_SIZE", hex(build["upload"]["maximum_ram_size"])),
                     ("STACK_SIZE", hex(build["build"].get("ec_stack_size", 2048)))):
        ld = ld.replace(f"@{key}@", val)
    script = out / f"{board}.ld"
    script.write_text(ld)
    return script


def cortexm_command(out: Path, board: str, sources: list[str], includes: list[str],
                    elf: Path, warn: list[str] = WARN) -> list[str]:
    """The arm-none-eabi-gcc command that links ``sources`` for ``board`` with the shared
    start-up code: the board platform's machine flags, its linker script."""
    return [need("arm-none-eabi-gcc"), *warn, "-Os", *platform_for(board).machine_flags(),
            "-ffunction-sections", "-fdata-sections", *includes, *sources,
            str(CORTEXM / "startup.c"), "-nostartfiles", "--specs=nosys.specs",
            "-Wl,--gc-sections", "-T", str(linker_script(out, board)), "-o", str(elf)]


def build_cortexm(out: Path, board: str, model_dir: Path = STANDIN) -> Path:
    srcs, inc = _sources(model_dir, board)
    elf = out / f"harness_{board}.elf"
    _run(cortexm_command(out, board, srcs, inc, elf))
    return elf
