"""Raw int16 inputs quantized in integers (docs/fixed-point.md, "Raw int16 inputs").

The host simulator (``sim.rawinput.quantize_raw_inputs``), the generated C on the host (gcc,
exhaustive over int16 for every feature and time step), the AVR build under simavr (Uno) and a
Cortex-M3 build under QEMU agree bit for bit; the error against the float64 normalisation is at
most one input LSB; the int32 overflow proof holds and refuses what it cannot prove; and the
console script carries it (``export --raw-scale``, ``predict --raw-int16``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.codegen import render_library
from edgecompile.errors import QuantError
from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.frontend.data import load_sequences
from edgecompile.ir.qmodel import QuantizedModel, qmodel_from_json, qmodel_to_json
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.rawinput import derive_constants, quantize_raw_inputs, raw_constants, with_raw_input
from edgecompile.sim.simulator import simulate

from .cbuild import STRICT, write_tree
from .helpers.codegen import EXPLICIT, quantized
from .helpers.rawinput import RawCase, build_image, run_image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "japanese_vowels"
CLI = str(ROOT / ".venv" / "bin" / "edgecompile")
HOST_DRIVER = ROOT / "tests" / "c" / "raw_host.c"
ALL_RAW = np.arange(-32768, 32768, dtype=np.int64)


@functools.cache
def vowels() -> QuantizedModel:
    """The shipped example (per-feature mean/std [D]), int8, raw LSB = 1e-4."""
    fm = load_checkpoint(EXAMPLE / "model.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = quantize(fm, 8, load_sequences(EXAMPLE / "X_calib.npy", fm))
    return with_raw_input(qm, 1e-4)


@functools.cache
def per_step() -> QuantizedModel:
    """[T*D] statistics, int16, a raw unit per feature with offsets (one negative scale)."""
    qm = quantized(**EXPLICIT["rnn-lowrank-int16-TD"])
    return with_raw_input(qm, [0.01, -0.002, 1 / 4096, 0.05], [0.0, 1.5, -3.0, 20.0])


MODELS = {"vowels": vowels, "per-step": per_step}


def float_normalised(qm: QuantizedModel, raw: np.ndarray, t: int) -> np.ndarray:
    """The float64 normalisation the integer path stands for, written from the spec:
    sat16(floor((raw*scale + offset - mean)/std * 2^fx + 1/2)) with the statistics of step t."""
    steps = qm.seq_len or 1
    mean = np.asarray(qm.mean, np.float64).reshape(steps, -1)[min(t, steps - 1)]
    std = np.asarray(qm.std, np.float64).reshape(steps, -1)[min(t, steps - 1)]
    x = raw[:, None].astype(np.float64) * qm.raw_scale + qm.raw_offset
    return np.clip(np.floor((x - mean) / std * 2.0 ** qm.in_frac + 0.5), -32768, 32767).astype(np.int64)


def host_driver(qm: QuantizedModel, tmp: Path) -> Path:
    src = write_tree(render_library(qm, "m", backend="native"), tmp / "lib") / "src"
    exe = tmp / "raw_host"
    cmd = ["gcc", *STRICT, "-O2", f"-I{src}", str(HOST_DRIVER), *sorted(map(str, src.glob("*.c"))), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return exe


@pytest.mark.parametrize("key", sorted(MODELS))
def test_host_c_equals_simulator_on_every_int16_value(tmp_path, key):
    qm = MODELS[key]()
    steps = (qm.seq_len or 1) + 1  # one step past SEQ_LEN: the last step's constants
    exe = host_driver(qm, tmp_path)
    subprocess.run([str(exe), "q", str(steps), str(tmp_path / "q.bin")], check=True)
    got = np.fromfile(tmp_path / "q.bin", "<i2").reshape(steps, 65536, qm.input_dim)
    raw = np.broadcast_to(ALL_RAW[:, None, None], (65536, steps, qm.input_dim))
    sim = quantize_raw_inputs(qm, raw.astype(np.int16))
    assert np.array_equal(got, sim.transpose(1, 0, 2))
    bound = raw_constants(qm).error_bound(qm)  # [S, D]: the stated real error before rounding
    for t in range(steps):  # the error against float64 never exceeds floor(E) + 1 input LSBs
        diff = np.abs(sim[:, t].astype(np.int64) - float_normalised(qm, ALL_RAW, t))
        row = min(t, bound.shape[0] - 1)
        assert np.all(diff.max(axis=0) <= np.floor(bound[row]) + 1)
    if key == "vowels":  # the real model at 1e-4 per LSB: one LSB at worst, on a few % of the raws
        assert np.all(bound < 1.0) and diff.max() == 1 and (diff > 0).mean() < 0.1


@pytest.mark.parametrize("key", sorted(MODELS))
def test_step_raw_sequences_on_host_c(tmp_path, key):
    qm = MODELS[key]()
    rng = np.random.default_rng(3)
    raw = rng.integers(-32768, 32768, (8, qm.seq_len or 9, qm.input_dim)).astype(np.int16)
    raw[0], raw[1] = 32767, -32768
    exe = host_driver(qm, tmp_path)
    n, steps, _ = raw.shape
    (tmp_path / "in.bin").write_bytes(np.array([n, steps], "<i4").tobytes() + raw.astype("<i2").tobytes())
    subprocess.run([str(exe), "s", str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    got = np.fromfile(tmp_path / "out.bin", "<i4").reshape(n, qm.num_classes)
    assert np.array_equal(got, simulate(qm, quantize_raw_inputs(qm, raw)))


def device_cases() -> list[RawCase]:
    """A few hundred raws per feature: the extremes, each feature's saturation edges and
    half-way points of the rounding, and random values; times past SEQ_LEN included."""
    cases = []
    for name, key in (("jv", "vowels"), ("td", "per-step")):
        qm = MODELS[key]()
        rng = np.random.default_rng(7)
        n, d = 320, qm.input_dim
        vec = rng.integers(-32768, 32768, (n, d))
        vec[:6] = np.array([-32768, -32767, -1, 0, 1, 32767])[:, None]
        c = raw_constants(qm)
        for j in range(d):  # raws where (raw*m + b) crosses the saturation limits and a rounding edge
            m, b, k = int(c.mul[0, j]), int(c.offset[0, j]), int(c.shift[0, j])
            if m != 0:
                for i, target in enumerate((32767.5, -32768.5, 0.5, 100.5)):
                    centre = int(round((target * 2**k - b) / m))
                    vec[6 + 3 * i:9 + 3 * i, j] = np.clip(centre + np.arange(-1, 2), -32768, 32767)
        steps = qm.seq_len or 1
        times = rng.integers(0, steps + 2, n)
        seqs = rng.integers(-32768, 32768, (3, qm.seq_len or 5, d))
        seqs[0] = rng.integers(-300, 300, seqs[0].shape)
        cases.append(RawCase(name, qm, vec.astype(np.int16), times.astype(np.uint16), seqs.astype(np.int16)))
    return cases


def expected_vectors(case: RawCase) -> np.ndarray:
    out = np.zeros(case.vectors.shape, np.int64)
    for t in np.unique(case.times):
        sel = case.times == t
        x = quantize_raw_inputs(case.qm, np.repeat(case.vectors[sel][:, None, :], int(t) + 1, axis=1))
        out[sel] = x[:, int(t)]
    return out


@pytest.mark.parametrize("board", ["uno", "mps2_an385"])
def test_emulators_equal_simulator(tmp_path, board):
    tool = "simavr" if board == "uno" else "qemu-system-arm"
    if shutil.which("avr-gcc" if board == "uno" else "arm-none-eabi-gcc") is None or (
            board != "uno" and shutil.which(tool) is None):
        pytest.skip(f"{tool} toolchain not installed")
    cases = device_cases()
    res = run_image(board, build_image(tmp_path, board, cases), cases)
    for c in cases:
        assert np.array_equal(res.x_q[c.name], expected_vectors(c)), c.name
        assert np.array_equal(res.logits[c.name], simulate(c.qm, quantize_raw_inputs(c.qm, c.seqs))), c.name
        step, raw_step, _ = res.cycles[c.name]
        assert raw_step > step > 0


# --- the overflow proof --------------------------------------------------------------------

def provable(m: int, b: int, k: int) -> bool:
    """Exact: every intermediate of (int32)raw*m + (b + 2^(k-1)) inside int32 for raw in int16."""
    add = b + (1 << (k - 1) if k else 0)
    vals = [m, add] + [r * m for r in (-32768, 32767)] + [r * m + add for r in (-32768, 32767)]
    return all(-(1 << 31) <= v < (1 << 31) for v in vals)


@settings(max_examples=300, deadline=None)
@given(log_a=st.floats(-12, 16.5), sign=st.sampled_from([-1.0, 1.0]), b=st.floats(-3e9, 3e9),
       fx=st.integers(0, 15))
def test_constants_are_proved_and_maximal(log_a, sign, b, fx):
    qm = vowels()  # A = scale / std * 2^fx = sign * 2^log_a and B = -mean / std * 2^fx = b
    q = dataclasses.replace(qm, in_frac=fx, mean=np.full(qm.input_dim, -b / 2.0**fx), std=np.ones(qm.input_dim))
    scale = np.full(qm.input_dim, sign * 2.0**log_a / 2.0**fx)
    try:
        c = derive_constants(q, scale, np.zeros(qm.input_dim))
    except QuantError as exc:
        assert "\n" not in str(exc)
        assert not provable(int(np.floor(sign * 2.0**log_a + 0.5)), int(np.floor(b + 0.5)), 0), \
            "refused although k = 0 is provable"
        return
    m, k, o = int(c.mul[0, 0]), int(c.shift[0, 0]), int(c.offset[0, 0])
    assert provable(m, o, k)
    assert m == int(np.floor(sign * 2.0**log_a * 2.0**k + 0.5))
    if k < 30:  # one more bit would not be provable
        assert not provable(int(np.floor(sign * 2.0**log_a * 2.0 ** (k + 1) + 0.5)),
                            int(np.floor(b * 2.0 ** (k + 1) + 0.5)), k + 1)


@pytest.mark.parametrize("scale,offset,what", [
    (1e6, 0.0, "no int32 multiplier"),        # one raw LSB is ~4e9 input LSBs
    (1e-4, 1e12, "no int32 multiplier"),      # an offset beyond int32 at every shift
    (0.0, 0.0, "raw scale: 0"),
    (float("nan"), 0.0, "finite"),
    ([1e-4, 1e-4], 0.0, "D=12"),
])
def test_refused_in_one_line(scale, offset, what):
    with pytest.raises(QuantError) as err:
        with_raw_input(vowels(), scale, offset)
    assert what in str(err.value) and "\n" not in str(err.value)


def test_qmodel_json_keeps_the_raw_unit():
    qm = per_step()
    back = qmodel_from_json(qmodel_to_json(qm))
    assert np.array_equal(back.raw_scale, qm.raw_scale) and np.array_equal(back.raw_offset, qm.raw_offset)
    assert back.quantized_sha256() == qm.quantized_sha256()
    plain = dataclasses.replace(qm, raw_scale=None, raw_offset=None)
    assert plain.quantized_sha256() != qm.quantized_sha256()
    old = json.loads(qmodel_to_json(plain))  # a file written before the raw unit existed
    del old["raw_scale"], old["raw_offset"]
    assert qmodel_from_json(json.dumps(old)).quantized_sha256() == plain.quantized_sha256()


# --- through the console script ------------------------------------------------------------

def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_export_raw_scale_and_predict_raw_int16(tmp_path):
    X = np.load(EXAMPLE / "X_test.npy")[:40]
    raw = np.clip(np.round(X / 1e-4), -32768, 32767).astype(np.int16)
    np.save(tmp_path / "raw.npy", raw)
    model, calib = str(EXAMPLE / "model.npz"), str(EXAMPLE / "X_calib.npy")
    p = run("export", model, "--board", "uno", "--calib", calib, "--raw-scale", "1e-4", "--name", "jv",
            "-o", "fw", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    header = (tmp_path / "fw" / "lib" / "jv" / "src" / "jv.h").read_text()
    assert "#define JV_HAS_RAW_INPUT 1" in header and "void jv_step_raw(" in header
    p = run("predict", "fw", "--raw-int16", "raw.npy", "-o", "l.npy", "--json", "-", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["n"] == 40
    qm = qmodel_from_json((tmp_path / "fw" / "model.qmodel.json").read_text())  # what was exported
    assert qm.raw_scale is not None and np.all(qm.raw_scale == 1e-4)
    want = simulate(qm, quantize_raw_inputs(qm, raw)) / 2.0**qm.logit_frac
    assert np.array_equal(np.load(tmp_path / "l.npy"), want)
    # without --raw-scale: no raw helper, and predict --raw-int16 says why in one line
    p = run("export", model, "--board", "uno", "--calib", calib, "--name", "jv", "-o", "plain",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    header = (tmp_path / "plain" / "lib" / "jv" / "src" / "jv.h").read_text()
    assert "#define JV_HAS_RAW_INPUT 0" in header and "jv_step_raw(" not in header
    p = run("predict", "plain", "--raw-int16", "raw.npy", "-o", "x.npy", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--raw-scale" in p.stderr
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("args,what", [
    (["--raw-scale", "100"], "no int32 multiplier"),
    (["--raw-scale", "abc"], "--raw-scale 'abc'"),
    (["--raw-offset", "1"], "--raw-offset needs --raw-scale"),
])
def test_cli_export_refuses_in_one_line(tmp_path, args, what):
    p = run("export", str(EXAMPLE / "model.npz"), "--board", "uno", "-o", "fw", *args, cwd=tmp_path)
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecompile: error: ") and what in last and "Traceback" not in p.stderr
    assert not (tmp_path / "fw").exists()


def test_cli_predict_raw_refusals(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 5, 12), np.float32))
    p = run("predict", str(EXAMPLE / "model.npz"), "--raw-int16", "f.npy", "-o", "x.npy", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("edgecompile: error: ") and "raw unit" in p.stderr
    p = run("predict", str(EXAMPLE / "model.npz"), "-o", "x.npy", cwd=tmp_path)
    assert p.returncode == 2 and "--data" in p.stderr and p.stderr.count("\n") == 1
