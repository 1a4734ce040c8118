"""`make demo`: run edgecompile's main job on the shipped example, saying what each step does.

For now (foundation issue): `inspect` and `predict` (float reference) on examples/tiny.
Later issues extend it to quantize, export, build and verify on an emulated board.

Every step runs the installed `edgecompile` console script, exactly as a user would type it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = Path("examples/tiny")  # paths relative to REPO, where every step runs
OUT = Path("out/demo")


def edgecompile_exe() -> str:
    """The console script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "edgecompile"
    found = str(beside) if beside.exists() else shutil.which("edgecompile")
    if not found:
        sys.exit("demo: the edgecompile command is not installed (run `make demo` from the repo root)")
    return found


def step(title: str, *args: str) -> None:
    print(f"\n== {title}")
    print("$ " + shlex.join(["edgecompile", *args]), flush=True)
    result = subprocess.run([edgecompile_exe(), *args], cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"demo: step failed with exit status {result.returncode}: {title}")


def main() -> None:
    model, data = EXAMPLE / "model.npz", EXAMPLE / "X.npy"
    (REPO / OUT).mkdir(parents=True, exist_ok=True)
    logits = OUT / "tiny_logits.npy"
    print(f"edgecompile demo on {model} "
          "(a random placeholder FastGRNN, see examples/tiny/README.md)")
    step("1. What the checkpoint holds: cell, dimensions, ranks, sparsity, size, MACs per step",
         "inspect", str(model), "--json", str(OUT / "tiny_inspect.json"))
    step("2. Float reference predictions for 32 raw sequences",
         "predict", str(model), "--data", str(data), "--bits", "float", "--out", str(logits))
    print(f"\ndemo done: the inspect report and the logits are in {OUT}/")


if __name__ == "__main__":
    main()
