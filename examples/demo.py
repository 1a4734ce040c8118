"""`make demo`: the whole edgecompile chain on the shipped example, with no hardware.

inspect -> evaluate (float vs int8) -> export for the Uno -> offline build -> verify on the
simulated Uno (simavr), with its HTML report -> the same for a simulated Cortex-M3 (QEMU mps2-an385) -> one summary.
Every step runs the installed `edgecompile` console script, exactly as a user would type it;
the summary is read back from the JSON reports the commands write.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = Path("examples/japanese_vowels")  # paths relative to REPO, where every step runs
OUT = Path("out/demo")  # default; `--out DIR` writes elsewhere
BOARDS = ("uno", "mps2_an385")
NAME = "jvowels"
REPORT_BOARD = "uno"  # verify --report DIR for this board: out/demo/report-uno/index.html


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


def report(out: Path, name: str) -> dict:
    return json.loads((REPO / out / name).read_text())


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where reports and projects go [{OUT}]")
    out = parser.parse_args().out
    start = time.monotonic()
    model, calib = EXAMPLE / "model.npz", EXAMPLE / "X_calib.npy"
    X, y = EXAMPLE / "X_test.npy", EXAMPLE / "y_test.npy"
    (REPO / out).mkdir(parents=True, exist_ok=True)
    print(f"edgecompile demo: {model}, a FastGRNN (low rank + 50% sparse) trained on the "
          "Japanese Vowels speaker-recognition data set (see examples/japanese_vowels/README.md)")
    step("1. What the checkpoint holds, and what int8 quantization makes of it",
         "inspect", str(model), "--bits", "8", "--calib", str(calib), "--json", str(out / "inspect.json"))
    step("2. Accuracy of the float model vs the bit-exact int8 simulator on the 370 test sequences",
         "evaluate", str(model), "--data", str(X), "--labels", str(y), "--bits", "8",
         "--calib", str(calib), "--json", str(out / "evaluate.json"))
    for board in BOARDS:
        project = out / board
        step(f"3. Export a PlatformIO project for {board}: model library + parity firmware",
             "export", str(model), "--board", board, "--bits", "8", "--calib", str(calib),
             "--name", NAME, "-o", str(project), "--force")
        step(f"4. Build it offline with PlatformIO, checking the {board}'s memory budget",
             "build", str(project), "--offline", "--json", str(out / f"build-{board}.json"))
        page = ["--report", str(out / f"report-{board}")] if board == REPORT_BOARD else []
        step(f"5. Run it on the emulated {board} and compare every logit with the host simulator",
             "verify", str(project), "--emulate", "--data", str(X), "--labels", str(y),
             "--json", str(out / f"verify-{board}.json"), *page)
    print_summary(out)
    print(f"\nthe verify report of the {REPORT_BOARD} (parity, accuracy, memory, cycles), to open in "
          f"a browser: {out / f'report-{REPORT_BOARD}' / 'index.html'}")
    print(f"demo done in {time.monotonic() - start:.0f} s; reports and projects are in {out}/")


def print_summary(out: Path) -> None:
    sys.path.insert(0, str(REPO))
    from edgecompile.targets.boards import get_board

    ev = report(out, "evaluate.json")
    print("\n## Summary\n")
    print(f"float accuracy {pct(ev['accuracy_float'])}, int8 simulator accuracy "
          f"{pct(ev['accuracy_quantized'])}, argmax agreement {pct(ev['argmax_agreement'])} "
          f"({ev['n']} test sequences)\n")
    print("| board | device accuracy | parity (bit-exact) | cycles/step | ms/step at clock | "
          "flash used / budget | RAM used / budget |")
    print("|---|---|---|---|---|---|---|")
    for board_id in BOARDS:
        board = get_board(board_id)
        v = report(out, f"verify-{board_id}.json")
        cycles = v.get("cycles_per_step")
        ms = "-" if v.get("ms_per_step") is None else f"{v['ms_per_step']:.2f}"
        source = v.get("cycle_source") or "?"
        print(f"| {board.name} ({board_id}) | {pct(v['accuracy_device'])} | {pct(v['exact_match'])} | "
              f"{cycles:,.0f} ({source}) | {ms} | {v['flash_bytes']:,} / {board.flash_bytes:,} B | "
              f"{v['ram_bytes']:,} / {board.ram_bytes:,} B |")


if __name__ == "__main__":
    main()
