"""Make the placeholder example: a deterministic *random* FastGRNN in EdgeML's checkpoint layout.

    python examples/tiny/make_tiny.py [OUT_DIR]      # default: this script's folder

Writes ``model.npz`` (low-rank W and U, half of every matrix hard-thresholded to exact zeros,
T*D normalisation as EdgeML saves it) and ``X.npy`` (32 raw sequences [32, 16, 6], float32).
The weights are random, not trained: the model only exercises the tool chain. The training
issue replaces it with a model trained on a real public dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

D, T, H, C = 6, 16, 16, 4  # input features, time steps, hidden units, classes
RANK_W, RANK_U = 3, 4
SPARSITY = 0.5  # fraction of each matrix's entries set to exactly zero (smallest magnitudes)
SEED = 4


def make(out_dir: Path) -> None:
    rng = np.random.default_rng(SEED)

    def matrix(rows: int, cols: int, scale: float) -> np.ndarray:
        m = rng.normal(0.0, scale / np.sqrt(rows), (rows, cols))
        m[np.abs(m) < np.quantile(np.abs(m), SPARSITY)] = 0.0  # EdgeML-style hard threshold
        return m.astype(np.float32)

    # raw inputs: a per-channel offset and scale, so the normalisation has something to undo
    offset = rng.normal(0.0, 3.0, D)
    scale = rng.uniform(0.5, 4.0, D)
    X = (offset + scale * rng.normal(0.0, 1.0, (32, T, D))).astype(np.float32)
    flat = X.reshape(len(X), T * D)  # EdgeML computes mean/std over flattened [T*D] features

    arrays = {
        "W1": matrix(D, RANK_W, 1.5), "W2": matrix(RANK_W, H, 1.5),
        "U1": matrix(H, RANK_U, 1.0), "U2": matrix(RANK_U, H, 1.0),
        "Bg": np.full((1, H), 1.0, np.float32),  # EdgeML's initial values
        "Bh": rng.normal(0.0, 0.3, (1, H)).astype(np.float32),
        "zeta": np.array([[1.0]], np.float32), "nu": np.array([[-4.0]], np.float32),
        "FC": matrix(H, C, 3.0), "FCbias": rng.normal(0.0, 0.1, C).astype(np.float32),
        "mean": flat.mean(axis=0).astype(np.float32), "std": flat.std(axis=0).astype(np.float32),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "model.npz", **arrays)
    np.save(out_dir / "X.npy", X)
    print(f"wrote {out_dir / 'model.npz'} (random FastGRNN D={D} H={H} C={C} T={T})")
    print(f"wrote {out_dir / 'X.npy'} {list(X.shape)}")


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
