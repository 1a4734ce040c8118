"""Accuracy under bounded input perturbation, float model vs the bit-exact integer simulator.

Perturbations ``delta`` live in normalised units (``||delta||_inf <= eps`` on ``(x - mean) / std``)
and are mapped back to raw units, ``x_raw = x + delta * std``, before the float reference and the
integer simulator (through its own input quantization) see them; at ``eps = 0`` both see exactly
the clean inputs.

- ``random``: ``delta`` uniform in the L-inf ball, several draws; the accuracy is averaged.
- ``worst``: projected gradient ascent (PGD) on the float model's cross-entropy, started from
  every random draw, plus one FGSM step from the clean input. A sequence counts as correct only
  when it is correct under every random draw and every attack result, so the worst-case accuracy
  is never above the random one (for the float model and for the integer simulator alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecompile.analysis.dynamics import model_params
from edgecompile.errors import DataError
from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.reference import forward, normalise
from edgecompile.sim.simulator import quantize_inputs, simulate
from edgecompile.train.cells import input_gradient

DEFAULT_EPS: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3)
GRADIENT_BATCH = 256  # sequences per gradient evaluation (small products run fastest)


@dataclass(frozen=True)
class PerturbationRow:
    eps: float
    kind: str  # "random" | "worst"
    accuracy_float: float
    accuracy_quantized: float

    def to_json(self) -> dict:
        return {"eps": self.eps, "kind": self.kind, "accuracy_float": self.accuracy_float,
                "accuracy_quantized": self.accuracy_quantized}


def parse_eps(text: str | None) -> list[float]:
    """``"0.01,0.1"`` → sorted unique radii, always holding 0; bad text raises :class:`DataError`."""
    if text is None:
        return list(DEFAULT_EPS)
    values = [0.0]
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise DataError(f"--eps: {part!r} is not a number (expected a list like 0.01,0.03,0.1)") from None
        if not np.isfinite(v) or v < 0:
            raise DataError(f"--eps: {part} must be a finite number >= 0")
        values.append(v)
    return sorted(set(values))


def _correct_float(model: FloatModel, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return forward(model, X).argmax(axis=1) == y


def _correct_quantized(qm: QuantizedModel, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return simulate(qm, quantize_inputs(qm, X)).argmax(axis=1) == y


def perturbation_sweep(model: FloatModel, qm: QuantizedModel, X: np.ndarray, y: np.ndarray,
                       eps_list: list[float], draws: int = 5, pgd_steps: int = 10,
                       seed: int = 0) -> list[PerturbationRow]:
    """One ``random`` and one ``worst`` row per eps (raw inputs ``X [N, T, D]``, labels ``y``)."""
    n, steps, dims = X.shape
    _, std = model.normalisation(steps)
    std = np.asarray(std)
    Xn = normalise(model, X)
    params = model_params(model)
    rng = np.random.default_rng(seed)
    clean_f = _correct_float(model, X, y)
    clean_q = _correct_quantized(qm, X, y)
    rows: list[PerturbationRow] = []
    y_rep = np.tile(y, draws)
    X_rep = np.tile(X, (draws, 1, 1))
    Xn_rep = np.tile(Xn, (draws, 1, 1))

    def grad(delta: np.ndarray, xn: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = np.empty_like(xn)
        for s in range(0, xn.shape[0], GRADIENT_BATCH):
            part = slice(s, s + GRADIENT_BATCH)
            out[part] = input_gradient(params, xn[part] + delta[part], labels[part],
                                       model.gate_nl, model.update_nl)[2]
        return out

    for eps in eps_list:
        if eps == 0.0:
            acc_f, acc_q = float(clean_f.mean()), float(clean_q.mean())
            rows += [PerturbationRow(0.0, "random", acc_f, acc_q), PerturbationRow(0.0, "worst", acc_f, acc_q)]
            continue
        starts = rng.uniform(-eps, eps, size=(draws * n, steps, dims))
        rand_f = _correct_float(model, X_rep + starts * std, y_rep).reshape(draws, n)
        rand_q = _correct_quantized(qm, X_rep + starts * std, y_rep).reshape(draws, n)

        delta = starts.copy()
        alpha = 2.5 * eps / max(1, pgd_steps)
        for _ in range(pgd_steps):
            delta = np.clip(delta + alpha * np.sign(grad(delta, Xn_rep, y_rep)), -eps, eps)
        fgsm = eps * np.sign(grad(np.zeros_like(Xn), Xn, y))
        attacked = np.concatenate([X_rep + delta * std, X + fgsm * std])
        labels = np.concatenate([y_rep, y])
        att_f = _correct_float(model, attacked, labels).reshape(draws + 1, n)
        att_q = _correct_quantized(qm, attacked, labels).reshape(draws + 1, n)

        worst_f = rand_f.all(axis=0) & att_f.all(axis=0)
        worst_q = rand_q.all(axis=0) & att_q.all(axis=0)
        rows += [
            PerturbationRow(float(eps), "random", float(rand_f.mean()), float(rand_q.mean())),
            PerturbationRow(float(eps), "worst", float(worst_f.mean()), float(worst_q.mean())),
        ]
    return rows
