"""The real AVR code (16-bit ``int``) under simavr, bit for bit against the simulator.

Host builds of the AVR library (the C twins of its assembly) run with a 32-bit ``int`` and
cannot see an expression that overflows ``int`` on AVR. Here every nonlinearity pair, both
weight widths and both kernels (the fast one at -Os and at the library's own flags) are
compiled with avr-gcc into one firmware image per kernel (tests/c/avr_matrix.c), run once in simavr, and compared with
``edgecompile.sim.simulator.simulate`` on inputs that saturate the pre-activations, so that the gates
reach z = -16384 / +16384 and every nonlinearity clips.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgecompile.codegen import render_library
from edgecompile.codegen.render import BUILD_FLAGS
from edgecompile.ir.fixedpoint import sat16
from edgecompile.ir.model import Matrix
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.simulator import pre_activation, simulate

from .cbuild import write_tree
from .helpers.emulator import run_to_end
from .helpers.models import make_inputs, make_model
from .helpers.per_unit import per_unit_models

DRIVER = Path(__file__).resolve().parent / "c" / "avr_matrix.c"
NLS = {"sigmoid": "sg", "tanh": "th", "quantSigm": "qs", "quantTanh": "qt", "quantSigm4": "q4", "relu": "re"}
#: Kernel flags after the board's -Os: the fast kernel as the board builds it, with the flags of
#: the library's library.json (what PlatformIO uses), and the reference kernel.
KERNELS = {"fast": [], "fast-library-flags": BUILD_FLAGS["avr"], "reference": ["-DEC_KERNEL_REFERENCE"]}
#: avr-gcc flags of every matrix build: the generated library must be clean under -Wconversion.
AVR_WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wsign-conversion"]
#: Shapes cycled through the matrix: dense, low rank (rank <= 5: the AVR row routine in
#: registers), sparse.
SHAPES = (dict(D=5, H=8, C=3), dict(D=5, H=8, C=3, wrank=3, urank=4), dict(D=5, H=8, C=3, sparsity=0.5))
N_SEQ, STEPS = 6, 6
RUN_TIMEOUT_S = 120.0


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")


def matrix_cells(nls: list[str]) -> list[tuple[str, str, str]]:
    return [("FastGRNN", g, u) for g in nls for u in nls] + [("FastRNN", "sigmoid", u) for u in nls]


def matrix_models() -> list[tuple[str, QuantizedModel]]:
    """FastGRNN x every (gate, update) pair and FastRNN x every update, at int8 and int16.

    The pairs of the first four nonlinearities come first (their seeds stay); a model with relu
    gets W scaled by 4, so that the inputs can drive relu's input to saturation."""
    first = matrix_cells(list(NLS)[:4])
    cells = first + [c for c in matrix_cells(list(NLS)) if c not in first]
    out = []
    for bits in (8, 16):
        for i, (cell, gate, update) in enumerate(cells):
            fm = make_model(cell=cell, gate_nl=gate, update_nl=update, seed=100 * bits + i,
                            **SHAPES[i % len(SHAPES)])
            if "relu" in (update, gate if cell == "FastGRNN" else update):
                w = Matrix((fm.W.factors[0] * 4.0, *fm.W.factors[1:]))
                fm = dataclasses.replace(fm, W=w)
                fm = dataclasses.replace(fm, sha256=fm.content_hash())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qm = quantize(fm, bits, make_inputs(fm, n=32, T=8))
            name = (f"g_{NLS[gate]}_{NLS[update]}" if cell == "FastGRNN" else f"r_{NLS[update]}") + f"_i{bits}"
            out.append((name, qm))
    return out


def saturating_inputs(d: int, seed: int) -> np.ndarray:
    """int16 inputs [N_SEQ, STEPS, d]: all +max, all -max, alternating signs, then random extremes."""
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-32768, -32767, 32767, 0, 1, -1, 4096, -4096]), (N_SEQ, STEPS, d))
    x[0], x[1] = 32767, -32768
    x[2, 0::2], x[2, 1::2] = 32767, -32768
    x[3] = rng.integers(-32768, 32768, (STEPS, d))
    return x.astype(np.int16)


