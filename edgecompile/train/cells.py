"""Forward pass and hand-written BPTT gradients of the exact reference equations, float64.

Parameters live in a dict under their EdgeML checkpoint names: ``W`` or ``W1``/``W2``, ``U`` or
``U1``/``U2``, ``Bg``/``Bh``/``zeta``/``nu`` (FastGRNN) or ``B``/``alpha``/``beta`` (FastRNN),
``FC`` and ``FCbias``. Vectors are 1-D, scalars 0-d, matrices ``[in, out]`` (``x @ W``), and
the forward pass is the one of :func:`edgecompile.reference.forward` on normalised inputs:

FastGRNN::

    pre = x_t @ W + h @ U
    z = gate_nl(pre + Bg); c = update_nl(pre + Bh)
    h = z * h + (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * c

FastRNN::

    h = sigmoid(beta) * h + sigmoid(alpha) * update_nl(x_t @ W + h @ U + B)

The loss is the mean softmax cross-entropy of ``h_T @ FC + FCbias``.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from edgecompile.reference import sigmoid

MATRIX_NAMES = ("W", "W1", "W2", "U", "U1", "U2")


def _nl(name: str | None, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A nonlinearity's value and derivative at ``x`` (the same formulas as the reference)."""
    if name == "sigmoid":
        y = sigmoid(x)
        return y, y * (1.0 - y)
    if name == "tanh":
        y = np.tanh(x)
        return y, 1.0 - y * y
    if name == "quantSigm":
        return np.clip((x + 1.0) / 2.0, 0.0, 1.0), np.where(np.abs(x) < 1.0, 0.5, 0.0)
    if name == "quantTanh":
        return np.clip(x, -1.0, 1.0), np.where(np.abs(x) < 1.0, 1.0, 0.0)
    if name == "quantSigm4":
        return np.clip((x + 2.0) / 4.0, 0.0, 1.0), np.where(np.abs(x) < 2.0, 0.25, 0.0)
    if name == "relu":
        return np.maximum(x, 0.0), np.where(x > 0.0, 1.0, 0.0)
    raise ValueError(f"unknown nonlinearity {name!r}")


