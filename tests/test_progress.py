"""Progress without a terminal: a line per step with an ETA on stderr, never on stdout; `build
--online` without a network fails fast; `flash` to a silent port shows it is trying."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgecompile.cli.progress import Reporter, format_seconds
from edgecompile.targets.platformio import network_failure
from tests.helpers.netns import unshare_ok

REPO = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "edgecompile"
EXAMPLE = REPO / "examples" / "japanese_vowels"
ETA_LINE = re.compile(r"^(\w+): \d+/\d+ .*\(\d+%\), [\d.]+ (s|min).* elapsed, ETA [\d.]+ (s|min)", re.M)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The console script with stdout and stderr as pipes (not a terminal)."""
    full = {**os.environ, "EDGECOMPILE_PROGRESS_S": "0", **(env or {})}
    return subprocess.run([*prefix, str(EXE), *args], capture_output=True, text=True,
                          timeout=timeout, env=full, cwd=REPO, stdin=subprocess.DEVNULL)


def progress_lines(stderr: str, label: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"{label}: ")]


def assert_progress(res: subprocess.CompletedProcess[str], label: str, unit: str) -> None:
    """Lines with an ETA and a last line on stderr; stdout is only the JSON report."""
    assert res.returncode == 0, res.stderr
    lines = progress_lines(res.stderr, label)
    eta = [ln for ln in lines if ETA_LINE.match(ln) and unit in ln]
    assert eta, res.stderr
    assert any(re.search(rf"\d+/\d+ {re.escape(unit)}.*\(100%\), done in", ln) for ln in lines), lines
    json.loads(res.stdout)  # nothing but the report
    assert "ETA" not in res.stdout and f"{label}: " not in res.stdout


# ------------------------------------------------------------------------ the reporter


def test_lines_every_tenth_and_five_seconds_whichever_later():
    clock, out = FakeClock(), io.StringIO()
    rep = Reporter("verify", stream=out, tty=False, interval=5.0, clock=clock)
    for i in range(1, 101):  # 100 steps of 1 s: a tenth takes 10 s, later than 5 s
        clock.now = float(i)
        rep(i, 100, "sequences")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "verify: 10/100 sequences (10%), 10 s elapsed, ETA 1 min 30 s"
    assert lines[-1] == "verify: 100/100 sequences (100%), done in 1 min 40 s"

    clock, out = FakeClock(), io.StringIO()
    rep = Reporter("export", stream=out, tty=False, interval=5.0, clock=clock)
    for i in range(1, 101):  # 100 steps of 0.1 s: 5 s comes later than a tenth
        clock.now = i / 10
        rep(i, 100, "trials")
    lines = out.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["export: 50/100 trials", "export: 100/100 trials"]
    assert "ETA 5.0 s" in lines[0]


def test_last_line_after_an_interval_and_phases():
    """A phase's last line comes once the phase took an interval (or had lines before it): quick
    steps stay quiet, so that a failure right after them is still one line on stderr."""
    clock, out = FakeClock(), io.StringIO()
    with Reporter("build", stream=out, tty=False, interval=5.0, clock=clock) as rep:
        clock.now = 0.3
        rep(1, 1, "memory estimate")  # quick: no line
        clock.now = 1.0
        rep(3, 10, "build steps")
        clock.now = 2.0  # ends early (an error) and quickly: nothing either
    assert out.getvalue() == ""

    clock, out = FakeClock(), io.StringIO()
    with Reporter("build", stream=out, tty=False, interval=5.0, clock=clock) as rep:
        clock.now = 6.0
        rep(1, 1, "memory estimate")  # took an interval: its last line
        clock.now = 7.0
        rep(3, 10, "build steps")
        clock.now = 13.0  # ends early after an interval: close() says where it stopped
    lines = out.getvalue().splitlines()
    assert lines == ["build: 1/1 memory estimate (100%), done in 6.0 s",
                     "build: 3/10 build steps (30%), stopped after 7.0 s"]


def test_terminal_bar_redraws_in_place():
    clock, out = FakeClock(), io.StringIO()
    with Reporter("train", stream=out, tty=True, clock=clock) as rep:
        for i in range(1, 6):
            clock.now = float(i)
            rep(i, 5, "epochs", f"loss {1 / i:.2f}")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 5
    assert "[########################] 5/5 epochs (100%)" in text and "loss 0.20" in text
    assert "ETA 1.0 s" in text  # the redraw at 4/5


def test_format_seconds():
    assert [format_seconds(s) for s in (0.04, 9.94, 42, 65, 3725)] == \
        ["0.0 s", "9.9 s", "42 s", "1 min 05 s", "1 h 02 min"]


def test_bad_interval_is_one_line(tmp_path):
    res = run("export", str(EXAMPLE / "model.npz"), "--board", "uno", "-o", str(tmp_path / "p"),
              env={"EDGECOMPILE_PROGRESS_S": "soon"})
    assert res.returncode == 2
    assert res.stderr == ("edgecompile: error: EDGECOMPILE_PROGRESS_S='soon': expected a number "
                          "of seconds from 0 to 3600\n")
    assert not (tmp_path / "p").exists()


