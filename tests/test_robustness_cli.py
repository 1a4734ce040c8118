"""`edgecompile robustness` through the installed console script, and its page in a real browser.

The numbers at eps 0 are compared with `edgecompile evaluate` (another command, same inputs);
the HTML page is opened in headless Chromium (selenium) to prove it renders with every plot.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.reference import forward

from .helpers.browser import CHROMEDRIVER, CHROMIUM, chromium

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny"
EXE = Path(sys.executable).parent / "edgecompile"
KEYS = ("spectral_radius", "spectral_norm", "henrici_departure", "eigvec_condition")
PLOTS = {"pseudospectra.png", "accuracy.png", "jacobian.png", "hidden_norm.png", "transient.png"}


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """One report on the tiny example (labels: the float predictions, a quarter of them moved)."""
    tmp = tmp_path_factory.mktemp("robustness")
    model = load_checkpoint(TINY / "model.npz")
    X = np.load(TINY / "X.npy")
    y = forward(model, X).argmax(axis=1)
    y[::4] = (y[::4] + 1) % model.num_classes
    np.save(tmp / "y.npy", y)
    common = [TINY / "model.npz", "--data", TINY / "X.npy", "--labels", tmp / "y.npy", "--calib", TINY / "X.npy"]
    res = run("robustness", *common, "--json", "report.json", "-o", "page", cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and "Henrici departure" in res.stdout
    ev = run("evaluate", *common, "--bits", "8", "--json", "eval.json", cwd=tmp)
    assert ev.returncode == 0, ev.stderr
    return tmp, json.loads((tmp / "report.json").read_text()), json.loads((tmp / "eval.json").read_text())


def test_json_keys_and_rows(tiny_run) -> None:
    _, report, _ = tiny_run
    for key in KEYS:
        assert key in report and key in report["quantized"]
        assert report[key] is None or report[key] >= 0
    assert 0 <= report["henrici_departure"] <= 1
    assert report["spectral_norm"] >= report["spectral_radius"] - 1e-12
    eps = report["eps"]
    assert eps[0] == 0.0 and len([e for e in eps if e > 0]) >= 3
    rows = report["perturbation"]
    assert len(rows) == 2 * len(eps)
    for row in rows:
        assert set(row) == {"eps", "kind", "accuracy_float", "accuracy_quantized"}
        assert row["kind"] in ("random", "worst")
    by = {(r["eps"], r["kind"]): r for r in rows}
    for e in eps:
        for acc in ("accuracy_float", "accuracy_quantized"):
            assert by[e, "worst"][acc] <= by[e, "random"][acc]
    assert report["quantized_eigenvalues_in_pseudospectrum"] is True
    assert report["quantization_error_norm"] > 0
    assert report["jacobian"]["points"] > 0
    assert report["hidden_state"]["horizon"] >= 200


def test_eps_zero_is_evaluates_clean_accuracy(tiny_run) -> None:
    _, report, ev = tiny_run
    zero = [r for r in report["perturbation"] if r["eps"] == 0.0]
    assert {r["kind"] for r in zero} == {"random", "worst"}
    for row in zero:
        assert row["accuracy_float"] == ev["accuracy_float"]
        assert row["accuracy_quantized"] == ev["accuracy_quantized"]
    assert ev["accuracy_float"] == pytest.approx(0.75)  # a quarter of the labels were moved


def test_page_files(tiny_run) -> None:
    tmp, _, _ = tiny_run
    page = tmp / "page"
    assert {p.name for p in page.iterdir()} == PLOTS | {"index.html"}
    text = (page / "index.html").read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    for name in PLOTS:
        assert f'src="{name}"' in text
    assert not [p for p in tmp.iterdir() if p.name.startswith(".page.")]  # no temporary left behind


def test_json_to_stdout_and_custom_eps(tmp_path: Path) -> None:
    model = load_checkpoint(TINY / "model.npz")
    X = np.load(TINY / "X.npy")
    np.save(tmp_path / "y.npy", forward(model, X).argmax(axis=1))
    res = run("robustness", TINY / "model.npz", "--data", TINY / "X.npy", "--labels", tmp_path / "y.npy",
              "--eps", "0.05,0.2", "--draws", "2", "--bits", "16", "--json", "-", "-o", "out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # only the JSON on stdout, the text on stderr
    assert report["eps"] == [0.0, 0.05, 0.2] and report["bits"] == 16 and report["random_draws"] == 2
    assert "Henrici departure" in res.stderr
    assert (tmp_path / "out" / "index.html").is_file()


@pytest.mark.parametrize("args, words", [
    (["--eps", "0.1,abc"], "--eps"),
    (["--eps", "-1"], "--eps"),
    (["--labels", "missing.npy"], "no such file"),
    (["-o", "y.npy"], "not a directory"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, args: list[str], words: str) -> None:
    model = load_checkpoint(TINY / "model.npz")
    X = np.load(TINY / "X.npy")
    np.save(tmp_path / "y.npy", forward(model, X).argmax(axis=1))
    base = {"--labels": str(tmp_path / "y.npy")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    base.setdefault("-o", "out")
    flat = [x for kv in base.items() for x in kv]
    res = run("robustness", TINY / "model.npz", "--data", TINY / "X.npy", *flat, "--json", "r.json", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error:") and words in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists()


# --- the page in a real browser ------------------------------------------------------------

@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_page_renders_in_headless_chromium(tiny_run) -> None:
    tmp, _, _ = tiny_run
    driver, profile = chromium()
    try:
        driver.get((tmp / "page" / "index.html").as_uri())
        assert driver.title.startswith("edgecompile robustness report")
        images = driver.find_elements("tag name", "img")
        assert len(images) == len(PLOTS)
        for img in images:
            loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", img)
            assert loaded and loaded > 0, img.get_attribute("src")
        rows = driver.find_elements("css selector", "table#summary tbody tr")
        assert len(rows) >= 5
        assert "Henrici departure" in driver.find_element("id", "summary").text
        assert len(driver.find_elements("css selector", "table#perturbation tbody tr")) >= 8
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
