"""The fast arithmetic profile (docs/fixed-point.md, "The fast profile"): its tables against the
exact functions (exhaustive), simulator == host C (every kernel family, fast and reference
kernels) == simavr == QEMU, the quantized model's file and hash, auto's choice, and --profile on
the four commands through the console script."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgecompile.ir.qmodel import QuantizedModel, load_qmodel, qmodel_from_json, qmodel_to_json
from edgecompile.quant.bounds import check_bounds
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.fast import coef_table, measure_fast_errors, simulate_fast
from edgecompile.sim.simulator import simulate

from .cbuild import PLAIN
from .helpers.codegen import assert_bit_exact, int_inputs
from .helpers.models import make_arrays, make_inputs, make_model
from .helpers.per_unit import first_per_unit_qmodel, per_unit_qmodel

EXE = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "edgecompile")
NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu")
BACKENDS = ("avr", "armv7em", "armv7m", "armv6m", "native")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _quantize(fm, bits, calib, profile):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(fm, bits, calib, profile=profile)


# --- the tables, exhaustively -----------------------------------------------------------------

@pytest.mark.parametrize("nl, width, bound", [("sigmoid", 8.0, 64.5), ("tanh", 4.0, 128.5)])
def test_tables_exhaustive_against_the_exact_function(nl, width, bound):
    """Every int16 Q12 input: the fast value is the exact function at the centre of the input's
    bin of 2*width/512 (clamped to [-width, width)), rounded half up; its error against the exact
    function at the input stays within half a bin times the largest slope (1/4 for sigmoid, 1 for
    tanh) plus half an LSB."""
    from edgecompile.sim.fast import apply_fast

    u = np.arange(-32768, 32768, dtype=np.int64)
    x = u / 4096.0
    f = _sigmoid if nl == "sigmoid" else np.tanh
    bin_w = 2 * width / 512
    centre = (np.floor(np.clip(x, -width, width - 1e-9) / bin_w) + 0.5) * bin_w
    want = np.floor(f(centre) * 16384 + 0.5)
    got = apply_fast(nl, u)
    np.testing.assert_array_equal(got, want)
    err = np.abs(got - f(x) * 16384)
    assert err.max() <= bound
    assert measure_fast_errors()[nl]["max_lsb"] == pytest.approx(err.max())
    # the exact nonlinearities are those of the precise profile, 0 LSB
    assert all(measure_fast_errors()[n]["max_lsb"] == 0 for n in ("quantSigm", "quantTanh", "quantSigm4", "relu"))


def test_coef_table_is_the_gate_coefficient_of_each_bin():
    qm = dataclasses.replace(per_unit_qmodel(3), profile="fast")
    _, zeta, nu = qm.grnn_terms()
    z = np.floor(_sigmoid((np.arange(512) - 255.5) / 32) * 16384 + 0.5).astype(np.int64)
    np.testing.assert_array_equal(coef_table(qm), (zeta * (16384 - z) + 8192) // 16384 + nu)


# --- fast-profile models -----------------------------------------------------------------------

def _fast_models() -> list[tuple[str, QuantizedModel]]:
    """Per-unit models drawn directly (shifts negative, zero, positive; saturating biases) in the
    fast profile, over every nonlinearity as gate and update, FastGRNN and FastRNN, int8/int16,
    dense, low rank and sparse; and two quantized from float checkpoints."""
    out = []
    k = 0
    for gate in NLS:
        for update in (NLS[k % 6], NLS[(k + 3) % 6]):
            k += 1
            kw = dict(bits=8 if k % 2 else 16, wrank=3 if k % 3 == 0 else None, urank=4 if k % 3 == 0 else None,
                      sparse=k % 4 == 1, gate_nl=gate, update_nl=update)
            qm = first_per_unit_qmodel(k, **kw)
            assert qm is not None, kw
            rng = np.random.default_rng(k)
            wide = rng.integers(-32768, 32768, qm.hidden_dim)  # biases that saturate p + B
            qm = dataclasses.replace(qm, profile="fast", bias_update=wide if k % 2 else qm.bias_update)
            out.append((f"f{k}_{gate[:4]}_{update[:4]}", qm))
    for cell, update in (("FastRNN", "tanh"), ("FastRNN", "sigmoid")):
        k += 1
        qm = per_unit_qmodel(k, cell=cell, update_nl=update, bits=16 if k % 2 else 8)
        out.append((f"f{k}_rnn_{update[:4]}", dataclasses.replace(qm, profile="fast")))
    for bits, kw in ((8, dict(D=6, H=12, C=3, wrank=2, urank=3)), (16, dict(D=5, H=9, C=4))):
        fm = make_model(**kw)
        out.append((f"q{bits}", _quantize(fm, bits, make_inputs(fm, n=16, T=6), "fast")))
    for _, qm in out:
        check_bounds(qm)
        assert qm.profile == "fast" and qm.per_unit
    return out


FAST_MODELS = _fast_models()


@pytest.mark.parametrize("kernel,backend", [(k, b) if b == "native" or (k, b) == ("fast", "avr")
                                            else pytest.param(k, b, marks=pytest.mark.slowest)
                                            for k in ("fast", "reference") for b in BACKENDS])
def test_fast_profile_host_c_bit_exact(backend, kernel):
    flags = PLAIN + (["-DEC_KERNEL_REFERENCE"] if kernel == "reference" else [])
    for i, (_, qm) in enumerate(FAST_MODELS):
        assert_bit_exact(qm, int_inputs(np.random.default_rng(i), 4, 6, qm.input_dim), flags, backend)


def test_fast_differs_from_precise_and_simulate_dispatches():
    """The two profiles are different arithmetics on the same integers (the test would pass
    vacuously if the dispatch were missing)."""
    _, qm = FAST_MODELS[0]
    x = int_inputs(np.random.default_rng(0), 8, 6, qm.input_dim)
    fast = simulate(qm, x)
    np.testing.assert_array_equal(fast, simulate_fast(qm, x.astype(np.int64)))
    assert not np.array_equal(fast, simulate(dataclasses.replace(qm, profile="precise"), x))


def test_qmodel_round_trip_and_hash():
    _, qm = FAST_MODELS[-1]
    text = qmodel_to_json(qm)
    assert json.loads(text)["profile"] == "fast"
    back = qmodel_from_json(text)
    assert back.profile == "fast" and back.quantized_sha256() == qm.quantized_sha256()
    precise = dataclasses.replace(qm, profile="precise")
    assert "profile" not in json.loads(qmodel_to_json(precise))  # precise files as before
    assert precise.quantized_sha256() != qm.quantized_sha256()
    # the coef table (zeta, nu) is part of the identity through the scalars and the tables
    other = dataclasses.replace(qm, zeta=(qm.zeta or 0) ^ 1)
    assert other.quantized_sha256() != qm.quantized_sha256()
    bad = json.loads(text)
    bad["per_unit"] = False
    from edgecompile.errors import QuantError

    with pytest.raises(QuantError, match="per-unit"):
        qmodel_from_json(json.dumps(bad))


# --- auto -------------------------------------------------------------------------------------

def _flip_model():
    """One step, h0 = coef * tanh(x) (z ~ 0, coef ~ 1.96) against a constant logit of 1.96 * 0.002:
    float and precise put x = 0.001 in class 1, while the fast tanh table's first bin above 0
    reads tanh(1/128) ~ 0.0078 and puts it in class 0. Larger x are class 0 in every profile."""
    from edgecompile.frontend.checkpoint import model_from_arrays

    a = make_arrays(D=2, H=4, C=2, seed=3)
    a["W"] = np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    a["U"] = np.zeros((4, 4), np.float32)
    a["Bg"] = np.full((1, 4), -8.0, np.float32)
    a["Bh"] = np.zeros((1, 4), np.float32)
    a["zeta"], a["nu"] = np.array([[4.0]], np.float32), np.array([[4.0]], np.float32)
    a["FC"] = np.array([[1.0, 0.0], [0, 0], [0, 0], [0, 0]], np.float32)
    margin = float(2 * _sigmoid(np.float64(4.0))) * 0.002
    a["FCbias"] = np.array([0.0, margin], np.float32)
    a["mean"], a["std"] = np.zeros(2, np.float32), np.ones(2, np.float32)
    fm = model_from_arrays(a)
    fm = dataclasses.replace(fm, sha256=fm.content_hash())
    x = np.array([0.001] * 8 + [0.01, 0.02, 0.03, 0.04])
    X = np.stack([x, np.zeros_like(x)], axis=-1)[:, None, :]
    return fm, X


def test_auto_chooses_precise_where_fast_flips_an_argmax():
    fm, X = _flip_model()
    qm = _quantize(fm, 16, X, "auto")
    entry = qm.calibration["profile"]
    assert entry["chosen"] == "precise" and qm.profile == "precise", entry
    assert entry["flips"] > 0 and "changes" in entry["why"]
    assert entry["fast"]["disagreements"] > entry["precise"]["disagreements"]


def test_auto_chooses_fast_where_it_changes_nothing():
    fm = make_model(D=4, H=8, C=3)
    qm = _quantize(fm, 8, make_inputs(fm, n=32, T=6), "auto")
    entry = qm.calibration["profile"]
    assert entry["chosen"] == "fast" and qm.profile == "fast" and entry["flips"] == 0, entry
    for p in ("precise", "fast"):
        assert set(entry[p]) >= {"argmax_agreement", "logit_mse", "nl_max_lsb"}
    assert entry["fast"]["nl_max_lsb"]["tanh"] > entry["precise"]["nl_max_lsb"]["tanh"]


# --- the command line -------------------------------------------------------------------------

def _cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)
    if ok:
        assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("prof")
    fm = make_model(D=4, H=8, C=3)
    np.savez(d / "m.npz", **make_arrays(D=4, H=8, C=3))
    X = make_inputs(fm, n=24, T=5).astype(np.float32)
    np.save(d / "X.npy", X)
    np.save(d / "y.npy", np.arange(24) % 3)
    return d


def test_cli_quantize_profiles(files):
    d = files
    res = _cli("quantize", str(d / "m.npz"), "--calib", str(d / "X.npy"), "-o", str(d / "auto.json"))
    assert "profile: fast (auto: fast changes no argmax" in res.stdout + res.stderr, res.stderr
    assert "precise:" in res.stdout + res.stderr and "fast:" in res.stdout + res.stderr and "LSB" in res.stdout
    assert load_qmodel(d / "auto.json").profile == "fast"
    res = _cli("quantize", str(d / "m.npz"), "--profile", "precise", "-o", str(d / "p.json"))
    assert "profile: precise (--profile precise)" in res.stdout + res.stderr
    assert load_qmodel(d / "p.json").profile == "precise"
    res = _cli("quantize", str(d / "m.npz"), "-o", str(d / "n.json"))
    assert "no calibration data to compare the profiles on: fast" in res.stdout + res.stderr
    res = _cli("quantize", str(d / "m.npz"), "--profile", "quick", "-o", str(d / "x.json"), ok=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr and not (d / "x.json").exists()
    assert "--profile" in _cli("quantize", "--help").stdout


def test_cli_predict_evaluate_export_profiles(files, tmp_path):
    d = files
    X = np.load(d / "X.npy")
    out = {}
    for p in ("precise", "fast"):
        _cli("predict", str(d / "m.npz"), "--data", str(d / "X.npy"), "--calib", str(d / "X.npy"),
             "--profile", p, "-o", str(tmp_path / f"{p}.npy"))
        out[p] = np.load(tmp_path / f"{p}.npy")
        qm = _quantize(make_model(D=4, H=8, C=3), 8, X.astype(np.float64), p)
        from edgecompile.sim.simulator import predict_quantized

        np.testing.assert_array_equal(out[p], predict_quantized(qm, X))
    assert not np.array_equal(out["precise"], out["fast"])
    res = _cli("evaluate", str(d / "m.npz"), "--data", str(d / "X.npy"), "--labels", str(d / "y.npy"),
               "--profile", "fast", "--json", "-")
    assert json.loads(res.stdout)["profile"] == "fast"
    # a fixed quantized model keeps its profile: another one is refused in one line
    _cli("quantize", str(d / "m.npz"), "--profile", "fast", "-o", str(tmp_path / "f.json"))
    res = _cli("predict", str(tmp_path / "f.json"), "--data", str(d / "X.npy"), "--profile", "precise",
               "-o", str(tmp_path / "z.npy"), ok=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "profile" in res.stderr
    _cli("export", str(d / "m.npz"), "--board", "native", "--profile", "fast", "--library-only",
         "-o", str(tmp_path / "lib"))
    data_h = next((tmp_path / "lib").rglob("*_data.h")).read_text()
    assert all(f"_{t}[512]" in data_h for t in ("fsig", "ftanh", "fcoef")) and "_sig_table[257]" not in data_h
    res = _cli("export", str(tmp_path / "f.json"), "--board", "native", "--profile", "precise",
               "-o", str(tmp_path / "lib2"), ok=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_cli_export_auto_follows_the_board(files, tmp_path):
    """Default auto: fast on a Cortex-M board and on AVR alike, for a dense model and a sparse one
    (the AVR kernel's fast assembly covers both), with the fast step in the AVR library."""
    d = files
    np.savez(d / "sparse.npz", **make_arrays(D=4, H=8, C=3, sparsity=0.9))
    for board, model, chosen in (("uno", "m", "fast"), ("mps2_an385", "m", "fast"),
                                 ("uno", "sparse", "fast"), ("mps2_an385", "sparse", "fast")):
        out = tmp_path / f"{board}_{model}"
        res = _cli("export", str(d / f"{model}.npz"), "--board", board, "--calib", str(d / "X.npy"),
                   "-o", str(out))
        qm = load_qmodel(next(out.glob("*.qmodel.json")))
        assert qm.profile == chosen, (board, model, res.stderr)
        assert qm.calibration["profile"]["requested"] == "auto"
        assert "auto: precise" not in res.stderr, res.stderr
        assert any(f.sparse for f in (*qm.W.factors, *qm.U.factors)) == (model == "sparse")
        if board == "uno":
            assert "_funits(" in "".join(p.read_text() for p in out.rglob("*.c")), (board, model)
    # an explicit request is kept on AVR too
    _cli("export", str(d / "m.npz"), "--board", "uno", "--profile", "fast", "--calib", str(d / "X.npy"),
         "-o", str(tmp_path / "uno_fast"))
    assert load_qmodel(next((tmp_path / "uno_fast").glob("*.qmodel.json"))).profile == "fast"


# --- emulators --------------------------------------------------------------------------------

def _avr_tools() -> None:
    for tool in ("avr-gcc", "simavr"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


@pytest.mark.slow
@pytest.mark.parametrize("mcu, count", [("atmega2560", None), ("atmega328p", 4)])
def test_fast_profile_in_simavr(tmp_path, mcu, count):
    """Every fast model in one atmega2560 image (a few in one Uno image: 32 KB of flash), the real
    16-bit-int AVR code under simavr, bit-exact in every hidden state and logit; the build is
    clean under -Wconversion -Wsign-conversion."""
    from .helpers.matrix import assert_device_matches
    from .test_avr_matrix import build_image, run_image, saturating_inputs

    _avr_tools()
    models = FAST_MODELS if count is None else FAST_MODELS[::len(FAST_MODELS) // count][:count]
    inputs = {n: saturating_inputs(qm.input_dim, seed=i) for i, (n, qm) in enumerate(models)}
    assert_device_matches(models, inputs, run_image(build_image(tmp_path, models, inputs, [], mcu=mcu), mcu=mcu))


@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2_an385", "mps2_an386", "microbit"])
def test_fast_profile_on_qemu(tmp_path, monkeypatch, board):
    """A quantized fast model (low rank, int8, saturating inputs) built with PlatformIO offline
    and checked with verify --emulate --trace on QEMU: every hidden state equal."""
    from edgecompile.pipeline.export import export_project
    from edgecompile.pipeline.verify import verify_project

    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")
    fm = make_model(D=6, H=12, C=3, wrank=2, urank=3, gate_nl="sigmoid", update_nl="tanh")
    qm = _quantize(fm, 8, make_inputs(fm, n=16, T=6), "fast")
    X = make_inputs(fm, n=6, T=6)
    X[0, 0, :], X[1, 1, :] = 1e6, -1e6
    proj = tmp_path / "proj"
    export_project(qm, board, out_dir=proj, name="kern")
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    rep = verify_project(proj, data=tmp_path / "X.npy", emulate=True, trace=True)
    assert rep.ok and rep.exact_match == 1.0, rep.render()
