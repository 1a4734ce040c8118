"""Checkpoint loading, saving and validation (API level; the CLI side is in test_cli.py).

Expected values are read from the raw arrays written to disk, never from the loader's output.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecompile.errors import CheckpointError, EdgecompileError
from edgecompile.frontend.checkpoint import load_checkpoint, model_from_arrays, save_checkpoint
from edgecompile.ir.model import FastGRNNParams, FastRNNParams
from tests.helpers.models import make_arrays

D, H, C, T = 5, 7, 3, 4


def write(arrays: dict[str, np.ndarray], path: Path, container: str) -> Path:
    """Write ``arrays`` as a ``.npz`` file or as a directory of ``.npy`` files (EdgeML's layout)."""
    if container == "npz":
        path = path.with_suffix(".npz")
        np.savez(path, **arrays)
    else:
        path.mkdir()
        for name, value in arrays.items():
            np.save(path / f"{name}.npy", value)
    return path


def layout(
    cell: str,
    wrank: int | None,
    urank: int | None,
    vector_2d: bool,
    scalar_2d: bool,
    norm: str | None,
    nonlinear: bool,
) -> dict[str, np.ndarray]:
    gate, update = ("quantSigm", "quantTanh") if nonlinear else ("sigmoid", "tanh")
    a = make_arrays(cell, D=D, H=H, C=C, wrank=wrank, urank=urank, sparsity=0.3, T=T, norm=norm,
                    gate_nl=gate, update_nl=update, seed=7)
    for key in ("Bg", "Bh", "B", "FCbias"):
        if key in a:
            a[key] = a[key].reshape(1, -1) if vector_2d else a[key].reshape(-1)
    for key in ("zeta", "nu", "alpha", "beta"):
        if key in a:
            a[key] = a[key].reshape(1, 1) if scalar_2d else a[key].reshape(())
    return a


def check_against_arrays(model, a: dict[str, np.ndarray]) -> None:
    """Every field of the loaded model holds exactly what the raw arrays say."""
    f64 = lambda k: np.asarray(a[k], dtype=np.float64)  # noqa: E731
    assert model.cell == ("FastRNN" if "B" in a else "FastGRNN")
    for name, m in (("W", model.W), ("U", model.U)):
        if name in a:
            assert m.rank is None and len(m.factors) == 1
            np.testing.assert_array_equal(m.factors[0], f64(name))
        else:
            assert m.rank == a[name + "1"].shape[1]
            np.testing.assert_array_equal(m.factors[0], f64(name + "1"))
            np.testing.assert_array_equal(m.factors[1], f64(name + "2"))
    assert (model.input_dim, model.hidden_dim, model.num_classes) == (D, H, C)
    np.testing.assert_array_equal(model.FC, f64("FC"))
    np.testing.assert_array_equal(model.FCbias, f64("FCbias").reshape(C))
    p = model.params
    if isinstance(p, FastGRNNParams):
        np.testing.assert_array_equal(p.bias_gate, f64("Bg").reshape(H))
        np.testing.assert_array_equal(p.bias_update, f64("Bh").reshape(H))
        assert p.zeta == float(a["zeta"].reshape(())) and p.nu == float(a["nu"].reshape(()))
    else:
        assert isinstance(p, FastRNNParams)
        np.testing.assert_array_equal(p.bias, f64("B").reshape(H))
        assert p.alpha == float(a["alpha"].reshape(()))
        assert p.beta == float(a["beta"].reshape(()))
    if "mean" in a:
        np.testing.assert_array_equal(model.mean, f64("mean").reshape(-1))
        np.testing.assert_array_equal(model.std, f64("std").reshape(-1))
        assert model.seq_len == (T if a["mean"].size == T * D else None)
    else:
        assert model.mean is None and model.std is None and model.seq_len is None
    expected_gate = (str(a["gate_nonlinearity"]) if "gate_nonlinearity" in a
                     else "sigmoid" if model.cell == "FastGRNN" else None)
    expected_update = str(a["update_nonlinearity"]) if "update_nonlinearity" in a else "tanh"
    assert (model.gate_nl, model.update_nl) == (expected_gate, expected_update)


LAYOUTS = list(itertools.product(
    ["FastGRNN", "FastRNN"], [None, 3], [None, 2], [False, True], [False, True], [None, "D", "TD"], [False, True]
))


def _layout_id(p) -> str:
    cell, wr, ur, v2, s2, norm, nl = p
    return (f"{cell}-W{'lr' if wr else 'full'}-U{'lr' if ur else 'full'}-bias{'1xH' if v2 else 'H'}"
            f"-scalar{'1x1' if s2 else '0d'}-norm{norm or 'none'}{'-quantNL' if nl else ''}")


@pytest.mark.parametrize("params", LAYOUTS, ids=[_layout_id(p) for p in LAYOUTS])
def test_every_layout_loads_and_round_trips(params, tmp_path: Path) -> None:
    a = layout(*params)
    from_npz = load_checkpoint(write(a, tmp_path / "model", "npz"))
    from_dir = load_checkpoint(write(a, tmp_path / "modeldir", "dir"))
    check_against_arrays(from_npz, a)
    check_against_arrays(from_dir, a)
    assert from_npz == from_dir
    assert from_npz.sha256 == from_dir.sha256 == from_npz.content_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", from_npz.sha256)

    save_checkpoint(from_dir, tmp_path / "saved.npz")
    again = load_checkpoint(tmp_path / "saved.npz")
    assert again == from_dir and again.sha256 == from_dir.sha256


@pytest.mark.parametrize("cell", ["FastGRNN", "FastRNN"])
def test_hash_ignores_layout_but_not_content(cell: str, tmp_path: Path) -> None:
    base = layout(cell, 3, None, False, False, "TD", False)
    other = layout(cell, 3, None, True, True, "TD", False)  # [1,H] biases, [1,1] scalars
    h0 = load_checkpoint(write(base, tmp_path / "a", "npz")).sha256
    assert load_checkpoint(write(other, tmp_path / "b", "dir")).sha256 == h0

    for key, change in (("W2", lambda x: x.flat.__setitem__(0, x.flat[0] + 0.5)),
                        ("FCbias", lambda x: x.__setitem__(0, x[0] + 1.0))):
        changed = {k: v.copy() for k, v in base.items()}
        change(changed[key])
        assert load_checkpoint(write(changed, tmp_path / f"c{key}", "npz")).sha256 != h0
    renamed = dict(base, update_nonlinearity=np.array("quantTanh"))
    assert load_checkpoint(write(renamed, tmp_path / "nl", "npz")).sha256 != h0


def test_metadata_as_bytes_or_one_element_array(tmp_path: Path) -> None:
    a = make_arrays("FastGRNN", D=D, H=H, C=C)
    a["gate_nonlinearity"] = np.array(b"quantSigm")
    a["update_nonlinearity"] = np.array(["quantTanh"])
    m = load_checkpoint(write(a, tmp_path / "m", "npz"))
    assert (m.gate_nl, m.update_nl) == ("quantSigm", "quantTanh")


def test_integer_arrays_are_accepted_as_numbers() -> None:
    a = make_arrays("FastRNN", D=D, H=H, C=C)
    a["FCbias"] = np.arange(C, dtype=np.int32)
    m = model_from_arrays(a)
    np.testing.assert_array_equal(m.FCbias, [0.0, 1.0, 2.0])
    assert m.FCbias.dtype == np.float64


def test_save_writes_edgeml_names_as_float32(tmp_path: Path) -> None:
    m = model_from_arrays(make_arrays("FastGRNN", D=D, H=H, C=C, wrank=2, gate_nl="quantSigm"))
    save_checkpoint(m, tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as npz:
        names = set(npz.files)
        assert all(npz[k].dtype == np.float32 for k in names - {"gate_nonlinearity"})
        assert str(npz["gate_nonlinearity"]) == "quantSigm"
    assert names == {"W1", "W2", "U", "Bg", "Bh", "zeta", "nu", "FC", "FCbias", "mean", "std",
                     "gate_nonlinearity"}


def test_save_to_unwritable_place_is_a_user_error(tmp_path: Path) -> None:
    m = model_from_arrays(make_arrays())
    with pytest.raises(EdgecompileError, match="cannot write"):
        save_checkpoint(m, tmp_path / "no" / "such" / "dir.npz")
    assert list(tmp_path.iterdir()) == []


# --- validation -------------------------------------------------------------------------------

def _grnn(**kw) -> dict[str, np.ndarray]:
    return make_arrays("FastGRNN", D=D, H=H, C=C, seed=3, **kw)


def _with(base: dict, drop=(), **changes) -> dict:
    out = {k: v for k, v in base.items() if k not in drop}
    out.update(changes)
    return out


f32 = np.float32
BAD = {
    # name: (arrays, regex the one-line message must match)
    "missing FC": (_with(_grnn(), drop=["FC"]), r"missing key 'FC'"),
    "missing zeta": (_with(_grnn(), drop=["zeta"]), r"missing key 'zeta'"),
    "missing W": (_with(_grnn(), drop=["W"]), r"missing key 'W'"),
    "missing W2": (_with(_grnn(wrank=2), drop=["W2"]), r"missing key 'W2'"),
    "unknown key": (_with(_grnn(), Wx=np.ones((2, 2), f32)), r"unknown key 'Wx'"),
    "W with W1/W2": (_with(_grnn(), W1=np.ones((D, 2), f32), W2=np.ones((2, H), f32)),
                     r"both W and W1/W2"),
    "GRNN and RNN keys": (_with(_grnn(), B=np.ones(H, f32)), r"mixes FastGRNN keys .* FastRNN keys"),
    "U wrong": (_with(_grnn(), U=np.ones((H + 1, H + 1), f32)), rf"U has shape \[{H+1},{H+1}\], expected \[{H},{H}\]"),
    "U not square": (_with(_grnn(), U=np.ones((H, H - 1), f32)), rf"U has shape \[{H},{H-1}\], expected \[{H},{H}\]"),
    "U1 wrong": (_with(_grnn(urank=2), U1=np.ones((H - 1, 2), f32)), rf"U1 has shape \[{H-1},2\], expected \[{H},rU\]"),
    "U2 wrong": (_with(_grnn(urank=2), U2=np.ones((3, H), f32)), rf"U2 has shape \[3,{H}\], expected \[2,{H}\]"),
    "W2 wrong": (_with(_grnn(wrank=3), W2=np.ones((2, H), f32)), r"W2 has shape \[2,7\], expected \[3,H\]"),
    "W 1-D": (_with(_grnn(), W=np.ones(D, f32)), rf"W has shape \[{D}\], expected \[D,H\]"),
    "Bg wrong": (_with(_grnn(), Bg=np.ones(H + 2, f32)), rf"Bg has shape \[{H+2}\], expected \[{H}\] or \[1,{H}\]"),
    "Bh 2x H": (_with(_grnn(), Bh=np.ones((2, H), f32)), rf"Bh has shape \[2,{H}\], expected \[{H}\] or \[1,{H}\]"),
    "zeta vector": (_with(_grnn(), zeta=np.ones(2, f32)), r"zeta has shape \[2\], expected a scalar or \[1,1\]"),
    "FC wrong": (_with(_grnn(), FC=np.ones((H - 1, C), f32)), rf"FC has shape \[{H-1},{C}\], expected \[{H},C\]"),
    "FCbias wrong": (_with(_grnn(), FCbias=np.ones(C + 1, f32)), rf"FCbias has shape \[{C+1}\], expected \[{C}\]"),
    "mean wrong": (_with(_grnn(), mean=np.ones(D + 1, f32), std=np.ones(D + 1, f32)),
                   rf"mean has shape \[{D+1}\], expected \[{D}\] or \[T\*{D}\]"),
    "std unlike mean": (_with(_grnn(), std=np.ones(2 * D, f32)), rf"std has shape \[{2*D}\], expected \[{D}\]"),
    "mean without std": (_with(_grnn(), drop=["std"]), r"mean given without std"),
    "std zero": (_with(_grnn(), std=np.zeros(D, f32)), r"std has a non-positive entry"),
    "NaN": (_with(_grnn(), Bh=np.full(H, np.nan, f32)), r"Bh contains NaN or Inf"),
    "Inf": (_with(_grnn(), W=np.full((D, H), np.inf, f32)), r"W contains NaN or Inf"),
    "empty": (_with(_grnn(), FCbias=np.zeros(0, f32)), r"FCbias is empty \(shape \[0\]\)"),
    "string W": (_with(_grnn(), W=np.array([["a"] * H] * D)), r"W has dtype <U1, expected a float array"),
    "bool W": (_with(_grnn(), W=np.ones((D, H), bool)), r"W has dtype bool, expected a float array"),
    "complex U": (_with(_grnn(), U=np.ones((H, H), complex)), r"U has dtype complex128"),
    "bad nonlinearity": (_with(_grnn(), gate_nonlinearity=np.array("relu6")),
                         r"gate_nonlinearity is 'relu6', expected one of"),
    "numeric metadata": (_with(_grnn(), update_nonlinearity=np.array(1.0)), r"update_nonlinearity has dtype float64"),
    "gate for FastRNN": (_with(make_arrays("FastRNN", D=D, H=H, C=C), gate_nonlinearity=np.array("tanh")),
                         r"gate_nonlinearity given for a FastRNN"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_arrays_raise_one_clear_line(name: str) -> None:
    arrays, pattern = BAD[name]
    with pytest.raises(CheckpointError) as info:
        model_from_arrays(arrays, source="ckpt.npz")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ckpt.npz: ")
    assert re.search(pattern, message), message


@pytest.mark.parametrize("rank", [None, 2])
def test_transposed_matrices_are_recognised(rank: int | None) -> None:
    """edgeml-pytorch 0.3.0 stores W [H,D], U [H,H] (or transposed factors): detected and read
    as the same model; with --layout in-out the error names W and the layout that fits."""
    original = _grnn(wrank=rank, urank=rank)
    a = dict(original)
    for key in ("W", "U", "W1", "W2", "U1", "U2"):
        if key in a:
            a[key] = np.ascontiguousarray(a[key].T)
    detected = model_from_arrays(a)
    assert detected == model_from_arrays(original)
    assert detected.provenance is not None and detected.provenance.layout == "out-in"
    assert detected.provenance.layout_how == "detected"
    with pytest.raises(CheckpointError, match=r"looks? transposed: the checkpoint looks \[out,in\]: "
                                              r"pass --layout out-in") as info:
        model_from_arrays(a, layout="in-out")
    assert str(info.value).startswith("checkpoint: W"), info.value  # W is to blame, not U
    # a shape error that transposing does not fix gets no such hint
    with pytest.raises(CheckpointError) as info:
        model_from_arrays(_with(_grnn(), U=np.ones((H + 1, H + 1), f32)))
    assert "transposed" not in str(info.value)


def test_unreadable_containers(tmp_path: Path) -> None:
    cases = {}
    (tmp_path / "text.npz").write_text("not a zip\n")
    cases["text.npz"] = r"not a \.npz checkpoint"
    good = write(_grnn(), tmp_path / "good", "npz")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated.npz"] = r"not a \.npz checkpoint \(not a zip archive, or truncated\)"
    cases["missing.npz"] = r"no such file or directory"
    (tmp_path / "empty_dir").mkdir()
    cases["empty_dir"] = r"holds no \.npy files"
    bad_dir = write(_grnn(), tmp_path / "bad_dir", "dir")
    (bad_dir / "W.npy").write_bytes(b"\x93NUMPY garbage")
    cases["bad_dir"] = r"W\.npy: not a readable \.npy array"
    npz_dir = write(_grnn(), tmp_path / "npz_dir", "dir")
    with open(npz_dir / "U.npy", "wb") as fh:  # np.savez would append .npz to a path
        np.savez(fh, U=np.ones((H, H)))
    cases["npz_dir"] = r"U\.npy: not a \.npy array \(it is a \.npz archive\)"
    pickled = write(_grnn(), tmp_path / "pickled", "dir")
    np.save(pickled / "FC.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["pickled"] = r"FC\.npy: not a readable \.npy array"
    for name, pattern in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value) and re.search(pattern, str(info.value)), (name, info.value)


def test_shipped_example_is_what_make_tiny_makes(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(repo / "examples/tiny/make_tiny.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    shipped = load_checkpoint(repo / "examples/tiny/model.npz")
    assert load_checkpoint(tmp_path / "model.npz") == shipped
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), np.load(repo / "examples/tiny/X.npy"))
    # what the README promises about it: low rank, sparse, T*D normalisation
    assert (shipped.W.rank, shipped.U.rank, shipped.seq_len) == (3, 4, 16)
    assert shipped.W.nonzeros() < shipped.W.params() and shipped.U.nonzeros() < shipped.U.params()