def nl_inputs(qm: QuantizedModel, x: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The int16 inputs of the update and gate nonlinearities at every step (from the simulator)."""
    h_prev = np.concatenate([np.zeros_like(states[:, :1]), states[:, :-1]], axis=1).astype(np.int64)
    upd, gate = [], []
    for t in range(x.shape[1]):
        pre = pre_activation(qm, h_prev[:, t], x[:, t].astype(np.int64))
        upd.append(sat16(pre + qm.bias_update))
        if qm.cell == "FastGRNN":
            gate.append(sat16(pre + qm.bias_gate))
    return np.array(upd), (np.array(gate) if gate else None)


def fnv_states(states: np.ndarray) -> list[int]:
    """FNV-1a over each sequence's hidden states (step by step, little-endian int16), as on the device."""
    out = []
    for seq in states:
        h = 2166136261
        for b in np.ascontiguousarray(seq, dtype="<i2").tobytes():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        out.append(h)
    return out


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or proc.stderr.strip():
        raise AssertionError(f"avr-gcc: {' '.join(cmd[-3:])}\n{proc.stderr[-3000:]}")


def build_image(out: Path, models: list[tuple[str, QuantizedModel]], inputs: dict[str, np.ndarray],
                kernel_flags: list[str], mcu: str = "atmega2560") -> Path:
    """One AVR ELF that runs every model of ``models`` on its ``inputs`` (tests/c/avr_matrix.c)."""
    out.mkdir(parents=True, exist_ok=True)
    base = ["avr-gcc", *AVR_WARN, "-Os", f"-mmcu={mcu}", "-DF_CPU=16000000UL", "-ffunction-sections",
            "-fdata-sections", *kernel_flags]
    header = ["#include <avr/pgmspace.h>"]
    listing = ["#define EC_MATRIX_MODELS(X) \\"]
    jobs, incs = [], []
    stored: dict[bytes, str] = {}  # each distinct input set once
    for name, qm in models:
        src = write_tree(render_library(qm, name, backend="avr"), out / name) / "src"
        incs.append(f"-I{src}")
        jobs.append(base + [f"-I{src}", "-c", str(src / f"{name}.c"), "-o", str(out / f"{name}.o")])
        x = inputs[name]
        n, steps, _ = x.shape
        header.append(f'#include "{name}.h"')
        key = str(x.shape).encode() + np.ascontiguousarray(x, dtype="<i2").tobytes()
        if key not in stored:
            stored[key] = f"{name}_x"
            values = ", ".join(str(int(v)) for v in x.ravel())
            header.append(f"static const int16_t {name}_x[{x.size}] PROGMEM = {{{values}}};")
        listing.append(f"    X({name}, {name.upper()}, {stored[key]}, {n}u, {steps}u) \\")
    (out / "avr_matrix_models.h").write_text("\n".join(header + listing + ["", ""]))
    jobs.append(base + [f"-I{out}", *incs, "-c", str(DRIVER), "-o", str(out / "avr_matrix.o")])
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, jobs))
    elf = out / "matrix.elf"
    _run(["avr-gcc", "-Os", f"-mmcu={mcu}", "-Wl,--gc-sections", *sorted(str(p) for p in out.glob("*.o")),
          "-o", str(elf)])
    return elf


def flash_constants_end(elf: Path) -> int:
    """The end of the flash objects in the low 64 KB (every model's constants and inputs)."""
    out = subprocess.run(["avr-readelf", "-sW", str(elf)], capture_output=True, text=True, check=True).stdout
    cols = [ln.split() for ln in out.splitlines()]
    return max(int(c[1], 16) + int(c[2], 0) for c in cols
               if len(c) >= 8 and c[3] == "OBJECT" and int(c[1], 16) < 0x20000 and not c[7].startswith("__"))


def run_image(elf: Path, mcu: str = "atmega2560") -> dict[tuple[str, int], list[int]]:
    """Run the image in simavr: {(model, sequence): [hash, logit 0, ...]} (logits as uint32)."""
    from edgecompile.emulators.process import run_simavr

    with run_simavr(elf, mcu) as emu:
        lines = run_to_end(emu, "simavr", RUN_TIMEOUT_S).split("\r\n")
    results = {}
    for line in lines:
        if line.startswith("R "):
            _, name, seq, *vals = line.split()
            results[(name, int(seq, 16))] = [int(v, 16) for v in vals]
    return results


def expected(qm: QuantizedModel, x: np.ndarray) -> list[list[int]]:
    logits, states = simulate(qm, x, return_states=True)
    return [[h, *(int(v) & 0xFFFFFFFF for v in row)] for h, row in zip(fnv_states(states), logits, strict=True)]


def mismatches(models: list[tuple[str, QuantizedModel]], inputs: dict[str, np.ndarray],
               got: dict[tuple[str, int], list[int]]) -> list[str]:
    bad = []
    for name, qm in models:
        for seq, want in enumerate(expected(qm, inputs[name])):
            if got.get((name, seq)) != want:
                bad.append(f"{name} seq {seq}: device {got.get((name, seq))} simulator {want}")
    return bad


