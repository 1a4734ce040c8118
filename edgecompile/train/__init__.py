"""NumPy training of FastGRNN/FastRNN classifiers: BPTT + Adam, low rank, sparsity, QAT.

``train(X, y, TrainConfig(...))`` returns a :class:`TrainResult` whose ``model`` is a validated
:class:`~edgecompile.ir.model.FloatModel`; :func:`load_training_data` reads ``.npy`` or ``.ts``
inputs the way the ``train`` command does.
"""

from edgecompile.train.data import load_training_data
from edgecompile.train.trainer import EpochLog, TrainConfig, TrainResult, train

__all__ = ["EpochLog", "TrainConfig", "TrainResult", "load_training_data", "train"]
