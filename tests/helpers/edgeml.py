"""Checkpoint directories exactly as EdgeML's FastCells trainers write them (no torch needed).

``fastcell_example.py`` makes ``<data>/<cell>Results/<%H_%M_%S_%d_%m_%y>/``, dumps its command
line as ``command.txt`` (``"python " + " ".join(sys.argv)``, no newline), and
``FastTrainer.saveParams`` saves each parameter with ``np.save`` of a float32 tensor: W or W1/W2,
U or U1/U2, the biases ``[1,H]``, the raw scalars ``[1,1]``, ``FC [H,C]``, ``FCbias [C]``;
``saveMeanStd`` adds ``mean.npy``/``std.npy`` (length T*D) and a ``SeeDot/`` text copy.

``layout="out-in"`` writes the matrices as edgeml-pytorch 0.3.0's FastGRNNCell holds them
(W ``[H,D]``, W1 ``[rW,D]``, W2 ``[H,rW]``, U ``[H,H]``, U1 ``[rU,H]``, U2 ``[H,rU]``, used as
``x @ W1.T @ W2.T``); ``in-out`` as the TF trainer and edgeml_pytorch on GitHub do.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The timestamp EdgeML's ``createTimeStampDirFast`` names the run directory with.
STAMP = "10_00_00_30_11_26"  # %H_%M_%S_%d_%m_%y: 30 November 2026, 10:00:00


@dataclass(frozen=True)
class EdgeMLRun:
    """A written run directory and the same weights in edgecompile's ``[in,out]`` layout."""

    path: Path
    arrays: dict[str, np.ndarray]  # in-out, float32, EdgeML names (what a .npz would hold)
    cell: str
    D: int
    H: int
    C: int
    T: int
    gate_nl: str
    update_nl: str


def command_line(cell: str, D: int, H: int, wrank: int | None, urank: int | None, gate_nl: str | None,
                 update_nl: str | None, long_flags: bool = False, data_dir: str = "data/") -> str:
    """A realistic ``fastcell_example.py`` command line (``None``: the flag left out)."""
    def flag(short: str, long: str) -> str:
        return long if long_flags else short

    argv = ["fastcell_example.py", flag("-dir", "--data-dir"), data_dir, flag("-c", "--cell"), cell,
            flag("-id", "--input-dim"), str(D), flag("-hd", "--hidden-dim"), str(H)]
    if wrank is not None:
        argv += [flag("-rW", "--wRank"), str(wrank)]
    if urank is not None:
        argv += [flag("-rU", "--uRank"), str(urank)]
    argv += ["-sW", "1.0", "-sU", "1.0"]
    if update_nl is not None:
        argv += [flag("-unl", "--update-nl"), update_nl]
    if gate_nl is not None:
        argv += [flag("-gnl", "--gate-nl"), gate_nl]
    argv += [flag("-e", "--epochs"), "300", flag("-b", "--batch-size"), "100",
             flag("-lr", "--learning-rate"), "0.01", "-dS", "200", "-dR", "0.1"]
    return "python " + " ".join(argv)


