"""One trial of the search: train, quantize, score on validation with the bit-exact simulator.

:func:`run_trial` is what a Dask worker runs; it takes plain arrays and returns plain data
(the result record and the checkpoint's bytes), so workers need no shared file system.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecompile.errors import EdgecompileError, one_line
from edgecompile.fit.costmodel import features
from edgecompile.fit.space import Candidate

#: Calibration sequences (from the training part) given to the quantizer.
CALIB_MAX = 256


@dataclass(frozen=True)
class TrialData:
    X_train: np.ndarray
    y_train: np.ndarray
    lengths_train: np.ndarray | None
    X_val: np.ndarray
    y_val: np.ndarray


def run_trial(cand: Candidate, data: TrialData, epochs: int, seed: int,
              profile: str = "precise") -> tuple[dict[str, Any], bytes | None]:
    """Train ``cand`` (seeded from its configuration), quantize it calibrated on the training
    part in ``profile`` (``auto``, what ``export`` takes by default, or an explicit profile) and score
    the integer simulator on the validation part. Returns (record, checkpoint); the record's
    ``profile`` is the one the quantizer took and its features are those of that model."""
    from edgecompile.frontend.checkpoint import checkpoint_bytes
    from edgecompile.quant.quantizer import quantize
    from edgecompile.sim.simulator import predict_quantized
    from edgecompile.train import TrainConfig, train

    t0 = time.monotonic()
    record: dict[str, Any] = {**cand.to_dict(), "accuracy_val": None, "accuracy_train": None,
                              "features": None, "profile": None, "error": None}
    cfg = TrainConfig(cell=cand.cell, hidden=cand.hidden, wrank=cand.wrank or None,
                      urank=cand.urank or None, sparsity=cand.sparsity, epochs=epochs,
                      inner_steps=cand.inner_steps or None, seed=cand.train_seed(seed))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg.check()
            result = train(data.X_train, data.y_train, cfg, data.lengths_train)
            qm = quantize(result.model, bits=cand.bits, calib=data.X_train[:CALIB_MAX], profile=profile)
            with np.errstate(all="ignore"):
                logits = predict_quantized(qm, data.X_val)
    except (EdgecompileError, FloatingPointError, ValueError) as exc:
        record.update(error=one_line(exc), seconds=round(time.monotonic() - t0, 3))
        return record, None
    record.update(accuracy_val=float(np.mean(np.argmax(logits, axis=1) == data.y_val)),
                  accuracy_train=float(result.train_acc),
                  features=features(qm, int(data.X_val.shape[1])), profile=qm.profile,
                  seconds=round(time.monotonic() - t0, 3))
    return record, checkpoint_bytes(result.model)
