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

ERNN (``B``, ``eta [K]`` and ``alpha`` as used, no transform), from ``g_0 = h``::

    g_i = g_{i-1} + eta[i-1] * (update_nl((g_{i-1} + h) @ U + x_t @ W + B) - alpha * (g_{i-1} + h))
    h = g_K

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
    if "eta" in params:
        return "ERNN"
    return "FastGRNN" if "zeta" in params else "FastRNN"


def _cross_entropy(out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of logits ``out [N, C]`` and its gradient w.r.t. ``out``."""
    n = out.shape[0]
    shifted = out - out.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    dlogits = np.exp(logp)
    dlogits[rows, y] -= 1.0
    return float(-logp[rows, y].mean()), dlogits / n


def _matrix_grads(params: dict[str, np.ndarray], g: dict[str, np.ndarray], dW: np.ndarray,
                  dU: np.ndarray) -> None:
    """The gradients of W and U (full) or of their factors (low rank) into ``g``."""
    for name, dM in (("W", dW), ("U", dU)):
        if name in params:
            g[name] = dM
        else:
            g[name + "1"] = dM @ params[name + "2"].T
            g[name + "2"] = params[name + "1"].T @ dM


def _ernn(params: dict[str, np.ndarray], Xn: np.ndarray, y: np.ndarray | None, update_nl: str,
          input_grad: bool, state_grads: bool) -> tuple[float, np.ndarray, dict[str, np.ndarray] | None]:
    """ERNN's forward pass and BPTT through the K inner steps of every time step."""
    n, steps, _ = Xn.shape
    W, U = dense(params, "W"), dense(params, "U")
    H = W.shape[1]
    eta = np.asarray(params["eta"], dtype=np.float64).reshape(-1)
    alpha = float(params["alpha"])
    K = eta.size
    need = y is not None
    drive = Xn @ W + params["B"]  # [N, T, H]: x_t @ W + B, once per time step
    h = np.zeros((n, H))
    if need:
        ss = np.empty((n, steps, K, H))  # g_{i-1} + h_{t-1}
        cs, dcs = np.empty((n, steps, K, H)), np.empty((n, steps, K, H))
    for t in range(steps):
        g = h
        for i in range(K):
            s = g + h
            c, dc = _nl(update_nl, s @ U + drive[:, t])
            if need:
                ss[:, t, i], cs[:, t, i], dcs[:, t, i] = s, c, dc
            g = g + eta[i] * (c - alpha * s)
        h = g
    out = h @ params["FC"] + params["FCbias"]
    if not need:
        return float("nan"), out, None
    assert y is not None
    loss, dlogits = _cross_entropy(out, y)
    grads: dict[str, np.ndarray] = {"FC": h.T @ dlogits, "FCbias": dlogits.sum(axis=0)}
    dh = dlogits @ params["FC"].T
    dpre = np.empty((n, steps, K, H))  # gradient at each inner pre-activation s @ U + drive
    deta, dalpha = np.zeros(K), 0.0
    UT = U.T
    dstates = np.empty((n, steps, H)) if state_grads else None
    for t in range(steps - 1, -1, -1):
        if dstates is not None:
            dstates[:, t] = dh  # dL/dh_t (the state after step t)
        dg, dprev = dh, np.zeros((n, H))
        for i in range(K - 1, -1, -1):
            s, c = ss[:, t, i], cs[:, t, i]
            deta[i] += float(np.sum(dg * (c - alpha * s)))
            dalpha -= eta[i] * float(np.sum(dg * s))
            da = dg * eta[i] * dcs[:, t, i]
            dpre[:, t, i] = da
            ds = da @ UT - (eta[i] * alpha) * dg
            dprev += ds
            dg = dg + ds
        dh = dg + dprev
    flat = dpre.reshape(-1, H)
    dd = dpre.sum(axis=2)  # [N, T, H]: each inner step adds to the drive's gradient
    grads.update(B=dd.sum(axis=(0, 1)), eta=deta.reshape(np.shape(params["eta"])),
                 alpha=np.asarray(dalpha).reshape(np.shape(params["alpha"])))
    _matrix_grads(params, grads, Xn.reshape(-1, Xn.shape[2]).T @ dd.reshape(-1, H),
                  ss.reshape(-1, H).T @ flat)
    if input_grad:
        grads["Xn"] = dd @ W.T
    if dstates is not None:
        grads["h"] = dstates
    return loss, out, grads


def logits(
    params: dict[str, np.ndarray], Xn: np.ndarray, gate_nl: str | None = "sigmoid", update_nl: str = "tanh"
) -> np.ndarray:
    """Logits ``[N, C]`` for normalised inputs ``Xn [N, T, D]`` (no gradient bookkeeping)."""
    return loss_and_grads(params, Xn, None, gate_nl, update_nl)[1]


@overload
def loss_and_grads(
    params: dict[str, np.ndarray], Xn: np.ndarray, y: np.ndarray, gate_nl: str | None = ...,
    update_nl: str = ..., input_grad: bool = ..., state_grads: bool = ...,
) -> tuple[float, np.ndarray, dict[str, np.ndarray]]: ...
@overload
def loss_and_grads(
    params: dict[str, np.ndarray], Xn: np.ndarray, y: None, gate_nl: str | None = ...,
    update_nl: str = ..., input_grad: bool = ..., state_grads: bool = ...,
) -> tuple[float, np.ndarray, None]: ...
def loss_and_grads(
    params: dict[str, np.ndarray],
    Xn: np.ndarray,
    y: np.ndarray | None,
    gate_nl: str | None = "sigmoid",
    update_nl: str = "tanh",
    input_grad: bool = False,
    state_grads: bool = False,
) -> tuple[float, np.ndarray, dict[str, np.ndarray] | None]:
    """Mean cross-entropy, logits ``[N, C]`` and the gradient of every parameter (``gate_nl``
    is read by FastGRNN only).

    With ``y=None`` only the forward pass runs (loss ``nan``, gradients ``None``). With
    ``input_grad`` the gradients also hold ``"Xn"``: the loss's gradient w.r.t. ``Xn [N, T, D]``;
    with ``state_grads``, ``"h"``: its gradient w.r.t. every state ``h_t``, ``[N, T, H]``.
    """
    if cell_of(params) == "ERNN":
        return _ernn(params, Xn, y, update_nl, input_grad, state_grads)
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
    dstates = np.empty((n, steps, H)) if state_grads else None
    if grnn:
        dBg, dBh = np.zeros(H), np.zeros(H)
        dzeta_s = dnu_s = 0.0
        for t in range(steps - 1, -1, -1):
            if dstates is not None:
                dstates[:, t] = dh  # dL/dh_t (the state after step t)
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
            if dstates is not None:
                dstates[:, t] = dh
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
    if dstates is not None:
        g["h"] = dstates
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
