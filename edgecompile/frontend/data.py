"""Input data: raw float sequences ``[N, T, D]`` (or one ``[T, D]``) and integer labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecompile.errors import DataError
from edgecompile.files import read_npy
from edgecompile.ir.model import FloatModel


def load_sequences(path: str | os.PathLike, model: FloatModel | None = None) -> np.ndarray:
    """Read ``X.npy`` as float64 ``[N, T, D]``; checks D (and T for T*D normalisation)."""
    X = _load_npy(path)
    if X.dtype.kind not in "fiu":
        raise DataError(f"{path}: dtype {X.dtype}, expected float sequences [N,T,D]")
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.size == 0:
        raise DataError(f"{path}: shape {list(X.shape)}, expected [N,T,D] or [T,D] with N,T,D > 0")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise DataError(f"{path}: contains NaN or Inf")
    if model is not None:
        check_fits(X, model, str(path))
        check_normalised(X, model, str(path))
    return X


#: Largest |normalised input| times the largest column sum of |W| that the float reference
#: computes without float64 overflow (with a wide margin for the recurrent terms).
NORMALISED_LIMIT = 1e300


def check_normalised(X: np.ndarray, model: FloatModel, source: str = "data") -> None:
    """Raise :class:`DataError` unless ``(x - mean) / std`` is finite and small enough that
    ``x_t @ W`` cannot overflow float64 (the float reference and the quantizer's calibration
    compute it)."""
    with np.errstate(all="ignore"):
        mean, std = model.normalisation(X.shape[1])
        peak = float(np.max(np.abs((X - mean) / std)))
        gain = float(np.max(np.sum(np.abs(model.W.dense()), axis=0)))
        reach = peak * max(gain, 1.0)
    if not np.isfinite(peak):
        raise DataError(
            f"{source}: not finite after normalisation ((x - mean) / std overflows float64 "
            f"for |x| up to {float(np.max(np.abs(X))):.3g})"
        )
    if not reach < NORMALISED_LIMIT:
        raise DataError(
            f"{source}: normalised inputs reach |x| = {peak:.3g}; x @ W would overflow float64 "
            f"(|x| times the largest column sum of |W| must stay below {NORMALISED_LIMIT:.0e})"
        )


def check_fits(X: np.ndarray, model: FloatModel, source: str = "data") -> None:
    """Raise :class:`DataError` unless ``X [N, T, D]`` fits the model's D (and T)."""
    if X.shape[2] != model.input_dim:
        raise DataError(f"{source}: D={X.shape[2]} but the model takes D={model.input_dim}")
    if model.seq_len is not None and X.shape[1] != model.seq_len:
        raise DataError(
            f"{source}: T={X.shape[1]} but the model's mean/std cover T={model.seq_len} steps"
        )


def load_labels(path: str | os.PathLike, n: int, num_classes: int | None = None) -> np.ndarray:
    """Read ``y.npy``: ``n`` integer class ids in ``[0, num_classes)`` (``>= 0`` when the number
    of classes is not known yet, as when training)."""
    y = _load_npy(path)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: dtype {y.dtype}, expected integer class labels")
    y = y.reshape(-1).astype(np.int64)
    if y.size != n:
        raise DataError(f"{path}: {y.size} labels for {n} sequences")
    if y.size and y.min() < 0:
        raise DataError(f"{path}: labels must be class ids 0..C-1 (found {y.min()})")
    if y.size and num_classes is not None and y.max() >= num_classes:
        raise DataError(f"{path}: labels must lie in [0, {num_classes - 1}]")
    return y


def _load_npy(path: str | os.PathLike) -> np.ndarray:
    return read_npy(Path(path), DataError)
