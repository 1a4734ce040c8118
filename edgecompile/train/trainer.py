"""The training loop of every cell: Adam, the three-stage sparsity schedule, validation, early stopping, QAT.

Schedule (Kusupati et al., "FastGRNN", NeurIPS 2018, section 3.3), with ``s = sparsity``:

1. **dense**: the first third of the epochs trains every weight;
2. **hard thresholding**: the second third keeps, after every Adam step, only the largest
   ``1 - s`` fraction by magnitude of each of W/W1/W2/U/U1/U2 (the support moves freely);
3. **fixed support**: the rest trains only the support chosen at the end of stage 2.

Biases, the residual scalars and the classifier FC stay dense (as in EdgeML). Without sparsity
all epochs are dense. The model kept is the one with the best validation accuracy (ties: lower
validation loss) among the epochs that already meet the sparsity target; early stopping ends
the last stage after ``patience`` epochs without improvement. ``qat=True`` then fine-tunes that
model for ``qat_epochs`` with fake-quantized weights (:mod:`edgecompile.train.qat`), the
support fixed, and saves the quantized values.

Normalisation: one mean/std per input channel (length D), computed over the real frames of the
training split (front padding excluded). Per-channel statistics do not depend on the sequence
length, so the checkpoint serves any T; EdgeML's per-(step, channel) T*D layout would bake
padding positions into the statistics.

ERNN's inner step sizes ``eta`` and decay ``alpha`` must stay positive: the optimiser learns
their logarithms (``log_eta``, ``log_alpha``) and the checkpoint stores them as used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecompile.errors import DataError
from edgecompile.frontend.checkpoint import DEFAULT_UPDATE_NL, model_from_arrays
from edgecompile.ir.model import NONLINEARITIES, FloatModel
from edgecompile.train import cells, qat

SPARSE_NAMES = ("W", "W1", "W2", "U", "U1", "U2")
CELLS = ("FastGRNN", "FastRNN", "ERNN")
#: ERNN's initial inner step size (each of the K) and decay toward the equilibrium.
ERNN_ETA0, ERNN_ALPHA0 = 0.01, 1.0


@dataclass
class TrainConfig:
    cell: str = "FastGRNN"
    hidden: int = 32
    wrank: int | None = None
    urank: int | None = None
    sparsity: float = 0.0
    epochs: int = 60
    batch_size: int = 32
    lr: float = 0.01
    val_fraction: float = 0.2
    patience: int | None = None  # default: max(10, epochs // 5)
    clip: float = 5.0  # global gradient-norm clipping
    qat: bool = False
    qat_bits: int = 8
    qat_epochs: int | None = None  # default: max(5, epochs // 5)
    qat_lr: float | None = None  # default: lr / 10
    gate_nl: str = "sigmoid"
    update_nl: str | None = None  # default: the cell's (tanh; ERNN: relu)
    inner_steps: int | None = None  # ERNN's K (default 1); other cells have none
    eta_init: float = ERNN_ETA0  # ERNN: the initial step size of each inner step
    seed: int = 0

    def __post_init__(self) -> None:
        if self.update_nl is None:
            self.update_nl = DEFAULT_UPDATE_NL.get(self.cell, "tanh")
        if self.inner_steps is None and self.cell == "ERNN":
            self.inner_steps = 1

    def check(self) -> None:
        if self.cell not in CELLS:
            raise DataError(f"cell {self.cell!r}, expected one of {', '.join(CELLS)}")
        if self.cell == "ERNN":
            if self.inner_steps is None or self.inner_steps < 1:
                raise DataError(f"inner steps {self.inner_steps}, expected at least 1")
            if not (np.isfinite(self.eta_init) and self.eta_init > 0):
                raise DataError(f"initial step size {self.eta_init}, expected > 0")
        elif self.inner_steps is not None:
            raise DataError(f"inner steps apply to ERNN only, not to {self.cell}")
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1")
        for name in ("wrank", "urank"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1")
        if not 0.0 <= self.sparsity < 1.0:
            raise DataError(f"sparsity {self.sparsity}, expected a fraction of zeros in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataError(f"validation fraction {self.val_fraction}, expected [0, 1)")
        if self.qat_bits not in (8, 16):
            raise DataError(f"QAT bits {self.qat_bits}, expected 8 or 16")
        for nl in (self.gate_nl, self.update_nl):
            if nl not in NONLINEARITIES:
                raise DataError(f"nonlinearity {nl!r}, expected one of {', '.join(NONLINEARITIES)}")


@dataclass
class EpochLog:
    epoch: int  # 1-based, counting QAT epochs after the main ones
    total: int
    stage: str  # dense | iht | fixed | qat
    loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    best_val_acc: float | None
    seconds: float


@dataclass
class TrainResult:
    model: FloatModel
    config: TrainConfig
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    train_acc: float = 0.0
    val_acc: float | None = None
    n_train: int = 0
    n_val: int = 0
    seconds: float = 0.0
    stopped_early: bool = False

    def report(self) -> dict:
        m = self.model
        return {
            "config": asdict(self.config),
            "input_dim": m.input_dim, "hidden_dim": m.hidden_dim, "num_classes": m.num_classes,
            "n_train": self.n_train, "n_val": self.n_val,
            "epochs_run": len(self.history), "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "train_accuracy": self.train_acc, "val_accuracy": self.val_acc,
            "seconds": round(self.seconds, 3),
            "sparsity": {
                name: round(1.0 - float(np.count_nonzero(a)) / a.size, 6)
                for name, a in m.arrays().items() if name in SPARSE_NAMES
            },
        }


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of each class (rounded, at least one when >= 2) to val."""
    if fraction <= 0:
        return np.arange(y.size), np.arange(0)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(fraction * idx.size))
        if idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        else:
            k = 0
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def channel_stats(X: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std over the real frames (the last ``lengths[i]`` of each sequence)."""
    n, steps, d = X.shape
    if lengths is None:
        frames = X.reshape(-1, d)
    else:
        mask = np.arange(steps)[None, :] >= (steps - np.minimum(lengths, steps))[:, None]
        frames = X[mask]
    mean = frames.mean(axis=0)
    std = frames.std(axis=0)
    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std


def init_params(cfg: TrainConfig, D: int, C: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """EdgeML-like initialisation; matrices scaled so that ``x @ W`` keeps unit variance."""
    H = cfg.hidden
    p: dict[str, np.ndarray] = {}
    for name, rows, rank in (("W", D, cfg.wrank), ("U", H, cfg.urank)):
        if rank:
            p[name + "1"] = rng.normal(0.0, 1.0 / np.sqrt(rows), (rows, rank))
            p[name + "2"] = rng.normal(0.0, 1.0 / np.sqrt(rank), (rank, H))
        else:
            p[name] = rng.normal(0.0, 1.0 / np.sqrt(rows), (rows, H))
    if cfg.cell == "FastGRNN":
        p.update(Bg=np.ones(H), Bh=np.ones(H), zeta=np.asarray(1.0), nu=np.asarray(-4.0))
    elif cfg.cell == "ERNN":
        K = cfg.inner_steps or 1
        p.update(B=np.zeros(H), log_eta=np.full(K, np.log(cfg.eta_init)),
                 log_alpha=np.asarray(np.log(ERNN_ALPHA0)))
    else:
        p.update(B=np.zeros(H), alpha=np.asarray(-3.0), beta=np.asarray(3.0))
    p["FC"] = rng.normal(0.0, 1.0 / np.sqrt(H), (H, C))
    p["FCbias"] = np.zeros(C)
    return p


def top_fraction_mask(a: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep exactly ``size - round(sparsity * size)`` largest-magnitude entries (stable ties)."""
    keep = a.size - int(round(sparsity * a.size))
    keep = max(keep, 1)
    order = np.argsort(-np.abs(a).reshape(-1), kind="stable")
    mask = np.zeros(a.size, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(a.shape)


class Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1.0 - self.b1**self.t, 1.0 - self.b2**self.t
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1.0 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1.0 - self.b2) * g * g
            params[k] = params[k] - self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)


