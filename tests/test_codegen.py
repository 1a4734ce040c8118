"""C generation (issue 4): the generated library equals the simulator bit for bit.

Expected values always come from ``edgecompile.sim.simulator`` (the NumPy rendering of the spec); the C
is compiled with the host gcc plus ``tests/c/ec_driver.c`` (through ``edgecompile_model.h``).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st

from edgecompile.codegen import c_ident, render_library
from edgecompile.errors import CodegenError, QuantError
from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel, check_bounds
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.simulator import quantize_inputs, simulate

from .cbuild import PLAIN, SANITIZE, STRICT, build_driver, run_driver, write_tree
from .models import make_inputs, make_model

NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh")
SHA = "ab" * 32
# Every example compiles C (~0.2 s): no shrinking (a failure still prints its example).
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much]
HYPO = settings(max_examples=25, deadline=None, phases=PHASES, suppress_health_check=SLOW_OK)


def quantized(bits: int = 8, calib: bool = False, **kw) -> QuantizedModel:
    fm = make_model(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(fm, bits, make_inputs(fm, n=32, T=8) if calib else None)


def int_inputs(rng: np.random.Generator, n: int, steps: int, d: int) -> np.ndarray:
    """int16 inputs: full range, small values and the extremes -32768/32767/-32767."""
    x = rng.integers(-32768, 32768, (n, steps, d))
    small = rng.normal(0, 3000, (n, steps, d)).astype(np.int64)
    x = np.where(rng.random((n, steps, d)) < 0.5, small, x)
    extremes = rng.choice(np.array([-32768, -32767, 32767, 0]), (n, steps, d))
    x = np.where(rng.random((n, steps, d)) < 0.15, extremes, x)
    return np.clip(x, -32768, 32767).astype(np.int16)


def assert_bit_exact(qm: QuantizedModel, x_q: np.ndarray, flags: list[str]) -> None:
    exe = build_driver(render_library(qm, "m"), flags)
    states, logits, classes, plogits = run_driver(exe, x_q, qm.hidden_dim, qm.num_classes)
    exp_logits, exp_states = simulate(qm, x_q, return_states=True)
    np.testing.assert_array_equal(states, exp_states, err_msg="hidden states differ from the simulator")
    np.testing.assert_array_equal(logits, exp_logits, err_msg="logits differ from the simulator")
    np.testing.assert_array_equal(plogits, exp_logits, err_msg="predict() logits differ")
    np.testing.assert_array_equal(classes, exp_logits.argmax(axis=1), err_msg="predict() class differs")


@st.composite
def random_qmodels(draw) -> QuantizedModel:
    """QuantizedModels drawn directly (not through the quantizer), to reach extreme formats:
    negative shifts, h in Q15 (residual shift -1), saturating intermediates, all-zero factors,
    sparse storage of dense factors and dense storage of sparse ones."""
    cell = draw(st.sampled_from(["FastGRNN", "FastRNN"]))
    bits = draw(st.sampled_from([8, 16]))
    D, H, C = draw(st.integers(1, 20)), draw(st.integers(1, 40)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    in_frac, hid_frac = draw(st.integers(0, 15)), draw(st.integers(8, 15))
    wide = draw(st.booleans())  # biases over the full int16 range (saturating nonlinearities)
    lim = 1 << (bits - 1)

    def factor(rows: int, cols: int, a_frac: int, to_frac: int) -> QFactor:
        wmax = max(1, min(lim - 1, 16000 // rows))
        v = rng.integers(-wmax, wmax + 1, (rows, cols))
        if rows * lim <= 16000:
            v[rng.random((rows, cols)) < 0.1] = -lim
        sparsity = draw(st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]))
        v[rng.random((rows, cols)) < sparsity] = 0
        shift = draw(st.integers(-1, 16))
        return QFactor(v, shift + to_frac - a_frac, draw(st.booleans()))

    def matrix(rows: int, a_frac: int) -> QMatrix:
        if draw(st.booleans()):
            r, mid = draw(st.integers(1, 8)), draw(st.integers(0, 15))
            return QMatrix((factor(rows, r, a_frac, mid), factor(r, H, mid, 12)), mid)
        return QMatrix((factor(rows, H, a_frac, 12),))

    def bias() -> np.ndarray:
        if wide:
            return rng.integers(-32768, 32768, H)
        return np.clip(rng.normal(0, 4096, H), -32768, 32767).astype(np.int64)

    fc = factor(H, C, 0, 0)
    fc = QFactor(fc.values, draw(st.integers(0, 15)), fc.sparse)
    gate_nl = draw(st.sampled_from(NLS))
    unit = st.integers(0, 16384)
    # A tanh-family gate (z down to -1) with zeta = nu = 1.0 and h in Q15 can overflow the h
    # update's int32 sum: docs/fixed-point.md's bound assumes z >= 0 (reported to the lead).
    gate_unit = st.integers(0, 16000) if gate_nl in ("tanh", "quantTanh") else unit
    extra = (dict(bias_gate=bias(), zeta=draw(gate_unit), nu=draw(gate_unit)) if cell == "FastGRNN"
             else dict(alpha=draw(unit), beta=draw(unit)))
    qm = QuantizedModel(
        cell=cell, bits=bits, gate_nl=gate_nl, update_nl=draw(st.sampled_from(NLS)),
        in_frac=in_frac, hid_frac=hid_frac, W=matrix(D, in_frac), U=matrix(H, hid_frac), FC=fc,
        fc_bias=rng.integers(-(1 << 30), 1 << 30, C), bias_update=bias(), source_sha256=SHA, **extra)
    try:
        check_bounds(qm)
    except QuantError:
        reject()
    return qm


@HYPO
@given(qm=random_qmodels(), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 5))
def test_bit_exact_random_qmodels(qm, seed, steps):
    x = int_inputs(np.random.default_rng(seed), 3, steps, qm.input_dim)
    assert_bit_exact(qm, x, PLAIN)


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


EXPLICIT = {
    "grnn-lowrank-int8": dict(bits=8, D=12, H=32, C=9, wrank=6, urank=8, sparsity=0.5),
    "grnn-sparse-int8": dict(bits=8, D=10, H=24, C=5, sparsity=0.9),
    "grnn-sparse-int16-calib": dict(bits=16, calib=True, D=8, H=20, C=4, sparsity=0.8),
    "rnn-quantnl-int8": dict(bits=8, cell="FastRNN", D=5, H=16, C=3, update_nl="quantTanh"),
    "rnn-lowrank-int16-TD": dict(bits=16, cell="FastRNN", D=4, H=12, C=6, wrank=2, urank=3, T=7,
                                 norm="TD", calib=True),
    "grnn-quantsigm-calib": dict(bits=8, calib=True, D=6, H=10, C=2, gate_nl="quantSigm", sparsity=0.6),
}


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


def _zero(rows: int, cols: int, sparse: bool = True) -> QFactor:
    return QFactor(np.zeros((rows, cols), dtype=np.int64), 7, sparse)


def _probe_model(nl: str, u: np.ndarray, cell: str = "FastRNN", hid_frac: int = 14, gate: str = "sigmoid",
                 **extra) -> QuantizedModel:
    """All weights zero, so pre = 0 and unit j's nonlinearity input is exactly its bias u[j]."""
    H = u.size
    scalars = dict(alpha=16384, beta=0) if cell == "FastRNN" else dict(zeta=16384, nu=16384, bias_gate=u)
    scalars.update(extra)
    return QuantizedModel(
        cell=cell, bits=8, gate_nl=gate, update_nl=nl, in_frac=10, hid_frac=hid_frac,
        W=QMatrix((_zero(1, H),)), U=QMatrix((_zero(H, 1), _zero(1, H)), 12),
        FC=_zero(H, 1, sparse=False), fc_bias=np.zeros(1, dtype=np.int64),
        bias_update=u.astype(np.int64), source_sha256=SHA, **scalars)