def edgeml_weights(cell: str = "FastGRNN", D: int = 6, H: int = 8, C: int = 3, T: int = 5,
                   wrank: int | None = None, urank: int | None = None,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Trained-looking weights in the in-out layout, shaped as saveParams writes them."""
    rng = np.random.default_rng(seed)

    def f32(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)

    a: dict[str, np.ndarray] = {}
    for name, rows, rank in (("W", D, wrank), ("U", H, urank)):
        if rank is None:
            a[name] = f32(rng.normal(0, 1 / np.sqrt(rows), (rows, H)))
        else:
            a[name + "1"] = f32(rng.normal(0, 1 / np.sqrt(rows), (rows, rank)))
            a[name + "2"] = f32(rng.normal(0, 1 / np.sqrt(rank), (rank, H)))
    if cell == "FastGRNN":
        a["Bg"] = f32(rng.normal(1.0, 0.3, (1, H)))
        a["Bh"] = f32(rng.normal(0.0, 0.3, (1, H)))
        a["zeta"] = f32([[rng.normal(1.0, 0.5)]])
        a["nu"] = f32([[rng.normal(-4.0, 0.5)]])
    else:
        a["B"] = f32(rng.normal(0.0, 0.3, (1, H)))
        a["alpha"] = f32([[rng.normal(-3.0, 0.5)]])
        a["beta"] = f32([[rng.normal(3.0, 0.5)]])
    a["FC"] = f32(rng.normal(0, 2 / np.sqrt(H), (H, C)))
    a["FCbias"] = f32(rng.normal(0, 0.1, C))
    a["mean"] = f32(rng.normal(0, 1, T * D))
    a["std"] = f32(rng.uniform(0.5, 2.0, T * D))
    return a


def stored(arrays: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """``arrays`` (in-out) as a trainer with ``layout`` saves them: out-in transposes every
    matrix factor (each one, the order kept: ``x @ W1.T @ W2.T``)."""
    if layout == "in-out":
        return dict(arrays)
    return {k: (np.ascontiguousarray(v.T) if k in ("W", "W1", "W2", "U", "U1", "U2") else v)
            for k, v in arrays.items()}


def write_run(root: Path, cell: str = "FastGRNN", D: int = 6, H: int = 8, C: int = 3, T: int = 5,
              wrank: int | None = None, urank: int | None = None, gate_nl: str = "sigmoid",
              update_nl: str = "tanh", layout: str = "in-out", seed: int = 0,
              command: str | bytes | None = "", long_flags: bool = False,
              stamp: str = STAMP) -> EdgeMLRun:
    """Write ``root/<cell>Results/<stamp>/`` as the trainer does and return it.

    ``command``: ``""`` writes the realistic command line for these settings, ``None`` no
    command.txt, anything else is written verbatim."""
    arrays = edgeml_weights(cell, D, H, C, T, wrank, urank, seed)
    run_dir = root / f"{cell}Results" / stamp
    run_dir.mkdir(parents=True)
    for key, value in stored(arrays, layout).items():
        np.save(run_dir / f"{key}.npy", value)
    seedot = run_dir / "SeeDot"
    seedot.mkdir()
    np.savetxt(seedot / "Mean", arrays["mean"], delimiter="\t")
    np.savetxt(seedot / "Std", arrays["std"], delimiter="\t")
    if command is not None:
        if command == "":
            command = command_line(cell, D, H, wrank, urank, gate_nl, update_nl, long_flags,
                                   data_dir=shlex.quote(str(root)))
        path = run_dir / "command.txt"
        if isinstance(command, bytes):
            path.write_bytes(command)
        else:
            path.write_text(command)
    return EdgeMLRun(run_dir, arrays, cell, D, H, C, T, gate_nl, update_nl)


def edgeml_forward(run: EdgeMLRun, X: np.ndarray, layout: str = "out-in") -> np.ndarray:
    """Logits of ``X [N,T,D]`` computed from the files as the EdgeML cell computes them
    (edgeml-pytorch 0.3.0's ``FastGRNNCell.forward`` for out-in: ``x @ W.T``; ``FastRNNCell``
    and the in-out trainers: ``x @ W``), float64, with EdgeML's nonlinearities written out."""
    nl: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "tanh": np.tanh,
        "sigmoid": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),
        "relu": lambda v: np.maximum(v, 0.0),
        "quantTanh": lambda v: np.maximum(np.minimum(v, 1.0), -1.0),
        "quantSigm": lambda v: np.maximum(np.minimum((v + 1.0) / 2.0, 1.0), 0.0),
        "quantSigm4": lambda v: np.maximum(np.minimum((v + 2.0) / 4.0, 1.0), 0.0),
    }
    files = {p.stem: np.load(p).astype(np.float64) for p in run.path.glob("*.npy")}

    def as_in_out(m: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(m.T) if layout == "out-in" else m

    def dense(name: str) -> np.ndarray:  # x @ W.T = x @ (W1.T @ W2.T) for out-in
        if name in files:
            return as_in_out(files[name])
        return as_in_out(files[name + "1"]) @ as_in_out(files[name + "2"])

    W, U = dense("W"), dense("U")
    X = np.asarray(X, dtype=np.float64)
    n, steps, dims = X.shape
    Xn = (X.reshape(n, steps * dims) - files["mean"]) / files["std"]
    Xn = Xn.reshape(n, steps, dims)
    h = np.zeros((n, run.H))
    sig = nl["sigmoid"]
    for t in range(steps):
        pre = Xn[:, t, :] @ W + h @ U
        if run.cell == "FastGRNN":
            z = nl[run.gate_nl](pre + files["Bg"])
            c = nl[run.update_nl](pre + files["Bh"])
            h = z * h + (sig(files["zeta"]) * (1.0 - z) + sig(files["nu"])) * c
        else:
            h = sig(files["beta"]) * h + sig(files["alpha"]) * nl[run.update_nl](pre + files["B"])
    return h @ files["FC"] + files["FCbias"]