def test_network_errors_become_one_line():
    out = ("Processing uno (board: uno; platform: atmelavr)\n" + "-" * 20 + "\n"
           "Platform Manager: Installing atmelavr\nHTTPClientError: \n")
    msg = network_failure(out)
    assert msg is not None and "\n" not in msg
    assert msg.startswith("PlatformIO could not download atmelavr (HTTPClientError: no answer")
    assert "--offline" in msg
    assert network_failure("Compiling x.o\n*** [x.o] Error 1\n") is None


# ------------------------------------------------------------------- through the console


def test_train_prints_epochs_with_eta(tmp_path):
    res = run("train", "--data", str(EXAMPLE / "JapaneseVowels_TRAIN.ts"), "--hidden", "8",
              "--epochs", "10", "-o", str(tmp_path / "m.npz"), "--json", "-")
    assert_progress(res, "train", "epochs")
    assert "loss" in progress_lines(res.stderr, "train")[0]  # the epoch's numbers ride along
    quiet = run("train", "--data", str(EXAMPLE / "JapaneseVowels_TRAIN.ts"), "--hidden", "8",
                "--epochs", "3", "--quiet", "-o", str(tmp_path / "q.npz"))
    assert quiet.returncode == 0 and not progress_lines(quiet.stderr, "train")


@pytest.mark.slow
def test_export_build_verify_print_progress(tmp_path):
    """export (quantization search, rendering), an offline build and verify on the native
    board, each with --json - : progress with an ETA on stderr, stdout only the JSON."""
    X = np.load(EXAMPLE / "X_test.npy")[:40]
    y = np.load(EXAMPLE / "y_test.npy")[:40]
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    project = tmp_path / "p"
    res = run("export", str(EXAMPLE / "model.npz"), "--board", "native", "--calib",
              str(EXAMPLE / "X_calib.npy"), "-o", str(project), "--json", "-")
    assert_progress(res, "export", "quantization trials")
    assert re.search(r"project steps .*done in", res.stderr)

    res = run("build", str(project), "--offline", "--json", "-")
    assert_progress(res, "build", "build steps")
    assert "build: 1/1 memory estimate (100%), done in" in res.stderr

    res = run("verify", str(project), "--emulate", "--data", str(tmp_path / "X.npy"),
              "--labels", str(tmp_path / "y.npy"), "--json", "-")
    assert_progress(res, "verify", "sequences")
    assert "verify: 40/40 sequences (100%), done in" in res.stderr
    assert json.loads(res.stdout)["n"] == 40


@pytest.mark.slow
def test_robustness_prints_stages(tmp_path):
    np.save(tmp_path / "X.npy", np.load(EXAMPLE / "X_test.npy")[:24])
    np.save(tmp_path / "y.npy", np.load(EXAMPLE / "y_test.npy")[:24])
    res = run("robustness", str(EXAMPLE / "model.npz"), "--data", str(tmp_path / "X.npy"),
              "--labels", str(tmp_path / "y.npy"), "--eps", "0.01", "--draws", "1",
              "-o", str(tmp_path / "r"), "--json", "-")
    assert_progress(res, "robustness", "stages")
    assert "robustness: 1/1 report page (100%), done in" in res.stderr


@pytest.mark.skipif(not unshare_ok(), reason="unshare -n needs root or user namespaces")
def test_online_build_without_network_fails_fast(tmp_path):
    project = tmp_path / "p"
    res = run("export", str(EXAMPLE / "model.npz"), "--board", "uno", "-o", str(project))
    assert res.returncode == 0, res.stderr
    for args, env in ((["--online"], {}), ([], {"EDGECOMPILE_OFFLINE": "0"})):
        t0 = time.monotonic()
        res = run("build", str(project), *args, "--json", "-", env=env, prefix=("unshare", "-n"),
                  timeout=60)
        seconds = time.monotonic() - t0
        assert res.returncode == 2, res.stderr
        assert seconds < 15
        assert res.stdout == ""  # no half report
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("edgecompile: error:")]
        assert errors == [res.stderr.splitlines()[-1]]
        assert "PlatformIO registry" in errors[0] and "--offline" in errors[0]
        assert "HTTPClientError" not in res.stderr
        assert not (project / ".pio").exists()  # PlatformIO never started


@pytest.mark.slow
def test_flash_to_a_silent_port_shows_it_trying(tmp_path):
    """Nothing answers on the port: progress lines while avrdude tries, then one line within the
    timeout."""
    project = tmp_path / "p"
    res = run("export", str(EXAMPLE / "model.npz"), "--board", "uno", "-o", str(project))
    assert res.returncode == 0, res.stderr
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    try:
        t0 = time.monotonic()
        res = run("flash", str(project), "--port", name, "--offline", "--timeout", "9",
                  timeout=120)
        seconds = time.monotonic() - t0
    finally:
        os.close(master)
    assert res.returncode == 2
    assert res.stderr.splitlines()[-1] == (f"edgecompile: error: upload to {name} did not finish "
                                           "within 9 s (board not answering?)")
    lines = progress_lines(res.stderr, "flash")
    waiting = [ln for ln in lines if ETA_LINE.match(ln) and "s of the 9 s upload timeout" in ln]
    tries = [ln for ln in lines if "to reach the bootloader, no answer" in ln]
    assert len(waiting) >= 3 and tries, res.stderr
    assert "; attempt 1 of 10 to reach the bootloader, no answer" in tries[0]
    assert "stopped after" not in res.stderr  # the error's one line says it
    assert seconds < 9 + 15  # the build, then the upload's timeout; no hang
    assert "ETA" not in res.stdout
