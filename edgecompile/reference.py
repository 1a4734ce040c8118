"""Float reference forward: batched NumPy, float64 inside, exactly EdgeML's equations (ERNN: the
K-step recurrence of Kag, Zhang and Saligrama, ``docs/ernn.md``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import numpy as np

from edgecompile.errors import DataError
from edgecompile.frontend.data import check_fits
from edgecompile.ir.model import ERNNParams, FastGRNNParams, FloatModel

ArrayOrFloat = np.ndarray | float


def sigmoid(x: ArrayOrFloat) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


NONLINEAR_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "quantSigm": lambda x: np.clip((x + 1.0) / 2.0, 0.0, 1.0),
    "quantTanh": lambda x: np.clip(x, -1.0, 1.0),
    "quantSigm4": lambda x: np.clip((x + 2.0) / 4.0, 0.0, 1.0),
    # unbounded here; the integer kernel saturates its input to [-8, 8) (docs/fixed-point.md)
    "relu": lambda x: np.maximum(x, 0.0),
}


def normalise(model: FloatModel, X: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per time step (mean/std of length D, or T*D), float64."""
    X = np.asarray(X, dtype=np.float64)
    mean, std = model.normalisation(X.shape[1])
    return (X - mean) / std


@overload
def forward(model: FloatModel, X: np.ndarray, return_states: Literal[False] = False) -> np.ndarray: ...
@overload
def forward(model: FloatModel, X: np.ndarray, return_states: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...
def forward(
    model: FloatModel, X: np.ndarray, return_states: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Logits ``[N, C]`` for raw inputs ``X [N, T, D]``; with ``return_states`` also ``[N, T, H]``.

    ``X`` that does not fit the model (not 3-D, wrong D, or wrong T under T*D normalisation)
    raises :class:`DataError`.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise DataError(f"inputs have shape {list(X.shape)}, expected [N,T,D]")
    check_fits(X, model, "inputs")
    Xn = normalise(model, X)
    n, steps, _ = Xn.shape
    W, U = model.W.dense(), model.U.dense()
    update_nl = NONLINEAR_FUNCTIONS[model.update_nl]
    h = np.zeros((n, model.hidden_dim))
    states = np.empty((n, steps, model.hidden_dim)) if return_states else None
    p = model.params
    if isinstance(p, FastGRNNParams):
        gate_nl = NONLINEAR_FUNCTIONS[p.gate_nl]
        zeta, nu = sigmoid(np.float64(p.zeta)), sigmoid(np.float64(p.nu))

        def cell(pre: np.ndarray, h: np.ndarray) -> np.ndarray:
            z = gate_nl(pre + p.bias_gate)
            c = update_nl(pre + p.bias_update)
            return z * h + (zeta * (1.0 - z) + nu) * c
    elif isinstance(p, ERNNParams):
        eta, decay = p.eta, np.float64(p.alpha)

        def inner(xw: np.ndarray, h: np.ndarray) -> np.ndarray:
            """K inner steps from g_0 = h; x @ W + B is computed once per time step."""
            drive, g = xw + p.bias, h
            for step in eta:
                s = g + h
                g = g + step * (update_nl(s @ U + drive) - decay * s)
            return g
    else:
        alpha, beta = sigmoid(np.float64(p.alpha)), sigmoid(np.float64(p.beta))

        def cell(pre: np.ndarray, h: np.ndarray) -> np.ndarray:
            return beta * h + alpha * update_nl(pre + p.bias)

    for t in range(steps):
        if isinstance(p, ERNNParams):
            h = inner(Xn[:, t, :] @ W, h)
        else:
            h = cell(Xn[:, t, :] @ W + h @ U, h)
        if states is not None:
            states[:, t, :] = h
    logits = h @ model.FC + model.FCbias
    if states is None:
        return logits
    return logits, states
