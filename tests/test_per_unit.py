"""The per-unit form: one power-of-two shift per unit for the summed final products of W and U.

Simulator vs host C (every backend, fast and reference kernels) on per-unit models built on
purpose (int8 / int16, dense / low rank / sparse, shifts negative / zero / positive); the
per-unit bound against the simulator's int32 assertions with extreme inputs; the quantized-model
file and hash; the quantizer's choice; the CLI line. The emulator runs (simavr, QEMU) are in
tests/test_avr_matrix.py and test_per_unit_on_emulators below.
"""

from __future__ import annotations

import dataclasses
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import rshift
from edgecompile.ir.qmodel import QFactor, qmodel_from_json, qmodel_to_json
from edgecompile.quant.bounds import bound_report, check_bounds
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.simulator import pre_activation, simulate

from .cbuild import PLAIN
from .helpers.codegen import assert_bit_exact, int_inputs
from .helpers.models import make_inputs
from .helpers.per_unit import PER_UNIT_CASES, magnitude_arrays, magnitude_model, per_unit_qmodel

EXE = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "edgecompile")
BACKENDS = ("avr", "armv7em", "armv7m", "native")


def extreme_inputs(rng: np.random.Generator, n: int, steps: int, d: int) -> np.ndarray:
    x = int_inputs(rng, n, steps, d)
    x[0], x[1] = 32767, -32768
    if n > 2:
        x[2, :, 0::2], x[2, :, 1::2] = 32767, -32768
    return x


@pytest.mark.parametrize("case", sorted(PER_UNIT_CASES))
def test_per_unit_models_cover_the_shift_signs(case):
    qm = per_unit_qmodel(**PER_UNIT_CASES[case])
    s = qm.unit_shifts()
    assert s.min() < 0 and (s == 0).any() and s.max() > 0, s
    assert qm.W.factors[-1].col_fracs is not None and qm.U.factors[-1].col_fracs is not None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(PER_UNIT_CASES))
def test_per_unit_host_c_bit_exact(case, backend):
    qm = per_unit_qmodel(**PER_UNIT_CASES[case])
    x = extreme_inputs(np.random.default_rng(4), 5, 5, qm.input_dim)
    for flags in ([], ["-DEC_KERNEL_REFERENCE"]):
        assert_bit_exact(qm, x, PLAIN + flags, backend)


def test_per_unit_pre_activation_is_one_shift_of_the_exact_sum():
    """pre[j] = rshift(x @ W[:, j] + h @ U[:, j], s[j]), written out with Python integers."""
    qm = per_unit_qmodel(seed=11, bits=16, D=4, H=6)
    rng = np.random.default_rng(2)
    x = rng.integers(-32768, 32768, (3, 4))
    h = rng.integers(-32768, 32768, (3, 6))
    got = pre_activation(qm, h, x)
    s = qm.unit_shifts()
    for n in range(3):
        for j in range(6):
            acc = sum(int(a) * int(w) for a, w in zip(x[n], qm.W.factors[0].values[:, j], strict=True))
            acc += sum(int(a) * int(w) for a, w in zip(h[n], qm.U.factors[0].values[:, j], strict=True))
            sj = int(s[j])
            want = (acc + (1 << (sj - 1))) >> sj if sj > 0 else acc * (1 << -sj)
            assert got[n, j] == want


def test_rshift_with_an_array_of_shifts():
    v = np.array([[5, -5, 7, -7, 3, -3]], dtype=np.int64)
    s = np.array([1, 1, 0, 0, -2, -2])
    assert rshift(v, s).tolist() == [[3, -2, 7, -7, 12, -12]]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([8, 16]), lo=st.integers(-6, 0),
       hi=st.integers(0, 28), wrank=st.sampled_from([None, 2]), sparse=st.booleans())
def test_per_unit_bound_never_violated(seed, bits, lo, hi, wrank, sparse):
    """Models filled up to the per-unit bound, driven with full-scale inputs: the simulator's
    int32 assertions (summed products, rescale, pre-activation) never fire."""
    qm = per_unit_qmodel(seed=seed, bits=bits, D=4, H=6, wrank=wrank, sparse=sparse, shifts=(lo, hi))
    assert all(b.proved for b in bound_report(qm))
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-32768, 32767]), (6, 4, qm.input_dim)).astype(np.int16)
    simulate(qm, x)
    # worst case for each unit: x and h at +-32768 with the signs of the column
    for j in range(qm.hidden_dim):
        if qm.W.low_rank:
            continue
        xs = np.where(qm.W.factors[0].values[:, j] < 0, -32768, 32767)[None]
        hs = np.where(qm.U.factors[0].values[:, j] < 0, -32768, 32767)[None]
        pre_activation(qm, hs, xs)


def test_per_unit_bound_rejects_one_lsb_too_many():
    """The bound is tight: one more weight LSB in the fullest column is refused."""
    qm = per_unit_qmodel(seed=3, bits=16, D=4, H=6, shifts=(0, 0))
    wv = qm.W.factors[0].values.copy()
    sums = np.abs(wv).sum(axis=0) + np.abs(qm.U.factors[0].values).sum(axis=0)
    j = int(np.argmax(sums))
    room = ((1 << 31) - 1) // 32768 - int(sums[j])
    i = int(np.argmin(np.abs(wv[:, j])))
    wv[i, j] += (room + 1) * (1 if wv[i, j] >= 0 else -1)
    fuller = dataclasses.replace(qm.W.factors[0], values=wv)
    bad = dataclasses.replace(qm, W=dataclasses.replace(qm.W, factors=(fuller,)))
    with pytest.raises(QuantError):
        check_bounds(bad)


