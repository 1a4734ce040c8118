"""One device image with the raw int16 helper of several libraries (tests/c/raw_device.c), built
straight with avr-gcc / arm-none-eabi-gcc on the board HAL of firmware/, run in simavr or QEMU."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecompile.codegen import render_library
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.targets.boards import get_board
from tests.cbuild import write_tree
from tests.harness_build import FIRMWARE, HARNESS, cortexm_command, family_dir, need
from tests.helpers.emulator import run_to_end

DRIVER = Path(__file__).resolve().parent.parent / "c" / "raw_device.c"
#: The strict flags of every build; on AVR (16-bit int) also -Wconversion, as the AVR matrix test.
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
AVR_WARN = [*WARN, "-Wconversion", "-Wsign-conversion"]
RUN_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class RawCase:
    """One library in the image: its raw vectors ``[n, D]`` with the time step of each ``[n]``,
    and raw sequences ``[nseq, steps, D]`` run through ``step_raw``."""

    name: str
    qm: QuantizedModel
    vectors: np.ndarray
    times: np.ndarray
    seqs: np.ndarray

    @property
    def float_scale(self) -> tuple[float, float]:
        """A uniform raw unit for the float helper's timing input (the first feature's)."""
        assert self.qm.raw_scale is not None and self.qm.raw_offset is not None
        return float(self.qm.raw_scale[0]), float(self.qm.raw_offset[0])


def _c_array(ctype: str, name: str, values: np.ndarray, flash: str) -> str:
    vals = ", ".join("(-32767 - 1)" if int(v) == -32768 else str(int(v)) for v in np.ravel(values))
    return f"static const {ctype} {name}[{max(1, np.size(values))}] {flash} = {{{vals or '0'}}};"


def _f32(x: float) -> str:
    return np.format_float_scientific(np.float32(x), unique=True) + "f"


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or proc.stderr.strip():
        raise AssertionError(f"build failed: {' '.join(cmd[:3])} ...\n{proc.stderr[-3000:]}")


def build_image(out: Path, board: str, cases: list[RawCase]) -> Path:
    """The ELF running every case on ``board`` (uno: the AVR fast kernel; a Cortex-M board: its own)."""
    out.mkdir(parents=True, exist_ok=True)
    prof = get_board(board)
    avr = prof.kernel_backend == "avr"
    flash = "PROGMEM" if avr else ""
    header = ["#include <stdint.h>"] + (["#include <avr/pgmspace.h>"] if avr else [])
    listing = ["#define RAW_MODELS(X) \\"]
    srcs, incs = [], []
    for c in cases:
        src = write_tree(render_library(c.qm, c.name, backend=prof.kernel_backend), out / c.name) / "src"
        srcs.append(str(src / f"{c.name}.c"))
        incs.append(f"-I{src}")
        scale, offset = c.float_scale
        header += [f'#include "{c.name}.h"',
                   f"#define {c.name.upper()}_TEST_SCALE {_f32(scale)}",
                   f"#define {c.name.upper()}_TEST_OFFSET {_f32(offset)}",
                   _c_array("int16_t", f"{c.name}_vec", c.vectors, flash),
                   _c_array("uint16_t", f"{c.name}_t", c.times, flash),
                   _c_array("int16_t", f"{c.name}_seq", c.seqs, flash)]
        nseq, steps, _ = c.seqs.shape
        listing.append(f"    X({c.name}, {c.name.upper()}, {c.name}_vec, {c.name}_t, {len(c.times)}u, "
                       f"{c.name}_seq, {nseq}u, {steps}u) \\")
    (out / "raw_models.h").write_text("\n".join(header + listing + ["", ""]))
    elf = out / f"raw_{board}.elf"
    hal = sorted(str(p) for p in family_dir(board).glob("*.c"))
    inc = [f"-I{out}", f"-I{HARNESS}", f"-I{family_dir(board)}", *incs]
    if avr:
        _run([need("avr-gcc"), *AVR_WARN, "-Os", f"-mmcu={prof.mcu}", f"-DF_CPU={prof.f_cpu_hz}UL",
              "-ffunction-sections",
              "-fdata-sections", "-Wl,--gc-sections", *inc, str(DRIVER), *hal, *srcs, "-o", str(elf)])
    else:
        _run(cortexm_command(out, board, [str(DRIVER), *hal, *srcs], inc, elf, warn=WARN))
    return elf


@dataclass
class DeviceResult:
    x_q: dict[str, np.ndarray]  # name -> int16 [n, D]
    logits: dict[str, np.ndarray]  # name -> int64 [nseq, C]
    cycles: dict[str, tuple[int, int, int]]  # name -> (step, step_raw, step_float)


def run_image(board: str, elf: Path, cases: list[RawCase]) -> DeviceResult:
    from edgecompile.emulators.process import emulate

    with emulate(board, elf) as emu:
        text = run_to_end(emu, board, RUN_TIMEOUT_S)
    dims = {c.name: (c.qm.input_dim, c.qm.num_classes, len(c.times), c.seqs.shape[0]) for c in cases}
    xq = {n: np.full((k, d), 99999, np.int64) for n, (d, _, k, _) in dims.items()}
    lg = {n: np.full((s, cc), 1 << 40, np.int64) for n, (_, cc, _, s) in dims.items()}
    cyc: dict[str, tuple[int, int, int]] = {}
    for line in text.split("\r\n"):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "Q":
            name, i, hexes = parts[1], int(parts[2], 16), parts[3]
            vals = [int(hexes[j:j + 4], 16) for j in range(0, len(hexes), 4)]
            xq[name][i] = np.array(vals, np.int64).astype(np.uint16).astype(np.int16)
        elif parts[0] == "L":
            name, s = parts[1], int(parts[2], 16)
            lg[name][s] = np.array([int(v, 16) for v in parts[3:]], np.int64).astype(np.uint32).astype(np.int32)
        elif parts[0] == "C":
            cyc[parts[1]] = (int(parts[2], 16), int(parts[3], 16), int(parts[4], 16))
    return DeviceResult(xq, lg, cyc)


__all__ = ["FIRMWARE", "DeviceResult", "RawCase", "build_image", "run_image"]