def dense(params: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The full ``[in, out]`` matrix ``name`` (``W`` or ``U``), multiplying low-rank factors."""
    if name in params:
        return params[name]
    return params[name + "1"] @ params[name + "2"]


def cell_of(params: dict[str, np.ndarray]) -> str:
    return "FastGRNN" if "zeta" in params else "FastRNN"


def logits(
    params: dict[str, np.ndarray], Xn: np.ndarray, gate_nl: str | None = "sigmoid", update_nl: str = "tanh"
) -> np.ndarray:
    """Logits ``[N, C]`` for normalised inputs ``Xn [N, T, D]`` (no gradient bookkeeping)."""
    return loss_and_grads(params, Xn, None, gate_nl, update_nl)[1]


@overload
def loss_and_grads(
    params: dict[str, np.ndarray], Xn: np.ndarray, y: np.ndarray, gate_nl: str | None = ...,
    update_nl: str = ..., input_grad: bool = ...,
) -> tuple[float, np.ndarray, dict[str, np.ndarray]]: ...
@overload
def loss_and_grads(
    params: dict[str, np.ndarray], Xn: np.ndarray, y: None, gate_nl: str | None = ...,
    update_nl: str = ..., input_grad: bool = ...,
) -> tuple[float, np.ndarray, None]: ...
def loss_and_grads(
    params: dict[str, np.ndarray],
    Xn: np.ndarray,
    y: np.ndarray | None,
    gate_nl: str | None = "sigmoid",
    update_nl: str = "tanh",
    input_grad: bool = False,
) -> tuple[float, np.ndarray, dict[str, np.ndarray] | None]:
    """Mean cross-entropy, logits ``[N, C]`` and the gradient of every parameter (``gate_nl``
    is read by FastGRNN only).

    With ``y=None`` only the forward pass runs (loss ``nan``, gradients ``None``). With
    ``input_grad`` the gradients also hold ``"Xn"``: the loss's gradient w.r.t. ``Xn [N, T, D]``.
    """
    grnn = cell_of(params) == "FastGRNN"
    n, steps, _ = Xn.shape
    W, U = dense(params, "W"), dense(params, "U")
    H = W.shape[1]
    need = y is not None
    wx = Xn @ W  # [N, T, H]: the input half of every pre-activation at once
    h = np.zeros((n, H))
    if need:
        hprev = np.empty((n, steps, H))
        cs, dcs = np.empty((n, steps, H)), np.empty((n, steps, H))
        if grnn:
            zs, dzs = np.empty((n, steps, H)), np.empty((n, steps, H))
    if grnn:
        zeta, nu = sigmoid(params["zeta"]), sigmoid(params["nu"])
        Bg, Bh = params["Bg"], params["Bh"]
    else:
        alpha, beta = sigmoid(params["alpha"]), sigmoid(params["beta"])
        B = params["B"]
    for t in range(steps):
        pre = wx[:, t] + h @ U
        if need:
            hprev[:, t] = h
        if grnn:
            z, dz = _nl(gate_nl, pre + Bg)
            c, dc = _nl(update_nl, pre + Bh)
            h = z * h + (zeta * (1.0 - z) + nu) * c
            if need:
                zs[:, t], dzs[:, t] = z, dz
        else:
            c, dc = _nl(update_nl, pre + B)
            h = beta * h + alpha * c
        if need:
            cs[:, t], dcs[:, t] = c, dc
    out = h @ params["FC"] + params["FCbias"]
    if not need:
        return float("nan"), out, None

    # softmax cross-entropy, mean over the batch
    shifted = out - out.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = float(-logp[rows, y].mean())
    dlogits = np.exp(logp)
    dlogits[rows, y] -= 1.0
    dlogits /= n

    g: dict[str, np.ndarray] = {"FC": h.T @ dlogits, "FCbias": dlogits.sum(axis=0)}
    dh = dlogits @ params["FC"].T
    dpre_all = np.empty((n, steps, H))
    UT = U.T
    if grnn:
        dBg, dBh = np.zeros(H), np.zeros(H)
        dzeta_s = dnu_s = 0.0
        for t in range(steps - 1, -1, -1):
            hp, z, c = hprev[:, t], zs[:, t], cs[:, t]
            coef = zeta * (1.0 - z) + nu
            dgate = dh * (hp - zeta * c) * dzs[:, t]
            dupd = dh * coef * dcs[:, t]
            dzeta_s += float(np.sum(dh * (1.0 - z) * c))
            dnu_s += float(np.sum(dh * c))
            dBg += dgate.sum(axis=0)
            dBh += dupd.sum(axis=0)
            dpre = dgate + dupd
            dpre_all[:, t] = dpre
            dh = dh * z + dpre @ UT
        g.update(
            Bg=dBg, Bh=dBh,
            zeta=np.asarray(dzeta_s * zeta * (1.0 - zeta)),
            nu=np.asarray(dnu_s * nu * (1.0 - nu)),
        )
    else:
        dB = np.zeros(H)
        dalpha_s = dbeta_s = 0.0
        for t in range(steps - 1, -1, -1):
            c = cs[:, t]
            dalpha_s += float(np.sum(dh * c))
            dbeta_s += float(np.sum(dh * hprev[:, t]))
            dpre = dh * alpha * dcs[:, t]
            dB += dpre.sum(axis=0)
            dpre_all[:, t] = dpre
            dh = dh * beta + dpre @ UT
        g.update(
            B=dB,
            alpha=np.asarray(dalpha_s * alpha * (1.0 - alpha)),
            beta=np.asarray(dbeta_s * beta * (1.0 - beta)),
        )
    dpre_flat = dpre_all.reshape(-1, H)
    dW = Xn.reshape(-1, Xn.shape[2]).T @ dpre_flat
    dU = hprev.reshape(-1, H).T @ dpre_flat
    for name, dM in (("W", dW), ("U", dU)):
        if name in params:
            g[name] = dM
        else:
            g[name + "1"] = dM @ params[name + "2"].T
            g[name + "2"] = params[name + "1"].T @ dM
    if input_grad:
        g["Xn"] = dpre_all @ W.T
    return loss, out, g


def input_gradient(
    params: dict[str, np.ndarray],
    Xn: np.ndarray,
    y: np.ndarray,
    gate_nl: str | None = "sigmoid",
    update_nl: str = "tanh",
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy, logits ``[N, C]`` and the loss's gradient w.r.t. the normalised
    inputs ``Xn [N, T, D]`` (what gradient attacks on the input follow)."""
    loss, out, g = loss_and_grads(params, Xn, y, gate_nl, update_nl, input_grad=True)
    return loss, out, g["Xn"]


def nonlinearity_and_derivative(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A nonlinearity's value and derivative at ``x`` (the formulas the gradients use)."""
    return _nl(name, x)