@pytest.mark.parametrize("half", [0, 1])
@pytest.mark.parametrize("nl", NLS)
def test_nonlinearities_exhaustive(nl, half):
    """Every int16 input of every nonlinearity: with FastRNN alpha = 1, beta = 0, h in Q14 the
    state after one step is exactly update_nl(bias): 32768 inputs per compile, both halves."""
    u = np.arange(-32768, 0) if half == 0 else np.arange(0, 32768)
    qm = _probe_model(nl, u)
    exe = build_driver(render_library(qm, "m"), PLAIN)
    states, _, _, _ = run_driver(exe, np.zeros((1, 1, 1), np.int16), qm.hidden_dim, 1)
    _, exp_states = simulate(qm, np.zeros((1, 1, 1), np.int16), return_states=True)
    np.testing.assert_array_equal(states[0, 0], exp_states[0, 0])


@pytest.mark.parametrize("flags", [PLAIN, SANITIZE], ids=["plain", "sanitized"])
def test_saturation_extremes(flags):
    """h saturates at both ends (residual shift -1 with h in Q15): FastRNN alpha = beta = 1 and
    FastGRNN z = 0 with zeta = nu = 1 (coef = 2.0), driven by extreme biases."""
    u = np.array([32767, -32768, 32767, -32768, 4096, -4096, 0, 1, -1])
    x = np.zeros((1, 4, 1), np.int16)
    for qm in (_probe_model("quantTanh", u, hid_frac=15, alpha=16384, beta=16384),
               _probe_model("tanh", u, hid_frac=15, alpha=16384, beta=16384),
               _probe_model("quantTanh", u, cell="FastGRNN", hid_frac=15, gate="quantSigm",
                            bias_gate=np.full(u.size, -32768)),
               _probe_model("tanh", u, cell="FastGRNN", hid_frac=15)):
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
    exe = build_driver(render_library(qm, "m"), PLAIN)
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


