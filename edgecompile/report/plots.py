"""Plots and tables shared by the verify and evaluate pages: confusion matrices, per-class
accuracy and the logit-error histogram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.report.page import esc, table

#: (name, predicted classes [N]) of each model a page compares.
Predictions = Sequence[tuple[str, np.ndarray]]


def confusion(labels: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels.astype(np.int64), pred.astype(np.int64)), 1)
    return m


def draw_confusions(plt: Any, path: Path, labels: np.ndarray, preds: Predictions, classes: int) -> None:
    k = len(preds)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k + 0.6, 4.2), dpi=100, squeeze=False)
    for ax, (name, pred) in zip(axes[0], preds, strict=True):
        m = confusion(labels, pred, classes)
        ax.imshow(m, cmap="Blues")
        if classes <= 12:
            for i in range(classes):
                for j in range(classes):
                    if m[i, j]:
                        ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if m[i, j] > m.max() / 2 else "black")
        acc = 100.0 * float(np.mean(pred == labels)) if labels.size else 0.0
        ax.set_title(f"{name}: {acc:.2f}%", fontsize=10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(classes))
        ax.set_yticks(range(classes))
        ax.tick_params(labelsize=7)
    fig.suptitle("confusion matrices (rows: true class)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def per_class_table(labels: np.ndarray, preds: Predictions, classes: int) -> str:
    rows = []
    for c in range(classes):
        sel = labels == c
        cells = [f"{int(sel.sum())}"]
        for _, pred in preds:
            cells.append("-" if not sel.any() else f"{100.0 * float(np.mean(pred[sel] == c)):.2f}%")
        rows.append([f"class {c}", *cells])
    return table(rows, header=["class", "sequences", *[f"accuracy: {n}" for n, _ in preds]],
                 table_id="per_class")


def draw_logit_errors(plt: Any, path: Path, errors: Sequence[tuple[str, np.ndarray]]) -> None:
    """Histogram of (logits - float logits), dequantized, one series per name."""
    fig, ax = plt.subplots(figsize=(6.2, 4.0), dpi=100)
    values = [np.asarray(e, dtype=np.float64).ravel() for _, e in errors]
    span = max((float(np.abs(v).max()) for v in values if v.size), default=0.0) or 1e-6
    bins = np.linspace(-span, span, 61)
    styles = (("tab:orange", 0.55, "stepfilled"), ("tab:blue", 1.0, "step"))
    for (name, _), v, (color, alpha, kind) in zip(errors, values, styles, strict=False):
        ax.hist(v, bins=bins, color=color, alpha=alpha, histtype=kind, lw=1.4,
                label=f"{name} (max |error| {float(np.abs(v).max()) if v.size else 0:.4g})")
    ax.set_yscale("log")
    ax.set_xlabel("logit - float logit (dequantized)")
    ax.set_ylabel("logits (log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("logit error against the float model")
    fig.tight_layout()
    fig.savefig(path)


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'
