"""export --library-only: the model library alone (lib/<name>/'s contents with its Arduino
example), for any board's core, through the console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv" / "bin" / "edgecompile")
M = ROOT / "examples" / "japanese_vowels"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Os", "-c", "-o", "/dev/null"]
COMPILERS = {"uno": ["avr-gcc", "-mmcu=atmega328p"],
             "nucleo_f401re": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                               "-mfloat-abi=hard"],
             "native": ["gcc"]}


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("board", ["uno", "nucleo_f401re", "native"])
def test_library_only_export(tmp_path, board):
    out = tmp_path / "jv"
    res = cli("export", M / "model.npz", "--board", board, "--calib", M / "X_calib.npy",
              "--name", "jv", "--library-only", "-o", out, "--json", "-")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # stdout carries only the JSON
    files = set(doc["manifest"]["files"])
    assert {"library.json", "library.properties", "src/jv.h", "src/jv.c"} <= files
    assert any(f.startswith("examples/") and f.endswith(".ino") for f in files)
    assert not any(f.startswith(("src/ech_", "lib/", ".edgecompile/")) or f == "platformio.ini"
                   for f in files)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == files | {"edgecompile-manifest.json"}
    for c in sorted((out / "src").glob("*.c")):
        build = subprocess.run([*COMPILERS[board], *STRICT, f"-I{out / 'src'}", str(c)],
                               capture_output=True, text=True, timeout=120)
        assert build.returncode == 0, build.stderr
    again = cli("export", M / "model.npz", "--board", board, "--calib", M / "X_calib.npy",
                "--name", "jv", "--library-only", "-o", out, "--force")
    assert again.returncode == 0, again.stderr


def test_library_only_refuses_a_framework(tmp_path):
    res = cli("export", M / "model.npz", "--board", "uno", "--library-only", "--framework", "arduino",
              "-o", tmp_path / "x")
    assert res.returncode == 2 and "--framework does not apply" in res.stderr
    assert not (tmp_path / "x").exists()