def as_used(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The parameters as the cell uses them: ERNN's ``eta``/``alpha`` from the learned
    logarithms (a dict without them is returned unchanged)."""
    if "log_eta" not in params:
        return params
    out = {k: v for k, v in params.items() if k not in ("log_eta", "log_alpha")}
    out["eta"], out["alpha"] = np.exp(params["log_eta"]), np.exp(params["log_alpha"])
    return out


def learned_grads(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gradients w.r.t. the as-used values mapped to the learned parameters (chain rule of exp)."""
    if "log_eta" in params:
        grads["log_eta"] = grads.pop("eta") * np.exp(params["log_eta"])
        grads["log_alpha"] = grads.pop("alpha") * np.exp(params["log_alpha"])
    return grads


def _clip(grads: dict[str, np.ndarray], limit: float) -> None:
    if limit and limit > 0:
        norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
        if norm > limit:
            for k in grads:
                grads[k] = grads[k] * (limit / norm)


def params_to_model(
    params: dict[str, np.ndarray], mean: np.ndarray, std: np.ndarray, cfg: TrainConfig
) -> FloatModel:
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in as_used(params).items()}
    arrays["mean"], arrays["std"] = mean, std
    if cfg.cell == "FastGRNN" and cfg.gate_nl != "sigmoid":
        arrays["gate_nonlinearity"] = np.array(cfg.gate_nl)
    if cfg.update_nl != DEFAULT_UPDATE_NL[cfg.cell]:
        arrays["update_nonlinearity"] = np.array(cfg.update_nl)
    model = model_from_arrays(arrays, source="trained model")
    return model


