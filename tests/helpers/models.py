"""Random but plausible models for tests: EdgeML-like initialisation and scales."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgecompile.frontend.checkpoint import model_from_arrays
from edgecompile.ir.model import FloatModel


def make_arrays(
    cell: str = "FastGRNN",
    D: int = 6,
    H: int = 8,
    C: int = 4,
    wrank: int | None = None,
    urank: int | None = None,
    sparsity: float = 0.0,
    T: int | None = None,
    norm: str | None = "D",
    gate_nl: str = "sigmoid",
    update_nl: str = "tanh",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Named float32 arrays in EdgeML layout. ``norm``: None, "D" or "TD" (needs ``T``)."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        m = rng.normal(0.0, scale / np.sqrt(rows), (rows, cols))
        if sparsity > 0:
            m[np.abs(m) < np.quantile(np.abs(m), sparsity)] = 0.0
        return m.astype(np.float32)

    a: dict[str, np.ndarray] = {}
    for name, rows, rank in (("W", D, wrank), ("U", H, urank)):
        if rank:
            a[name + "1"], a[name + "2"] = mat(rows, rank, 1.0), mat(rank, H, 1.0)
        else:
            a[name] = mat(rows, H, 1.0)
    if cell == "FastGRNN":
        a["Bg"] = rng.normal(1.0, 0.3, (1, H)).astype(np.float32)
        a["Bh"] = rng.normal(0.0, 0.3, (1, H)).astype(np.float32)
        a["zeta"] = np.array([[rng.normal(1.0, 0.5)]], np.float32)
        a["nu"] = np.array([[rng.normal(-4.0, 0.5)]], np.float32)
    else:
        a["B"] = rng.normal(0.0, 0.3, (1, H)).astype(np.float32)
        a["alpha"] = np.array([[rng.normal(-3.0, 0.5)]], np.float32)
        a["beta"] = np.array([[rng.normal(3.0, 0.5)]], np.float32)
    a["FC"] = mat(H, C, 2.0)
    a["FCbias"] = rng.normal(0.0, 0.1, C).astype(np.float32)
    if norm:
        assert norm == "D" or T is not None, "norm='TD' needs T"
        n = D if norm == "D" or T is None else T * D
        a["mean"] = rng.normal(0.0, 1.0, n).astype(np.float32)
        a["std"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
    if gate_nl != "sigmoid" and cell == "FastGRNN":
        a["gate_nonlinearity"] = np.array(gate_nl)
    if update_nl != "tanh":
        a["update_nonlinearity"] = np.array(update_nl)
    return a


def make_model(**kwargs: Any) -> FloatModel:
    model = model_from_arrays(make_arrays(**kwargs))
    return dataclasses.replace(model, sha256=model.content_hash())


def make_inputs(model: FloatModel, n: int = 16, T: int = 10, seed: int = 1) -> np.ndarray:
    """Raw inputs that the model's normalisation maps to roughly unit scale."""
    rng = np.random.default_rng(seed)
    T = model.seq_len or T
    mean, std = model.normalisation(T)
    return mean + std * rng.normal(0.0, 1.0, (n, T, model.input_dim))
