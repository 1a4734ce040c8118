"""One command-line grammar, through the INSTALLED console script.

``-o/--out`` for the main output, ``--bits`` 8 by default everywhere, typed JSON values, ``--json -``
on standard output; and the host path to the flashed numbers: ``predict``, ``evaluate`` and
``inspect`` take a quantized-model JSON or an exported project and use its own bit width.
Expected numbers come from the Python API on the raw arrays, not from the command under test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.quant.quantizer import quantize
from edgecompile.reference import forward
from edgecompile.sim.simulator import predict_quantized
from tests.helpers.models import make_arrays

EXE = Path(sys.executable).parent / "edgecompile"
D, H, C, T, N = 4, 6, 3, 5, 40


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def refused(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint, data, labels, calibration; its quantized model (int8 and int16) and an
    exported project (int8), all made with the same --calib."""
    d = tmp_path_factory.mktemp("grammar")
    arrays = make_arrays("FastGRNN", D=D, H=H, C=C, wrank=2, seed=3)
    with open(d / "m.npz", "wb") as fh:
        np.savez(fh, **arrays)
    rng = np.random.default_rng(7)
    X = rng.normal(0.0, 1.5, (N, T, D)).astype(np.float32)
    np.save(d / "X.npy", X)
    np.save(d / "calib.npy", rng.normal(0.0, 1.5, (16, T, D)).astype(np.float32))
    y = forward(model_from_arrays(arrays), X.astype(np.float64)).argmax(1)
    y[:9] = (y[:9] + 1) % C  # the float model is wrong on these
    np.save(d / "y.npy", y)
    for bits in ("8", "16"):
        ok(run("quantize", "m.npz", "--bits", bits, "--calib", "calib.npy", "-o", f"q{bits}.json", cwd=d))
    ok(run("export", "m.npz", "--board", "native", "--calib", "calib.npy", "-o", "fw", cwd=d))
    ok(run("export", "q16.json", "--board", "native", "-o", "fw16", cwd=d))
    return d


