"""Output paths and ``export --force`` through the installed console script.

An output path is written, never replaced by something else: a FIFO or a terminal stays what it
is, a symlink stays a link (its target gets the data), ``-`` is standard output. ``--force``
replaces only a project edgecompile made, and only its own files.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecompile.errors import CodegenError
from edgecompile.frontend.checkpoint import save_checkpoint
from edgecompile.pipeline import export
from edgecompile.pipeline.export import export_project, project_tree, write_project
from edgecompile.quant.quantizer import quantize

from .helpers.models import make_inputs, make_model

EXE = Path(sys.executable).parent / "edgecompile"
C = 3


def run(*args: object, cwd: Path, env: dict[str, str] | None = None, stdout: object = subprocess.PIPE,
        timeout: float = 120) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE,
                          env=env, timeout=timeout)


def one_error_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecompile: error: "), err
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under ``root`` (hidden ones too): its type and its bytes or link target."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        mode = p.lstat().st_mode
        if stat.S_ISLNK(mode):
            out[str(p.relative_to(root))] = (stat.S_IFMT(mode), os.readlink(p))
        elif stat.S_ISREG(mode):
            out[str(p.relative_to(root))] = (stat.S_IFMT(mode), p.read_bytes())
        else:
            out[str(p.relative_to(root))] = (stat.S_IFMT(mode), b"")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    fm = make_model(D=4, H=6, C=C, seed=3)
    save_checkpoint(fm, d / "m.npz")
    X = make_inputs(fm, n=12, T=5)
    np.save(d / "X.npy", X)
    np.save(d / "y.npy", np.arange(12) % C)
    return d


def commands(d: Path, out: str) -> dict[str, list[object]]:
    """Every command that writes a report or a file (build and verify need a toolchain run)."""
    m, X, y = d / "m.npz", d / "X.npy", d / "y.npy"
    return {
        "boards": ["boards", "--json", out],
        "inspect": ["inspect", m, "--bits", "8", "--calib", X, "--json", out],
        "evaluate": ["evaluate", m, "--data", X, "--labels", y, "--calib", X, "--json", out],
        "predict": ["predict", m, "--data", X, "--bits", "8", "--calib", X, "--out", out],
        "quantize": ["quantize", m, "--calib", X, "-o", out],
    }


def check_payload(cmd: str, data: bytes) -> None:
    if cmd == "predict":
        logits = np.load(io.BytesIO(data), allow_pickle=False)
        assert logits.shape == (12, C) and logits.dtype == np.float64
    else:
        report = json.loads(data)
        key = {"boards": "boards", "inspect": "quantized", "evaluate": "accuracy_quantized",
               "quantize": "bits"}[cmd]
        assert key in report, sorted(report)


class Reader(threading.Thread):
    """Reads a FIFO or a pty master until EOF (or until the writer's data stops coming)."""

    def __init__(self, path: Path | None = None, fd: int | None = None) -> None:
        super().__init__(daemon=True)
        self.path, self.fd, self.data = path, fd, b""

    def run(self) -> None:
        if self.path is not None:
            with open(self.path, "rb") as fh:
                self.data = fh.read()
            return
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the writer closed the terminal
                return
            if not chunk:
                return
            self.data += chunk


@pytest.mark.parametrize("cmd", ["boards", "inspect", "evaluate", "predict", "quantize"])
def test_fifo_is_written_through_and_stays_a_fifo(data: Path, tmp_path: Path, cmd: str) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = Reader(fifo)
    reader.start()
    r = run(*commands(data, str(fifo))[cmd], cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    reader.join(30)
    assert not reader.is_alive()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    check_payload(cmd, reader.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]  # no temporary file left


@pytest.mark.slow
def test_fifo_that_nobody_reads_fails_in_one_line_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    line = one_error_line(run("boards", "--json", fifo, cwd=tmp_path, timeout=60))
    assert "no reader opened the FIFO" in line and time.monotonic() - started < 40
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_terminal_is_written_through_and_stays_a_character_device(data: Path, tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        import termios
        import tty as ttymod

        ttymod.setraw(slave, termios.TCSANOW)  # bytes as they are (no newline translation)
        reader = Reader(fd=master)
        reader.start()
        r = run(*commands(data, tty)["predict"], cwd=tmp_path)
        assert r.returncode == 0, r.stderr.decode()
        assert stat.S_ISCHR(os.stat(tty).st_mode)  # still the terminal, not a file in /dev/pts
        os.close(slave)
        slave = -1
        reader.join(30)
        check_payload("predict", reader.data)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_dev_stdout_redirected_to_a_file(data: Path, tmp_path: Path) -> None:
    before, link = os.lstat("/dev/stdout"), os.readlink("/dev/stdout")
    with open(tmp_path / "captured", "wb") as fh:
        r = run("boards", "--json", "/dev/stdout", cwd=tmp_path, stdout=fh)
    assert r.returncode == 0, r.stderr.decode()
    after = os.lstat("/dev/stdout")
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)  # still a symlink
    assert os.readlink("/dev/stdout") == link
    check_payload("boards", (tmp_path / "captured").read_bytes())  # only the JSON: the table went to stderr
    assert "uno" in r.stderr.decode()


@pytest.mark.parametrize("cmd", ["boards", "inspect", "evaluate", "predict", "quantize"])
def test_symlink_keeps_the_link_and_its_target_gets_the_data(data: Path, tmp_path: Path, cmd: str) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link"
    link.symlink_to("real/out.bin")  # relative, as most links are
    chain = tmp_path / "chain"
    chain.symlink_to("link")  # a link to a link
    r = run(*commands(data, str(chain))[cmd], cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert os.readlink(chain) == "link" and os.readlink(link) == "real/out.bin"
    check_payload(cmd, target.read_bytes())
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # an existing file keeps its mode
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["out.bin"]


def test_dangling_symlink_creates_its_target(data: Path, tmp_path: Path) -> None:
    link = tmp_path / "report.json"
    link.symlink_to(tmp_path / "new.json")
    r = run("boards", "--json", link, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "new.json")
    check_payload("boards", (tmp_path / "new.json").read_bytes())


@pytest.mark.parametrize("cmd", ["boards", "inspect", "evaluate", "predict", "quantize"])
def test_dash_is_stdout_and_stdout_holds_only_the_payload(data: Path, tmp_path: Path, cmd: str) -> None:
    r = run(*commands(data, "-")[cmd], cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    check_payload(cmd, r.stdout)  # parses as a whole: nothing else on stdout
    assert r.stderr.strip(), "the human text goes to stderr"
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_dash_twice_and_bad_output_paths_refused_before_any_work(data: Path, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    m, X = data / "m.npz", data / "X.npy"
    cases = {
        "": "the output path is empty",
        str(tmp_path / "dir"): "it is a directory",
        str(tmp_path / "loop1"): "a symlink loop",
        str(tmp_path / "no" / "such" / "x.json"): "no such directory",
    }
    before = snapshot(tmp_path)
    for i, (path, message) in enumerate(cases.items()):
        args = (["evaluate", m, "--data", X, "--labels", data / "y.npy", "--json", path],
                ["predict", m, "--data", X, "--out", path])[i % 2]
        r = run(*args, cwd=tmp_path)
        line = one_error_line(r)
        assert message in line, line
        assert r.stdout == b""  # refused before any work: no accuracy table
    line = one_error_line(run("train", "--data", X, "--labels", data / "y.npy", "-o", "-", "--json", "-",
                              cwd=tmp_path))
    assert "only one output can be standard output" in line
    assert snapshot(tmp_path) == before


def test_failed_command_leaves_outputs_alone(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.npy"
    target.write_bytes(b"keep")
    (tmp_path / "link.npy").symlink_to("t.npy")
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 9)))  # D=9, the model has D=4
    before = snapshot(tmp_path)
    one_error_line(run("predict", data / "m.npz", "--data", tmp_path / "bad.npy", "--out", tmp_path / "link.npy",
                       cwd=tmp_path))
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- export --force

def export_args(d: Path, out: object, *more: object) -> list[object]:
    return ["export", d / "m.npz", "--board", "native", "--calib", d / "X.npy", "-o", out, *more]


def test_force_replaces_the_project_and_keeps_the_users_files(data: Path, tmp_path: Path) -> None:
    fw = tmp_path / "fw"
    assert run(*export_args(data, fw, "--name", "first"), cwd=tmp_path).returncode == 0
    (fw / "notes.txt").write_text("mine")
    (fw / "src" / "extra.c").write_text("/* mine */\n")
    (fw / "data").mkdir()
    (fw / "data" / "X.npy").write_bytes(b"mine")
    (fw / ".pio" / "build" / "native").mkdir(parents=True)  # what build leaves
    (fw / ".pio" / "build" / "native" / "program").write_bytes(b"\x7fELF")
    (fw / ".edgecompile" / "core").mkdir()
    (fw / ".edgecompile" / "core" / "appstate.json").write_text("{}")
    r = run(*export_args(data, fw, "--name", "first"), cwd=tmp_path)
    assert "--force" in one_error_line(r)
    r = run(*export_args(data, fw, "--name", "second", "--bits", "16", "--force"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert run(*export_args(data, tmp_path / "fresh", "--name", "second", "--bits", "16"),
               cwd=tmp_path).returncode == 0
    mine = {"notes.txt", "src/extra.c", "data", "data/X.npy"}
    got = snapshot(fw)
    assert {k: got[k] for k in mine} == {"notes.txt": (stat.S_IFREG, b"mine"),
                                         "src/extra.c": (stat.S_IFREG, b"/* mine */\n"),
                                         "data": (stat.S_IFDIR, b""), "data/X.npy": (stat.S_IFREG, b"mine")}
    # everything else is exactly a fresh export: old library, build outputs and staging gone
    assert {k: v for k, v in got.items() if k not in mine} == snapshot(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "fw"]


def test_force_refuses_the_cwd_its_parents_home_root_and_empty(data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proj = home / "work" / "fw"
    proj.parent.mkdir(parents=True)
    assert run(*export_args(data, proj), cwd=tmp_path).returncode == 0
    (home / "dotfile").write_text("mine")
    env = {**os.environ, "HOME": str(home)}
    cases = [
        (proj, ".", "is the current directory"),
        (proj, "..", "holds the current directory"),
        (proj, proj.parent.parent, "holds the current directory"),
        (tmp_path, home, "is the home directory"),
        (tmp_path, "/", "is the root directory"),
        (tmp_path, "", "the output directory is empty"),
    ]
    before = snapshot(tmp_path)
    for cwd, out, message in cases:
        r = run(*export_args(data, out, "--force"), cwd=cwd, env=env)
        line = one_error_line(r)
        assert message in line, (out, line)
    # a project edgecompile made is still refused when it is $HOME itself
    r = run(*export_args(data, proj, "--force"), cwd=tmp_path, env={**os.environ, "HOME": str(proj)})
    assert "is the home directory" in one_error_line(r)
    assert snapshot(tmp_path) == before


def test_force_refuses_a_directory_edgecompile_did_not_make(data: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "a.txt").write_text("a")
    (mine / "platformio.ini").write_text("[env:x]\n")  # looks like a project, has no manifest
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        line = one_error_line(run(*export_args(data, mine, *extra), cwd=tmp_path))
        assert "edgecompile did not make it" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("manifest", [
    b"not json",
    b'{"generator": "someone else", "files": {}}',
    b'{"generator": "edgecompile", "files": {"../victim.txt": "0"}}',
    b'{"generator": "edgecompile", "files": {"/etc/hostname": "0"}}',
])
def test_force_refuses_a_damaged_or_hostile_manifest(data: Path, tmp_path: Path, manifest: bytes) -> None:
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "edgecompile-manifest.json").write_bytes(manifest)
    (tmp_path / "victim.txt").write_text("keep")
    before = snapshot(tmp_path)
    one_error_line(run(*export_args(data, fw, "--force"), cwd=tmp_path))
    assert snapshot(tmp_path) == before


def test_force_refuses_a_users_file_in_the_way(data: Path, tmp_path: Path) -> None:
    fw = tmp_path / "fw"
    assert run(*export_args(data, fw, "--name", "a"), cwd=tmp_path).returncode == 0
    (fw / "lib" / "b").mkdir()
    (fw / "lib" / "b" / "library.json").write_text("mine")  # where the new library's file goes
    before = snapshot(tmp_path)
    line = one_error_line(run(*export_args(data, fw, "--name", "b", "--force"), cwd=tmp_path))
    assert "library.json is in the way" in line
    assert snapshot(tmp_path) == before


def test_force_through_a_symlinked_folder_never_touches_outside(data: Path, tmp_path: Path) -> None:
    fw = tmp_path / "fw"
    assert run(*export_args(data, fw, "--name", "a"), cwd=tmp_path).returncode == 0
    outside = tmp_path / "outside"
    shutil.move(fw / "lib" / "a", outside)  # the user moved the library away and linked it
    (fw / "lib" / "a").symlink_to(outside)
    keep = snapshot(outside)
    r = run(*export_args(data, fw, "--name", "a", "--force"), cwd=tmp_path)
    assert "is in the way" in one_error_line(r)
    assert snapshot(outside) == keep


@pytest.fixture(scope="module")
def two_trees() -> tuple[dict[str, bytes], dict[str, bytes]]:
    fm = make_model(D=4, H=6, C=C, seed=3)
    X = make_inputs(fm, n=12, T=5)
    return project_tree(quantize(fm, 8, X), "native", "one", fm), project_tree(quantize(fm, 16, X), "native", "two")


def test_failure_while_moving_restores_the_old_project(two_trees, tmp_path: Path, monkeypatch) -> None:
    old, new = two_trees
    fw = tmp_path / "fw"
    write_project(fw, old)
    (fw / "mine.txt").write_text("mine")
    before = snapshot(tmp_path)
    real, calls = os.rename, []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == len(old) + 3:  # after the old files went, while the new ones go in
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(export.os, "rename", failing)
    with pytest.raises(CodegenError, match="No space left"):
        write_project(fw, new, force=True)
    monkeypatch.undo()
    assert len(calls) > len(old) + 3  # the failure came midway and the rollback moved files back
    assert snapshot(tmp_path) == before


# Letters that spell no project file name: a user's file is never in the way of the new project.
user_names = st.text(alphabet="abcdefghij_.-", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
folders = st.sampled_from(["", "src/", "lib/", "lib/one/", "lib/one/src/", ".edgecompile/", "boards/", "mine/"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.dictionaries(st.tuples(folders, user_names).map("".join), st.binary(max_size=8), max_size=6))
def test_property_user_files_survive_and_the_project_matches_a_fresh_one(two_trees, tmp_path_factory,
                                                                          user: dict[str, bytes]) -> None:
    old, new = two_trees
    fw = tmp_path_factory.mktemp("prop") / "fw"
    write_project(fw, old)
    for rel, data in user.items():
        (fw / rel).parent.mkdir(parents=True, exist_ok=True)
        (fw / rel).write_bytes(data)
    write_project(fw, new, force=True)
    got = {p.relative_to(fw).as_posix(): p.read_bytes() for p in fw.rglob("*") if p.is_file()}
    assert {k: got.get(k) for k in user} == user  # every file of the user's, unchanged
    assert {k: v for k, v in got.items() if k not in user} == new  # the rest: exactly the new project
    assert not [p for p in fw.iterdir() if p.name.startswith(".edgecompile-")]


def test_api_refuses_the_cwd_and_empty(two_trees, tmp_path: Path, monkeypatch) -> None:
    old, _ = two_trees
    monkeypatch.chdir(tmp_path)
    for out in ("", ".", tmp_path, "/"):
        with pytest.raises(CodegenError, match="refusing|empty"):
            write_project(out, old, force=True)
        with pytest.raises(CodegenError, match="refusing|empty"):
            export_project(make_model(D=4, H=6, C=C, seed=3), "native", out_dir=out, force=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_build_and_verify_json_to_stdout_then_force_after_a_real_build(data: Path, tmp_path: Path) -> None:
    fw = tmp_path / "fw"
    assert run(*export_args(data, fw), cwd=tmp_path).returncode == 0
    r = run("build", fw, "--offline", "--json", "-", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["board"] == "native" and "built" in r.stderr.decode()
    r = run("verify", fw, "--emulate", "--data", data / "X.npy", "--labels", data / "y.npy", "--json", "-",
            cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["exact_match"] == 1.0 and "PARITY OK" in r.stderr.decode()
    assert (fw / ".pio").is_dir() and (fw / ".edgecompile" / "core").is_dir()
    (fw / "notes.txt").write_text("mine")
    assert run(*export_args(data, fw, "--force"), cwd=tmp_path).returncode == 0
    assert (fw / "notes.txt").read_text() == "mine"
    assert not (fw / ".pio").exists() and not (fw / ".edgecompile" / "core").exists()
    assert list(tmp_path.iterdir()) == [fw]
