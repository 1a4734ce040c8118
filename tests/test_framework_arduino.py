"""export --framework arduino: the harness on the Arduino core's Serial (firmware/arduino/),
built offline against Debian's AVR core and verified bit-exact in simavr, through the console
script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edgecompile.targets.project import project_files

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv" / "bin" / "edgecompile")
M = ROOT / "examples" / "japanese_vowels"


def cli(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_arduino_framework_project_files():
    uno = project_files("uno", "m", framework="arduino")
    assert "src/ech_hal_arduino.cpp" in uno and "src/ech_hal_avr.c" not in uno
    assert "src/ech_main.c" in uno
    ini = uno["platformio.ini"].decode()
    assert ini.count("framework = arduino") == 2  # online and offline environments
    nucleo = project_files("nucleo_f401re", "m", framework="arduino")
    ini = nucleo["platformio.ini"].decode()
    # The Arm cores come from the registry: only the online environment builds them.
    assert "[env:nucleo_f401re]" in ini and "framework = arduino" in ini and "_offline]" not in ini
    assert "src/ech_hal_arduino.cpp" in nucleo and "src/ech_hal_stm32f4.c" not in nucleo


def test_framework_refused_where_there_is_no_arduino_core(tmp_path):
    res = cli("export", M / "model.npz", "--board", "mps2_an385", "--framework", "arduino",
              "-o", tmp_path / "p")
    assert res.returncode == 2 and "has no Arduino core" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("edgecompile: error: ")
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_uno_arduino_framework_builds_offline_and_is_bit_exact_in_simavr(tmp_path):
    import numpy as np

    X = np.load(M / "X_test.npy")[:40]
    y = np.load(M / "y_test.npy")[:40]
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    fw = tmp_path / "fw"
    res = cli("export", M / "model.npz", "--board", "uno", "--calib", M / "X_calib.npy",
              "--framework", "arduino", "-o", fw)
    assert res.returncode == 0, res.stderr
    assert (fw / "src" / "ech_hal_arduino.cpp").is_file()
    res = cli("build", fw, "--offline")
    assert res.returncode == 0, res.stderr
    report = tmp_path / "v.json"
    res = cli("verify", fw, "--emulate", "--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy",
              "--json", report)
    assert res.returncode == 0, res.stderr
    data = json.loads(report.read_text())
    assert data["n"] == 40 and data["argmax_agreement"] == 1.0
    # The Arduino HAL times steps with Timer1, cycle-exact in simavr.
    assert "AVR Timer1" in data["cycle_source"], data["cycle_source"]
    assert "PARITY OK: bit-exact" in res.stdout + res.stderr
