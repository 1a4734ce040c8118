"""``edgecompile fit`` on the shipped Japanese Vowels data: wall time on 1 vs 2 workers, and
the cost model's predictions against real builds of the Pareto models.

    .venv/bin/python benchmarks/bench_fit.py [--trials 16] [--epochs 8] [--board uno]

Runs the console script twice into fresh fit directories (a LocalCluster of 1, then 2 worker
processes; the two must choose the same model), then exports and builds with PlatformIO each
model of the Pareto front and prints a Markdown table of predicted and measured flash and RAM
(and, with --emulate, cycles per step from ``verify --emulate``). Writes docs/fit-pareto.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EC = str(ROOT / ".venv" / "bin" / "edgecompile")
DATA = ROOT / "examples" / "japanese_vowels" / "JapaneseVowels_TRAIN.ts"


def ec(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([EC, *args], capture_output=True, text=True, timeout=7200)
    if res.returncode != 0:
        raise SystemExit(f"edgecompile {args[0]} failed: {res.stderr.strip()}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--board", default="uno")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--emulate", action="store_true", help="Also measure cycles per step.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ec-bench-fit-") as tmp:
        t = Path(tmp)
        wall, reports = {}, {}
        for n in (1, 2):
            t0 = time.monotonic()
            ec("fit", "--data", str(DATA), "--board", args.board, "--trials", str(args.trials),
               "--epochs", str(args.epochs), "--seed", str(args.seed), "--workers", str(n),
               "--quiet", "-o", str(t / f"w{n}"), "--json", str(t / f"w{n}.json"))
            wall[n] = time.monotonic() - t0
            reports[n] = json.loads((t / f"w{n}.json").read_text())
        same = reports[1]["chosen"] == reports[2]["chosen"]
        print(f"{args.trials} trials x {args.epochs} epochs on {args.board}: 1 worker {wall[1]:.1f} s, "
              f"2 workers {wall[2]:.1f} s, speed-up {wall[1] / wall[2]:.2f}x; same choice: {same}")
        rep = reports[2]
        print(f"chosen: {json.dumps(rep['chosen'], sort_keys=True)}")
        shutil.copyfile(t / "w2" / "pareto.png", ROOT / "docs" / "fit-pareto.png")
        print("\n| model | acc. val | flash pred. | flash built | err | RAM pred. | RAM built | err |"
              + (" cycles pred. | cycles sim. | err |" if args.emulate else ""))
        print("|---|---|---|---|---|---|---|---|" + ("---|---|---|" if args.emulate else ""))
        # the Pareto models' checkpoints, from the cache of the 2-worker run
        trials = {json.loads(p.read_text())["key"]: p for p in (t / "w2" / "trials").glob("*.json")}
        csv_rows = (t / "w2" / "trials.csv").read_text().splitlines()
        keys = {}
        for line in csv_rows[1:]:
            cols = line.split(",")
            keys[(cols[1], int(cols[2]), cols[3], cols[4], float(cols[5]), int(cols[6]), int(cols[7] or 0))] = cols[0]
        X = t / "X.npy"
        import numpy as np

        from edgecompile.train import load_training_data

        td = load_training_data(DATA)
        np.save(X, td.X)
        np.save(t / "x3.npy", td.X[:3])
        for i, p in enumerate(rep["pareto"]):
            key = keys[(p["cell"], p["hidden"], str(p["wrank"] or "full"), str(p["urank"] or "full"),
                        float(p["sparsity"]), p["bits"], p["inner_steps"] or 0)]
            fw = t / f"fw{i}"
            ec("export", str(trials[key].with_suffix(".npz")), "--board", args.board, "--bits",
               str(p["bits"]), "--calib", str(X), "-o", str(fw))
            build = subprocess.run([EC, "build", str(fw), "--json", str(t / f"b{i}.json")],
                                   capture_output=True, text=True, timeout=600)
            k = f" K={p['inner_steps']}" if p["inner_steps"] else ""
            name = (f"{p['cell']}{k} H={p['hidden']} "
                    f"r={p['wrank'] or 'full'}/{p['urank'] or 'full'} "
                    f"s={p['sparsity']:g} int{p['bits']}")
            if build.returncode != 0:
                print(f"| {name} | {p['accuracy_val']:.1%} | {p['flash_bytes']} | does not fit | | "
                      f"{p['ram_bytes']} | | |")
                continue
            linked = json.loads((t / f"b{i}.json").read_text())["linked"]
            f, r = linked["flash_used"], linked["ram_used"]
            row = (f"| {name} | {p['accuracy_val']:.1%} | {p['flash_bytes']} | {f} | "
                   f"{100 * (p['flash_bytes'] - f) / f:+.1f} % | {p['ram_bytes']} | {r} | "
                   f"{100 * (p['ram_bytes'] - r) / r:+.1f} % |")
            if args.emulate:
                ec("verify", str(fw), "--emulate", "--data", str(t / "x3.npy"), "--json", str(t / f"v{i}.json"))
                c = json.loads((t / f"v{i}.json").read_text())["cycles_per_step"]
                row += (f" {p['cycles_per_step']:.0f} | {c:.0f} | "
                        f"{100 * (p['cycles_per_step'] - c) / c:+.1f} % |")
            print(row)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
