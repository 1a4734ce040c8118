"""Weight rounding chosen on calibration activations instead of rounding to nearest.

Rounding every weight to the nearest integer minimises each weight's own error, not the error
of the layer's output: with the activations ``A`` a factor actually sees, the output error of
one output column ``j`` is ``||A (q_j / 2^f_j - w_j)||^2 = r_j^T H r_j / 4^f_j`` with
``H = A^T A`` and ``r_j = q_j - w_j 2^f_j`` the rounding residual in LSBs. Choosing, per weight,
the floor or the ceiling of ``w 2^f`` to minimise that quadratic form is the layer-wise
objective of adaptive rounding (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training
Quantization", ICML 2020); the Hessian-of-the-output view is that of Optimal Brain Quantization
and GPTQ (Frantar et al., 2022). Here the binary problem is solved by a deterministic greedy
coordinate descent that starts from round-to-nearest and only takes moves that strictly lower
the objective, so the result is never worse than round-to-nearest on it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from edgecompile.ir.fixedpoint import round_half_up

MAX_SWEEPS = 8  # full passes over the input rows; each pass only lowers the objective
GRAM_ROWS = 4096  # calibration rows kept (fixed-seed subsample) for the output objective


def nearest(values: np.ndarray, col_fracs: np.ndarray, bits: int) -> np.ndarray:
    """Round to nearest (half up) of ``values * 2^col_fracs``, saturating to ``bits`` bits."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scaled = np.asarray(values, dtype=np.float64) * np.exp2(np.asarray(col_fracs, dtype=np.float64))
    return np.clip(round_half_up(scaled), lo, hi).astype(np.int64)


def compact_activations(acts: np.ndarray, seed: int = 0) -> np.ndarray:
    """An ``[in, in]`` matrix ``R`` with ``R^T R == A^T A`` for the rows of ``acts``.

    The output objective depends on the activations only through their Gram matrix, so a square
    root of it (one eigendecomposition) lets every later call of :func:`round_factor` (one per
    candidate format) work on ``in`` rows instead of all calibration rows. Rows beyond :data:`GRAM_ROWS` are
    subsampled with a fixed seed; non-finite rows are dropped. The result is scaled by one constant
    (the objective's minimiser does not depend on it).
    """
    a = np.asarray(acts, dtype=np.float64)
    a = a[np.isfinite(a).all(axis=1)]
    if a.shape[0] > GRAM_ROWS:
        keep = np.random.default_rng(seed).choice(a.shape[0], GRAM_ROWS, replace=False)
        a = a[np.sort(keep)]
    if a.shape[0] == 0:
        return np.zeros((0, a.shape[1]))
    # One common scale leaves every column's argmin unchanged and keeps the Gram matrix finite.
    peak = float(np.abs(a).max())
    if peak > 0.0:
        a = a / peak
    gram = a.T @ a
    try:
        w, v = np.linalg.eigh((gram + gram.T) / 2.0)
    except np.linalg.LinAlgError:
        return a  # the rows themselves have the same Gram matrix
    root: np.ndarray = np.sqrt(np.maximum(w, 0.0))[:, None] * v.T  # root^T root == gram
    return root


def round_factor(values: np.ndarray, col_fracs: np.ndarray, bits: int,
                 acts: np.ndarray | None) -> np.ndarray:
    """Integer weights ``[in, out]`` (int64, within the ``bits`` range) for ``values [in, out]``
    in Q(``col_fracs[j]``) per output column, each the floor or the ceiling of
    ``values * 2^col_fracs``, chosen to minimise ``||acts @ (q / 2^f - values)||^2`` per column.

    ``acts`` is ``[N, in]`` (calibration activations this factor multiplies, or any matrix with
    the same Gram matrix, see :func:`compact_activations`); ``None`` rounds to nearest. Exact
    zeros stay zero, saturated weights stay saturated, and the result is deterministic.
    """
    values = np.asarray(values, dtype=np.float64)
    fracs = np.broadcast_to(np.asarray(col_fracs, dtype=np.int64), (values.shape[1],))
    if acts is None or values.size == 0:
        return nearest(values, fracs, bits)
    a = np.asarray(acts, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != values.shape[0]:
        raise ValueError(f"activations have shape {list(a.shape)}, expected [N, {values.shape[0]}]")
    # The format search re-rounds factors whose format did not move: remember recent results.
    key = hashlib.sha256(b"".join((
        str((values.shape, a.shape, bits)).encode(), np.ascontiguousarray(values).tobytes(),
        np.ascontiguousarray(fracs).tobytes(), np.ascontiguousarray(a).tobytes()))).digest()
    if key not in _RECENT:
        _RECENT[key] = _descend(values, fracs, bits, a)
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)
    _RECENT.move_to_end(key)
    return _RECENT[key].copy()


_RECENT: OrderedDict[bytes, np.ndarray] = OrderedDict()
_RECENT_SIZE = 64


def _descend(values: np.ndarray, fracs: np.ndarray, bits: int, a: np.ndarray) -> np.ndarray:
    """Greedy coordinate descent on r^T H r from round-to-nearest (see the module docstring)."""
    q = nearest(values, fracs, bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scaled = values * np.exp2(fracs.astype(np.float64))
    down = np.clip(np.floor(scaled), lo, hi).astype(np.int64)
    up = np.clip(np.ceil(scaled), lo, hi).astype(np.int64)
    movable = down != up  # exact integers (zeros among them) and saturated weights stay put
    if not movable.any():
        return q
    hess = a.T @ a  # [in, in]
    diag = np.diag(hess).copy()
    resid = q - scaled  # rounding residual in LSBs, [in, out]
    grad = hess @ resid  # (H r) per column
    # A move must lower r^T H r by more than float noise on its own scale.
    tol = 1e-12 * (float(diag.max()) if diag.size else 0.0) + 1e-300
    for _ in range(MAX_SWEEPS):
        moved = False
        for i in np.flatnonzero(movable.any(axis=1) & (diag > 0)):
            step = np.where(q[i] == down[i], 1, -1) * movable[i]  # to the other of floor/ceil
            change = 2.0 * step * grad[i] + diag[i] * step * step
            take = change < -tol
            if not take.any():
                continue
            delta = np.where(take, step, 0)
            q[i] += delta
            resid[i] += delta
            grad += np.outer(hess[:, i], delta)
            moved = True
        if not moved:
            break
    return q
