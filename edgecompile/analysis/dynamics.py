"""The cell as a dynamical system: per-step Jacobians, hidden-state growth, transient amplification.

Row-vector convention: a perturbation of the state moves as ``dh_t = dh_{t-1} @ J_t`` with

FastGRNN::

    J_t = diag(z) + U @ diag(dz * (h_{t-1} - sigmoid(zeta) * c) + (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * dc)

FastRNN::

    J_t = sigmoid(beta) * I + U @ diag(sigmoid(alpha) * dc)

ERNN: the product of its K inner steps' linearisations (:func:`_ernn_jacobians`).

where ``z``/``c`` are the gate and update values at the step and ``dz``/``dc`` their derivatives.
The gate makes the linearisation state-dependent, so it is evaluated at real (calibration) states.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np

from edgecompile.ir.model import ERNNParams, FastGRNNParams, FloatModel
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.reference import forward, sigmoid
from edgecompile.sim.simulator import quantize_inputs, simulate
from edgecompile.train.cells import nonlinearity_and_derivative


def model_params(model: FloatModel) -> dict[str, np.ndarray]:
    """The trainer's parameter dict (EdgeML names, vectors 1-D, scalars 0-d) of a float model."""
    out: dict[str, np.ndarray] = {}
    for name, value in model.arrays().items():
        if name in ("mean", "std"):
            continue
        arr = np.asarray(value, dtype=np.float64)
        if name in ("Bg", "Bh", "B", "FCbias"):
            arr = arr.reshape(-1)
        elif name in ("zeta", "nu", "alpha", "beta"):
            arr = arr.reshape(())
        out[name] = arr
    return out


def step_jacobians(model: FloatModel, h_prev: np.ndarray, x_n: np.ndarray) -> np.ndarray:
    """``J [M, H, H]`` of one step at states ``h_prev [M, H]`` and normalised inputs ``x_n [M, D]``."""
    W, U = model.W.dense(), model.U.dense()
    pre = x_n @ W + h_prev @ U
    p = model.params
    if isinstance(p, FastGRNNParams):
        c, dc = nonlinearity_and_derivative(model.update_nl, pre + p.bias_update)
        z, dz = nonlinearity_and_derivative(p.gate_nl, pre + p.bias_gate)
        zeta, nu = sigmoid(np.float64(p.zeta)), sigmoid(np.float64(p.nu))
        diag, g = z, dz * (h_prev - zeta * c) + (zeta * (1.0 - z) + nu) * dc
    elif isinstance(p, ERNNParams):
        return _ernn_jacobians(model, p, h_prev, x_n @ W, U)
    else:
        c, dc = nonlinearity_and_derivative(model.update_nl, pre + p.bias)
        beta, alpha = sigmoid(np.float64(p.beta)), sigmoid(np.float64(p.alpha))
        diag, g = np.full_like(pre, beta), alpha * dc
    J = U[None, :, :] * g[:, None, :]
    idx = np.arange(U.shape[0])
    J[:, idx, idx] += diag
    return J


def _ernn_jacobians(model: FloatModel, p: ERNNParams, h: np.ndarray, xw: np.ndarray, U: np.ndarray) -> np.ndarray:
    """ERNN's ``dh_t/dh_{t-1}`` through its K inner steps: with ``G_0 = I`` and ``S_i = G_{i-1} + I``
    (the derivative of ``s_i = g_{i-1} + h``), ``G_i = G_{i-1} + eta_i (S_i U diag(phi'_i) - alpha S_i)``."""
    eye = np.eye(h.shape[1])
    G = np.broadcast_to(eye, (h.shape[0], *eye.shape)).copy()
    g = h
    for eta in p.eta:
        s = g + h
        phi, dphi = nonlinearity_and_derivative(model.update_nl, s @ U + xw + p.bias)
        S = G + eye
        G = G + eta * ((S @ U) * dphi[:, None, :] - p.alpha * S)
        g = g + eta * (phi - p.alpha * s)
    return G


_M = TypeVar("_M", FloatModel, QuantizedModel)


def _unnormalised(model: _M) -> _M:
    """The same model reading already-normalised inputs (any sequence length)."""
    return dataclasses.replace(model, mean=None, std=None)


def float_states(model: FloatModel, Xn: np.ndarray) -> np.ndarray:
    """Float hidden states ``[N, T, H]`` for normalised inputs (the reference forward)."""
    return forward(_unnormalised(model), Xn, return_states=True)[1]


def quantized_states(qm: QuantizedModel, Xn: np.ndarray) -> np.ndarray:
    """Integer-simulator hidden states ``[N, T, H]`` for normalised inputs, dequantized."""
    q0 = _unnormalised(qm)
    states = simulate(q0, quantize_inputs(q0, Xn), return_states=True)[1]
    return states.astype(np.float64) / float(2**qm.hid_frac)


def jacobian_radii(model: FloatModel, Xn: np.ndarray, states: np.ndarray, max_points: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Spectral radius of ``J_t`` at up to ``max_points`` (sequence, step) pairs of the data."""
    n, steps, H = states.shape
    h_prev = np.concatenate([np.zeros((n, 1, H)), states[:, :-1]], axis=1).reshape(-1, H)
    x = Xn.reshape(-1, Xn.shape[2])
    pick = np.arange(h_prev.shape[0])
    if pick.size > max_points:
        pick = np.sort(rng.choice(pick.size, size=max_points, replace=False))
    J = step_jacobians(model, h_prev[pick], x[pick])
    return np.abs(np.linalg.eigvals(J)).max(axis=1)


def tiled_horizon(Xn: np.ndarray, steps: int, max_sequences: int) -> np.ndarray:
    """Inputs ``[S, steps, D]``: sequence ``i`` followed by ``i+1, i+2, ...`` (cyclically)."""
    n, T, _ = Xn.shape
    s = min(n, max_sequences)
    reps = -(-steps // T)
    rows = [np.concatenate([Xn[(i + k) % n] for k in range(reps)], axis=0)[:steps] for i in range(s)]
    return np.stack(rows)


def tangent_norms(model: FloatModel, Xn: np.ndarray) -> np.ndarray:
    """``||dh_t / dh_0||_2`` for ``t = 0..T`` per sequence ``[S, T + 1]``, from ``h_0 = 0``.

    The exact worst-case amplification (over unit directions) of a perturbation of the initial
    state, through the products of the per-step Jacobians, renormalised every step (kept as
    logarithms, so no overflow)."""
    n, steps, _ = Xn.shape
    H = model.hidden_dim
    states = float_states(model, Xn)
    M = np.broadcast_to(np.eye(H), (n, H, H)).copy()
    log_scale = np.zeros(n)
    out = np.empty((n, steps + 1))
    out[:, 0] = 0.0
    h_prev = np.zeros((n, H))
    for t in range(steps):
        M = M @ step_jacobians(model, h_prev, Xn[:, t])
        norms = np.linalg.norm(M, 2, axis=(1, 2))
        safe = np.where(norms > 0, norms, 1.0)
        log_scale += np.log(safe)
        out[:, t + 1] = np.where(norms > 0, log_scale, -np.inf)
        M /= safe[:, None, None]
        h_prev = states[:, t]
    return np.exp(out)