# --- strict compiles on four compilers ---------------------------------------------------------

EXTRA_WARNINGS = ["-Wconversion", "-Wsign-conversion", "-Wshadow", "-Wcast-qual", "-Wmissing-prototypes",
                  "-Wstrict-prototypes", "-Wdouble-promotion", "-Wundef", "-Wcast-align"]
COMPILERS = {
    "gcc": ["gcc", "-O2"],
    "gcc-extra-warnings": ["gcc", "-O2", *EXTRA_WARNINGS],
    "clang": ["clang", "-O2"],
    "clang-Weverything": ["clang", "-O2", "-Weverything"],
    "avr-gcc": ["avr-gcc", "-mmcu=atmega328p", "-Os"],
    "arm-none-eabi-gcc": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os"],
}
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
@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_strict_compile(compiler, variant, tmp_path):
    lib = render_library(quantized(**VARIANTS[variant]), "kws")
    _compile(COMPILERS[compiler], lib, tmp_path)


def test_avr_weights_in_flash(tmp_path):
    """avr-size: no .data at all; every model constant is in .progmem.data (flash)."""
    if shutil.which("avr-size") is None or shutil.which("avr-objdump") is None:
        pytest.skip("binutils-avr not installed")
    qm = quantized(8, D=12, H=32, C=9, wrank=6, urank=8, sparsity=0.5)
    (obj,) = _compile(COMPILERS["avr-gcc"], render_library(qm, "kws"), tmp_path)
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
    (obj,) = _compile(COMPILERS["arm-none-eabi-gcc"], render_library(qm, "kws"), tmp_path)
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
    a, b = render_library(qm, "kws"), render_library(qm, "kws")
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
        render_library(dataclasses.replace(qm, source_sha256=""), "m")
    with pytest.raises(CodegenError):
        render_library(qm, "not-a-name")
