"""Directories written by EdgeML's trainers: command.txt, both matrix layouts, ``--layout``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.errors import CheckpointError
from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.frontend.edgeml import COMMAND_MAX_BYTES, parse_command
from edgecompile.reference import NONLINEAR_FUNCTIONS, forward
from tests.helpers.edgeml import command_line, edgeml_forward, stored, write_run

EXE = Path(sys.executable).parent / "edgecompile"
NLS = sorted(NONLINEAR_FUNCTIONS)


def run(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def refused(result: subprocess.CompletedProcess, pattern: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def inputs(D: int = 6, T: int = 5, n: int = 9, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, (n, T, D))


# ---- both layouts x both cells x every nonlinearity: one float model --------------------------

def _cases() -> list[tuple[str, str, str, int | None]]:
    cases = []
    for i, nl in enumerate(NLS):
        other = NLS[(i + 1) % len(NLS)]
        for cell in ("FastGRNN", "FastRNN"):
            cases.append((cell, other, nl, None if i % 2 else 3))  # gate, update, rank
            cases.append((cell, nl, other, 3 if i % 2 else None))
    return cases


@pytest.mark.parametrize("cell,gate_nl,update_nl,rank", _cases())
def test_both_layouts_load_to_the_same_model(cell, gate_nl, update_nl, rank, tmp_path: Path) -> None:
    X = inputs()
    loaded = {}
    for layout in ("in-out", "out-in"):
        r = write_run(tmp_path / layout, cell=cell, wrank=rank, urank=rank, gate_nl=gate_nl,
                      update_nl=update_nl, layout=layout, seed=11)
        fm = load_checkpoint(r.path, warn=pytest.fail)
        assert fm.provenance is not None
        assert (fm.provenance.layout, fm.provenance.layout_how) == (
            layout, "native" if layout == "in-out" else "detected")
        assert fm.update_nl == update_nl and fm.gate_nl == (gate_nl if cell == "FastGRNN" else None)
        # the file's own equations (EdgeML's forward on the stored shapes), exactly
        assert np.array_equal(forward(fm, X), edgeml_forward(r, X, layout))
        loaded[layout] = fm
    assert loaded["in-out"] == loaded["out-in"]
    assert loaded["in-out"].sha256 == loaded["out-in"].sha256
    assert np.array_equal(forward(loaded["in-out"], X), forward(loaded["out-in"], X))


@pytest.mark.parametrize("cell", ["FastGRNN", "FastRNN"])
def test_cli_predict_out_in_equals_in_out_and_honours_command_txt(cell, tmp_path: Path) -> None:
    """quantTanh/quantSigm named only in command.txt: used (the logits are EdgeML's, by hand),
    and they differ from what sigmoid/tanh would give."""
    X = inputs()
    np.save(tmp_path / "X.npy", X)
    logits = {}
    for layout in ("in-out", "out-in"):
        r = write_run(tmp_path / layout, cell=cell, wrank=None, urank=4, gate_nl="quantSigm",
                      update_nl="quantTanh", layout=layout, seed=5)
        out = tmp_path / f"{layout}.npy"
        res = run("predict", r.path, "--data", "X.npy", "--bits", "float", "-o", out, cwd=tmp_path)
        assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
        logits[layout] = np.load(out)
        assert np.array_equal(logits[layout], edgeml_forward(r, X, layout))
    assert np.array_equal(logits["in-out"], logits["out-in"])
    (r.path / "command.txt").unlink()  # now nothing says quant*: the defaults
    res = run("predict", r.path, "--data", "X.npy", "--bits", "float", "-o", "d.npy", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not np.array_equal(np.load(tmp_path / "d.npy"), logits["out-in"])


def test_long_flags_equals_and_prefixes(tmp_path: Path) -> None:
    r = write_run(tmp_path / "a", wrank=2, urank=3, gate_nl="quantSigm", update_nl="quantTanh",
                  layout="out-in", long_flags=True)
    fm = load_checkpoint(r.path, warn=pytest.fail)
    assert (fm.gate_nl, fm.update_nl, fm.W.rank, fm.U.rank) == ("quantSigm", "quantTanh", 2, 3)
    (r.path / "command.txt").write_text("python3 -u fastcell_example.py --data-dir=d --cell=FastGRNN "
                                        "--input=6 --hidden-dim=8 --gate=quantTanh --update-nl quantSigm")
    fm = load_checkpoint(r.path, warn=pytest.fail)
    assert (fm.gate_nl, fm.update_nl) == ("quantTanh", "quantSigm")


# ---- metadata vs command.txt, provenance, inspect ---------------------------------------------

def test_metadata_overrides_command_txt_with_one_warning(tmp_path: Path) -> None:
    r = write_run(tmp_path, gate_nl="quantSigm", update_nl="quantTanh", layout="out-in")
    np.save(r.path / "update_nonlinearity.npy", np.array("tanh"))
    res = run("inspect", r.path, "--bits", "float", "--json", "-", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, res.stderr
    assert re.fullmatch(r"edgecompile: warning: .*update_nonlinearity is tanh but command\.txt says "
                        r"-unl quantTanh; using tanh .*", warnings[0]), warnings[0]
    report = json.loads(res.stdout)
    assert (report["gate_nonlinearity"], report["update_nonlinearity"]) == ("quantSigm", "tanh")
    assert report["nonlinearity_sources"] == {"gate": "command.txt", "update": "metadata"}
    assert report["defaults_assumed"] is False
    assert "nonlinearities from: gate command.txt, update metadata" in res.stderr
    # agreeing metadata: no warning
    np.save(r.path / "update_nonlinearity.npy", np.array("quantTanh"))
    res = run("inspect", r.path, "--bits", "float", cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_inspect_reports_layout_and_provenance(tmp_path: Path) -> None:
    r = write_run(tmp_path / "a", cell="FastGRNN", wrank=3, urank=None, layout="out-in",
                  gate_nl="quantSigm", update_nl="quantTanh")
    res = run("inspect", r.path, "--bits", "float", "--json", "r.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["layout"], report["layout_source"]) == ("out-in", "detected")
    assert report["nonlinearity_sources"] == {"gate": "command.txt", "update": "command.txt"}
    assert "layout: out-in [out,in] (detected from the shapes, transposed on load)" in res.stdout
    assert "nonlinearities from: command.txt" in res.stdout
    assert report["matrices"]["W"]["factors"] == [[6, 3], [3, 8]]  # shown [in,out]

    bare = write_run(tmp_path / "b", cell="FastRNN", command=None)
    res = run("inspect", bare.path, "--bits", "float", "--json", "r.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["defaults_assumed"] is True
    assert report["nonlinearity_sources"] == {"gate": None, "update": "defaults"}
    assert "nonlinearities from: defaults (no metadata, no command.txt: tanh update assumed)" in res.stdout
    grnn = write_run(tmp_path / "c", command=None)
    res = run("inspect", grnn.path, "--bits", "float", "--layout", "in-out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(no metadata, no command.txt: sigmoid gate, tanh update assumed)" in res.stdout
    assert "layout: in-out [in,out] (given by --layout)" in res.stdout


# ---- refusals: one line, exit 2 -----------------------------------------------------------------

@pytest.mark.parametrize("cell", ["UGRNN", "GRU", "LSTM"])
def test_unsupported_cell_is_named(cell: str, tmp_path: Path) -> None:
    r = write_run(tmp_path, command=command_line(cell, 6, 8, None, None, "sigmoid", "tanh"))
    for name in ("zeta", "nu"):  # an UGRNN has no zeta/nu; a GRU/LSTM has other biases too
        (r.path / f"{name}.npy").unlink()
    np.save(r.path / "Br.npy", np.zeros((1, 8), np.float32))
    refused(run("inspect", r.path, cwd=tmp_path),
            rf"command\.txt: -c {cell}: edgecompile compiles FastGRNN and FastRNN cells only")


def test_cell_that_disagrees_with_the_arrays(tmp_path: Path) -> None:
    r = write_run(tmp_path, cell="FastRNN", command=command_line("FastGRNN", 6, 8, None, None, None, None))
    refused(run("inspect", r.path, cwd=tmp_path), r"-c FastGRNN, but the arrays are a FastRNN's")


@pytest.mark.parametrize("flags,pattern", [
    ("-id 7", r"command\.txt: -id 7 \(D\), but W has shape \[8,6\] \(D=6, read \[out,in\]\)"),
    ("--hidden-dim 16", r"command\.txt: --hidden-dim 16 \(H\), but W has shape \[8,6\] \(H=8, read \[out,in\]\)"),
    ("-rW 2", r"command\.txt: -rW 2 \(rank of W\), but W is full rank \(shape \[8,6\]\)"),
    ("-rU 4", r"command\.txt: -rU 4 \(rank of U\), but U1 has shape \[3,8\] \(rank 3, read \[out,in\]\)"),
    ("-unl softsign", r"command\.txt: -unl is 'softsign', expected one of " + ", ".join(NONLINEAR_FUNCTIONS)),
    ("-hd thirty", r"command\.txt: -hd is 'thirty', expected a positive integer"),
    ("-hd 0", r"command\.txt: -hd is '0', expected a positive integer"),
    ("-gnl", r"command\.txt: -gnl has no value"),
])
def test_command_txt_disagreements(flags: str, pattern: str, tmp_path: Path) -> None:
    r = write_run(tmp_path, urank=3, layout="out-in",
                  command=f"python fastcell_example.py -dir d/ -c FastGRNN -id 6 -hd 8 -rU 3 {flags}")
    refused(run("inspect", r.path, cwd=tmp_path), pattern)


def test_wrong_factor_is_named_in_the_detected_layout(tmp_path: Path) -> None:
    r = write_run(tmp_path, wrank=3, urank=4, layout="out-in")
    np.save(r.path / "U2.npy", np.zeros((8, 5), np.float32))  # [H,rU] with the wrong rank
    refused(run("inspect", r.path, cwd=tmp_path), r"U2 has shape \[8,5\], expected \[8,4\]")


def test_square_matrices_need_layout_and_layout_resolves_them(tmp_path: Path) -> None:
    r = write_run(tmp_path / "sq", D=8, H=8, layout="out-in", seed=2)
    refused(run("inspect", r.path, cwd=tmp_path),
            r"every matrix is square \[8,8\].*pass --layout in-out or --layout out-in")
    X = inputs(D=8)
    np.save(tmp_path / "X.npy", X)
    for layout in ("out-in", "in-out"):
        res = run("predict", r.path, "--layout", layout, "--data", "X.npy", "--bits", "float",
                  "-o", f"{layout}.npy", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert np.array_equal(np.load(tmp_path / f"{layout}.npy"), edgeml_forward(r, X, layout))
    assert not np.array_equal(np.load(tmp_path / "out-in.npy"), np.load(tmp_path / "in-out.npy"))
    # edgecompile's own square .npz is read as it always was
    np.savez(tmp_path / "own.npz", **r.arrays)
    assert load_checkpoint(tmp_path / "own.npz").provenance.layout_how == "native"  # type: ignore[union-attr]


def test_given_layout_that_contradicts_the_shapes(tmp_path: Path) -> None:
    r = write_run(tmp_path, wrank=3, layout="out-in")
    refused(run("inspect", r.path, "--layout", "in-out", cwd=tmp_path),
            r"W1 has shape \[3,6\], expected \[6,3\] \(.*transposed: the checkpoint looks \[out,in\]: "
            r"pass --layout out-in")
    refused(run("quantize", r.path, "--layout", "in-out", "-o", "q.json", cwd=tmp_path), r"pass --layout out-in")
    assert not (tmp_path / "q.json").exists()
    np.save(tmp_path / "X.npy", inputs())
    res = run("quantize", r.path, "--layout", "out-in", "-o", "q.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    refused(run("predict", "q.json", "--layout", "out-in", "--data", "X.npy", "-o", "l.npy", cwd=tmp_path),
            r"--layout applies to a checkpoint")


@pytest.mark.parametrize("command", ["inspect", "predict", "evaluate", "quantize", "export", "robustness"])
def test_every_checkpoint_command_takes_layout(command: str, tmp_path: Path) -> None:
    res = run(command, "--help", cwd=tmp_path)
    assert res.returncode == 0 and "--layout [in-out|out-in]" in res.stdout, res.stdout


def test_quantize_and_export_read_out_in_like_in_out(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", D=8, H=8, urank=3, layout="in-out", gate_nl="quantSigm", seed=4)
    b = write_run(tmp_path / "b", D=8, H=8, urank=3, layout="out-in", gate_nl="quantSigm", seed=4)
    for r, lay in ((a, "in-out"), (b, "out-in")):
        res = run("quantize", r.path, "-o", f"{lay}.json", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    assert (tmp_path / "in-out.json").read_bytes() == (tmp_path / "out-in.json").read_bytes()
    res = run("export", b.path, "--board", "native", "--name", "m", "-o", "fw", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "fw" / "edgecompile-manifest.json").read_text())
    assert manifest["model_sha256"] == load_checkpoint(a.path).sha256


# ---- hostile command.txt ----------------------------------------------------------------------

@pytest.mark.parametrize("content,pattern", [
    (bytes(range(256)) * 4, r"command\.txt: binary data, not a training command line"),
    (b"python fastcell_example.py -c FastGRNN \xff\xfe -hd 8", r"command\.txt: not UTF-8 text \(byte 39\)"),
    (b"python x.py " + b"-e 300 " * (COMMAND_MAX_BYTES // 7 + 1),
     rf"command\.txt: larger than {COMMAND_MAX_BYTES} bytes"),
])
def test_garbage_command_txt_is_one_line(content: bytes, pattern: str, tmp_path: Path) -> None:
    r = write_run(tmp_path, command=content)
    refused(run("inspect", r.path, cwd=tmp_path), pattern)


def test_command_txt_special_file_is_refused_without_hanging(tmp_path: Path) -> None:
    r = write_run(tmp_path, command=None)
    os.mkfifo(r.path / "command.txt")
    refused(run("inspect", r.path, cwd=tmp_path, timeout=30), r"command\.txt: not a regular file \(FIFO\)")


def test_unknown_flags_are_ignored_and_no_flags_is_a_warning(tmp_path: Path) -> None:
    r = write_run(tmp_path, layout="out-in", command=(
        "python fastcell_example.py --frobnicate -x 3 -dir 'it''s here' -unl quantTanh "
        "--gate-nl=quantSigm -q --seed 42 'unbalanced"))
    res = run("inspect", r.path, "--bits", "float", "--json", "-", cwd=tmp_path)
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    report = json.loads(res.stdout)
    assert (report["gate_nonlinearity"], report["update_nonlinearity"]) == ("quantSigm", "quantTanh")
    (r.path / "command.txt").write_text("trained on the lab machine, see notebook\n")
    res = run("inspect", r.path, "--bits", "float", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(r"edgecompile: warning: \S+command\.txt names none of -c, -id, .*: nothing was "
                        r"taken from it\n", res.stderr), res.stderr
    assert "nonlinearities from: defaults" in res.stdout


_FIELDS = {"cell": st.sampled_from(["FastGRNN", "FastRNN"]), "input_dim": st.integers(1, 999),
           "hidden_dim": st.integers(1, 999), "w_rank": st.integers(1, 99), "u_rank": st.integers(1, 99),
           "gate_nl": st.sampled_from(NLS), "update_nl": st.sampled_from(NLS)}
_SPELLINGS = {"cell": ("-c", "--cell"), "input_dim": ("-id", "--input-dim"),
              "hidden_dim": ("-hd", "--hidden-dim"), "w_rank": ("-rW", "--wRank"),
              "u_rank": ("-rU", "--uRank"), "gate_nl": ("-gnl", "--gate-nl"),
              "update_nl": ("-unl", "--update-nl")}


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=_FIELDS), data=st.data())
def test_parse_recovers_every_flag(values: dict, data) -> None:
    tokens = ["python", "fastcell_example.py"]
    for key, value in values.items():
        short, long = _SPELLINGS[key]
        form = data.draw(st.sampled_from(["short", "long", "equals"]))
        noise = data.draw(st.sampled_from([[], ["-sW", "0.2"], ["--epochs", "30"], ["-q"]]))
        tokens += noise + ([f"{long}={value}"] if form == "equals" else [short if form == "short" else long,
                                                                          str(value)])
    cmd = parse_command(" ".join(tokens))
    for key in _FIELDS:
        assert getattr(cmd, key) == values.get(key), key


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_parse_of_any_text_returns_or_raises_one_line(text: str) -> None:
    try:
        parse_command(text)
    except CheckpointError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=40, deadline=None)
@given(D=st.integers(1, 7), H=st.integers(1, 7), wrank=st.one_of(st.none(), st.integers(1, 4)),
       urank=st.one_of(st.none(), st.integers(1, 4)), seed=st.integers(0, 99))
def test_detection_reads_out_in_as_in_out(D, H, wrank, urank, seed) -> None:
    from edgecompile.frontend.checkpoint import model_from_arrays
    from tests.helpers.edgeml import edgeml_weights

    a = edgeml_weights("FastGRNN", D, H, 2, 3, wrank, urank, seed)
    native = model_from_arrays(a)
    factors = [v for k, v in a.items() if k[0] in "WU"]
    square = all(f.shape[0] == f.shape[1] for f in factors)
    out_in = model_from_arrays(stored(a, "out-in"), layout="out-in" if square else None)
    assert out_in == native
    assert out_in.provenance is not None and out_in.provenance.layout == "out-in"


# ---- the real package, where it is installed --------------------------------------------------

@pytest.mark.parametrize("rank", [None, 3])
def test_matches_edgeml_pytorch_fastgrnn_cell(rank: int | None, tmp_path: Path) -> None:
    """edgeml-pytorch 0.3.0's own FastGRNNCell with the stored weights (not a dependency)."""
    torch = pytest.importorskip("torch")
    rnn = pytest.importorskip("edgeml_pytorch.graph.rnn")
    r = write_run(tmp_path, wrank=rank, urank=rank, gate_nl="quantSigm", update_nl="quantTanh",
                  layout="out-in")
    cell = rnn.FastGRNNCell(r.D, r.H, gate_nonlinearity="quantSigm", update_nonlinearity="quantTanh",
                            wRank=rank, uRank=rank)
    names = {"W": "W", "W1": "W1", "W2": "W2", "U": "U", "U1": "U1", "U2": "U2", "Bg": "bias_gate",
             "Bh": "bias_update", "zeta": "zeta", "nu": "nu"}
    with torch.no_grad():
        for key, attr in names.items():
            if (r.path / f"{key}.npy").exists():
                getattr(cell, attr).copy_(torch.from_numpy(np.load(r.path / f"{key}.npy")))
    X = inputs()
    Xn = ((X.reshape(len(X), -1) - r.arrays["mean"]) / r.arrays["std"]).reshape(X.shape)
    h = torch.zeros(len(X), r.H)
    with torch.no_grad():
        for t in range(X.shape[1]):
            h = cell(torch.from_numpy(Xn[:, t, :].astype(np.float32)), h)
    theirs = h.numpy() @ r.arrays["FC"] + r.arrays["FCbias"]
    np.testing.assert_allclose(forward(load_checkpoint(r.path), X), theirs, rtol=1e-4, atol=1e-4)
