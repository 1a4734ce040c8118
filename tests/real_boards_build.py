"""Builds the device harness for the real Cortex-M boards (firmware/stm32f4, stm32f1, nrf51,
nrf52, rp2040) straight from arm-none-eabi-gcc, with a model library (default: the stand-in),
and runs the images that QEMU has a twin for (netduinoplus2, stm32vldiscovery, microbit)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from . import harness_build as hb

FIRMWARE = hb.ROOT / "firmware"
MCU = FIRMWARE / "mcu"
RP2040 = FIRMWARE / "rp2040"
M4F = ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


@dataclass(frozen=True)
class Board:
    family: str
    cpu_flags: list[str]
    flash: tuple[int, int]  # origin, size
    ram: tuple[int, int]
    ldscript: Path = hb.CORTEXM / "cortexm.ld.in"


BOARDS: dict[str, Board] = {
    "nucleo_f401re": Board("stm32f4", M4F, (0x08000000, 512 << 10), (0x20000000, 96 << 10)),
    "bluepill_f103c8": Board("stm32f1", ["-mcpu=cortex-m3"], (0x08000000, 64 << 10),
                             (0x20000000, 20 << 10)),
    # the Blue Pill's sources linked for the STM32F100 of QEMU's stm32vldiscovery
    "bluepill_f103c8@stm32vldiscovery": Board("stm32f1", ["-mcpu=cortex-m3"],
                                              (0x08000000, 128 << 10), (0x20000000, 8 << 10)),
    "microbit": Board("nrf51", ["-mcpu=cortex-m0"], (0x0, 256 << 10), (0x20000000, 16 << 10)),
    # application area after the Arduino boot loader (0x0-0xFFFF), which stays usable
    "nano33ble": Board("nrf52", M4F, (0x10000, 960 << 10), (0x20000000, 256 << 10)),
    "pico": Board("rp2040", ["-mcpu=cortex-m0plus"], (0x10000000, 2 << 20),
                  (0x20000000, 256 << 10), RP2040 / "rp2040.ld.in"),
}

#: image -> (QEMU machine, the -serial arguments before the harness's UART)
TWINS: dict[str, tuple[str, list[str]]] = {
    "nucleo_f401re": ("netduinoplus2", ["-serial", "null"]),  # USART2 is the second UART
    "bluepill_f103c8@stm32vldiscovery": ("stm32vldiscovery", []),
    "microbit": ("microbit", []),
}


def load_module(name: str) -> ModuleType:
    """firmware/rp2040/<name>.py as a module (plain functions, no package)."""
    spec = importlib.util.spec_from_file_location(f"ech_rp2040_{name}", RP2040 / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in firmware/
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = keep
    return mod


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"build failed: {' '.join(cmd)}\n{proc.stderr}")


def build_boot2(out: Path) -> Path:
    """boot2.S -> 256-byte image with CRC -> a C file for the .boot2 section."""
    gcc = hb.need("arm-none-eabi-gcc")
    elf = out / "boot2.elf"
    _run([gcc, "-mcpu=cortex-m0plus", "-mthumb", "-nostdlib", "-Wl,-Ttext=0x20041f00",
          "-Wl,-e,ech_boot2", str(RP2040 / "boot2.S"), "-o", str(elf)])
    raw = out / "boot2.bin"
    _run([hb.need("arm-none-eabi-objcopy"), "-O", "binary", str(elf), str(raw)])
    boot2 = load_module("boot2")
    src = out / "boot2_image.c"
    src.write_text(boot2.boot2_c_source(boot2.pad_boot2(raw.read_bytes())))
    return src


def build(out: Path, board: str, model_dir: Path = hb.STANDIN,
          app: list[Path] | None = None) -> Path:
    """The harness ELF for ``board`` with ``-std=c99 -Wall -Wextra -Werror -pedantic``;
    ``app`` replaces the harness and model sources (and the warning flags), e.g. a calibration
    program on the family's HAL."""
    b = BOARDS[board]
    fam = FIRMWARE / b.family
    if app is None:
        srcs = sorted(str(p) for p in hb.HARNESS.glob("*.c"))
        srcs += sorted(str(p) for p in model_dir.glob("*.c"))
    else:
        srcs = [str(p) for p in app]
    srcs += sorted(str(p) for p in fam.glob("*.c"))
    srcs.append(str(hb.CORTEXM / "startup.c"))
    if b.family == "rp2040":
        srcs.append(str(build_boot2(out)))
    ld = b.ldscript.read_text()
    for key, val in (("FLASH_ORIGIN", b.flash[0]), ("FLASH_SIZE", b.flash[1]),
                     ("RAM_ORIGIN", b.ram[0]), ("RAM_SIZE", b.ram[1]), ("STACK_SIZE", 2048)):
        ld = ld.replace(f"@{key}@", hex(val))
    name = board.replace("@", "_") + ("" if app is None else "_" + app[0].stem)
    script = out / f"{name}.ld"
    script.write_text(ld)
    elf = out / f"harness_{name}.elf"
    warn = hb.WARN if app is None else []
    _run([hb.need("arm-none-eabi-gcc"), *warn, "-Os", *b.cpu_flags, "-mthumb",
          "-DEC_CORTEXM", "-ffunction-sections", "-fdata-sections", f"-I{hb.HARNESS}",
          f"-I{fam}", f"-I{MCU}", f"-I{model_dir}", *srcs, "-nostartfiles",
          "--specs=nosys.specs", "-Wl,--gc-sections", "-T", str(script), "-o", str(elf)])
    return elf


def sizes(elf: Path) -> tuple[int, int]:
    """(flash, static RAM) bytes from arm-none-eabi-size -A."""
    out = subprocess.run([hb.need("arm-none-eabi-size"), "-A", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    sec = {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines()
           if ln.startswith(".") and len(ln.split()) >= 3}
    flash_secs = (".boot2", ".isr_vector", ".text", ".rodata", ".ARM.exidx", ".ARM.extab",
                  ".preinit_array", ".init_array", ".fini_array", ".data")
    flash = sum(sec.get(s, 0) for s in flash_secs)
    ram = sum(sec.get(s, 0) for s in (".data", ".bss", ".noinit"))
    return flash, ram


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_twin(elf: Path, image: str, timeout_s: float = 10.0) -> Iterator[object]:
    """The image under its QEMU twin (``-icount shift=0``); yields a pyserial port on the
    harness's UART. QEMU runs in its own process group, stopped on the way out."""
    from edgecompile.link.client import open_port

    machine, before = TWINS[image]
    port_no = _free_port()
    argv = [hb.need("qemu-system-arm"), "-M", machine, "-nographic", "-monitor", "none",
            "-icount", "shift=0", "-kernel", str(elf), *before, "-serial",
            f"tcp:127.0.0.1:{port_no},server=on,wait=off,nodelay=on"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    port = None
    try:
        deadline = time.monotonic() + timeout_s
        while port is None:
            if proc.poll() is not None:
                raise AssertionError(f"qemu exited: {proc.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"qemu -M {machine} did not listen on {port_no}")
            try:
                port = open_port(f"socket://127.0.0.1:{port_no}")
            except Exception:
                time.sleep(0.05)
        yield port
    finally:
        if port is not None:
            port.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()
