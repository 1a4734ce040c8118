"""Wall time of ``edgecompile verify --emulate`` on the shipped example (370 sequences of the
Japanese Vowels test set, T=29, D=12) on the QEMU boards.

    .venv/bin/python benchmarks/bench_verify.py [--boards mps2_an385,lm3s6965evb,microbit]
        [--instances 1,0] [--repeat 3] [--baseline DIR]

For every board the project is exported and built once (offline), then ``verify`` runs as a
subprocess of the installed console script, once per ``EDGECOMPILE_EMULATOR_INSTANCES`` value
(0: the default). ``--baseline DIR`` adds rows for another source tree of edgecompile (for
example ``git archive <commit> | tar -x -C DIR``), run with ``PYTHONPATH=DIR`` and its own
firmware. The runs of all configurations are interleaved (a busy machine slows each alike);
each row is the best of ``--repeat`` runs: the whole command (start-up, simulator, emulators,
parity) and the parity part the report names (``seconds``), with the time per sequence. Every
run must be bit-exact. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "japanese_vowels"
CLI = Path(sys.executable).with_name("edgecompile")


def cli(args: list[str], *, tree: Path | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "EDGECOMPILE_OFFLINE": "1", **(env or {})}
    if tree is not None:  # another source tree: its package and its firmware
        full["PYTHONPATH"] = str(tree)
        cmd = [sys.executable, "-m", "edgecompile.cli", *args]
    else:
        cmd = [str(CLI), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def prepare(board: str, work: Path, tree: Path | None) -> Path:
    proj = work / f"{board}-{'baseline' if tree else 'current'}"
    cli(["export", str(EXAMPLE / "model.npz"), "--board", board, "--calib",
         str(EXAMPLE / "X_calib.npy"), "-o", str(proj)], tree=tree)
    cli(["build", str(proj), "--offline"], tree=tree)
    return proj


def one_run(proj: Path, instances: int | None, tree: Path | None, out: Path) -> tuple[float, float, int]:
    env = {} if instances is None else {"EDGECOMPILE_EMULATOR_INSTANCES": str(instances)}
    t0 = time.monotonic()
    cli(["verify", str(proj), "--emulate", "--data", str(EXAMPLE / "X_test.npy"), "--labels",
         str(EXAMPLE / "y_test.npy"), "--json", str(out)], tree=tree, env=env)
    wall = time.monotonic() - t0
    report = json.loads(out.read_text())
    if report["exact_match"] != 1.0:
        raise SystemExit(f"{proj.name}: parity failed")
    return wall, float(report["seconds"]), int(report["n"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", default="mps2_an385,lm3s6965evb")
    ap.add_argument("--instances", default="1,0",
                    help="EDGECOMPILE_EMULATOR_INSTANCES values to run (0: the default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another edgecompile source tree to compare")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        work = Path(tmp)
        for board in args.boards.split(","):
            configs: list[tuple[str, Path | None, int | None]] = []
            if args.baseline is not None:
                configs.append(("baseline tree", args.baseline.resolve(), None))
            for k in (int(v) for v in args.instances.split(",")):
                configs.append((f"{'default' if k == 0 else k} instance{'s' if k != 1 else ''}",
                                None, k))
            projects: dict[Path | None, Path] = {}
            for _label, tree, _k in configs:
                if tree not in projects:
                    projects[tree] = prepare(board, work, tree)
            runs: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _t, _k in configs}
            for _ in range(args.repeat):  # interleaved: a busy machine slows every config alike
                for label, tree, k in configs:
                    runs[label].append(one_run(projects[tree], k, tree, work / "r.json"))
                    print(f"{board} {label}: {runs[label][-1][0]:.2f} s", file=sys.stderr)
            for label, _tree, _k in configs:
                wall, parity, n = min(runs[label])
                rows.append((board, label, n, wall, parity))
    print(f"verify --emulate, shipped example, best of {args.repeat}, {os.cpu_count()} cores\n")
    print("| board | run | sequences | whole command s | parity s | ms per sequence (parity) |")
    print("|---|---|---|---|---|---|")
    for board, label, n, wall, parity in rows:
        print(f"| {board} | {label} | {n} | {wall:.2f} | {parity:.2f} | {1000 * parity / n:.1f} |")


if __name__ == "__main__":
    main()
