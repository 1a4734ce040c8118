"""``edgecompile verify`` end to end: a project as ``export`` writes it (model library, harness,
QuantizedModel, float checkpoint, manifest), built by PlatformIO offline, run on the board's
emulator; and the report's units.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from edgecompile.cli import main
from edgecompile.link.protocol import DeviceInfo
from edgecompile.sim.simulator import quantize_inputs, simulate
from edgecompile.targets.platforms import platform_for
from edgecompile.verify.parity import cycle_unit
from edgecompile.verify.report import JSON_KEYS, ParityReport

from .helpers.models import make_inputs, make_model

#: Labels of the first sequences are moved off the float model's class: its accuracy is this.
FLIPPED = 6
N = 24


def make_project(root, board: str, bits: int = 8, seed: int = 0, name: str = "mdl"):
    """``edgecompile export`` of a small model from its checkpoint; X.npy and y.npy beside it,
    where y is the float model's class except for the first FLIPPED sequences."""
    from edgecompile.frontend.checkpoint import save_checkpoint
    from edgecompile.pipeline.export import export_project
    from edgecompile.reference import forward

    fm = make_model(D=6, H=8, C=4, seed=seed)
    X = make_inputs(fm, n=N, T=9)
    save_checkpoint(fm, root / f"{name}.npz")
    np.save(root / "X.npy", X.astype(np.float32))
    y = forward(fm, X.astype(np.float32)).argmax(1)
    y[:FLIPPED] = (y[:FLIPPED] + 1) % fm.num_classes
    np.save(root / "y.npy", y)
    proj = root / board
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_project(str(root / f"{name}.npz"), board, bits=bits, calib=str(root / "X.npy"),
                                out_dir=str(proj), force=False, name=name, warn=lambda _m: None)
    assert result.manifest.checkpoint == "model.npz" and (proj / "model.npz").is_file()
    assert result.manifest.model_sha256 == fm.sha256
    return proj, fm, result.qmodel


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("EDGECOMPILE_OFFLINE", "1")


EMULATED = ["native", "uno", "nano", "megaatmega2560", "lm3s6965evb", "mps2_an385", "mps2_an386",
            "mps2_an500"]
QEMU = ("lm3s6965evb", "mps2_an385", "mps2_an386", "mps2_an500")


@pytest.mark.slow
@pytest.mark.parametrize("board", EMULATED)
def test_verify_emulate_bit_exact(tmp_path, board):
    proj, fm, qm = make_project(tmp_path, board)
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy", "--labels",
              tmp_path / "y.npy", "--json", tmp_path / "r.json", "--trace")
    assert res.exit_code == 0, res.output
    assert "PARITY OK" in res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert tuple(sorted(report)) == tuple(sorted(JSON_KEYS))
    assert report["n"] == N and report["exact_match"] == 1.0
    assert report["bits"] == 8 and report["port"] is None and report["traced"] is True
    assert report["mismatched"] == [] and report["first_divergence"] is None
    assert report["board"] in (board, board.replace("-", "_"))
    assert report["max_abs_diff_lsb"] == 0 and report["argmax_agreement"] == 1.0
    # the float accuracy comes from the exported model.npz: the float class everywhere but FLIPPED
    assert report["accuracy_float"] == (N - FLIPPED) / N
    y = np.load(tmp_path / "y.npy")
    host = simulate(qm, quantize_inputs(qm, np.load(tmp_path / "X.npy"))).argmax(1)
    assert report["accuracy_device"] == float(np.mean(host == y))
    assert report["model_sha256"] == fm.sha256
    assert report["cycles_per_inference"] > 0
    if board == "native":
        assert report["flash_bytes"] is None
    else:
        assert report["flash_bytes"] > 1000 and report["ram_bytes"] > 0
    expected_source = "nanoseconds" if board == "native" else (
        "AVR Timer1" if board in ("uno", "nano", "megaatmega2560") else "qemu-icount")
    assert expected_source in report["cycle_source"]
    if board in QEMU:  # instruction counts are not clock time
        assert report["ms_per_step"] is None
        assert "not clock time" in res.output
    else:
        hz = 1e9 if board == "native" else 16e6
        assert report["ms_per_step"] == pytest.approx(1000 * report["cycles_per_step"] / hz)


@pytest.mark.slow
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
    # What that device computes, from the host simulator of the changed model.
    bad = copy.deepcopy(qm)
    bad.U.factors[0].values[0, 3] += 1
    x_q = quantize_inputs(qm, np.load(tmp_path / "X.npy"))
    logits, states = simulate(qm, x_q, return_states=True)
    bad_logits, bad_states = simulate(bad, x_q, return_states=True)
    differ = [i for i in range(N) if not (np.array_equal(logits[i], bad_logits[i])
                                          and np.array_equal(states[i], bad_states[i]))]
    assert differ and differ[0] == 0
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy", "--json",
              tmp_path / "r.json", "--trace")
    assert res.exit_code == 1, res.output
    assert "PARITY FAILED" in res.output
    shown = ", ".join(map(str, differ[:10])) + (" ..." if len(differ) > 10 else "")
    assert f"MISMATCH in {len(differ)} sequence(s): {shown}" in res.output
    t, u = map(int, np.argwhere(states[0] != bad_states[0])[0])
    assert (t, u) == (1, 3)
    assert (f"first divergence: sequence 0, step 1, unit 3: host {states[0][t, u]}, "
            f"device {bad_states[0][t, u]}") in res.output
    exact = np.mean([np.array_equal(logits[i], bad_logits[i]) for i in range(N)])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exact_match"] == exact
    assert report["mismatched"] == differ and report["traced"] is True
    assert report["first_divergence"] == {"sequence": 0, "step": 1, "unit": 3,
                                          "host": int(states[0][t, u]), "device": int(bad_states[0][t, u])}


