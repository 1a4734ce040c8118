"""Training inputs from ``X.npy`` + ``y.npy`` or from a UEA/UCR ``.ts`` file."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgecompile.errors import DataError
from edgecompile.frontend.data import load_labels, load_sequences
from edgecompile.frontend.tsfile import read_ts


@dataclass
class TrainingData:
    X: np.ndarray  # raw float64 [N, T, D], variable-length series front-padded
    y: np.ndarray  # int64 [N] in 0..C-1
    lengths: np.ndarray | None  # real lengths before padding (.ts only)
    class_labels: list[str] | None  # .ts class names in label order


def load_training_data(
    data: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    length: int | None = None,
    pad: str = "edge",
) -> TrainingData:
    """Read ``data`` (``.npy`` [N,T,D] or ``.ts``) and the labels (``labels`` wins if given).

    ``.ts`` series are front-padded to ``length`` (default: the longest), see
    :mod:`edgecompile.frontend.tsfile`; ``length`` also truncates/pads ``.npy`` input the same way.
    """
    if str(data).lower().endswith(".ts"):
        ds = read_ts(data)
        X = ds.padded(length, pad)
        lengths = np.minimum(ds.lengths, X.shape[1])
        classes = ds.class_labels
        if labels is not None:
            y = load_labels(labels, X.shape[0])
            classes = None  # the file's class names no longer describe these ids
        elif ds.labels is not None:
            y = ds.labels
        else:
            raise DataError(f"{data}: the file has no class labels (@classLabel false); give --labels")
    else:
        if labels is None:
            raise DataError("--labels y.npy is required with .npy data (only .ts files carry labels)")
        X = load_sequences(data)
        if length is not None and length != X.shape[1]:
            from edgecompile.frontend.tsfile import pad_series

            X = pad_series(list(X), length, pad)
        lengths, classes = None, None
        y = load_labels(labels, X.shape[0])
    if np.unique(y).size < 2:
        raise DataError(f"{labels or data}: training needs at least two classes")
    return TrainingData(X=X, y=y, lengths=lengths, class_labels=classes)
