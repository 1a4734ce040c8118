"""The random models of the benchmarks: FastGRNN/FastRNN checkpoints with EdgeML-like weights."""

from __future__ import annotations

import dataclasses

import numpy as np

from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.ir.model import FloatModel


def random_model(cell: str, D: int, H: int, C: int, *, wrank: int | None = None, urank: int | None = None,
                 gate_nl: str = "sigmoid", update_nl: str = "tanh", seed: int = 0) -> FloatModel:
    """A FastGRNN or FastRNN of shape D -> H -> C with EdgeML-like random weights: ``W``/``U``
    dense, or factored at rank ``wrank``/``urank``; the given nonlinearities (FastRNN has no gate)."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0.0, 1.0 / np.sqrt(rows), (rows, cols)).astype(np.float32)

    a: dict[str, np.ndarray] = {}
    for name, rows, rank in (("W", D, wrank), ("U", H, urank)):
        if rank:
            a[name + "1"], a[name + "2"] = mat(rows, rank), mat(rank, H)
        else:
            a[name] = mat(rows, H)
    if cell == "FastGRNN":
        a["Bg"] = rng.normal(1.0, 0.3, (1, H)).astype(np.float32)
        a["Bh"] = rng.normal(0.0, 0.3, (1, H)).astype(np.float32)
        a["zeta"] = np.array([[1.0]], np.float32)
        a["nu"] = np.array([[-4.0]], np.float32)
        a["gate_nonlinearity"] = np.array(gate_nl)
    else:
        a["B"] = rng.normal(0.0, 0.3, (1, H)).astype(np.float32)
        a["alpha"] = np.array([[-3.0]], np.float32)
        a["beta"] = np.array([[3.0]], np.float32)
    a["update_nonlinearity"] = np.array(update_nl)
    a["FC"] = (2.0 * mat(H, C)).astype(np.float32)
    a["FCbias"] = rng.normal(0.0, 0.1, C).astype(np.float32)
    a["mean"] = np.zeros(D, np.float32)
    a["std"] = np.ones(D, np.float32)
    fm = model_from_arrays(a)
    return dataclasses.replace(fm, sha256=fm.content_hash())
