"""``verify --report DIR`` and ``evaluate --report DIR`` through the installed console script,
each page opened in headless Chromium: the title, every plot loaded, the summary table holding
the numbers of ``--json``, and for a device that computes another number (one weight of the
generated C changed) the mismatched sequences and the first divergence."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers.browser import HAVE_BROWSER, broken_images, browser
from .helpers.models import make_inputs, make_model

EXE = Path(sys.executable).parent / "edgecompile"
N = 24
#: (the page's directory, the command's JSON, the finished process)
Run = tuple[Path, dict[str, Any], subprocess.CompletedProcess]
needs_browser = pytest.mark.skipif(not HAVE_BROWSER, reason="needs Debian's chromium and chromium-driver")


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    env = {**os.environ, "EDGECOMPILE_OFFLINE": "1"}
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def make_project(root: Path, board: str) -> Path:
    """A small FastGRNN exported for ``board``, with X.npy / y.npy (y: the float classes, the
    first four moved) beside it."""
    from edgecompile.frontend.checkpoint import save_checkpoint
    from edgecompile.pipeline.export import export_project
    from edgecompile.reference import forward

    fm = make_model(D=6, H=8, C=4, seed=0)
    X = make_inputs(fm, n=N, T=9).astype(np.float32)
    if not (root / "mdl.npz").exists():
        save_checkpoint(fm, root / "mdl.npz")
        np.save(root / "X.npy", X)
        y = forward(fm, X).argmax(1)
        y[:4] = (y[:4] + 1) % fm.num_classes
        np.save(root / "y.npy", y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_project(str(root / "mdl.npz"), board, bits=8, calib=str(root / "X.npy"),
                       out_dir=str(root / board), force=False, name="mdl", warn=lambda _m: None)
    return root / board


def break_one_weight(proj: Path) -> None:
    """U[in 0, out 3] of the generated library off by one LSB (the firmware still reports this
    project's quantized model: a kernel bug, not another build)."""
    data_h = proj / "lib" / "mdl" / "src" / "mdl_data.h"
    text = data_h.read_text()
    m = re.compile(r"/\* 3 \*/\n(\s*)(-?\d+),").search(text, text.index("static const int8_t mdl_U["))
    assert m and int(m[2]) < 127
    data_h.write_text(text[:m.start(2)] + str(int(m[2]) + 1) + text[m.end(2):])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """verify --report on the emulated Uno and on native, a mismatch run on native, evaluate."""
    tmp = tmp_path_factory.mktemp("reports")
    out: dict[str, Run] = {}
    for key, board in (("uno", "uno"), ("native", "native"), ("mismatch", "native")):
        root = tmp / key
        root.mkdir()
        proj = make_project(root, board)
        if key == "mismatch":
            break_one_weight(proj)
        res = run("verify", proj, "--emulate", "--data", "X.npy", "--labels", "y.npy", "--trace",
                  "--json", "r.json", "--report", "page", cwd=root)
        assert res.returncode == (1 if key == "mismatch" else 0), res.stderr
        out[key] = (root / "page", json.loads((root / "r.json").read_text()), res)
    root = tmp / "evaluate"
    root.mkdir()
    make_project(root, "native")
    res = run("evaluate", "mdl.npz", "--data", "X.npy", "--labels", "y.npy", "--calib", "X.npy",
              "--json", "-", "--report", "page", cwd=root)
    assert res.returncode == 0, res.stderr
    out["evaluate"] = (root / "page", json.loads(res.stdout), res)
    return out


def summary_values(driver: Any) -> dict[str, Any]:
    """The summary table's exact values (``data-key``, ``data-value`` as JSON)."""
    cells = driver.find_elements("css selector", "table#summary td[data-key]")
    return {c.get_attribute("data-key"): json.loads(c.get_attribute("data-value")) for c in cells}


VERIFY_KEYS = ("board", "bits", "port", "n", "exact_match", "argmax_agreement", "max_abs_diff_lsb",
               "accuracy_device", "accuracy_float", "cycles_per_step", "cycles_per_inference",
               "ms_per_step", "flash_bytes", "ram_bytes", "model_sha256")


@pytest.mark.slow
def test_page_files_are_self_contained(runs) -> None:
    for key, (page, _, res) in runs.items():
        text = (page / "index.html").read_text()
        assert "http://" not in text and "https://" not in text, key
        srcs = re.findall(r'<img src="([^"]+)"', text)
        assert srcs and all("/" not in s and (page / s).is_file() for s in srcs), key
        assert {p.name for p in page.iterdir()} == {*srcs, "index.html"}, key
        assert f"wrote {page.name}/index.html" in res.stdout + res.stderr, key
        assert not [p for p in page.parent.iterdir() if p.name.startswith(".page.")]  # no temporaries
    uno = {p.name for p in runs["uno"][0].iterdir()}
    assert {"parity.png", "trace.png", "confusion.png", "logit_error.png", "memory.png", "cycles.png"} <= uno
    assert "memory.png" not in {p.name for p in runs["native"][0].iterdir()}  # a host process
    assert {p.name for p in runs["evaluate"][0].iterdir()} == {"index.html", "confusion.png", "logit_error.png"}


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("key", ["uno", "native", "mismatch"])
def test_verify_page_renders_with_the_json_numbers(runs, key: str) -> None:
    page, report, _ = runs[key]
    with browser() as driver:
        driver.get((page / "index.html").as_uri())
        assert driver.title == f"edgecompile verify report: mdl on {report['board']}"
        assert len(driver.find_elements("tag name", "img")) >= 5
        assert broken_images(driver) == []
        shown = summary_values(driver)
        for k in VERIFY_KEYS:
            assert shown[k] == report[k], k
        assert shown["ok"] is (key != "mismatch")
        text = driver.find_element("tag name", "body").text
        if key == "uno":
            memory = driver.find_element("id", "memory").text
            assert "kernel code" in memory and "32,256 B" in memory and "2,048 B" in memory
            cycles = driver.find_element("id", "cycles").text
            assert "16 MHz" in cycles and "steps per second" in cycles
        if key == "native":
            assert "memory not measured" in text
        mismatched = driver.find_element("id", "mismatched").text
        if key != "mismatch":
            assert report["mismatched"] == [] and f"all {N} sequences bit-exact" in mismatched
            assert not driver.find_elements("id", "divergence")
            return
        assert report["mismatched"] and report["first_divergence"] is not None
        ids = ", ".join(map(str, report["mismatched"]))
        assert f"MISMATCH in {len(report['mismatched'])} of {N} sequence(s): {ids}" in mismatched
        rows = driver.find_elements("css selector", "table#divergence tbody tr")
        got = {r.find_element("tag name", "th").text: int(r.find_element("tag name", "td").text) for r in rows}
        assert got == report["first_divergence"]
        first = report["first_divergence"]
        assert (first["sequence"], first["step"], first["unit"]) == (0, 1, 3)
        alt = driver.find_element("css selector", "img[src='trace.png']").get_attribute("alt")
        assert "sequence 0" in alt


@needs_browser
@pytest.mark.slow
def test_evaluate_page_renders_with_the_json_numbers(runs) -> None:
    page, report, res = runs["evaluate"]
    assert res.stdout.lstrip().startswith("{")  # --json -: only the JSON on stdout
    with browser() as driver:
        driver.get((page / "index.html").as_uri())
        assert driver.title == "edgecompile evaluate report: mdl.npz"
        assert len(driver.find_elements("tag name", "img")) == 2 and broken_images(driver) == []
        shown = summary_values(driver)
        for k in ("n", "bits", "accuracy_float", "accuracy_quantized", "argmax_agreement", "max_abs_logit_error"):
            assert shown[k] == report[k], k
        assert report["accuracy_float"] == (N - 4) / N
        rows = driver.find_elements("css selector", "table#per_class tbody tr")
        assert len(rows) == 4


def test_report_dir_refusals_and_replacement(tmp_path: Path) -> None:
    make_project(tmp_path, "native")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    base = ["evaluate", "mdl.npz", "--data", "X.npy", "--labels", "y.npy", "--calib", "X.npy"]
    for target, words in (("notes", "not an edgecompile report"), ("afile", "not a directory")):
        res = run(*base, "--json", "e.json", "--report", target, cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgecompile: error:") and words in lines[0]
        assert not (tmp_path / "e.json").exists()
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["keep.txt"]
    # an earlier report is replaced whole (a stale file in it goes), an empty directory is taken
    (tmp_path / "empty").mkdir()
    for target in ("page", "page", "empty"):
        res = run(*base, "--report", target, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        (tmp_path / target / "stale.png").write_bytes(b"")
    res = run(*base, "--report", "page", cwd=tmp_path)
    assert res.returncode == 0 and not (tmp_path / "page" / "stale.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".page.")]