def test_per_unit_qmodel_round_trip_and_hash():
    qm = per_unit_qmodel(seed=1, wrank=2)
    back = qmodel_from_json(qmodel_to_json(qm))
    assert back.per_unit and back.W.factors[-1].col_fracs == qm.W.factors[-1].col_fracs
    assert back.U.factors[-1].col_fracs == qm.U.factors[-1].col_fracs
    assert back.quantized_sha256() == qm.quantized_sha256()
    # the per-unit fields are part of the identity
    last = qm.W.factors[-1]
    moved = tuple(v + (1 if j == 0 else 0) for j, v in enumerate(last.col_fracs or ()))
    other_w = dataclasses.replace(qm.W, factors=(qm.W.factors[0], QFactor(last.values, last.frac, last.sparse, moved)))
    assert dataclasses.replace(qm, W=other_w).quantized_sha256() != qm.quantized_sha256()
    assert dataclasses.replace(qm, per_unit=False).quantized_sha256() != qm.quantized_sha256()


def test_tie_is_checked():
    qm = per_unit_qmodel(seed=2)
    last = qm.U.factors[-1]
    broken = tuple(v - (1 if j == 1 else 0) for j, v in enumerate(last.col_fracs or ()))
    untied = QFactor(last.values, last.frac, last.sparse, broken)
    bad = dataclasses.replace(qm, U=dataclasses.replace(qm.U, factors=(untied,)))
    with pytest.raises(QuantError, match="tie"):
        bad.unit_shifts()


def _quantize(fm, bits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(fm, bits, make_inputs(fm, n=64, T=8))


@pytest.mark.parametrize("bits", [8, 16])
def test_quantizer_picks_per_unit_where_columns_differ(bits):
    """Columns of magnitude 0.01 and 10: per-tensor formats round the small units away."""
    qm = _quantize(magnitude_model(seed=0, D=6, H=8, C=4), bits)
    info = qm.calibration["per_unit"]
    assert qm.per_unit and info["chosen"]
    pt, pu = info["per_tensor_score"], info["per_unit_score"]
    assert (pu["disagreements"], pu["logit_mse"]) < (pt["disagreements"], pt["logit_mse"])
    assert info["unit_fracs"] == [int(v) + 12 for v in qm.unit_shifts()]
    s = qm.unit_shifts()
    assert s.max() - s.min() >= 6  # columns 1000x apart: about 10 bits between their formats
    # the tie and the column formats from each column's max |w| (lowered at most by the bound)
    w_col = qm.W.factors[-1].fracs
    assert np.array_equal(qm.in_frac + w_col, qm.hid_frac + qm.U.factors[-1].fracs)


def test_quantizer_keeps_per_tensor_where_it_does_not_pay():
    qm = _quantize(magnitude_model(seed=0, small=1.0, large=1.0, D=6, H=8, C=4), 8)
    info = qm.calibration["per_unit"]
    assert not qm.per_unit and not info["chosen"]
    pt, pu = info["per_tensor_score"], info["per_unit_score"]
    assert (pu["disagreements"], pu["logit_mse"]) >= (pt["disagreements"], pt["logit_mse"])


def test_quantized_per_unit_model_bit_exact_in_c():
    qm = _quantize(magnitude_model(seed=1, D=6, H=8, C=4, wrank=3, urank=2), 8)
    assert qm.per_unit
    x = extreme_inputs(np.random.default_rng(5), 4, 6, qm.input_dim)
    for backend in ("avr", "armv7em"):
        assert_bit_exact(qm, x, PLAIN, backend)


def test_cli_quantize_and_inspect_show_the_choice(tmp_path):
    fm = magnitude_model(seed=0, D=6, H=8, C=4)
    ckpt = tmp_path / "m.npz"
    np.savez(ckpt, **magnitude_arrays(seed=0, D=6, H=8, C=4))
    np.save(tmp_path / "calib.npy", make_inputs(fm, n=64, T=8).astype(np.float32))
    res = subprocess.run([EXE, "quantize", str(ckpt), "--calib", str(tmp_path / "calib.npy"), "-o",
                          str(tmp_path / "q.json")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "per-unit shifts: yes (W,U: 8 units, shifts " in res.stdout, res.stdout
    res = subprocess.run([EXE, "inspect", str(tmp_path / "q.json")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if "per-unit shifts" in ln]
    assert len(line) == 1 and "yes (W,U: 8 units" in line[0], res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("board", ["uno", "mps2_an385"])
def test_per_unit_on_emulators(tmp_path, monkeypatch, board):
    """A quantized per-unit model (low rank, int8) built with PlatformIO offline and checked
    with verify --emulate --trace: every hidden state equal on simavr / QEMU."""
    import shutil

    from edgecompile.pipeline.export import export_project
    from edgecompile.pipeline.verify import verify_project

    if board != "uno" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")
    fm = magnitude_model(seed=2, D=9, H=20, C=4, wrank=4, urank=5)
    qm = _quantize(fm, 8)
    assert qm.per_unit
    X = make_inputs(fm, n=6, T=7)
    X[0, 0, :] = 1e6
    X[1, 1, :] = -1e6
    proj = tmp_path / "proj"
    export_project(qm, board, out_dir=proj, name="kern")
    assert "kern_unit_shift" in (proj / "lib" / "kern" / "src" / "kern_data.h").read_text()
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    rep = verify_project(proj, data=tmp_path / "X.npy", emulate=True, trace=True)
    assert rep.ok, rep.render()
    assert rep.n == 6 and rep.exact_match == 1.0 and rep.first_divergence is None
