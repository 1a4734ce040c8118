"""ERNN against FastGRNN: float accuracy at an equal parameter budget, and the gradient norms
``||dL/dh_t||`` over a long real sequence (OSULeaf, T=427).

Accuracy: both cells trained with the project trainer (fixed seed, H=16, ERNN with K=3 inner
steps) on the official train split of UCR ItalyPowerDemand and GunPoint, scored by the float
reference on the official test split. At the same H an ERNN has H fewer parameters than a
FastGRNN (one bias instead of two) and K+1 scalars instead of two; each time step costs one
product by W and K by U.

Gradients: for an initialised and a briefly trained model of each cell, the mean over training
sequences of ``||dL/dh_t||`` for t = 1..T (BPTT of the cross-entropy at the last step), drawn
log-scale to ``docs/ernn-gradients.png``.

    .venv/bin/python benchmarks/ernn.py [--skip-accuracy] [--skip-gradients]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgecompile.analysis.inspection import inspect_report
from edgecompile.ir.model import FloatModel
from edgecompile.reference import forward
from edgecompile.train import cells
from edgecompile.train.data import load_training_data
from edgecompile.train.trainer import TrainConfig, as_used, channel_stats, init_params, train

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PLOT = ROOT / "docs" / "ernn-gradients.png"
K = 3
#: (data set, epochs, ERNN initial step size): a short series tolerates larger steps
SETS = (("ItalyPowerDemand", 100, 0.1), ("GunPoint", 150, 0.01))


def split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    tr = load_training_data(DATA / name / f"{name}_TRAIN.ts")
    te = load_training_data(DATA / name / f"{name}_TEST.ts", length=tr.X.shape[1])
    return tr.X, tr.y, te.X, te.y, tr.lengths


def state_gradient_norms(model: FloatModel, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over sequences of ``||dL/dh_t||`` (t = 1..T) of a float model on raw inputs."""
    mean, std = model.normalisation(X.shape[1])
    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.arrays().items()
              if k not in ("mean", "std")}
    for k in ("B", "Bg", "Bh", "FCbias"):
        if k in params:
            params[k] = params[k].reshape(-1)
    _, _, g = cells.loss_and_grads(params, (X - mean) / std, y, model.gate_nl, model.update_nl,
                                   state_grads=True)
    return np.asarray(np.linalg.norm(g["h"], axis=2).mean(axis=0))


def accuracy_table() -> list[str]:
    rows = [f"{'data set':<18}{'cell':<14}{'H':>3}{'params':>8}{'MACs/step':>11}{'test acc':>10}"
            f"{'train s':>9}"]
    for name, epochs, eta0 in SETS:
        X, y, Xt, yt, lengths = split(name)
        for cell, inner in (("FastGRNN", None), ("ERNN", K)):
            cfg = TrainConfig(cell=cell, hidden=16, inner_steps=inner, eta_init=eta0, epochs=epochs,
                              lr=0.01, batch_size=8)
            t0 = time.perf_counter()
            model = train(X, y, cfg, lengths=lengths).model
            seconds = time.perf_counter() - t0
            acc = float(np.mean(forward(model, Xt).argmax(axis=1) == yt))
            rep = inspect_report(model)
            label = cell if inner is None else f"{cell} K={inner}"
            rows.append(f"{name:<18}{label:<14}{16:>3}{rep['params']:>8}{rep['macs_per_step']:>11}"
                        f"{acc:>10.1%}{seconds:>9.1f}")
            print(rows[-1], flush=True)
    return rows


def gradient_study(epochs: int) -> list[str]:
    tr = load_training_data(DATA / "OSULeaf" / "OSULeaf_TRAIN.ts")
    te = load_training_data(DATA / "OSULeaf" / "OSULeaf_TEST.ts", length=tr.X.shape[1])
    X, y = tr.X, tr.y
    C, D = int(y.max()) + 1, X.shape[2]
    curves: dict[str, np.ndarray] = {}
    lines = [f"OSULeaf T={X.shape[1]}: ||dL/dh_t||, mean over {min(64, y.size)} training sequences"]
    for cell, inner in (("FastGRNN", None), ("ERNN", K)):
        cfg = TrainConfig(cell=cell, hidden=16, inner_steps=inner, eta_init=0.01, epochs=epochs,
                          lr=0.01, batch_size=16)
        mean, std = channel_stats(X, None)
        from edgecompile.frontend.checkpoint import model_from_arrays

        arrays = dict(as_used(init_params(cfg, D, C, np.random.default_rng(cfg.seed))))
        arrays.update(mean=mean, std=std)
        if cfg.update_nl != "tanh":
            arrays["update_nonlinearity"] = np.array(cfg.update_nl)
        initial = model_from_arrays(arrays)
        trained_model = train(X, y, cfg).model
        acc = float(np.mean(forward(trained_model, te.X).argmax(axis=1) == te.y))
        label = cell if inner is None else f"{cell} K={inner}"
        for when, model in (("initialised", initial), (f"trained {epochs} epochs", trained_model)):
            norms = state_gradient_norms(model, X[:64], y[:64])
            curves[f"{label}, {when}"] = norms
            lines.append(f"  {label:<12}{when:<20} t=1 {norms[0]:.2e}  t=T/2 {norms[norms.size // 2]:.2e}"
                         f"  t=T {norms[-1]:.2e}  first/last {norms[0] / norms[-1]:.2e}")
        lines.append(f"  {label:<12}test accuracy after {epochs} epochs: {acc:.1%}")
        print("\n".join(lines[-3:]), flush=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, norms in curves.items():
        ax.semilogy(np.arange(1, norms.size + 1), np.maximum(norms, 1e-300), label=name)
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(f"OSULeaf (T={X.shape[1]}), H=16: gradient reaching each state")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    lines.append(f"wrote {PLOT.relative_to(ROOT)}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-gradients", action="store_true")
    ap.add_argument("--epochs", type=int, default=15, help="training epochs of the gradient study")
    args = ap.parse_args()
    out: list[str] = []
    if not args.skip_accuracy:
        out += accuracy_table()
    if not args.skip_gradients:
        out += gradient_study(args.epochs)
    print("\n".join(out))


if __name__ == "__main__":
    main()