def expected_logits(d: Path, bits: int) -> np.ndarray:
    fm = model_from_arrays(dict(np.load(d / "m.npz")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = quantize(fm, bits, np.load(d / "calib.npy").astype(np.float64), profile="auto")  # the CLI default
    return predict_quantized(qm, np.load(d / "X.npy").astype(np.float64))


@pytest.mark.parametrize("command", ["inspect", "predict", "evaluate", "quantize", "export", "robustness"])
def test_every_bits_option_says_its_default_8(command: str, tmp_path: Path) -> None:
    text = " ".join(ok(run(command, "--help", cwd=tmp_path)).stdout.split())
    assert re.search(r"--bits \[[^\]]*8\|16\]", text), text
    assert re.search(r"\[default: 8[;\]]", text), text


def test_predict_takes_short_o_defaults_to_int8_and_reports_json(work: Path) -> None:
    result = ok(run("predict", "m.npz", "--data", "X.npy", "--calib", "calib.npy", "-o", "short.npy",
                    "--json", "-", cwd=work))
    report = json.loads(result.stdout)  # stdout carries only the JSON
    logits = np.load(work / "short.npy")
    assert logits.dtype == np.float64 and logits.shape == (N, C)
    assert np.array_equal(logits, expected_logits(work, 8))
    counts = np.bincount(logits.argmax(1), minlength=C).tolist()
    assert report == {"n": N, "num_classes": C, "bits": 8, "reference": "integer",
                      "source": "checkpoint", "predictions_per_class": counts, "output": "short.npy"}
    assert f"wrote short.npy: logits [{N}, {C}] (int8)" in result.stderr
    ok(run("predict", "m.npz", "--data", "X.npy", "--bits", "8", "--calib", "calib.npy", "--out", "long.npy",
           cwd=work))
    assert np.array_equal(np.load(work / "long.npy"), logits)
    ok(run("predict", "m.npz", "--data", "X.npy", "--bits", "float", "-o", "f.npy", "--json", "f.json", cwd=work))
    f = json.loads((work / "f.json").read_text())
    assert f["bits"] is None and f["reference"] == "float"
    fm = model_from_arrays(dict(np.load(work / "m.npz")))
    np.testing.assert_array_equal(np.load(work / "f.npy"), forward(fm, np.load(work / "X.npy").astype(np.float64)))


def test_evaluate_json_values_are_typed(work: Path) -> None:
    keys = {"n", "bits", "source", "accuracy_float", "accuracy_quantized", "argmax_agreement",
            "max_abs_logit_error", "quantization", "calibration", "note", "profile"}
    r16 = json.loads(ok(run("evaluate", "m.npz", "--data", "X.npy", "--labels", "y.npy", "--bits", "16",
                            "--calib", "calib.npy", "--json", "-", cwd=work)).stdout)
    assert set(r16) == keys and r16["bits"] == 16 and type(r16["bits"]) is int and type(r16["n"]) is int
    y = np.load(work / "y.npy")
    assert r16["accuracy_quantized"] == float(np.mean(expected_logits(work, 16).argmax(1) == y))
    assert r16["accuracy_float"] == (N - 9) / N
    rf = json.loads(ok(run("evaluate", "m.npz", "--data", "X.npy", "--labels", "y.npy", "--bits", "float",
                           "--json", "-", cwd=work)).stdout)
    assert set(rf) == keys and rf["bits"] is None and rf["accuracy_quantized"] is None
    assert rf["accuracy_float"] == (N - 9) / N


def test_inspect_shows_the_int8_view_by_default(work: Path) -> None:
    default = json.loads(ok(run("inspect", "m.npz", "--calib", "calib.npy", "--json", "-", cwd=work)).stdout)
    assert default["quantized"]["bits"] == 8
    text = ok(run("inspect", "m.npz", "--calib", "calib.npy", cwd=work)).stdout
    assert "quantized (int8)" in text and "int32 bounds" in text
    only = ok(run("inspect", "m.npz", "--bits", "float", "--json", "r.json", cwd=work))
    assert "quantized (" not in only.stdout and only.stderr == ""  # no quantization, no warning
    assert json.loads((work / "r.json").read_text())["quantized"] is None


def test_quantized_json_and_project_give_the_flashed_numbers(work: Path) -> None:
    want8, want16 = expected_logits(work, 8), expected_logits(work, 16)
    for model, want in (("q8.json", want8), ("fw", want8), ("q16.json", want16), ("fw16", want16)):
        result = ok(run("predict", model, "--data", "X.npy", "-o", "p.npy", "--json", "p.json", cwd=work))
        assert np.array_equal(np.load(work / "p.npy"), want), model
        bits = 16 if want is want16 else 8
        assert json.loads((work / "p.json").read_text())["bits"] == bits
        assert "warning" not in result.stderr  # the formats are fixed: no calibration warning
        inspected = json.loads(ok(run("inspect", model, "--json", "-", cwd=work)).stdout)
        assert inspected["quantized"]["bits"] == bits, model
        assert inspected["input_dim"] == D and inspected["hidden_dim"] == H and inspected["num_classes"] == C
    common = ["--data", "X.npy", "--labels", "y.npy", "--json", "-"]
    from_ckpt = json.loads(ok(run("evaluate", "m.npz", *common, "--calib", "calib.npy", cwd=work)).stdout)
    from_proj = json.loads(ok(run("evaluate", "fw", *common, cwd=work)).stdout)
    assert from_ckpt.pop("source") == "checkpoint" and from_proj.pop("source") == "project"
    assert from_proj == from_ckpt  # the project (with its float model) gives every number
    from_q = json.loads(ok(run("evaluate", "q8.json", *common, cwd=work)).stdout)
    assert from_q["accuracy_float"] is None and from_q["argmax_agreement"] is None
    assert "no float model" in from_q["note"]
    assert from_q["accuracy_quantized"] == from_ckpt["accuracy_quantized"] and from_q["bits"] == 8
    text = ok(run("evaluate", "q8.json", "--data", "X.npy", "--labels", "y.npy", cwd=work)).stdout
    assert "note: the quantized model q8.json carries no float model" in text


@pytest.mark.parametrize("model", ["q8.json", "fw"])
def test_fixed_quantization_refuses_calib_and_other_bits(work: Path, model: str) -> None:
    before = sorted(p.name for p in work.iterdir())
    for command in (["predict", model, "--data", "X.npy", "-o", "never.npy"],
                    ["evaluate", model, "--data", "X.npy", "--labels", "y.npy", "--json", "never.json"],
                    ["inspect", model, "--json", "never.json"]):
        refused(run(*command, "--bits", "16", cwd=work),
                rf"--bits 16 conflicts with the (quantized model|project) {model}: it is quantized at "
                r"int8 \(give --bits 8 or leave --bits out\)")
        refused(run(*command, "--calib", "calib.npy", cwd=work),
                rf"--calib does not apply: the (quantized model|project) {model} is already quantized "
                r"\(int8, its formats are fixed\)")
        ok(run(*command, "--bits", "8", cwd=work))
        for p in ("never.npy", "never.json"):
            (work / p).unlink(missing_ok=True)
    refused(run("predict", "q8.json", "--data", "X.npy", "--bits", "float", "-o", "never.npy", cwd=work),
            r"--bits float: the quantized model q8.json carries no float model")
    assert sorted(p.name for p in work.iterdir()) == before
