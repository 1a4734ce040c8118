"""`make demo`'s main job, end to end through the real chain (export, PlatformIO, simavr, QEMU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.slowest
def test_demo_runs_the_whole_chain_bit_exactly(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "examples" / "demo.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "## Summary" in result.stdout
    y = np.load(REPO / "examples" / "japanese_vowels" / "y_test.npy")
    evaluation = json.loads((tmp_path / "evaluate.json").read_text())
    for board in ("uno", "mps2_an385"):
        v = json.loads((tmp_path / f"verify-{board}.json").read_text())
        assert v["n"] == y.size
        assert v["exact_match"] == 1.0 and v["max_abs_diff_lsb"] == 0
        # the device's accuracy is the simulator's: evaluate and verify computed it independently
        assert v["accuracy_device"] == evaluation["accuracy_quantized"]
        assert v["cycles_per_step"] > 0 and v["flash_bytes"] > 0 and v["ram_bytes"] > 0