def _eval_fast(params: dict[str, np.ndarray], Xn: np.ndarray, y: np.ndarray,
               cfg: TrainConfig) -> tuple[float, float]:
    assert cfg.update_nl is not None
    out = cells.logits(as_used(params), Xn, cfg.gate_nl, cfg.update_nl)
    shifted = out - out.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(y.size), y].mean()), float(np.mean(out.argmax(axis=1) == y))


def train(
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    lengths: np.ndarray | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> TrainResult:
    """Train on raw inputs ``X [N, T, D]`` with labels ``y [N]`` (0..C-1); deterministic for a seed.

    ``on_epoch`` receives each epoch's log; ``progress(done, total, what)`` the epochs done of
    the most planned (early stopping ends sooner: the last call then has ``done == total``).

    ``lengths`` (optional) gives the real length of each front-padded sequence, used only for
    the normalisation statistics.
    """
    cfg.check()
    update_nl = cfg.update_nl
    assert update_nl is not None
    start = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if X.ndim != 3 or X.shape[0] != y.size:
        raise DataError(f"{X.shape[0] if X.ndim else 0} sequences but {y.size} labels")
    if y.min() < 0:
        raise DataError("labels must be non-negative class ids")
    C = int(y.max()) + 1
    if C < 2:
        raise DataError("training needs at least two classes")
    D = X.shape[2]
    rng = np.random.default_rng(cfg.seed)
    tr, va = stratified_split(y, cfg.val_fraction, rng)
    mean, std = channel_stats(X[tr], None if lengths is None else np.asarray(lengths)[tr])
    Xn = (X - mean) / std
    Xtr, ytr, Xva, yva = Xn[tr], y[tr], Xn[va], y[va]

    params = init_params(cfg, D, C, rng)
    opt = Adam(params, cfg.lr)
    patience = cfg.patience if cfg.patience is not None else max(10, cfg.epochs // 5)
    if cfg.sparsity > 0:
        n1 = cfg.epochs // 3
        n2 = (cfg.epochs - n1) // 2
        stages = ["dense"] * n1 + ["iht"] * n2 + ["fixed"] * (cfg.epochs - n1 - n2)
    else:
        stages = ["dense"] * cfg.epochs
    qat_epochs = (cfg.qat_epochs if cfg.qat_epochs is not None else max(5, cfg.epochs // 5)) if cfg.qat else 0
    total = len(stages) + qat_epochs  # an upper bound: early stopping may end sooner
    masks: dict[str, np.ndarray] = {}
    history: list[EpochLog] = []
    best: tuple[float, float] | None = None  # (val_acc, -val_loss)
    best_params, best_epoch, since_best = params, 0, 0
    stopped_early = False

    def eligible(stage: str) -> bool:
        return cfg.sparsity == 0 or stage in ("iht", "fixed", "qat")

    def run_epoch(stage: str) -> None:
        nonlocal params, best, best_params, best_epoch, since_best
        epoch = len(history) + 1
        t0 = time.perf_counter()
        order = rng.permutation(ytr.size)
        losses, correct = [], 0
        for i in range(0, order.size, cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            used = as_used(params)
            fwd = qat.fake_quantize(used, cfg.qat_bits) if stage == "qat" else used
            loss, out, grads = cells.loss_and_grads(fwd, Xtr[b], ytr[b], cfg.gate_nl, update_nl)
            if stage == "qat":
                grads = qat.shadow_grads(used, grads)
            grads = learned_grads(params, grads)
            losses.append(loss * b.size)
            correct += int(np.sum(out.argmax(axis=1) == ytr[b]))
            for k, m in masks.items():
                grads[k] = grads[k] * m
            _clip(grads, cfg.clip)
            opt.step(params, grads)
            if stage == "iht":
                for k in SPARSE_NAMES:
                    if k in params:
                        params[k] = params[k] * top_fraction_mask(params[k], cfg.sparsity)
            for k, m in masks.items():
                params[k] = params[k] * m
        vloss: float | None = None
        vacc: float | None = None
        key = (0.0, 0.0)
        if va.size:
            view = qat.fake_quantize(as_used(params), cfg.qat_bits) if stage == "qat" else params
            vloss, vacc = _eval_fast(view, Xva, yva, cfg)
            key = (vacc, -vloss)
        if eligible(stage):
            if best is None or key > best or not va.size:
                keep = qat.saved_values(as_used(params), cfg.qat_bits) if stage == "qat" else dict(params)
                best, best_params, best_epoch, since_best = key, keep, epoch, 0
            else:
                since_best += 1
        log = EpochLog(epoch, total, stage, float(np.sum(losses) / ytr.size), correct / ytr.size,
                       vloss, vacc, best[0] if best is not None and va.size else None,
                       time.perf_counter() - t0)
        history.append(log)
        if on_epoch:
            on_epoch(log)
        if progress:
            progress(epoch, total, "epochs")

    for e, stage in enumerate(stages, start=1):
        if stage == "fixed" and not masks:  # end of stage 2: freeze the support
            for k in SPARSE_NAMES:
                if k in params:
                    masks[k] = top_fraction_mask(params[k], cfg.sparsity)
                    params[k] = params[k] * masks[k]
        run_epoch(stage)
        if va.size and eligible(stage) and stage != "iht" and since_best >= patience:
            stopped_early = e < len(stages)
            break

    if cfg.qat:
        params = {k: np.array(v, copy=True) for k, v in best_params.items()}
        if cfg.sparsity > 0:
            masks = {k: params[k] != 0 for k in SPARSE_NAMES if k in params}
        opt = Adam(params, cfg.qat_lr if cfg.qat_lr is not None else cfg.lr / 10)
        best, since_best = None, 0
        for _ in range(qat_epochs):
            run_epoch("qat")
            if va.size and since_best >= patience:
                break

    if progress:
        progress(len(history), len(history), "epochs")
    model = params_to_model(best_params, mean, std, cfg)
    final = qat.fake_quantize(as_used(best_params), cfg.qat_bits) if cfg.qat else best_params
    tacc = _eval_fast(final, Xtr, ytr, cfg)[1]
    vacc = _eval_fast(final, Xva, yva, cfg)[1] if va.size else None
    return TrainResult(
        model=model, config=cfg, history=history, best_epoch=best_epoch, train_acc=tacc,
        val_acc=vacc, n_train=int(tr.size), n_val=int(va.size),
        seconds=time.perf_counter() - start, stopped_early=stopped_early,
    )
