"""relu and quantSigm4 end to end: the fixed functions against formulas written here, their
measured errors, the generalised residual update (gate format gz, update format gc) against an
independent scalar rendering, the bound proof, every host-compiled kernel family, inspect and train.

The formulas below are docs/fixed-point.md written again with Python ints, not imports of the code
under test.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.codegen import render_library
from edgecompile.errors import QuantError
from edgecompile.quant.bounds import bound_report, check_bounds
from edgecompile.reference import NONLINEAR_FUNCTIONS
from edgecompile.sim.nonlinear import apply, measure_errors
from edgecompile.sim.simulator import simulate
from edgecompile.train.cells import nonlinearity_and_derivative

from .cbuild import PLAIN, build_driver, run_driver
from .helpers.codegen import probe_model

EDGECOMPILE = Path(sys.executable).parent / "edgecompile"
ALL_INPUTS = range(-32768, 32768)
Q14_NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4")
NLS = (*Q14_NLS, "relu")


def r_relu(u: int) -> int:
    return u if u > 0 else 0


def r_quant_sigm4(u: int) -> int:
    # clip((x + 2) / 4, 0, 1) with x = u / 4096, in Q14: (u / 4096 + 2) / 4 * 16384 = u + 8192
    return min(16384, max(0, u + 8192))


def r_shift(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) // (1 << s) if s > 0 else v * (1 << -s)


def r_sat(v: int) -> int:
    return max(-32768, min(32767, v))


def test_new_functions_exhaustively_equal_the_spec_formulas():
    u = np.arange(-32768, 32768)
    assert apply("relu", u).tolist() == [r_relu(v) for v in ALL_INPUTS]
    assert apply("quantSigm4", u).tolist() == [r_quant_sigm4(v) for v in ALL_INPUTS]
    # relu keeps Q12: the whole positive int16 range comes out, nothing above it
    assert apply("relu", u).max() == 32767 and apply("quantSigm4", u).max() == 16384


def test_measured_error_rows_are_exact_for_the_new_functions():
    errors = measure_errors()
    assert set(errors) == set(NLS)
    for name in ("relu", "quantSigm4"):
        assert errors[name]["max_lsb"] == 0 and errors[name]["mean_lsb"] == 0, name
    assert errors["relu"]["frac"] == 12
    assert all(errors[n]["frac"] == 14 for n in Q14_NLS)


def test_float_reference_of_the_new_functions():
    x = np.array([-9.0, -2.5, -2.0, -1.0, 0.0, 0.5, 2.0, 3.0, 100.0])
    assert NONLINEAR_FUNCTIONS["quantSigm4"](x).tolist() == [0, 0, 0, 0.25, 0.5, 0.625, 1, 1, 1]
    assert NONLINEAR_FUNCTIONS["relu"](x).tolist() == [0, 0, 0, 0, 0, 0.5, 2, 3, 100]  # unbounded


def r_step(qm, h: list[int], ug: list[int], uu: list[int]) -> list[int]:
    """One FastGRNN / FastRNN step of the spec from the nonlinearity inputs (pre + bias, saturated)."""
    fixed = {"relu": r_relu, "quantSigm4": r_quant_sigm4, "quantSigm": lambda v: min(16384, max(0, 2 * (v + 4096))),
             "quantTanh": lambda v: 4 * max(-4096, min(4096, v))}
    gc = 12 if qm.update_nl == "relu" else 14
    out = []
    for j, hj in enumerate(h):
        c = fixed[qm.update_nl](uu[j])
        if qm.cell == "FastGRNN":
            gz = 12 if qm.gate_nl == "relu" else 14
            z = fixed[qm.gate_nl](ug[j])
            coef = r_shift(qm.zeta * ((1 << gz) - z), gz) + qm.nu
            if qm.gate_nl == "relu":
                coef = r_sat(coef)
            total = z * hj + r_shift(coef * c, 14 + gc - gz - qm.hid_frac)
        else:
            gz = 14
            total = qm.beta * hj + r_shift(qm.alpha * c, gc - qm.hid_frac)
        assert -(2**31) <= total + (1 << (gz - 1)) < 2**31
        out.append(r_sat(r_shift(total, gz)))
    return out


PIECEWISE = ("quantSigm", "quantTanh", "quantSigm4", "relu")


@settings(max_examples=60, deadline=None)
@given(cell=st.sampled_from(["FastGRNN", "FastRNN"]), gate=st.sampled_from(PIECEWISE),
       update=st.sampled_from(PIECEWISE), hid_frac=st.integers(8, 15),
       a=st.integers(0, 16384), b=st.integers(0, 16384),
       u=st.lists(st.integers(-32768, 32767), min_size=4, max_size=12), data=st.data())
def test_residual_update_equals_scalar_spec(cell, gate, update, hid_frac, a, b, u, data):
    """The simulator's step, for every pair that has relu or quantSigm4, against r_step: all
    weights zero, so each unit's nonlinearity inputs are its biases (full int16 range)."""
    if "relu" not in (gate, update) and "quantSigm4" not in (gate, update):
        gate, update = "relu", "quantSigm4"
    uu = np.array(u)
    ug = np.array(data.draw(st.lists(st.integers(-32768, 32767), min_size=uu.size, max_size=uu.size)))
    scal = dict(zeta=a, nu=b) if cell == "FastGRNN" else dict(alpha=a, beta=b)
    qm = probe_model(update, uu, cell=cell, hid_frac=hid_frac, gate=gate, **scal)
    if cell == "FastGRNN":
        qm = dataclasses.replace(qm, bias_gate=ug)
    try:
        check_bounds(qm)
    except QuantError:
        return  # not a model the quantizer emits
    _, states = simulate(qm, np.zeros((1, 3, 1), np.int16), return_states=True)
    h = [0] * uu.size
    for t in range(3):
        h = r_step(qm, h, ug.tolist(), uu.tolist())
        assert states[0, t].tolist() == h


