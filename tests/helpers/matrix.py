"""Many generated model libraries in one device image (tests/c/hal_matrix.c on the board HAL of
firmware/, the Cortex-M twin of tests/c/avr_matrix.c), run under QEMU, and the device's result
lines checked against the simulator: every hidden state (hashed per sequence) and logit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from edgecompile.codegen import render_library
from edgecompile.ir.qmodel import QuantizedModel
from tests import harness_build as hb
from tests.cbuild import write_tree
from tests.helpers.emulator import run_to_end

C_DIR = Path(__file__).resolve().parent.parent / "c"
HAL_DRIVER = C_DIR / "hal_matrix.c"

Models = list[tuple[str, QuantizedModel]]
Results = dict[tuple[str, int], list[int]]


def build_hal_image(out: Path, board: str, models: Models, inputs: dict[str, np.ndarray]) -> Path:
    """One Cortex-M ELF running every model on its inputs (tests/c/hal_matrix.c on the board's HAL),
    linked with the start-up code and linker script of firmware/cortexm; the board's own kernel."""
    from edgecompile.targets.boards import get_board

    out.mkdir(parents=True, exist_ok=True)
    backend = get_board(board).kernel_backend
    header, listing, srcs, incs = ["#include <stdint.h>"], ["#define EC_MATRIX_MODELS(X) \\"], [], []
    for name, qm in models:
        src = write_tree(render_library(qm, name, backend=backend), out / name) / "src"
        srcs.append(str(src / f"{name}.c"))
        incs.append(f"-I{src}")
        x = inputs[name]
        n, steps, _ = x.shape
        values = ", ".join("(-32767 - 1)" if int(v) == -32768 else str(int(v)) for v in x.ravel())
        header += [f'#include "{name}.h"', f"static const int16_t {name}_x[{x.size}] = {{{values}}};"]
        listing.append(f"    X({name}, {name.upper()}, {name}_x, {n}u, {steps}u) \\")
    (out / "hal_matrix_models.h").write_text("\n".join(header + listing + ["", ""]))
    hal = sorted(str(p) for p in hb.family_dir(board).glob("*.c"))
    inc = [f"-I{out}", f"-I{C_DIR}", f"-I{hb.HARNESS}", f"-I{hb.family_dir(board)}", f"-I{hb.FIRMWARE / 'mcu'}",
           *incs]
    elf = out / f"matrix_{board}.elf"
    proc = subprocess.run(hb.cortexm_command(out, board, [str(HAL_DRIVER), *hal, *srcs], inc, elf),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr[-3000:]
    return elf


def run_hal_image(board: str, elf: Path, timeout_s: float = 120.0) -> Results:
    """{(model, sequence): [hash, logit 0, ...]} as test_avr_matrix.run_image reads it."""
    from edgecompile.emulators.process import emulate

    with emulate(board, elf) as emu:
        text = run_to_end(emu, board, timeout_s)
    results = {}
    for line in text.split("\r\n"):
        if line.startswith("R "):
            _, name, seq, *vals = line.split()
            results[(name, int(seq, 16))] = [int(v, 16) for v in vals]
    return results


def assert_device_matches(models: Models, inputs: dict[str, np.ndarray], got: Results) -> None:
    """One result line per sequence of every model, each equal to the simulator's."""
    from tests.test_avr_matrix import mismatches

    assert len(got) == sum(inputs[n].shape[0] for n, _ in models)
    bad = mismatches(models, inputs, got)
    assert not bad, f"{len(bad)} of {len(got)} sequences differ:\n" + "\n".join(bad[:20])


def check_on_qemu(out: Path, board: str, models: Models, inputs: dict[str, np.ndarray]) -> None:
    """Every model in one image for ``board`` under QEMU, bit-exact with the simulator."""
    hb.need("qemu-system-arm")
    assert_device_matches(models, inputs, run_hal_image(board, build_hal_image(out, board, models, inputs)))