@pytest.fixture(scope="module")
def matrix() -> tuple[list[tuple[str, QuantizedModel]], dict[str, np.ndarray]]:
    models = matrix_models()
    # four input sets shared by the models (build_image stores each distinct set once: flash read
    # with LPM ends at 64 KB, and 84 models with their own inputs would pass it)
    inputs = {name: saturating_inputs(qm.input_dim, seed=i % 4) for i, (name, qm) in enumerate(models)}
    return models, inputs


def test_matrix_reaches_the_extremes(matrix):
    """The inputs drive every nonlinearity into both clipping regions (|u| >= 1.0 in Q12): a
    quantTanh gate gives z = -16384 and +16384, a quantSigm one 0 and 16384; quantSigm4's inputs
    pass +-2.0, relu's input saturates at both ends (-32768 and 32767: relu = 8 - 2^-12), and a
    relu gate drives coef below -2.0, where it saturates."""
    models, inputs = matrix
    assert len(models) == 2 * (6 * 6 + 6)
    coef_clipped = 0
    for name, qm in models:
        _, states = simulate(qm, inputs[name], return_states=True)
        upd, gate = nl_inputs(qm, inputs[name], states)
        for what, u, nl in (("update", upd, qm.update_nl), ("gate", gate, qm.gate_nl)):
            if u is None:
                continue
            assert u.min() <= -4096 and u.max() >= 4096, (name, what, u.min(), u.max())
            if nl == "quantSigm4":
                assert u.min() <= -8192 and u.max() >= 8192, (name, what, u.min(), u.max())
            if nl == "relu":
                assert u.min() == -32768 and u.max() == 32767, (name, what, u.min(), u.max())
        if qm.cell == "FastGRNN" and qm.gate_nl == "relu":
            z = np.maximum(gate, 0)  # relu, Q12
            coef = (qm.zeta * (4096 - z) + 2048) // 4096 + qm.nu  # before sat16, per the spec
            coef_clipped += int((coef < -32768).any())
    assert coef_clipped >= 6, coef_clipped


def with_per_unit(models: list[tuple[str, QuantizedModel]], inputs: dict[str, np.ndarray]
                  ) -> tuple[list[tuple[str, QuantizedModel]], dict[str, np.ndarray]]:
    """The matrix plus the per-unit models (tests/helpers/per_unit.py: int8 / int16, dense, low
    rank and sparse, per-unit shifts negative, zero and positive), in the same image."""
    extra = per_unit_models()
    more = {name: saturating_inputs(qm.input_dim, seed=1000 + i) for i, (name, qm) in enumerate(extra)}
    return models + extra, {**inputs, **more}


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["fast", pytest.param("fast-library-flags", marks=pytest.mark.slowest),
                                    pytest.param("reference", marks=pytest.mark.slowest)])
def test_nonlinearity_matrix_in_simavr(matrix, kernel, tmp_path):
    """84 models (every gate x update pair of FastGRNN, FastRNN x every update, over the six
    nonlinearities, int8 and int16)
    in one atmega2560 image per kernel, bit-exact with the simulator in every hidden state and logit.
    The build is also the compile-time guard: every library compiles clean under avr-gcc
    -Wconversion -Wsign-conversion -Wall -Wextra -Werror -pedantic (AVR_WARN)."""
    need("avr-gcc")
    need("simavr")
    models, inputs = with_per_unit(*matrix)
    elf = build_image(tmp_path, models, inputs, KERNELS[kernel])
    assert flash_constants_end(elf) <= 0x10000, "the image's constants pass 64 KB (LPM): fewer models per image"
    got = run_image(elf)
    assert len(got) == len(models) * N_SEQ
    bad = mismatches(models, inputs, got)
    assert not bad, f"{len(bad)} of {len(got)} sequences differ:\n" + "\n".join(bad[:20])


@pytest.mark.slow
@pytest.mark.slowest
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_generated_library_clean_under_wconversion_uno(matrix, kernel, tmp_path):
    """The same compile-time guard for the Uno's core (atmega328p), every kernel variant (``make
    test`` has it for the fast kernel through the matrix's atmega2560 image, built so)."""
    need("avr-gcc")
    models, _ = with_per_unit(*matrix)
    jobs = []
    for name, qm in models:
        src = write_tree(render_library(qm, name, backend="avr"), tmp_path / name) / "src"
        jobs.append(["avr-gcc", *AVR_WARN, "-Os", "-mmcu=atmega328p", *KERNELS[kernel], f"-I{src}", "-c",
                     str(src / f"{name}.c"), "-o", str(tmp_path / f"{name}.o")])
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, jobs))
    assert len(list(tmp_path.glob("*.o"))) == len(models)


