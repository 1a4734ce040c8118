"""Python mirror of the hand-written stand-in model (tests/fixtures/standin/standin.c)."""

from __future__ import annotations

import numpy as np

D, H, C = 3, 4, 3
SHA256 = "5a17a1d5000000000000000000000000000000000000000000000000c0ffee01"


def run(x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x_q int16 [T, D] -> (logits int64 [C], hidden int16 [T, H])."""
    h = np.zeros(H, dtype=np.int64)
    hs = []
    for x in np.asarray(x_q, dtype=np.int64):
        v = (h * 3 >> 2) + x[np.arange(H) % D] * (np.arange(H) + 1) - 7 * np.arange(H)
        h = np.clip(v, -32768, 32767)
        hs.append(h.astype(np.int16))
    logits = np.array([c + sum(int(h[i]) * (c - i) * 1000 for i in range(H)) for c in range(C)],
                      dtype=np.int64)
    return logits, (np.stack(hs) if hs else np.zeros((0, H), np.int16))
