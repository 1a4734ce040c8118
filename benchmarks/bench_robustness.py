"""Wall time of ``edgecompile robustness`` on the shipped example (FastGRNN, D=12, H=32, T=29,
370 test sequences, int8, calibration set): the speed target is 60 s on 2 cores.

    .venv/bin/python benchmarks/bench_robustness.py [--limit 60] [--screenshot docs/robustness-report.png]

Runs the installed console script exactly as a user would (default eps list, 5 random draws,
PGD from each), prints the wall time and the report's own per-stage timings, and exits 1 when
the wall time is above ``--limit``. With ``--screenshot`` the page is also opened in headless
Chromium and saved as one full-page PNG.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/japanese_vowels"  # relative to ROOT: the page title shows it


def screenshot(page: Path, out: Path, width: int = 1400) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.as_uri())
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=60.0, help="seconds allowed (default 60)")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the rendered page as this PNG")
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "edgecompile"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        cmd = [str(exe), "robustness", f"{EXAMPLE}/model.npz", "--data", f"{EXAMPLE}/X_test.npy",
               "--labels", f"{EXAMPLE}/y_test.npy", "--calib", f"{EXAMPLE}/X_calib.npy",
               "--json", str(Path(tmp) / "report.json"), "-o", str(out)]
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
        wall = time.perf_counter() - start
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return 1
        report = json.loads((Path(tmp) / "report.json").read_text())
        print(res.stdout)
        print(f"H={report['hidden']}, {report['n']} sequences, int{report['bits']}: "
              f"wall time {wall:.1f} s (limit {args.limit:.0f} s); stages {report['timings']}")
        if args.screenshot:
            screenshot(out / "index.html", args.screenshot.resolve())
            print(f"wrote {args.screenshot}")
    return 0 if wall <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
