"""Flash, static RAM and cycles per step of the generated firmware, predicted without building.

The prediction is a linear model per board over counts the generated code depends on
(:func:`features`): weight bytes of the dense and of the sparse factors, index bytes, rows,
multiply-accumulates at each bit width and storage, H, D, C, the cell. The coefficients are
fitted by least squares to measured builds of the parity firmware (``edgecompile build``:
flash = ``.text + .data``, RAM = static ``.data + .bss``) and to the cycles per step that
``edgecompile verify --emulate`` reports, and shipped in ``costmodel.json`` beside this module.
``benchmarks/fit_costmodel.py`` re-measures and refits them (re-run it whenever the kernels or
the firmware harness change).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.errors import BoardError
from edgecompile.ir.qmodel import QFactor, QuantizedModel

COSTMODEL_PATH = Path(__file__).with_name("costmodel.json")
TARGETS = ("flash", "ram", "cycles")

#: The features each target is a linear function of (the names of :func:`features`' keys).
TERMS: dict[str, tuple[str, ...]] = {
    "flash": ("one", "weight_bytes_dense", "weight_bytes_sparse", "index_bytes", "rows_dense",
              "factors_dense", "factors_sparse", "hidden", "grnn", "bits16"),
    "ram": ("one", "hidden", "inputs", "classes", "ranks", "grnn", "bits16", "frame_bytes"),
    "cycles": ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_dense",
               "rows_sparse", "rows16", "hidden", "grnn_hidden", "inputs", "factors", "fc_per_step",
               "per_step"),
}


def _uint_bytes(max_value: int) -> int:
    """Bytes of the smallest unsigned C type holding ``max_value`` (as the generated code picks)."""
    return 1 if max_value <= 0xFF else 2 if max_value <= 0xFFFF else 4


def _factors(qm: QuantizedModel) -> list[QFactor]:
    return [*qm.W.factors, *qm.U.factors]


def features(qm: QuantizedModel, steps: int) -> dict[str, float]:
    """The counts the generated code of ``qm`` depends on, for sequences of ``steps`` steps."""
    wbytes = qm.bits // 8
    f: dict[str, float] = dict.fromkeys(
        ("weight_bytes_dense", "weight_bytes_sparse", "index_bytes", "rows_dense", "rows_sparse",
         "factors_dense", "factors_sparse", "macs_dense8", "macs_dense16", "macs_sparse8",
         "macs_sparse16"), 0.0)
    for fac in (*_factors(qm), qm.FC):
        rows_in, out = fac.shape
        if fac is qm.FC:  # stored like the others, computed once per sequence
            if fac.sparse:
                nnz = max(fac.nonzeros, 1)
                f["weight_bytes_sparse"] += nnz * wbytes
                f["index_bytes"] += nnz * _uint_bytes(rows_in - 1) + (out + 1) * _uint_bytes(nnz)
            else:
                f["weight_bytes_dense"] += fac.values.size * wbytes
            continue
        if fac.sparse:
            nnz = max(fac.nonzeros, 1)
            f["weight_bytes_sparse"] += nnz * wbytes
            f["index_bytes"] += nnz * _uint_bytes(rows_in - 1) + (out + 1) * _uint_bytes(nnz)
            f["rows_sparse"] += out
            f["factors_sparse"] += 1
            f[f"macs_sparse{qm.bits}"] += fac.nonzeros
        else:
            f["weight_bytes_dense"] += fac.values.size * wbytes
            f["rows_dense"] += out
            f["factors_dense"] += 1
            f[f"macs_dense{qm.bits}"] += fac.values.size
    H, D, C = qm.hidden_dim, qm.input_dim, qm.num_classes
    grnn = 1.0 if qm.cell == "FastGRNN" else 0.0
    ranks = sum(m.factors[0].shape[1] for m in (qm.W, qm.U) if m.low_rank)
    f.update(one=1.0, hidden=H, inputs=D, classes=C, ranks=ranks, grnn=grnn,
             bits16=1.0 if qm.bits == 16 else 0.0, grnn_hidden=grnn * H,
             factors=f["factors_dense"] + f["factors_sparse"],
             fc_per_step=(H * C) / max(steps, 1), per_step=1.0 / max(steps, 1))
    return f


@dataclass(frozen=True)
class Cost:
    flash_bytes: int
    ram_bytes: int
    cycles_per_step: float


#: Bytes of the firmware's frame header, step-request fields, reply fields, info body and CRC
#: (``firmware/harness/ech_proto.h``): the serial frame buffer is the largest message.
_HEADER, _STEP_REQ, _REPLY, _INFO, _CRC = 3, 4, 6, 88, 2


def frame_bytes(feats: Mapping[str, float], frame_steps: int) -> float:
    """The harness's frame buffer for a board whose firmware takes ``frame_steps`` steps a frame."""
    request = _HEADER + _STEP_REQ + 2 * feats["inputs"] * frame_steps
    reply = _HEADER + _REPLY + 2 * feats["hidden"] + 4 * feats["classes"]
    return max(request, reply, _HEADER + _INFO) + _CRC