def _worst_constants(gate: str, update: str, cell: str = "FastGRNN"):
    """Residual constants at 1.0; update inputs +max and -max, gate inputs 0 and +max."""
    scal = dict(zeta=16384, nu=16384) if cell == "FastGRNN" else dict(alpha=16384, beta=16384)
    qm = probe_model(update, np.array([32767, -32768]), cell=cell, gate=gate, **scal)
    return dataclasses.replace(qm, bias_gate=np.array([0, 32767])) if cell == "FastGRNN" else qm


@pytest.mark.parametrize("cell,gate,update,highest", [
    # worked by hand from the ranges (docs/fixed-point.md): keep + rshift(coef * c, s) + 2^(gz-1) < 2^31
    ("FastGRNN", "sigmoid", "relu", 12),      # 2^29 + 32768 * 32767 * 2^(12-fh)
    ("FastGRNN", "tanh", "relu", 12),         # 2^29 + 49152 * 32767 * 2^(12-fh)
    ("FastGRNN", "relu", "tanh", 15),         # 32767 * 32768 + 32768 * 16384 * 2^(fh-16); coef >= -2.0
    ("FastGRNN", "relu", "relu", 14),         # 32767 * 32768 + 32768 * 32767 * 2^(14-fh)
    ("FastGRNN", "quantSigm4", "tanh", 15),   # a sigmoid-type gate
    ("FastGRNN", "relu", "quantSigm4", 15),
    ("FastRNN", "sigmoid", "relu", 13),       # 2^29 + 16384 * 32767 * 2^(12-fh)
    ("FastRNN", "sigmoid", "quantSigm4", 15),
])
def test_residual_bound_at_the_worst_constants(cell, gate, update, highest):
    """The "residual update" row is proved up to ``highest`` and not one bit above it; the
    simulator's run-time check agrees at the extreme nonlinearity inputs."""
    qm = _worst_constants(gate, update, cell)
    for fh in range(8, 16):
        m = dataclasses.replace(qm, hid_frac=fh)
        row = next(r for r in bound_report(m) if r.operation == "residual update")
        assert row.proved == (fh <= highest), (fh, row)
        assert row.formats == ("hid",)
    # at the highest proved format the extreme nonlinearity inputs run (the simulator checks int32)
    simulate(dataclasses.replace(qm, hid_frac=highest), np.zeros((1, 8, 1), np.int16))


def test_relu_gate_coef_saturates_only_past_3():
    """With a relu gate, coef = sat16(rshift(zeta * (4096 - z), 12) + nu) clips below -2.0 only for
    z > 3.0 and at z = 0 only when zeta = nu = 1.0 (2.0 is 32767)."""
    zs = np.arange(0, 32768)
    for zeta, nu in ((16384, 16384), (16384, 0), (9000, 3000)):
        raw = np.array([r_shift(zeta * (4096 - int(z)), 12) + nu for z in zs])
        clipped = zs[(raw < -32768) | (raw > 32767)]
        assert clipped.size and (clipped[clipped > 0] > 3 * 4096).all()
        assert (0 in clipped) == (zeta == nu == 16384)
        # the simulator agrees: probe with u = z (relu(u) = u), update = 1.0, h0 = 0, fh = 12
        qm = probe_model("quantSigm4", np.full(zs.size, 8192), cell="FastGRNN", hid_frac=12, gate="relu",
                         zeta=zeta, nu=nu)
        qm = dataclasses.replace(qm, bias_gate=zs)
        _, states = simulate(qm, np.zeros((1, 1, 1), np.int16), return_states=True)
        # c = quantSigm4(8192) = 16384, h0 = 0: h = sat16(rshift(rshift(coef * c, 14 + 14 - 12 - 12), 12))
        want = [r_sat(r_shift(r_shift(r_sat(int(c)) * 16384, 4), 12)) for c in raw]
        assert states[0, 0].tolist() == want


