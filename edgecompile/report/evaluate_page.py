"""The page of ``evaluate --report DIR``: the summary, per-class accuracy and confusion
matrices (float / host integer) and the logit-error histogram of the integer simulator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.report.page import Plot, cell, esc, figure, render_page, table, write_page
from edgecompile.report.plots import draw_confusions, draw_logit_errors, note, pct, per_class_table


def render_evaluate_page(summary: dict[str, Any], labels: np.ndarray, float_logits: np.ndarray | None,
                         int_logits: np.ndarray | None, title: str) -> tuple[str, list[Plot]]:
    """``summary``: evaluate's JSON; the logits are ``[N, C]`` float64 (the integer simulator's
    dequantized), None where that model was not evaluated."""
    bits = summary.get("bits")
    name = "float only" if bits is None else f"int{bits}"
    err = summary.get("max_abs_logit_error")
    rows = [
        ["sequences", cell(str(summary["n"]), "n", summary["n"])],
        ["weight bits", cell(esc(name), "bits", bits)],
        ["accuracy of the float model", cell(pct(summary.get("accuracy_float")), "accuracy_float",
                                             summary.get("accuracy_float"))],
        [f"accuracy of the integer simulator ({esc(name)})",
         cell(pct(summary.get("accuracy_quantized")), "accuracy_quantized", summary.get("accuracy_quantized"))],
        ["argmax agreement", cell(pct(summary.get("argmax_agreement")), "argmax_agreement",
                                  summary.get("argmax_agreement"))],
        ["max |logit error|", cell("n/a" if err is None else f"{err:.5g}", "max_abs_logit_error", err)],
        ["quantization", esc(summary.get("quantization") or "n/a")],
    ]
    parts = [table(rows, header=["", "value"], table_id="summary")]
    if summary.get("note"):
        parts.append(note(str(summary["note"])))
    plots: list[Plot] = []
    preds = ([("float", float_logits.argmax(1))] if float_logits is not None else []) + (
        [(f"host {name}", int_logits.argmax(1))] if int_logits is not None else [])
    parts.append("<h2>Accuracy</h2>")
    if preds:
        classes = int((float_logits if float_logits is not None else int_logits).shape[1])  # type: ignore[union-attr]
        parts.append(per_class_table(labels, preds, classes))
        plots.append(("confusion.png", lambda plt, path: draw_confusions(plt, path, labels, preds, classes)))
    figs = [figure("confusion.png", "confusion matrices", wide=len(preds) > 1)] if preds else []
    if float_logits is not None and int_logits is not None:
        errors = [(f"host {name}", int_logits - float_logits)]
        plots.append(("logit_error.png", lambda plt, path: draw_logit_errors(plt, path, errors)))
        figs.append(figure("logit_error.png", "logit error of the integer simulator against the float model"))
    else:
        parts.append(note("no logit-error histogram: it needs both the float and the integer model"))
    parts.append('<div class="plots">' + "\n".join(figs) + "</div>")
    return render_page(title, "\n".join(parts)), plots


def write_evaluate_report(summary: dict[str, Any], labels: np.ndarray, float_logits: np.ndarray | None,
                          int_logits: np.ndarray | None, out_dir: str | os.PathLike, title: str) -> Path:
    """Write the evaluate page into ``out_dir``; returns ``out_dir/index.html``."""
    html_text, plots = render_evaluate_page(summary, np.asarray(labels), float_logits, int_logits, title)
    return write_page(out_dir, html_text, plots)
