"""C generation: the generated library equals the simulator bit for bit.

Expected values always come from ``edgecompile.sim.simulator`` (the NumPy rendering of the spec); the C
is compiled with the host gcc plus ``tests/c/ec_driver.c`` (through ``edgecompile_model.h``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.codegen import c_ident, render_library
from edgecompile.errors import CodegenError
from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.simulator import quantize_inputs, simulate

from .cbuild import PLAIN, SANITIZE, STRICT, build_driver, run_driver, write_tree
from .helpers.codegen import (
    EXPLICIT,
    HYPO,
    NLS,
    PHASES,
    SLOW_OK,
    assert_bit_exact,
    int_inputs,
    probe_model,
    quantized,
    random_qmodels,
)
from .helpers.models import make_inputs, make_model


@pytest.mark.slow
@pytest.mark.slowest
@HYPO
@given(qm=random_qmodels(), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 5))
def test_bit_exact_random_qmodels(qm, seed, steps):
    x = int_inputs(np.random.default_rng(seed), 3, steps, qm.input_dim)
    assert_bit_exact(qm, x, PLAIN)


@pytest.mark.slow
@pytest.mark.slowest
@settings(max_examples=20, deadline=None, phases=PHASES, suppress_health_check=SLOW_OK)
@given(
    cell=st.sampled_from(["FastGRNN", "FastRNN"]), bits=st.sampled_from([8, 16]),
    D=st.integers(1, 16), H=st.integers(1, 32), C=st.integers(2, 10),
    wrank=st.one_of(st.none(), st.integers(1, 6)), urank=st.one_of(st.none(), st.integers(1, 8)),
    sparsity=st.sampled_from([0.0, 0.5, 0.7, 0.9]), gate_nl=st.sampled_from(NLS),
    update_nl=st.sampled_from(NLS), seed=st.integers(0, 1000),
)
def test_bit_exact_quantized_models(cell, bits, D, H, C, wrank, urank, sparsity, gate_nl, update_nl, seed):
    qm = quantized(bits, cell=cell, D=D, H=H, C=C, wrank=min(wrank, D) if wrank else None,
                   urank=urank, sparsity=sparsity, gate_nl=gate_nl, update_nl=update_nl, seed=seed)
    x = int_inputs(np.random.default_rng(seed), 4, 6, D)
    assert_bit_exact(qm, x, PLAIN)


@pytest.mark.parametrize("flags", [PLAIN, SANITIZE], ids=["plain", "sanitized"])
@pytest.mark.parametrize("case", sorted(EXPLICIT))
def test_bit_exact_explicit(case, flags):
    qm = quantized(**EXPLICIT[case])
    steps = qm.seq_len or 12
    x = int_inputs(np.random.default_rng(7), 5, steps, qm.input_dim)
    assert_bit_exact(qm, x, flags)


@settings(max_examples=8, deadline=None, phases=PHASES, suppress_health_check=SLOW_OK)
@given(qm=random_qmodels(), seed=st.integers(0, 2**32 - 1))
def test_bit_exact_random_qmodels_sanitized(qm, seed):
    x = int_inputs(np.random.default_rng(seed), 2, 3, qm.input_dim)
    assert_bit_exact(qm, x, SANITIZE)


@pytest.mark.parametrize("half", [0, 1])
@pytest.mark.parametrize("nl", NLS)
def test_nonlinearities_exhaustive(nl, half):
    """Every int16 input of every nonlinearity: with FastRNN alpha = 1, beta = 0, h in Q14 the
    state after one step is exactly update_nl(bias): 32768 inputs per compile, both halves."""
    u = np.arange(-32768, 0) if half == 0 else np.arange(0, 32768)
    qm = probe_model(nl, u)
    exe = build_driver(render_library(qm, "m", backend="native"), PLAIN)
    states, _, _, _ = run_driver(exe, np.zeros((1, 1, 1), np.int16), qm.hidden_dim, 1)
    _, exp_states = simulate(qm, np.zeros((1, 1, 1), np.int16), return_states=True)
    np.testing.assert_array_equal(states[0, 0], exp_states[0, 0])


@pytest.mark.parametrize("flags", [PLAIN, SANITIZE], ids=["plain", "sanitized"])
def test_saturation_extremes(flags):
    """h saturates at both ends (residual shift -1 with h in Q15): FastRNN alpha = beta = 1 and
    FastGRNN z = 0 with zeta = nu = 1 (coef = 2.0), driven by extreme biases."""
    u = np.array([32767, -32768, 32767, -32768, 4096, -4096, 0, 1, -1])
    x = np.zeros((1, 4, 1), np.int16)
    for qm in (probe_model("quantTanh", u, hid_frac=15, alpha=16384, beta=16384),
               probe_model("tanh", u, hid_frac=15, alpha=16384, beta=16384),
               probe_model("quantTanh", u, cell="FastGRNN", hid_frac=15, gate="quantSigm",
                            bias_gate=np.full(u.size, -32768)),
               probe_model("tanh", u, cell="FastGRNN", hid_frac=15)):
        exp_logits, exp_states = simulate(qm, x, return_states=True)
        assert exp_states.max() == 32767 and exp_states.min() == -32768  # the case is reached
        assert_bit_exact(qm, x, flags)


@pytest.mark.parametrize("norm,T", [(None, None), ("D", None), ("TD", 6)])
def test_step_float_matches_host_quantization(norm, T):
    qm = quantized(8, calib=True, D=7, H=9, C=3, norm=norm, T=T, seed=3)
    fm = make_model(D=7, H=9, C=3, norm=norm, T=T, seed=3)
    rng = np.random.default_rng(5)
    X = make_inputs(fm, n=6, T=T or 8, seed=4).astype(np.float32)
    X[0, 0, :] = 1e9  # saturates high
    X[1, 0, :] = -1e9  # saturates low
    mean, std = fm.normalisation(X.shape[1])
    for _ in range(50):  # move values off half-way points, where float32 and float64 may differ
        v = (X.astype(np.float64) - mean) / std * 2.0**qm.in_frac
        near = np.abs(v - np.floor(v) - 0.5) < 1e-3
        if not near.any():
            break
        X[near] = (X[near] + rng.uniform(0.01, 0.02, near.sum())).astype(np.float32)
    else:
        pytest.fail("could not move inputs off half-way points")
    x_q = quantize_inputs(qm, X)
    exe = build_driver(render_library(qm, "m", backend="native"), PLAIN)
    states, logits, _, _ = run_driver(exe, X, qm.hidden_dim, qm.num_classes, mode="float")
    exp_logits, exp_states = simulate(qm, x_q, return_states=True)
    assert (np.abs(x_q) == 32767).any() or (x_q == -32768).any()
    np.testing.assert_array_equal(states, exp_states)
    np.testing.assert_array_equal(logits, exp_logits)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("example,data,calib", [
    ("japanese_vowels", "X_test.npy", "X_calib.npy"),
    ("tiny", "X.npy", "X.npy"),
])
@pytest.mark.parametrize("bits", [8, 16])
def test_bit_exact_trained_models(example, data, calib, bits):
    """The trained example models on their real (host-quantized) inputs, plus extreme inputs."""
    root = EXAMPLES / example
    if not (root / "model.npz").is_file():
        pytest.skip(f"examples/{example} not in this checkout")
    fm = load_checkpoint(root / "model.npz")
    qm = quantize(fm, bits, np.load(root / calib))
    X = np.load(root / data)
    x_q = quantize_inputs(qm, X[:64])
    x_q[:4] = int_inputs(np.random.default_rng(bits), 4, x_q.shape[1], x_q.shape[2])
    assert_bit_exact(qm, x_q, PLAIN if bits == 8 else SANITIZE)


# --- strict compiles: each backend's library on the host compilers (the C twins of its assembly
# and intrinsics) and on its own cross compiler, both kernels ------------------------------------

EXTRA_WARNINGS = ["-Wconversion", "-Wsign-conversion", "-Wshadow", "-Wcast-qual", "-Wmissing-prototypes",
                  "-Wstrict-prototypes", "-Wdouble-promotion", "-Wundef", "-Wcast-align"]
ALL_BACKENDS = ("avr", "armv7em", "armv7m", "armv6m", "native")
COMPILERS = {  # name: (command, the backends it compiles)
    "gcc": (["gcc", "-O2"], ALL_BACKENDS),
    "gcc-extra-warnings": (["gcc", "-O2", *EXTRA_WARNINGS], ALL_BACKENDS),
    "clang": (["clang", "-O2"], ALL_BACKENDS),
    "clang-Weverything": (["clang", "-O2", "-Weverything"], ALL_BACKENDS),
    "avr-gcc": (["avr-gcc", "-mmcu=atmega328p", "-Os"], ("avr",)),
    "arm-m0": (["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", "-Os"], ("armv6m",)),
    "arm-m3": (["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-Os"], ("armv7m",)),
    "arm-m4": (["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os"], ("armv7em",)),
}
STRICT_CASES = [(c, b, k) for c, (_, bs) in sorted(COMPILERS.items()) for b in bs for k in ("fast", "reference")]
VARIANTS = {
    "grnn-int8-lowrank": dict(bits=8, D=12, H=32, C=9, wrank=6, urank=8, sparsity=0.5),
    "grnn-int16-sparse": dict(bits=16, D=10, H=24, C=5, sparsity=0.9, gate_nl="quantSigm"),
    "rnn-int8-sparse-TD": dict(bits=8, cell="FastRNN", D=6, H=40, C=4, sparsity=0.9, T=5, norm="TD"),
    "rnn-int16-lowrank-nonorm": dict(bits=16, cell="FastRNN", D=5, H=300, C=2, wrank=2, urank=4, norm=None,
                                     update_nl="quantTanh"),
}


def _compile(cc: list[str], lib: dict[str, bytes], tmp_path, extra: list[str] = ()) -> list:
    if shutil.which(cc[0]) is None:
        pytest.skip(f"{cc[0]} not installed")
    root = write_tree(lib, tmp_path / "lib")
    objs = []
    for src in sorted((root / "src").glob("*.c")):
        obj = tmp_path / (src.stem + ".o")
        proc = subprocess.run([*cc, *STRICT, *extra, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
        objs.append(obj)
    assert objs
    return objs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("compiler,backend,kernel", STRICT_CASES, ids=["-".join(c) for c in STRICT_CASES])
def test_strict_compile(compiler, backend, kernel, variant, tmp_path):
    lib = render_library(quantized(**VARIANTS[variant]), "kws", backend=backend)
    _compile(COMPILERS[compiler][0], lib, tmp_path, ["-DEC_KERNEL_REFERENCE"] if kernel == "reference" else [])


def test_library_carries_one_kernel_family():
    """The library of a backend holds the reference kernel and that family's fast kernel only."""
    qm = quantized(8, D=12, H=32, C=9, wrank=6, urank=8)
    marks = {"avr": "__AVR__", "armv7em": "__ARM_FEATURE_DSP", "armv7m": "Fast kernel (armv7m, portable C)"}
    for backend in ALL_BACKENDS:
        source = b"".join(render_library(qm, "kws", backend=backend).values()).decode()
        assert "EC_KERNEL_REFERENCE" in source
        for other, mark in marks.items():
            assert (mark in source) == (other == backend), (backend, mark)