@pytest.mark.slow
def test_verify_board_running_another_model_exits_1(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _, _ = make_project(tmp_path / "a", "native")
    other, _, _ = make_project(tmp_path / "b", "native", seed=5)
    assert run("verify", first, "--emulate", "--data", tmp_path / "a" / "X.npy").exit_code == 0
    # the firmware of the first project where the other's would be: a board flashed with it
    images = [p for p in (first / ".pio" / "build").glob("*/*") if p.name in ("firmware", "program")]
    assert images
    for image in images:
        dest = other / ".pio" / "build" / image.parent.name / image.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, dest)
        os.utime(dest)  # newer than the other project's sources: verify takes it as built
    res = run("verify", other, "--emulate", "--data", tmp_path / "b" / "X.npy")
    assert res.exit_code == 1, res.output
    assert "another model" in res.output


@pytest.mark.slow
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


def test_verify_refuses_models_the_manifest_does_not_name(tmp_path):
    proj, _, _ = make_project(tmp_path, "native")
    q = json.loads((proj / "model.qmodel.json").read_text())
    q["FC"]["values"][0][0] += 1  # another quantized model than the one exported
    (proj / "model.qmodel.json").write_text(json.dumps(q))
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy")
    assert res.exit_code == 2 and "is not the quantized model edgecompile-manifest.json names" in res.output
    (proj / "edgecompile-manifest.json").unlink()
    res = run("verify", proj, "--emulate", "--data", tmp_path / "X.npy")
    assert res.exit_code == 2 and "has no edgecompile-manifest.json" in res.output
    assert not (proj / ".pio").exists()  # refused before any build


@pytest.mark.slow
def test_verify_silent_port_exits_2_within_seconds(tmp_path):
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


def _info(source: str, hz: int) -> DeviceInfo:
    return DeviceInfo(proto_version=1, fw_version="1.0.0", max_payload=256, input_dim=6,
                      hidden_dim=8, num_classes=4, seq_len=9, weight_bits=8, cycle_source=source,
                      cycle_hz=hz, model_sha256="ab" * 32, max_steps_per_frame=4)


def test_qemu_instruction_counts_have_no_clock_time():
    qemu = cycle_unit(_info("systick", 25_000_000), platform_for("mps2_an385"), True)
    assert qemu.hz is None and qemu.scale == 40.0 and "instructions" in qemu.name
    avr = cycle_unit(_info("avr-timer1", 16_000_000), platform_for("uno"), True)
    assert avr.hz == 16e6 and avr.scale == 1.0 and avr.name == "cpu cycles (AVR Timer1), simavr cycle-exact"
    host = cycle_unit(_info("posix-clock-ns", 10**9), platform_for("native"), True)
    assert host.hz == 1e9 and host.scale == 1.0 and "nanoseconds" in host.name
    raw = cycle_unit(_info("systick", 48_000_000), None, False)  # no board known: not taken as time
    assert raw.hz is None and raw.name == "systick"
    report = ParityReport(n=1, exact_match=1.0, argmax_agreement=1.0, max_abs_diff_lsb=0,
                          accuracy_device=None, accuracy_float=None, cycles_per_inference=9.0,
                          cycles_per_step=1.0, ms_per_step=None, cycle_source=qemu.name,
                          flash_bytes=None, ram_bytes=None, model_sha256="ab" * 32)
    assert report.to_json()["ms_per_step"] is None
    assert f"- (the counts are {qemu.name}, not clock time)" in report.render()


def test_verify_out_is_what_predict_gives_for_the_project_on_the_emulated_uno(tmp_path):
    """``verify --out`` saves the device's logits; ``predict PROJECT`` computes the same on the
    host, bit for bit (the project's own quantized model, no --calib); ``--json -`` is stdout."""
    import subprocess
    import sys
    from pathlib import Path

    proj, _, qm = make_project(tmp_path, "uno")
    exe = Path(sys.executable).parent / "edgecompile"
    env = dict(os.environ, EDGECOMPILE_OFFLINE="1")

    def cli(*args):
        return subprocess.run([str(exe), *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env=env)

    res = cli("verify", proj, "--emulate", "--data", "X.npy", "--labels", "y.npy", "-o", "device.npy",
              "--json", "-")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # only the JSON on stdout, the table on stderr
    assert "PARITY OK" in res.stderr
    assert sorted(report) == sorted(JSON_KEYS)
    assert (report["board"], report["bits"], report["port"], report["traced"]) == ("uno", 8, None, False)
    assert report["mismatched"] == [] and report["first_divergence"] is None and report["n"] == N
    assert isinstance(report["flash_bytes"], int) and isinstance(report["max_abs_diff_lsb"], int)
    device = np.load(tmp_path / "device.npy")
    assert device.dtype == np.float64 and device.shape == (N, qm.num_classes)
    res = cli("predict", proj, "--data", "X.npy", "-o", "host.npy")
    assert res.returncode == 0, res.stderr
    host = np.load(tmp_path / "host.npy")
    assert host.tobytes() == device.tobytes()
    x_q = quantize_inputs(qm, np.load(tmp_path / "X.npy"))
    assert np.array_equal(device * 2.0**qm.logit_frac, simulate(qm, x_q))  # not all zero by chance
    assert len(set(device.argmax(1).tolist())) > 1
