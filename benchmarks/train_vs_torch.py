"""Accuracy of edgecompile's NumPy trainer against a FastGRNN of the same size trained by PyTorch.

Both sides get the same data (UCI Japanese Vowels from examples/japanese_vowels/, series
front-padded to T=29 by repeating the first frame), the same per-class validation split (20%,
taken with the trainer's own split function and seed), the same per-channel normalisation, the
same model (FastGRNN, H=32, W rank 6, U rank 8, 50% sparse W1/W2/U1/U2), the same initialisation
scheme, Adam at the same learning rate and batch size, the same gradient clipping, the same
three-stage sparsity schedule and the same early-stopping rule. The PyTorch side is independent
code: its own cell written with torch ops, autograd gradients, torch.optim.Adam, float32, its own
random initial weights and batch order (torch.manual_seed). Test accuracy is on the official
370-sequence test set; the table shows every seed and the mean.

    .venv/bin/python benchmarks/train_vs_torch.py [--seeds 5] [--epochs 90] [--lr 0.02] [--batch-size 64]

The defaults are the settings of the shipped example (examples/japanese_vowels/README.md).

PyTorch is not a dependency of edgecompile: without it the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edgecompile.frontend.tsfile import read_ts
from edgecompile.reference import forward
from edgecompile.train import TrainConfig, load_training_data, train
from edgecompile.train.trainer import channel_stats, stratified_split

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "japanese_vowels"
SPARSE = ("W1", "W2", "U1", "U2")


def torch_train(torch, X, y, lengths, Xte, yte, cfg: TrainConfig) -> tuple[float, float, float]:
    """Train the PyTorch FastGRNN; returns (test accuracy, val accuracy, seconds)."""
    nn = torch.nn
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    tr, va = stratified_split(y, cfg.val_fraction, rng)  # the very split the NumPy trainer uses
    mean, std = channel_stats(X[tr], lengths[tr])
    torch.manual_seed(cfg.seed)

    def tensor(a):
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    Xtr, Xva, Xt = tensor(X[tr]), tensor(X[va]), tensor(Xte)
    ytr, yva = torch.tensor(y[tr]), torch.tensor(y[va])
    D, H, C = X.shape[2], cfg.hidden, int(y.max()) + 1

    class FastGRNN(nn.Module):
        def __init__(self):
            super().__init__()

            def normal(rows, cols):
                return nn.Parameter(torch.randn(rows, cols) / rows**0.5)

            self.W1, self.W2 = normal(D, cfg.wrank), normal(cfg.wrank, H)
            self.U1, self.U2 = normal(H, cfg.urank), normal(cfg.urank, H)
            self.Bg, self.Bh = nn.Parameter(torch.ones(H)), nn.Parameter(torch.ones(H))
            self.zeta, self.nu = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(-4.0))
            self.FC = normal(H, C)
            self.FCbias = nn.Parameter(torch.zeros(C))

        def forward(self, x):
            W, U = self.W1 @ self.W2, self.U1 @ self.U2
            wx = x @ W
            h = torch.zeros(x.shape[0], H)
            zeta, nu = torch.sigmoid(self.zeta), torch.sigmoid(self.nu)
            for t in range(x.shape[1]):
                pre = wx[:, t] + h @ U
                z = torch.sigmoid(pre + self.Bg)
                c = torch.tanh(pre + self.Bh)
                h = z * h + (zeta * (1 - z) + nu) * c
            return h @ self.FC + self.FCbias

    model = FastGRNN()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    lossf = nn.CrossEntropyLoss()
    n1 = cfg.epochs // 3
    n2 = (cfg.epochs - n1) // 2
    stages = ["dense"] * n1 + ["iht"] * n2 + ["fixed"] * (cfg.epochs - n1 - n2)
    patience = cfg.patience if cfg.patience is not None else max(10, cfg.epochs // 5)
    masks: dict[str, torch.Tensor] = {}

    def threshold(p):
        keep = p.numel() - int(round(cfg.sparsity * p.numel()))
        idx = torch.topk(p.detach().abs().reshape(-1), keep).indices
        m = torch.zeros(p.numel(), dtype=torch.bool)
        m[idx] = True
        return m.reshape(p.shape)

    best, best_state, since = None, None, 0
    for stage in stages:
        if stage == "fixed" and not masks:
            with torch.no_grad():
                for name in SPARSE:
                    p = getattr(model, name)
                    masks[name] = threshold(p)
                    p.mul_(masks[name])
        order = torch.randperm(ytr.numel())
        for i in range(0, order.numel(), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            opt.zero_grad()
            loss = lossf(model(Xtr[b]), ytr[b])
            loss.backward()
            for name, m in masks.items():
                getattr(model, name).grad.mul_(m)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            with torch.no_grad():
                for name in SPARSE:
                    p = getattr(model, name)
                    if stage == "iht":
                        p.mul_(threshold(p))
                    elif name in masks:
                        p.mul_(masks[name])
        if stage == "dense":
            continue
        with torch.no_grad():
            out = model(Xva)
            key = (float((out.argmax(1) == yva).float().mean()), -float(lossf(out, yva)))
        if best is None or key > best:
            best, since = key, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
        if stage == "fixed" and since >= patience:
            break
    model.load_state_dict(best_state)
    with torch.no_grad():
        acc = float((model(Xt).argmax(1).numpy() == yte).mean())
    return acc, best[0], time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=90)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("train_vs_torch: PyTorch is not installed (pip install torch); skipping")
        return 0
    torch.set_num_threads(args.threads)
    td = load_training_data(DATA / "JapaneseVowels_TRAIN.ts", length=29)
    test = read_ts(DATA / "JapaneseVowels_TEST.ts")
    Xte, yte = test.padded(29), test.labels
    rows = []
    for seed in range(args.seeds):
        cfg = TrainConfig(hidden=32, wrank=6, urank=8, sparsity=0.5, epochs=args.epochs, seed=seed,
                          lr=args.lr, batch_size=args.batch_size)
        t0 = time.perf_counter()
        res = train(td.X, td.y, cfg, td.lengths)
        ours_t = time.perf_counter() - t0
        ours = float(np.mean(forward(res.model, Xte).argmax(1) == yte))
        tacc, tval, tt = torch_train(torch, td.X, td.y, td.lengths, Xte, yte, cfg)
        rows.append((seed, ours, res.val_acc, ours_t, tacc, tval, tt))
        print(f"seed {seed}: ours {ours:.2%} (val {res.val_acc:.2%}, {ours_t:.1f} s)   "
              f"torch {tacc:.2%} (val {tval:.2%}, {tt:.1f} s)", file=sys.stderr)
    a = np.array([r[1:] for r in rows])
    print(f"\nJapanese Vowels (370 test sequences), FastGRNN H=32 wRank=6 uRank=8, 50% sparse, "
          f"{args.epochs} epochs, Adam lr {args.lr}, batch {args.batch_size}, torch {torch.__version__}")
    print(f"{'seed':>6} {'ours test':>10} {'torch test':>11} {'diff pp':>8} "
          f"{'ours s':>8} {'torch s':>8}")
    for seed, ours, _, ot, tacc, _, tt in rows:
        print(f"{seed:>6} {ours:>10.2%} {tacc:>11.2%} {100 * (ours - tacc):>+8.2f} {ot:>8.1f} {tt:>8.1f}")
    m, s = a.mean(axis=0), a.std(axis=0)
    print(f"{'mean':>6} {m[0]:>10.2%} {m[3]:>11.2%} {100 * (m[0] - m[3]):>+8.2f} {m[2]:>8.1f} {m[5]:>8.1f}")
    print(f"{'std':>6} {s[0]:>10.2%} {s[3]:>11.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