@dataclass(frozen=True)
class BoardCostModel:
    board: str
    coefficients: Mapping[str, Mapping[str, float]]  # target -> term -> coefficient
    errors: Mapping[str, float]  # target -> worst relative error on held-out builds
    frame_steps: int = 1  # steps per serial frame of the board's firmware (fitted)

    def terms(self, feats: Mapping[str, float]) -> dict[str, float]:
        return {**feats, "frame_bytes": frame_bytes(feats, self.frame_steps),
                "rows16": (feats["rows_dense"] + feats["rows_sparse"]) * feats["bits16"]}

    def predict(self, feats: Mapping[str, float]) -> Cost:
        full = self.terms(feats)

        def one(target: str) -> float:
            return float(sum(c * full[t] for t, c in self.coefficients[target].items()))

        return Cost(int(round(one("flash"))), int(round(one("ram"))), round(one("cycles"), 1))


def load(path: Path | None = None) -> dict[str, BoardCostModel]:
    """The fitted cost models by board id."""
    data = json.loads((path or COSTMODEL_PATH).read_text())
    return {b: BoardCostModel(b, rec["coefficients"], rec.get("held_out_worst_error", {}),
                              int(rec.get("frame_steps", 1)))
            for b, rec in data["boards"].items()}


def for_board(board: str, path: Path | None = None) -> BoardCostModel:
    """The cost model of ``board``; a :class:`BoardError` naming the boards that have one."""
    models = load(path)
    if board not in models:
        raise BoardError(f"no fitted cost model for board '{board}'; boards with one: "
                         f"{', '.join(sorted(models))} (benchmarks/fit_costmodel.py measures more)")
    return models[board]


def fit_linear(rows: Sequence[Mapping[str, float]], measured: Sequence[float],
               terms: Sequence[str], ridge: float = 1e-6) -> dict[str, float]:
    """Least-squares coefficients of ``measured ~ sum(c_t * row[t])``, each row weighted by
    ``1 / measured`` so that the relative errors are what is minimised (a tiny ridge keeps
    terms that never vary in the sample at zero)."""
    b0 = np.asarray(measured, dtype=float)
    w = 1.0 / np.maximum(np.abs(b0), 1e-12)
    A = np.array([[float(r[t]) for t in terms] for r in rows]) * w[:, None]
    b = b0 * w
    scale = np.maximum(np.abs(A).max(axis=0), 1e-12)
    As = A / scale
    coef = np.linalg.solve(As.T @ As + ridge * np.eye(len(terms)), As.T @ b) / scale
    return {t: float(c) for t, c in zip(terms, coef, strict=True)}


def relative_errors(model: BoardCostModel, rows: Sequence[Mapping[str, float]],
                    measured: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """|predicted - measured| / measured per target, for each row."""
    out: dict[str, list[float]] = {t: [] for t in TARGETS}
    for r, m in zip(rows, measured, strict=True):
        p = model.predict(r)
        for t, v in (("flash", p.flash_bytes), ("ram", p.ram_bytes), ("cycles", p.cycles_per_step)):
            out[t].append(abs(v - m[t]) / m[t])
    return out


def to_json(models: Mapping[str, Any]) -> str:
    return json.dumps(models, indent=2, sort_keys=True) + "\n"
