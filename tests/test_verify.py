"""``edgecompile verify`` end to end: a project laid out as ``export`` writes it (model library,
harness, QuantizedModel, manifest), built by PlatformIO offline, run on the board's emulator.

"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from edgecompile.cli.main import main
from edgecompile.pipeline.verify import JSON_KEYS

from .models import make_inputs, make_model

pytestmark = pytest.mark.slow


def make_project(root, board: str, bits: int = 8):
    """``edgecompile export`` of a small model, plus a copy of the float checkpoint (export does
    not keep it; verify uses it for accuracy_float when the manifest names it or it lies in DIR)."""
    from edgecompile.frontend.checkpoint import save_checkpoint
    from edgecompile.pipeline.export import export_project
    from edgecompile.reference import forward

    fm = make_model(D=6, H=8, C=4)
    X = make_inputs(fm, n=24, T=9)
    save_checkpoint(fm, root / "mdl.npz")
    np.save(root / "X.npy", X.astype(np.float32))
    np.save(root / "y.npy", forward(fm, X).argmax(1))
    proj = root / board
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_project(str(root / "mdl.npz"), board, bits=bits, calib=str(root / "X.npy"),
                                out_dir=str(proj), force=False, name="mdl", warn=lambda _m: None)
    save_checkpoint(fm, proj / "model.npz")
    assert result.manifest["model_sha256"] == fm.sha256
    return proj, fm, result.qmodel


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")


EMULATED = ["native", "uno", "nano", "megaatmega2560", "lm3s6965evb", "mps2-an385", "mps2-an386",
            "mps2-an500"]


@pytest.mark.parametrize("board", EMULATED)
def test_verify_emulate_bit_exact(tmp_path, board):
    proj, fm, _ = make_project(tmp_path, board)
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy", "--labels",
              tmp_path / "y.npy", "--json", tmp_path / "r.json", "--trace")
    assert res.exit_code == 0, res.output
    assert "PARITY OK" in res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert tuple(sorted(report)) == tuple(sorted(JSON_KEYS))
    assert report["n"] == 24 and report["exact_match"] == 1.0
    assert report["max_abs_diff_lsb"] == 0 and report["argmax_agreement"] == 1.0
    assert report["accuracy_float"] == 1.0 and report["accuracy_device"] is not None
    assert report["model_sha256"] == fm.sha256
    assert report["cycles_per_inference"] > 0
    if board == "native":
        assert report["flash_bytes"] is None
    else:
        assert report["flash_bytes"] > 1000 and report["ram_bytes"] > 0
    expected_source = "nanoseconds" if board == "native" else (
        "AVR Timer1" if board in ("uno", "nano", "megaatmega2560") else "qemu-icount")
    assert expected_source in report["cycle_source"]


def test_verify_mismatch_names_first_divergence(tmp_path):
    import re

    proj, _, qm = make_project(tmp_path, "native")
    # The device's library now deviates from the quantized model it was generated from (a kernel
    # bug, not another build: the firmware still reports this project's quantized model): one
    # recurrent weight, U[in 0, out 3], stored per output row, is off by one LSB.
    data_h = proj / "lib" / "mdl" / "src" / "mdl_data.h"
    text = data_h.read_text()
    start = text.index("static const int8_t mdl_U[")
    row = re.compile(r"/\* 3 \*/\n(\s*)(-?\d+),")
    m = row.search(text, start)
    assert m and int(m[2]) == qm.U.factors[0].values[0, 3] and int(m[2]) < 127
    data_h.write_text(text[:m.start(2)] + str(int(m[2]) + 1) + text[m.end(2):])
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy", "--json",
              tmp_path / "r.json", "--trace")
    assert res.exit_code == 1, res.output
    assert "PARITY FAILED" in res.output and "first divergence: sequence 0, step 1, unit 3" in res.output
    assert "another build" not in res.output
    assert json.loads((tmp_path / "r.json").read_text())["exact_match"] < 1.0


def test_verify_wrong_model_exits_1(tmp_path):
    proj, _, _ = make_project(tmp_path, "native")
    manifest = json.loads((proj / "edgecompile-manifest.json").read_text())
    manifest["model_sha256"] = "ab" * 32
    (proj / "edgecompile-manifest.json").write_text(json.dumps(manifest))
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy")
    assert res.exit_code == 1
    assert "another model" in res.output


def test_verify_bad_input_exits_2(tmp_path):
    proj, _, _ = make_project(tmp_path, "native")
    res = run("verify", proj, "--port", "/dev/does-not-exist", "--data", tmp_path / "X.npy")
    assert res.exit_code == 2 and "cannot open port" in res.output
    res = run("verify", proj, "--emulate", "--data", tmp_path / "missing.npy")
    assert res.exit_code == 2
    res = run("verify", proj, "--data", tmp_path / "X.npy")
    assert res.exit_code == 2 and "exactly one of" in res.output
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 3), np.float32))
    res = run("verify", proj, "--emulate", "--data", tmp_path / "bad.npy")
    assert res.exit_code == 2 and "D=3" in res.output


def test_verify_silent_port_exits_2_within_seconds(tmp_path):
    import os
    import time

    proj, _, _ = make_project(tmp_path, "native")
    master, slave = os.openpty()
    try:
        t0 = time.monotonic()
        res = run("verify", proj, "--port", os.ttyname(slave), "--data", tmp_path / "X.npy")
        assert res.exit_code == 2 and "no bytes from" in res.output
        assert time.monotonic() - t0 < 8
    finally:
        os.close(master)
        os.close(slave)