def test_abi_guard_refuses_a_header_of_another_revision(tmp_path):
    qm = quantized(8, D=3, H=4, C=2)
    lib = render_library(qm, "kws", backend="native")
    header = lib["src/kws.h"].decode()
    assert "#define KWS_ABI_VERSION 1 " in header
    lib["src/kws.h"] = header.replace("#define KWS_ABI_VERSION 1 ", "#define KWS_ABI_VERSION 2 ").encode()
    root = write_tree(lib, tmp_path / "lib")
    proc = subprocess.run(["gcc", *STRICT, "-c", str(root / "src" / "kws.c"), "-o", str(tmp_path / "kws.o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "regenerate" in proc.stderr


def test_avr_weights_in_flash(tmp_path):
    """avr-size: no .data at all; every model constant is in .progmem.data (flash)."""
    if shutil.which("avr-size") is None or shutil.which("avr-objdump") is None:
        pytest.skip("binutils-avr not installed")
    qm = quantized(8, D=12, H=32, C=9, wrank=6, urank=8, sparsity=0.5)
    (obj,) = _compile(COMPILERS["avr-gcc"][0], render_library(qm, "kws", backend="avr"), tmp_path)
    size = subprocess.run(["avr-size", str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in size.splitlines()[1].split()[:3])
    assert data == 0 and bss == 0, size
    weight_bytes = sum(f.values.size for m in (qm.W, qm.U) for f in m.factors) + qm.FC.values.size
    assert text > weight_bytes
    table = subprocess.run(["avr-objdump", "-t", str(obj)], capture_output=True, text=True, check=True).stdout
    sections = {ln.split()[-1]: ln.split()[3] for ln in table.splitlines() if "kws_" in ln and " O " in ln}
    for sym in ("kws_W1", "kws_W2", "kws_U1", "kws_U2", "kws_FC", "kws_fc_bias", "kws_sig_table",
                "kws_bias_gate", "kws_bias_update", "kws_inv_std"):
        assert sections.get(sym) == ".progmem.data", (sym, sections)


def test_arm_constants_in_rodata(tmp_path):
    """Cortex-M: const model data is in flash (.rodata), nothing in .data/.bss."""
    if shutil.which("arm-none-eabi-size") is None:
        pytest.skip("binutils-arm-none-eabi not installed")
    qm = quantized(16, D=12, H=32, C=9, sparsity=0.9)
    (obj,) = _compile(COMPILERS["arm-m4"][0], render_library(qm, "kws", backend="armv7em"), tmp_path)
    size = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in size.splitlines()[1].split()[:3])
    assert data == 0 and bss == 0 and text > 2 * qm.W.factors[0].nonzeros, size


# --- names and rendering -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["model-1", "1model", "_x", "", "int", "class", "edgecompile_model",
                                 "a" * 21, "x y"])
def test_c_ident_rejects(bad):
    with pytest.raises(CodegenError):
        c_ident(bad)


def test_render_is_deterministic_and_carries_provenance():
    qm = quantized(8, D=6, H=8, C=3, sparsity=0.9)
    a, b = render_library(qm, "kws", backend="avr"), render_library(qm, "kws", backend="avr")
    assert a == b
    assert sorted(a) == ["library.json", "library.properties", "src/edgecompile_model.h", "src/kws.c",
                         "src/kws.h", "src/kws_data.h"]
    for path, data in a.items():
        head = data.decode()[:800]
        if path.endswith((".c", ".h")):
            assert head.startswith("/*\n * "), path
        if path != "library.json":
            assert qm.source_sha256 in head and qm.summary() in head and "edgecompile 0.1.0" in head, path
    assert "kws_W_index" in a["src/kws_data.h"].decode()  # compact storage of a sparse factor
    assert b"PROGMEM" in a["src/kws_data.h"]


def test_render_refuses_bad_models():
    qm = quantized(8, D=3, H=4, C=2)
    import dataclasses

    with pytest.raises(CodegenError):
        render_library(dataclasses.replace(qm, source_sha256=""), "m", backend="native")
    with pytest.raises(CodegenError):
        render_library(qm, "not-a-name", backend="native")
    with pytest.raises(CodegenError):
        render_library(qm, "m", backend="riscv")
