"""Builds the device harness with a model library straight from the compilers (no PlatformIO),
for the link/emulator tests: native (optionally ASan+UBSan), AVR (avr-gcc) and Cortex-M
(arm-none-eabi-gcc with firmware/cortexm's start-up code and linker script)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "firmware" / "harness"
HAL = ROOT / "firmware" / "hal"
CORTEXM = ROOT / "firmware" / "cortexm"
STANDIN = Path(__file__).resolve().parent / "fixtures" / "standin"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

#: machine -> (HAL family, cpu, F_CPU, flash origin/size, ram origin/size)
QEMU_BOARDS = {
    "lm3s6965evb": ("pl011", "cortex-m3", 50_000_000, (0x0, 256 << 10), (0x20000000, 64 << 10)),
    "mps2-an385": ("cmsdk", "cortex-m3", 25_000_000, (0x0, 4 << 20), (0x20000000, 4 << 20)),
    "mps2-an386": ("cmsdk", "cortex-m4", 25_000_000, (0x0, 4 << 20), (0x20000000, 4 << 20)),
    "mps2-an500": ("cmsdk", "cortex-m7", 25_000_000, (0x0, 4 << 20), (0x20000000, 4 << 20)),
}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed")
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"build failed: {' '.join(cmd)}\n{proc.stderr}")


def _sources(model_dir: Path, family: str) -> tuple[list[str], list[str]]:
    srcs = sorted(str(p) for p in HARNESS.glob("*.c"))
    srcs += sorted(str(p) for p in (HAL / family).glob("*.c"))
    srcs += sorted(str(p) for p in model_dir.glob("*.c"))
    inc = [f"-I{HARNESS}", f"-I{HAL / family}", f"-I{model_dir}"]
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
    srcs, inc = _sources(model_dir, "avr")
    elf = out / "harness_avr.elf"
    _run([need("avr-gcc"), *WARN, "-Os", f"-mmcu={mcu}", f"-DF_CPU={f_cpu}UL", *inc, *srcs,
          "-o", str(elf)])
    return elf


def build_cortexm(out: Path, machine: str, model_dir: Path = STANDIN) -> Path:
    family, cpu, f_cpu, (fo, fs), (ro, rs) = QEMU_BOARDS[machine]
    srcs, inc = _sources(model_dir, family)
    ld = (CORTEXM / "cortexm.ld.in").read_text()
    for key, val in (("FLASH_ORIGIN", fo), ("FLASH_SIZE", fs), ("RAM_ORIGIN", ro),
                     ("RAM_SIZE", rs), ("STACK_SIZE", 2048)):
        ld = ld.replace(f"@{key}@", hex(val))
    script = out / f"{machine}.ld"
    script.write_text(ld)
    elf = out / f"harness_{machine}.elf"
    machine_flags = [f"-mcpu={cpu}", "-mthumb"]
    _run([need("arm-none-eabi-gcc"), *WARN, "-Os", *machine_flags, f"-DF_CPU={f_cpu}",
          "-DEC_CORTEXM", "-ffunction-sections", "-fdata-sections", *inc, *srcs,
          str(CORTEXM / "startup.c"), "-nostartfiles", "--specs=nosys.specs",
          "-Wl,--gc-sections", "-T", str(script), "-o", str(elf)])
    return elf