HOST_FAMILIES = ("avr", "armv7em", "armv7m", "armv6m", "native")
#: Inputs around every corner of relu and quantSigm4 (and of the coef saturation, z = 3.0), the
#: int16 ends, and random ones: 1,200 units per library.
CORNERS = np.unique(np.concatenate(
    [np.arange(c - 8, c + 9) for c in (-32760, -12288, -8192, -4096, 0, 4096, 8192, 12288, 32759)]
    + [np.random.default_rng(5).integers(-32768, 32768, 1000)]))


def _check_families(backend: str, kernel: str, inputs: list[np.ndarray]) -> None:
    flags = PLAIN + (["-DEC_KERNEL_REFERENCE"] if kernel == "reference" else [])
    for gate, update in (("relu", "quantSigm4"), ("quantSigm4", "relu")):
        for u in inputs:
            qm = probe_model(update, u, cell="FastGRNN", hid_frac=12, gate=gate, zeta=16384, nu=16384)
            qm = dataclasses.replace(qm, bias_gate=u[::-1].copy())
            check_bounds(qm)
            x = np.zeros((1, 2, 1), np.int16)
            exe = build_driver(render_library(qm, "m", backend=backend), flags)
            states, _, _, _ = run_driver(exe, x, qm.hidden_dim, 1)
            _, exp_states = simulate(qm, x, return_states=True)
            np.testing.assert_array_equal(states, exp_states, err_msg=f"{backend} {kernel} {gate}/{update}")
            h1 = r_step(qm, [0] * u.size, qm.bias_gate.tolist(), u.tolist())
            assert exp_states[0, 0].tolist() == h1
            assert exp_states[0, 1].tolist() == r_step(qm, h1, qm.bias_gate.tolist(), u.tolist())


@pytest.mark.parametrize("backend", HOST_FAMILIES)
@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_corner_inputs_on_every_kernel_family(backend, kernel):
    """relu and quantSigm4 as gate and as update (relu gate with a quantSigm4 update, and the
    reverse; zeta = nu = 1.0, so coef saturates at both ends), through the host build of each
    family's fast kernel and the reference kernel, two steps (z * h at work), against the
    simulator and r_step. The gate input of unit j is the update input of the mirrored unit."""
    _check_families(backend, kernel, [CORNERS])


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b if b == "avr" else pytest.param(b, marks=pytest.mark.slowest)
                                     for b in HOST_FAMILIES])
def test_every_input_on_every_kernel_family(backend):
    """As above over all 65,536 inputs (two libraries of 32,768 units per pairing), fast kernels."""
    u = np.arange(-32768, 32768)
    _check_families(backend, "fast", [u[:32768], u[32768:]])


# --- the trainer and the CLI ------------------------------------------------------------------

def test_trainer_derivatives_of_the_new_functions():
    x = np.array([-3.0, -2.0 + 1e-3, -0.5, 0.25, 1.9, 2.5, 7.0])
    for name in ("relu", "quantSigm4"):
        y, dy = nonlinearity_and_derivative(name, x)
        eps = 1e-7
        num = (NONLINEAR_FUNCTIONS[name](x + eps) - NONLINEAR_FUNCTIONS[name](x - eps)) / (2 * eps)
        np.testing.assert_allclose(dy, num, atol=1e-6)
        np.testing.assert_array_equal(y, NONLINEAR_FUNCTIONS[name](x))


def test_train_and_inspect_cli_with_relu_gate_and_quantsigm4_update(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6, 3)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    ckpt = tmp_path / "m.npz"
    res = subprocess.run([str(EDGECOMPILE), "train", "--data", str(tmp_path / "X.npy"), "--labels",
                          str(tmp_path / "y.npy"), "--hidden", "6", "--epochs", "3", "--gate-nl", "relu",
                          "--update-nl", "quantSigm4", "--quiet", "-o", str(ckpt)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with np.load(ckpt) as npz:
        assert str(npz["gate_nonlinearity"]) == "relu" and str(npz["update_nonlinearity"]) == "quantSigm4"
    res = subprocess.run([str(EDGECOMPILE), "inspect", str(ckpt), "--bits", "8", "--calib", str(tmp_path / "X.npy")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.startswith("    ") and " max " in ln}
    assert "Q12 max 0.00  mean 0.00  (used)" in lines["relu"], res.stdout
    assert "Q14 max 0.00  mean 0.00  (used)" in lines["quantSigm4"], res.stdout
    assert "(used)" not in lines["tanh"]
    res = subprocess.run([str(EDGECOMPILE), "inspect", str(ckpt), "--bits", "8", "--json", "-"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    quant = doc.get("quantized", doc)
    assert quant["nonlinearity_error_lsb"]["relu"] == {"max_lsb": 0.0, "mean_lsb": 0.0, "frac": 12}


def test_train_rejects_an_unknown_nonlinearity(tmp_path):
    res = subprocess.run([str(EDGECOMPILE), "train", "--data", "X.npy", "--gate-nl", "relu6", "-o", "m.npz"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 2 and "relu6" in res.stderr and "Traceback" not in res.stderr