# --- flash above 64 KB (Mega 2560): constants must end below 0x10000 ----------------------------

def _big(H: int, seed: int = 5) -> tuple[str, QuantizedModel]:
    """A dense int16 FastGRNN, D = 126, C = 40: H = 126 is the model whose constants cross 64 KB."""
    fm = make_model(D=126, H=H, C=40, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f"big{H}", quantize(fm, 16, make_inputs(fm, n=16, T=4))


def _constants_end(elf: Path) -> int:
    out = subprocess.run(["avr-readelf", "-sW", str(elf)], capture_output=True, text=True, check=True).stdout
    ends = [int(c[1], 16) + int(c[2], 0) for c in (ln.split() for ln in out.splitlines())
            if len(c) >= 8 and c[3] == "OBJECT" and c[7].startswith("big") and int(c[1], 16) < 0x800000]
    return max(ends)


@pytest.mark.slow
def test_mega2560_constants_just_below_64k_bit_exact(tmp_path):
    """The largest such model that fits (H = 110, about 62 KB of constants) is accepted after
    linking and runs bit-exact in simavr as an atmega2560."""
    from edgecompile.targets.budget import linked_usage

    need("avr-gcc")
    need("simavr")
    name, qm = _big(110)
    x = saturating_inputs(qm.input_dim, seed=7)[:3, :3]
    x[2] = np.random.default_rng(3).integers(-3000, 3000, x[2].shape)
    elf = build_image(tmp_path, [(name, qm)], {name: x}, [])
    assert 0xF000 < _constants_end(elf) <= 0x10000
    assert linked_usage(elf, "megaatmega2560").flash > 0x10000 - 0x1000
    got = run_image(elf)
    assert len(got) == 3
    assert not mismatches([(name, qm)], {name: x}, got)


@pytest.mark.slow
def test_mega2560_constants_past_64k_refused_after_linking(tmp_path):
    """The D = H = 126, C = 40 int16 model linked anyway (straight avr-gcc, no budget): its
    constants cross 0x10000, simavr shows the wrong results LPM gives, and the linked check
    refuses the ELF with the limit and what to change."""
    from edgecompile.errors import BoardError
    from edgecompile.targets.budget import linked_usage

    need("avr-gcc")
    need("simavr")
    name, qm = _big(126)
    x = saturating_inputs(qm.input_dim, seed=8)[:2, :2]
    elf = build_image(tmp_path, [(name, qm)], {name: x}, [])
    assert _constants_end(elf) > 0x10000
    got = run_image(elf)
    assert len(got) == 2 and mismatches([(name, qm)], {name: x}, got)  # the failure being refused
    with pytest.raises(BoardError) as err:
        linked_usage(elf, "megaatmega2560")
    msg = str(err.value)
    assert "64 KB" in msg and "0x10000" in msg and "--bits 8" in msg and "\n" not in msg


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory) -> Path:
    from .helpers.models import make_arrays

    path = tmp_path_factory.mktemp("big") / "big126.npz"
    np.savez(path, **make_arrays(D=126, H=126, C=40, seed=5))
    return path


@pytest.mark.slow
def test_mega2560_past_64k_refused_by_build_cli(big_checkpoint, tmp_path):
    """export writes the project; build refuses it before linking: exit 2, one line naming the
    64 KB LPM limit and what to change, no firmware built. The same model at int8 is accepted
    by the estimate (about 37 KB of constants)."""
    exe = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "edgecompile")
    need("avr-gcc")
    # precise: the constants pass 64 KB in total; fast (auto's choice for this dense model): the
    # fast assembly's flash layout makes one array larger than an AVR array can be
    for profile, words in (("precise", ("64 KB", "estimate")), ("fast", ("larger than atmega2560 can address",))):
        proj = tmp_path / f"p16_{profile}"
        res = subprocess.run([exe, "export", str(big_checkpoint), "--board", "megaatmega2560", "--bits", "16",
                              "--profile", profile, "-o", str(proj)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        res = subprocess.run([exe, "build", str(proj), "--offline"], capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, (res.returncode, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), res.stderr
        assert all(w in lines[0] for w in words) and "--bits 8" in lines[0], lines[0]
        assert "Traceback" not in res.stderr and not (proj / ".pio" / "build").exists()

    from edgecompile.targets.budget import check_budget, estimate_project

    proj8 = tmp_path / "p8"
    res = subprocess.run([exe, "export", str(big_checkpoint), "--board", "megaatmega2560", "--bits", "8",
                          "-o", str(proj8)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    est = check_budget(estimate_project(proj8))
    assert est.lpm_limit == 0x10000 and 30_000 < est.lpm_constants < 0x10000
