"""Quantized models and a bit-exact check of the generated C against the simulator (host gcc)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, reject, settings
from hypothesis import strategies as st

from edgecompile.codegen import render_library
from edgecompile.errors import QuantError
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel
from edgecompile.quant.bounds import check_bounds
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.simulator import simulate
from tests.cbuild import build_driver, run_driver

from .models import make_inputs, make_model

NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu")
SHA = "ab" * 32
# Every example compiles C (~0.2 s): no shrinking (a failure still prints its example).
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much]
HYPO = settings(max_examples=25, deadline=None, phases=PHASES, suppress_health_check=SLOW_OK)

EXPLICIT: dict[str, dict[str, Any]] = {
    "grnn-lowrank-int8": dict(bits=8, D=12, H=32, C=9, wrank=6, urank=8, sparsity=0.5),
    "grnn-sparse-int8": dict(bits=8, D=10, H=24, C=5, sparsity=0.9),
    "grnn-sparse-int16-calib": dict(bits=16, calib=True, D=8, H=20, C=4, sparsity=0.8),
    "rnn-quantnl-int8": dict(bits=8, cell="FastRNN", D=5, H=16, C=3, update_nl="quantTanh"),
    "rnn-lowrank-int16-TD": dict(bits=16, cell="FastRNN", D=4, H=12, C=6, wrank=2, urank=3, T=7,
                                 norm="TD", calib=True),
    "grnn-quantsigm-calib": dict(bits=8, calib=True, D=6, H=10, C=2, gate_nl="quantSigm", sparsity=0.6),
}


def quantized(bits: int = 8, calib: bool = False, **kw: Any) -> QuantizedModel:
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


def assert_bit_exact(qm: QuantizedModel, x_q: np.ndarray, flags: list[str], backend: str = "native") -> None:
    exe = build_driver(render_library(qm, "m", backend=backend), flags)
    states, logits, classes, plogits = run_driver(exe, x_q, qm.hidden_dim, qm.num_classes)
    exp_logits, exp_states = simulate(qm, x_q, return_states=True)
    np.testing.assert_array_equal(states, exp_states, err_msg="hidden states differ from the simulator")
    np.testing.assert_array_equal(logits, exp_logits, err_msg="logits differ from the simulator")
    np.testing.assert_array_equal(plogits, exp_logits, err_msg="predict() logits differ")
    np.testing.assert_array_equal(classes, exp_logits.argmax(axis=1), err_msg="predict() class differs")


@st.composite
def random_qmodels(draw: st.DrawFn) -> QuantizedModel:
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
    extra = (dict(bias_gate=bias(), zeta=draw(unit), nu=draw(unit)) if cell == "FastGRNN"
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


def _zero(rows: int, cols: int, sparse: bool = True) -> QFactor:
    return QFactor(np.zeros((rows, cols), dtype=np.int64), 7, sparse)


def probe_model(nl: str, u: np.ndarray, cell: str = "FastRNN", hid_frac: int | None = None, gate: str = "sigmoid",
                **extra: Any) -> QuantizedModel:
    """All weights zero, so pre = 0 and unit j's nonlinearity input is exactly its bias u[j].

    ``hid_frac`` defaults to the output format of ``nl`` (14, relu 12): then a FastRNN's state after
    one step is exactly ``nl(u)``."""
    H = u.size
    if hid_frac is None:
        hid_frac = 12 if nl == "relu" else 14
    scalars: dict[str, Any] = (dict(alpha=16384, beta=0) if cell == "FastRNN"
                               else dict(zeta=16384, nu=16384, bias_gate=u))
    scalars.update(extra)
    return QuantizedModel(
        cell=cell, bits=8, gate_nl=gate, update_nl=nl, in_frac=10, hid_frac=hid_frac,
        W=QMatrix((_zero(1, H),)), U=QMatrix((_zero(H, 1), _zero(1, H)), 12),
        FC=_zero(H, 1, sparse=False), fc_bias=np.zeros(1, dtype=np.int64),
        bias_update=u.astype(np.int64), source_sha256=SHA, **scalars)
