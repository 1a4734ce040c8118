"""``edgecompile export``: layout, determinism, atomicity, refusal, manifest, CLI."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecompile.cli import main
from edgecompile.errors import BoardError, CodegenError, DataError
from edgecompile.frontend.checkpoint import load_checkpoint, save_checkpoint
from edgecompile.ir.qmodel import load_qmodel
from edgecompile.pipeline import export
from edgecompile.pipeline.export import export_project
from edgecompile.sim.simulator import simulate
from edgecompile.targets.manifest import MANIFEST_FILE as MANIFEST
from edgecompile.targets.manifest import read_manifest

from .cbuild import PLAIN, build_driver, run_driver
from .helpers.models import make_inputs, make_model


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("model")
    fm = make_model(D=6, H=10, C=3, wrank=2, urank=3, sparsity=0.5, seed=2)
    save_checkpoint(fm, d / "kws-v2.npz")
    np.save(d / "X.npy", make_inputs(fm, n=24, T=8))
    return d / "kws-v2.npz", d / "X.npy"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("board", ["native", "uno"])
def test_export_layout_manifest_and_determinism(ckpt, tmp_path, board):
    model, X = ckpt
    r1 = run("export", model, "--board", board, "--calib", X, "-o", tmp_path / "a")
    r2 = run("export", model, "--board", board, "--calib", X, "-o", tmp_path / "b")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b  # byte-identical trees
    for rel in ("platformio.ini", "model.qmodel.json", "edgecompile-manifest.json", "lib/kws_v2/library.json",
                "lib/kws_v2/library.properties", "lib/kws_v2/src/kws_v2.h", "lib/kws_v2/src/kws_v2.c",
                "lib/kws_v2/src/kws_v2_data.h", "lib/kws_v2/src/edgecompile_model.h"):
        assert rel in a, rel
    assert any(rel.startswith("src/") for rel in a)  # the firmware harness
    manifest = json.loads(a["edgecompile-manifest.json"])
    qm = load_qmodel(tmp_path / "a" / "model.qmodel.json")
    assert manifest["board"] == board and manifest["bits"] == 8 and manifest["name"] == "kws_v2"
    assert manifest["model_sha256"] == qm.source_sha256 and len(qm.source_sha256) == 64
    assert manifest["quantization"]["summary"] == qm.summary()
    assert manifest["qmodel"] == "model.qmodel.json" and manifest["qmodel_sha256"] == qm.quantized_sha256()
    assert read_manifest(tmp_path / "a").to_json() == manifest
    assert set(manifest["files"]) == set(a) - {"edgecompile-manifest.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256(a[rel]).hexdigest() == digest, rel
    header = a["lib/kws_v2/src/kws_v2.c"].decode()
    assert qm.source_sha256 in header[:600] and qm.summary() in header[:600]
    assert not list(tmp_path.glob(".*"))  # no temp dirs left beside the output


def test_exported_library_equals_simulator(ckpt, tmp_path):
    model, X = ckpt
    export_project(model, "native", bits=16, calib=X, out_dir=tmp_path / "p", name="m16")
    root = tmp_path / "p"
    qm = load_qmodel(root / "model.qmodel.json")
    assert qm.bits == 16
    lib = {rel[len("lib/m16/"):]: data for rel, data in tree(root).items() if rel.startswith("lib/m16/")}
    exe = build_driver(lib, PLAIN)
    rng = np.random.default_rng(0)
    x_q = rng.integers(-32768, 32768, (4, 9, qm.input_dim)).astype(np.int16)
    states, logits, _, _ = run_driver(exe, x_q, qm.hidden_dim, qm.num_classes)
    exp_logits, exp_states = simulate(qm, x_q, return_states=True)
    np.testing.assert_array_equal(states, exp_states)
    np.testing.assert_array_equal(logits, exp_logits)


def test_refuses_non_empty_dir_then_force(ckpt, tmp_path):
    model, _ = ckpt
    out = tmp_path / "fw"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for force in ([], ["--force"]):  # not a project edgecompile made: refused even with --force
        r = run("export", model, "--board", "native", "-o", out, *force)
        assert r.exit_code == 2 and "edgecompile did not make it" in r.output
        assert tree(out) == {"keep.txt": b"mine"}  # nothing changed
    (out / "keep.txt").unlink()
    assert run("export", model, "--board", "native", "-o", out, "--name", "old").exit_code == 0
    (out / "keep.txt").write_text("mine")
    r = run("export", model, "--board", "native", "-o", out)
    assert r.exit_code == 2 and "--force" in r.output
    r = run("export", model, "--board", "native", "-o", out, "--force")
    assert r.exit_code == 0, r.output
    files = tree(out)
    assert files["keep.txt"] == b"mine" and "platformio.ini" in files  # the user's file stays
    assert not any(rel.startswith("lib/old/") for rel in files)  # the old project's files go
    run("export", model, "--board", "native", "-o", tmp_path / "fresh")
    assert {k: v for k, v in files.items() if k != "keep.txt"} == tree(tmp_path / "fresh")
    assert not list(tmp_path.glob(".*")) and not list(out.glob(".edgecompile-*"))


def test_empty_dir_is_fine_and_output_path_must_be_a_dir(ckpt, tmp_path):
    model, _ = ckpt
    (tmp_path / "empty").mkdir()
    assert run("export", model, "--board", "native", "-o", tmp_path / "empty").exit_code == 0
    (tmp_path / "file").write_text("x")
    r = run("export", model, "--board", "native", "-o", tmp_path / "file", "--force")
    assert r.exit_code == 2 and (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("existing", [False, True])
def test_error_midway_leaves_nothing(ckpt, tmp_path, monkeypatch, existing):
    model, _ = ckpt
    out = tmp_path / "deep" / "fw"
    if existing:
        export_project(model, "uno", out_dir=out)
        (out / "old.txt").write_text("old")
        before = tree(tmp_path)
    real = export._write_tree

    def failing(root, files):
        real(root, dict(list(files.items())[:5]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_tree", failing)
    with pytest.raises(CodegenError, match="No space left"):
        export_project(model, "uno", out_dir=out, force=True)
    if existing:
        assert tree(tmp_path) == before
    else:
        assert list(tmp_path.iterdir()) == []  # not even the parent it created


def test_bad_inputs_exit_2_and_write_nothing(ckpt, tmp_path):
    model, X = ckpt
    out = tmp_path / "o"
    for args in (["--board", "nosuchboard"], ["--board", "uno", "--name", "bad-name"],
                 ["--board", "uno", "--name", "for"], ["--board", "uno", "--name", "ech_hal_config"],
                 ["--board", "uno", "--calib", tmp_path / "missing.npy"]):
        r = run("export", model, *args, "-o", out)
        assert r.exit_code == 2, (args, r.output)
        assert r.output.count("error:") == 1
        assert not out.exists()
    r = run("export", tmp_path / "missing.npz", "--board", "uno", "-o", out)
    assert r.exit_code == 2 and not out.exists()
    with pytest.raises(BoardError):
        export_project(model, "nosuchboard", out_dir=out)


def test_export_quantized_json_and_python_api(ckpt, tmp_path):
    model, X = ckpt
    res = export_project(model, "uno", bits=8, calib=np.load(X), out_dir=tmp_path / "a", name="kws")
    assert res.name == "kws" and res.board == "uno" and res.out_dir == tmp_path / "a"
    # a quantized model (.json) exports to the same library
    r = run("export", tmp_path / "a" / "model.qmodel.json", "--board", "uno", "-o", tmp_path / "b", "--name", "kws")
    assert r.exit_code == 0, r.output
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    # only the float checkpoint (known from the .npz, not from the .json) and its manifest entry differ
    assert "model.npz" in a and "model.npz" not in b
    assert {k: v for k, v in a.items() if k not in ("model.npz", MANIFEST)} == {
        k: v for k, v in b.items() if k != MANIFEST}
    assert json.loads(a[MANIFEST])["checkpoint"] == "model.npz" and json.loads(b[MANIFEST])["checkpoint"] is None
    assert load_checkpoint(tmp_path / "a" / "model.npz").sha256 == res.qmodel.source_sha256
    r = run("export", tmp_path / "a" / "model.qmodel.json", "--board", "uno", "--bits", "16", "-o", tmp_path / "c")
    assert r.exit_code == 2 and not (tmp_path / "c").exists()


def test_default_output_dir(ckpt, tmp_path, monkeypatch):
    model, _ = ckpt
    monkeypatch.chdir(tmp_path)
    r = run("export", model, "--board", "native")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "kws_v2_native" / "lib" / "kws_v2" / "src" / "kws_v2.c").is_file()
    assert os.path.isfile(tmp_path / "kws_v2_native" / "edgecompile-manifest.json")


def test_export_json_report(ckpt, tmp_path):
    model, X = ckpt
    r = run("export", model, "--board", "uno", "--calib", X, "-o", tmp_path / "p", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["out_dir"] == str(tmp_path / "p") and report["board"] == "uno" and report["name"] == "kws_v2"
    assert report["manifest"] == json.loads((tmp_path / "p" / MANIFEST).read_text())


@pytest.mark.parametrize(("change", "named"), [
    (lambda m: m.pop("bits"), "no 'bits'"),
    (lambda m: m.update(bits=12), "'bits' must be 8 or 16"),
    (lambda m: m.update(bits="8"), "'bits' must be 8 or 16"),
    (lambda m: m.update(board=None), "'board' must be a board id"),
    (lambda m: m.update(qmodel="../q.json"), "'qmodel' names '../q.json'"),
    (lambda m: m.update(qmodel_sha256="x"), "'qmodel_sha256' must be a sha256"),
    (lambda m: m.pop("checkpoint"), "no 'checkpoint'"),
    (lambda m: m.update(manifest_version=1), "manifest version 1, this edgecompile reads version 2"),
    (lambda m: m.update(generator="other"), "not written by edgecompile"),
    (lambda m: m["files"].update({"/etc/passwd": "0" * 64}), "'files' lists '/etc/passwd'"),
    (lambda m: m["quantization"].pop("hid_frac"), "quantization: no 'hid_frac'"),
])
def test_read_manifest_names_what_is_wrong(ckpt, tmp_path, change, named):
    model, _ = ckpt
    export_project(model, "uno", out_dir=tmp_path / "p")
    path = tmp_path / "p" / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="^" + str(path).replace(".", r"\.") + ": ") as err:
        read_manifest(tmp_path / "p")
    assert named in str(err.value) and "\n" not in str(err.value)


def test_build_and_flash_read_the_manifest(ckpt, tmp_path):
    model, _ = ckpt
    export_project(model, "uno", out_dir=tmp_path / "p")
    (tmp_path / "p" / MANIFEST).unlink()
    for args in (["build", tmp_path / "p", "--offline"], ["flash", tmp_path / "p", "--port", "/dev/null"]):
        r = run(*args)
        assert r.exit_code == 2 and "has no edgecompile-manifest.json" in r.output, r.output
    assert not (tmp_path / "p" / ".pio").exists()


def test_library_metadata_comes_from_export_options(ckpt, tmp_path):
    model, _ = ckpt
    r = run("export", model, "--board", "uno", "-o", tmp_path / "plain")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "plain/lib/kws_v2/library.json").read_text())
    props = (tmp_path / "plain/lib/kws_v2/library.properties").read_text()
    assert "license" not in meta and meta["authors"] == [{"name": "unspecified"}]
    assert meta["version"] == "1.0.0" and "author=unspecified\n" in props and "url=\n" in props
    r = run("export", model, "--board", "uno", "-o", tmp_path / "named", "--library-version", "2.3.4",
            "--library-author", "Jane Doe", "--library-license", "Apache-2.0", "--library-url",
            "https://example.org/kws")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "named/lib/kws_v2/library.json").read_text())
    props = (tmp_path / "named/lib/kws_v2/library.properties").read_text()
    assert (meta["version"], meta["license"], meta["homepage"]) == ("2.3.4", "Apache-2.0", "https://example.org/kws")
    assert meta["authors"] == [{"name": "Jane Doe"}]
    assert "version=2.3.4\n" in props and "author=Jane Doe\n" in props and "url=https://example.org/kws\n" in props


@pytest.mark.parametrize("option, value", [("--library-version", "1.x"), ("--library-author", "a\nb"),
                                           ("--library-author", " ")])
def test_bad_library_metadata_is_refused_before_any_work(ckpt, tmp_path, option, value):
    model, _ = ckpt
    r = run("export", model, "--board", "uno", "-o", tmp_path / "p", option, value)
    assert r.exit_code == 2 and not (tmp_path / "p").exists()
    assert r.output.count("\n") == 1 and "library" in r.output
