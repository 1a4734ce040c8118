"""ERNN against FastGRNN at an equal parameter budget: float, int8 and int16 accuracy, the
kernel's cost on the boards, and the gradient norms ``||dL/dh_t||`` over a long real sequence
(OSULeaf, T=427).

Accuracy: each cell trained with the project trainer (fixed seed, H=16, ERNN with K=3 inner
steps) on the official train split of UCR ItalyPowerDemand and GunPoint, quantized with
``quantize(model, bits, calib=train X, profile="auto")`` and scored on the official test split
by the float reference and the bit-exact integer simulator (``predict_quantized``). ERNN is
trained twice: with the cell's default relu update and with tanh (the setting of the README
table). At the same H an ERNN has H fewer parameters than a FastGRNN (one bias instead of two)
and K+1 scalars instead of two; each time step costs one product by W and K by U.

``float@8`` is the float model's accuracy with its pre-activations ``s @ U + x @ W + B``
(FastGRNN: ``h @ U + x @ W + B_h``) clamped to +-8, the limit of their int16 Q12 format where
the spec's Q12 pre-activation format saturates them, and ``pre>8`` the share of update
pre-activations past that limit: a relu update would lose there what it passes on (a tanh or
sigmoid one is flat already), so a relu ERNN gets a calibrated pre-activation format, the
``pre Q`` column. ``max abs h`` is the float model's largest state on the test split. ``--qat``
trains every model of the table with the trainer's QAT instead.

Boards (``--boards``): the ItalyPowerDemand FastGRNN and tanh ERNN, exported with
``edgecompile export --board B --bits 8 --calib train X`` (profile auto) and run with
``edgecompile verify --emulate`` on 20 test sequences: cycles (QEMU: instructions) per step,
flash, static RAM and the parity verdict.

Gradients: for an initialised and a briefly trained model of each cell, the mean over training
sequences of ``||dL/dh_t||`` for t = 1..T (BPTT of the cross-entropy at the last step), drawn
log-scale to ``docs/ernn-gradients.png``.

    .venv/bin/python benchmarks/ernn.py [--skip-accuracy] [--skip-gradients] [--boards] [--qat]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.analysis.inspection import inspect_report
from edgecompile.frontend.checkpoint import save_checkpoint
from edgecompile.ir.fixedpoint import INT16_MAX, PRE_FRAC
from edgecompile.ir.model import ERNNParams, FastGRNNParams, FloatModel
from edgecompile.quant.quantizer import quantize
from edgecompile.reference import NONLINEAR_FUNCTIONS, forward, normalise, sigmoid
from edgecompile.sim.simulator import predict_quantized
from edgecompile.train import cells
from edgecompile.train.data import load_training_data
from edgecompile.train.trainer import TrainConfig, as_used, channel_stats, init_params, train

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PLOT = ROOT / "docs" / "ernn-gradients.png"
CLI = str(Path(sys.executable).with_name("edgecompile"))
K = 3
#: (data set, epochs, ERNN initial step size): a short series tolerates larger steps
SETS = (("ItalyPowerDemand", 100, 0.1), ("GunPoint", 150, 0.01))
#: (cell, inner steps, update nonlinearity) of the accuracy table; the last ERNN is the one the
#: README table and the board runs use
VARIANTS = (("FastGRNN", None, "tanh"), ("ERNN", K, "relu"), ("ERNN", K, "tanh"))
BOARDS = ("uno", "microbit", "mps2_an385", "mps2_an386")
BOARD_SEQUENCES = 20
#: the largest pre-activation the integer kernel holds: int16 in Q12
PRE_TOP = INT16_MAX / float(1 << PRE_FRAC)


def split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    tr = load_training_data(DATA / name / f"{name}_TRAIN.ts")
    te = load_training_data(DATA / name / f"{name}_TEST.ts", length=tr.X.shape[1])
    return tr.X, tr.y, te.X, te.y, tr.lengths


def clamped_forward(model: FloatModel, X: np.ndarray, top: float | None) -> tuple[np.ndarray, float]:
    """Float logits with every pre-activation (the product, then product + bias) clamped to
    ``[-top, top]`` as the integer kernel saturates it (None: unclamped, the reference), and
    the share of update pre-activations (product + bias) at or beyond ``PRE_TOP``."""
    def clamp(v: np.ndarray) -> np.ndarray:
        return v if top is None else np.clip(v, -top, top)

    Xn = normalise(model, np.asarray(X, dtype=np.float64))
    W, U = model.W.dense(), model.U.dense()
    update = NONLINEAR_FUNCTIONS[model.update_nl]
    p = model.params
    h = np.zeros((Xn.shape[0], model.hidden_dim))
    beyond = total = 0
    for t in range(Xn.shape[1]):
        xw = Xn[:, t, :] @ W
        if isinstance(p, ERNNParams):
            g = h
            for eta in p.eta:
                s = g + h
                pre = clamp(clamp(s @ U + xw) + p.bias)
                beyond, total = beyond + int((np.abs(pre) >= PRE_TOP).sum()), total + pre.size
                g = g + eta * (update(pre) - float(p.alpha) * s)
            h = g
        elif isinstance(p, FastGRNNParams):
            prod = clamp(xw + h @ U)
            pre = clamp(prod + p.bias_update)
            beyond, total = beyond + int((np.abs(pre) >= PRE_TOP).sum()), total + pre.size
            z = NONLINEAR_FUNCTIONS[p.gate_nl](clamp(prod + p.bias_gate))
            zeta, nu = sigmoid(np.float64(p.zeta)), sigmoid(np.float64(p.nu))
            h = z * h + (zeta * (1.0 - z) + nu) * update(pre)
        else:
            raise ValueError(f"cell {model.cell} is not in this benchmark")
    return h @ model.FC + model.FCbias, beyond / max(total, 1)


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


def variant_name(cell: str, inner: int | None, update_nl: str) -> str:
    return cell if inner is None else f"{cell} K={inner} {update_nl}"


def train_variant(name: str, cell: str, inner: int | None, update_nl: str,
                  qat: bool = False) -> tuple[FloatModel, float]:
    eta0, epochs = {n: (e0, ep) for n, ep, e0 in SETS}[name]
    X, y, _, _, lengths = split(name)
    cfg = TrainConfig(cell=cell, hidden=16, inner_steps=inner, eta_init=eta0, epochs=epochs,
                      lr=0.01, batch_size=8, update_nl=update_nl, qat=qat)
    t0 = time.perf_counter()
    model = train(X, y, cfg, lengths=lengths).model
    return model, time.perf_counter() - t0


def accuracy_table(models: dict[tuple[str, str], FloatModel], qat: bool = False) -> list[str]:
    """Train every variant on both data sets (kept in ``models``), quantize, score: markdown rows."""
    rows = ["| data set | cell | params | MACs/step | float | int8 | int16 | int8 drop (pp) "
            "| int8 / int16 argmax = float | pre>8 | float@8 | max abs h | hid Q / pre Q (int8) | train s |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, _, _ in SETS:
        X, _, Xt, yt, _ = split(name)
        for cell, inner, update_nl in VARIANTS:
            model, seconds = train_variant(name, cell, inner, update_nl, qat)
            models[(name, variant_name(cell, inner, update_nl))] = model
            ref, states = forward(model, Xt, return_states=True)
            mine, _ = clamped_forward(model, Xt, None)
            if np.abs(mine - ref).max() > 1e-9:
                raise AssertionError("clamped_forward(top=None) differs from the float reference")
            clamped, beyond = clamped_forward(model, Xt, PRE_TOP)
            want = ref.argmax(axis=1)
            acc = {"float": float(np.mean(want == yt))}
            agree, hid = {}, ""
            for bits in (8, 16):
                qm = quantize(model, bits, calib=X, profile="auto")
                got = predict_quantized(qm, Xt).argmax(axis=1)
                acc[f"int{bits}"] = float(np.mean(got == yt))
                agree[bits] = float(np.mean(got == want))
                hid = f"{qm.hid_frac} / {qm.pre_frac}" if bits == 8 else hid
            rep = inspect_report(model)
            rows.append(
                f"| {name} | {variant_name(cell, inner, update_nl)} | {rep['params']} | {rep['macs_per_step']} "
                f"| {acc['float']:.1%} | {acc['int8']:.1%} | {acc['int16']:.1%} "
                f"| {100 * (acc['float'] - acc['int8']):+.1f} | {agree[8]:.1%} / {agree[16]:.1%} "
                f"| {beyond:.2%} | {float(np.mean(clamped.argmax(axis=1) == yt)):.1%} "
                f"| {np.abs(states).max():.2f} | {hid} "
                f"| {seconds:.1f} |")
            print(rows[-1], flush=True)
    return rows


def run_cli(*args: str) -> dict[str, Any]:
    """One ``edgecompile`` command with ``--json -``; its JSON report (one line on failure)."""
    done = subprocess.run([CLI, *args, "--json", "-"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    return dict(json.loads(done.stdout))


def board_table(models: dict[tuple[str, str], FloatModel]) -> list[str]:
    """Export the ItalyPowerDemand FastGRNN and ERNN for every board and verify on its emulator."""
    name = "ItalyPowerDemand"
    X, _, Xt, yt, _ = split(name)
    picks = [variant_name(*v) for v in (VARIANTS[0], VARIANTS[-1])]
    rows = ["| board | cell | profile | cycles / step | flash (B) | static RAM (B) | parity |",
            "|---|---|---|--:|--:|--:|---|"]
    sources: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ernn-boards-") as tmp:
        work = Path(tmp)
        np.save(work / "calib.npy", X)
        np.save(work / "X.npy", Xt[:BOARD_SEQUENCES])
        np.save(work / "y.npy", yt[:BOARD_SEQUENCES].astype(np.int64))
        for pick in picks:
            if (name, pick) not in models:
                cell, inner, nl = next(v for v in VARIANTS if variant_name(*v) == pick)
                models[(name, pick)] = train_variant(name, cell, inner, nl)[0]
            ckpt = work / f"{pick.split()[0].lower()}.npz"
            save_checkpoint(models[(name, pick)], ckpt)
            for board in BOARDS:
                out = work / f"{ckpt.stem}_{board}"
                exp = run_cli("export", str(ckpt), "--board", board, "--bits", "8",
                              "--calib", str(work / "calib.npy"), "-o", str(out))
                if "error" in exp:
                    rows.append(f"| {board} | {pick} | | | | | export failed: {exp['error']} |")
                    print(rows[-1], flush=True)
                    continue
                qdoc = json.loads(next(out.glob("*.qmodel.json")).read_text())
                ver = run_cli("verify", str(out), "--emulate", "--data", str(work / "X.npy"),
                              "--labels", str(work / "y.npy"))
                if "error" in ver:
                    rows.append(f"| {board} | {pick} | {qdoc.get('profile', 'precise')} | | | "
                                f"| verify failed: {ver['error']} |")
                else:
                    sources.add(f"{board}: {ver['cycle_source']}")
                    ok = "PARITY OK" if not ver["mismatched"] and ver["exact_match"] == 1.0 else (
                        f"MISMATCH on {len(ver['mismatched'])}/{ver['n']}")
                    rows.append(f"| {board} | {pick} | {qdoc.get('profile', 'precise')} "
                                f"| {ver['cycles_per_step']:,.0f} | {ver['flash_bytes']} "
                                f"| {ver['ram_bytes']} | {ok} ({ver['n']} seq.) |")
                print(rows[-1], flush=True)
    rows += [f"  {s}" for s in sorted(sources)]
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
    ap.add_argument("--qat", action="store_true",
                    help="train every model of the accuracy table with QAT (TrainConfig(qat=True))")
    ap.add_argument("--boards", action="store_true",
                    help=f"also export and verify on the emulators of {', '.join(BOARDS)}")
    ap.add_argument("--epochs", type=int, default=15, help="training epochs of the gradient study")
    args = ap.parse_args()
    out: list[str] = []
    models: dict[tuple[str, str], FloatModel] = {}
    if not args.skip_accuracy:
        out += accuracy_table(models, args.qat)
    if args.boards:
        out += [""] + board_table(models)
    if not args.skip_gradients:
        out += [""] + gradient_study(args.epochs)
    print("\n".join(out))


if __name__ == "__main__":
    main()
