"""Kernels: every backend's fast kernel and the reference kernel equal the simulator bit for bit.

- Host builds of each backend's library, fast and reference (``-DEC_KERNEL_REFERENCE``): on the
  host the AVR and DSP libraries run the C twins of their assembly and intrinsics, which checks
  the offset-binary corrections, the byte-split shifts and the SMLAD/SXTB16 pairing on many models;
- the real AVR assembly under simavr and the real Cortex-M code under QEMU (M3, M4/M7), plus the
  reference kernel on AVR: built with PlatformIO offline and checked with
  ``verify --emulate --trace`` (every hidden state).
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.codegen import render_library
from edgecompile.sim.simulator import simulate

from .cbuild import PLAIN, SANITIZE, build_driver, run_driver
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

BACKENDS = ("avr", "armv7em", "armv7m", "armv6m", "native")
KERNELS = {"fast": [], "reference": ["-DEC_KERNEL_REFERENCE"]}
VARIANTS = {f"{b}-{k}": (b, flags) for b in BACKENDS for k, flags in KERNELS.items()}
CELLS = {  # the benchmark shapes (benchmarks/bench_kernels.py) and a few edges
    "lowrank-r5-int8": dict(bits=8, D=16, H=32, C=10, wrank=5, urank=5),
    "lowrank-r5-int16": dict(bits=16, D=16, H=32, C=10, wrank=5, urank=5),
    "full-int8": dict(bits=8, D=16, H=32, C=10),
    "full-int16": dict(bits=16, D=12, H=32, C=9),
    "odd-dims-int8": dict(bits=8, D=7, H=13, C=3, wrank=3, urank=1),
    "wide-300-int8": dict(bits=8, cell="FastRNN", D=5, H=300, C=2, norm=None, update_nl="quantTanh"),
    "wide-300-int16-lowrank": dict(bits=16, cell="FastRNN", D=5, H=300, C=2, wrank=2, urank=4, norm=None),
    "tanh-gate": dict(bits=8, D=6, H=10, C=2, gate_nl="tanh", update_nl="sigmoid"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("case", sorted(CELLS) + sorted(EXPLICIT))
def test_kernel_variants_bit_exact(case, variant):
    cfg = CELLS.get(case) or EXPLICIT[case]
    qm = quantized(**cfg)
    x = int_inputs(np.random.default_rng(11), 4, qm.seq_len or 6, qm.input_dim)
    backend, flags = VARIANTS[variant]
    assert_bit_exact(qm, x, PLAIN + flags, backend)


@pytest.mark.parametrize("variant", ["avr-fast", "armv7em-fast", "avr-reference"])
def test_kernel_variants_sanitized(variant):
    """UBSan/ASan over the C twins (unsigned wrap-around is intended, signed is not)."""
    backend, flags = VARIANTS[variant]
    for cfg in (CELLS["lowrank-r5-int8"], CELLS["full-int16"], CELLS["wide-300-int16-lowrank"]):
        qm = quantized(**cfg)
        assert_bit_exact(qm, int_inputs(np.random.default_rng(3), 2, 4, qm.input_dim), SANITIZE + flags, backend)


@pytest.mark.slow
@HYPO
@given(qm=random_qmodels(), seed=st.integers(0, 2**32 - 1), variant=st.sampled_from(sorted(VARIANTS)))
def test_kernel_variants_random_qmodels(qm, seed, variant):
    """Extreme formats (negative shifts, Q15 state, saturation, all-zero and sparse factors)."""
    x = int_inputs(np.random.default_rng(seed), 3, 3, qm.input_dim)
    backend, flags = VARIANTS[variant]
    assert_bit_exact(qm, x, PLAIN + flags, backend)


@pytest.mark.slow
@settings(max_examples=4, deadline=None, phases=PHASES, suppress_health_check=SLOW_OK)
@given(half=st.sampled_from([0, 1]), nl=st.sampled_from(NLS))
def test_reference_nonlinearities_exhaustive(half, nl):
    """The exhaustive nonlinearity test of test_codegen runs the fast kernel: here the reference."""
    u = np.arange(-32768, 0) if half == 0 else np.arange(0, 32768)
    qm = probe_model(nl, u)
    exe = build_driver(render_library(qm, "m", backend="native"), PLAIN + KERNELS["reference"])
    states, _, _, _ = run_driver(exe, np.zeros((1, 1, 1), np.int16), qm.hidden_dim, 1)
    _, exp_states = simulate(qm, np.zeros((1, 1, 1), np.int16), return_states=True)
    np.testing.assert_array_equal(states[0, 0], exp_states[0, 0])


# --- the real assembly / DSP code under emulators ---------------------------------------------

EMULATED = [  # (board, bits, shape, extra define)
    ("uno", 8, "lr", None), ("uno", 16, "full", None), ("mps2_an385", 8, "full", None),
    ("uno", 16, "lr", "EC_KERNEL_REFERENCE"), ("uno", 8, "wide", None), ("uno", 16, "wide", None),
    ("mps2_an386", 8, "lr", None), ("mps2_an386", 16, "full", None), ("mps2_an500", 8, "full", None),
    ("uno", 8, "usps", None), ("uno", 8, "qnl", None), ("uno", 16, "rnn", None),
    ("mps2_an386", 8, "relu", None), ("mps2_an385", 16, "q4", None),
]
SHAPES = {"lr": dict(D=9, H=20, C=4, wrank=4, urank=5), "full": dict(D=9, H=20, C=4),
          # rows of 260 inputs: the AVR row blocks of 32 end in a partial block
          "wide": dict(D=5, H=260, C=3, wrank=3, urank=2),
          # the AVR per-unit asm serves FastGRNN with sigmoid / tanh only: these keep the C update
          "qnl": dict(D=9, H=20, C=4, wrank=4, urank=5, gate_nl="quantSigm", update_nl="quantTanh"),
          "rnn": dict(D=9, H=20, C=4, cell="FastRNN"),
          # relu (Q12 out, coef saturated) and quantSigm4 on the Cortex-M kernels (armv7em, portable)
          "relu": dict(D=9, H=20, C=4, gate_nl="relu", update_nl="quantSigm4"),
          "q4": dict(D=9, H=20, C=4, wrank=4, urank=5, gate_nl="quantSigm4", update_nl="relu")}


def _usps_cell():
    """Benchmark cell (a) (benchmarks/bench_kernels.py) and its calibration data: W2 and U2 share
    rank 5 and the rescaling shift 7, so the AVR row routine applies the shift itself."""
    from edgecompile.frontend.checkpoint import model_from_arrays

    rng = np.random.default_rng(0)

    def mat(rows, cols):
        return rng.normal(0.0, 1.0 / np.sqrt(rows), (rows, cols)).astype(np.float32)

    a = {"W1": mat(16, 5), "W2": mat(5, 32), "U1": mat(32, 5), "U2": mat(5, 32),
         "Bg": rng.normal(1.0, 0.3, (1, 32)).astype(np.float32), "Bh": rng.normal(0.0, 0.3, (1, 32)).astype(np.float32),
         "zeta": np.array([[1.0]], np.float32), "nu": np.array([[-4.0]], np.float32),
         "FC": (2.0 * mat(32, 10)).astype(np.float32), "FCbias": rng.normal(0.0, 0.1, 10).astype(np.float32),
         "mean": np.zeros(16, np.float32), "std": np.ones(16, np.float32)}
    fm = model_from_arrays(a)
    fm = dataclasses.replace(fm, sha256=fm.content_hash())
    return fm, np.random.default_rng(2).normal(0.0, 1.0, (64, 16, 16)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("board,bits,shape,define",
                         [pytest.param(*e, marks=pytest.mark.slowest) if e == ("uno", 16, "wide", None) else e
                          for e in EMULATED],
                         ids=[f"{b}-int{n}-{sh}-{d or 'default'}" for b, n, sh, d in EMULATED])
def test_kernels_on_emulators(tmp_path, monkeypatch, board, bits, shape, define):
    from edgecompile.pipeline.export import export_project
    from edgecompile.pipeline.verify import verify_project
    from edgecompile.quant.quantizer import quantize

    tool = "simavr" if board == "uno" else "qemu-system-arm"
    if shutil.which(tool) is None and tool != "simavr":
        pytest.skip(f"{tool} not installed")
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")
    fm, calib = _usps_cell() if shape == "usps" else (make_model(**SHAPES[shape], seed=bits), None)
    X = make_inputs(fm, n=6, T=7)
    # saturated inputs (a relu gate is unbounded in float: 1e6 would overflow the float reference)
    big = 20.0 if SHAPES.get(shape, {}).get("gate_nl") == "relu" else 1e6
    X[0, 0, :] = big
    X[1, 1, :] = -big
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # usps: round to nearest, as the formats the asm paths under test are written for
        qm = (quantize(fm, bits, X) if calib is None
              else quantize(fm, bits, calib, rounding="nearest", bias_correction=False))
    proj = tmp_path / "proj"
    export_project(qm, board, out_dir=proj, name="kern")
    if shape == "usps":  # the paths under test: rank-5 rows in registers, the shift and the unit update in asm
        source = (proj / "lib" / "kern" / "src" / "kern.c").read_text()
        assert "then >> 7" in source and "_unit_avr(pre" in source
    if define:
        ini = proj / "platformio.ini"
        ini.write_text(ini.read_text().replace("build_flags =\n", f"build_flags =\n    -D{define}\n", 1))
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    rep = verify_project(proj, data=tmp_path / "X.npy", emulate=True, trace=True)
    assert rep.ok, rep.render()
    assert rep.n == 6 and rep.exact_match == 1.0 and rep.first_divergence is None
