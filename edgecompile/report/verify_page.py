"""The page of ``verify --report DIR``: summary, parity per sequence, the first divergence and
(with ``--trace``) host vs device hidden states, per-class accuracy and confusion matrices
(float / host integer / device), logit errors, memory by part against the board's budget, and
cycles per step against the board's clock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.report.memory import MemoryParts, memory_parts
from edgecompile.report.page import Plot, cell, esc, figure, render_page, table, write_page
from edgecompile.report.plots import draw_confusions, draw_logit_errors, note, pct, per_class_table
from edgecompile.targets.boards import BoardProfile, get_board
from edgecompile.targets.platforms import platform_for
from edgecompile.verify.report import ParityReport


def _num(v: float | None, fmt: str = ",.1f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _dequantized(r: ParityReport, q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) / float(2 ** (r.logit_frac or 0))


def summary_rows(r: ParityReport) -> list[list[str]]:
    """The summary table: each value's exact JSON value rides along (``data-value``)."""
    where = r.port if r.port is not None else "emulated"
    return [
        ["board", cell(esc(r.board), "board", r.board)],
        ["weight bits", cell(f"int{r.bits}", "bits", r.bits)],
        ["port", cell(esc(where), "port", r.port)],
        ["sequences", cell(str(r.n), "n", r.n)],
        ["exact match (every logit equal)", cell(pct(r.exact_match), "exact_match", r.exact_match)],
        ["argmax agreement", cell(pct(r.argmax_agreement), "argmax_agreement", r.argmax_agreement)],
        ["max |device - host| (logit LSB)", cell(str(r.max_abs_diff_lsb), "max_abs_diff_lsb",
                                                 r.max_abs_diff_lsb)],
        ["accuracy on the device", cell(pct(r.accuracy_device), "accuracy_device", r.accuracy_device)],
        ["accuracy of the float model", cell(pct(r.accuracy_float), "accuracy_float", r.accuracy_float)],
        ["per step (median)", cell(f"{_num(r.cycles_per_step)} {esc(r.cycle_source)}", "cycles_per_step",
                                   r.cycles_per_step)],
        ["per inference (median)", cell(_num(r.cycles_per_inference), "cycles_per_inference",
                                        r.cycles_per_inference)],
        ["time per step (median)", cell("not clock time" if r.ms_per_step is None else f"{r.ms_per_step:.4g} ms",
                                        "ms_per_step", r.ms_per_step)],
        ["flash used", cell(_num(r.flash_bytes, ",d") + " B" if r.flash_bytes is not None else "not measured",
                            "flash_bytes", r.flash_bytes)],
        ["static RAM used", cell(_num(r.ram_bytes, ",d") + " B" if r.ram_bytes is not None else "not measured",
                                 "ram_bytes", r.ram_bytes)],
        ["model sha256", cell(f"<code>{esc(r.model_sha256[:16])}</code>", "model_sha256", r.model_sha256)],
        ["parity", cell('<span class="ok">bit-exact</span>' if r.ok else '<span class="bad">FAILED</span>',
                        "ok", r.ok)],
    ]


def _draw_parity(r: ParityReport) -> Plot:
    def draw(plt: Any, path: Path) -> None:
        n = max(r.n, 1)
        cols = min(50, n)
        rows = int(np.ceil(n / cols))
        grid = np.full(rows * cols, np.nan)
        exact = np.asarray(r.exact[:r.n] if r.exact else [i not in r.mismatched for i in range(r.n)],
                           dtype=float)
        grid[:r.n] = exact
        from matplotlib.colors import ListedColormap

        fig, (ax, bx) = plt.subplots(2, 1, figsize=(6.2, 3.2 + 0.12 * rows), dpi=100,
                                     gridspec_kw={"height_ratios": [max(rows, 3), 8]})
        ax.imshow(grid.reshape(rows, cols), cmap=ListedColormap(["#c62828", "#2e7d32"]), vmin=0, vmax=1,
                  aspect="auto", interpolation="nearest")
        ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
        ax.grid(which="minor", color="white", lw=0.5)
        ax.tick_params(which="minor", length=0)
        for i in r.mismatched[:60]:
            ax.text(i % cols, i // cols, str(i), ha="center", va="center", fontsize=6, color="white")
        ax.set_xticks([])
        ax.set_yticks(range(rows))
        ax.set_yticklabels([str(k * cols) for k in range(rows)], fontsize=6)
        ax.set_title(f"{r.n - len(r.mismatched)} exact (green), {len(r.mismatched)} mismatched (red); "
                     f"one cell per sequence, {cols} per row", fontsize=9)
        if r.device_logits is not None and r.host_logits is not None and r.n:
            diff = np.abs(np.asarray(r.device_logits) - np.asarray(r.host_logits)).max(axis=1)
            bx.bar(np.arange(r.n), diff, color=np.where(diff > 0, "#c62828", "#2e7d32"), width=1.0)
            bx.set_ylim(0, max(1.0, float(diff.max()) * 1.1))
            if not diff.any():
                bx.text(0.5, 0.5, "every logit of every sequence equal", ha="center", va="center",
                        transform=bx.transAxes, fontsize=9, color="#2e7d32")
        bx.set_xlim(-0.5, n - 0.5)
        bx.set_xlabel("sequence")
        bx.set_ylabel("max |device - host|\n(logit LSB)", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)

    return ("parity.png", draw)


def traced_sequence(r: ParityReport) -> int:
    """The sequence whose hidden states the trace plot shows: the first divergence's, else the
    first mismatched, else the first."""
    if r.first_divergence is not None:
        return r.first_divergence.sequence
    return r.mismatched[0] if r.mismatched else 0


def _draw_trace(r: ParityReport, i: int) -> Plot:
    def draw(plt: Any, path: Path) -> None:
        assert r.host_states is not None and r.device_states is not None
        host = np.asarray(r.host_states[i], dtype=np.int64)
        dev = np.asarray(r.device_states[i], dtype=np.int64)
        t = np.arange(1, host.shape[0] + 1)
        d = r.first_divergence
        unit = d.unit if d is not None and d.sequence == i else int(np.argmax(np.abs(host).max(axis=0)))
        fig, (ax, bx) = plt.subplots(2, 1, figsize=(6.2, 6.0), dpi=100, gridspec_kw={"height_ratios": [3, 2]})
        for u in range(host.shape[1]):
            ax.plot(t, host[:, u], color="0.8", lw=0.6)
        ax.plot(t, host[:, unit], color="tab:blue", lw=2.0, label=f"host, unit {unit}")
        ax.plot(t, dev[:, unit], color="tab:orange", lw=1.2, ls="--", marker=".", label=f"device, unit {unit}")
        if d is not None and d.sequence == i:
            ax.axvline(d.step + 1, color="#c62828", lw=1, ls=":")
            ax.annotate(f"first divergence: step {d.step}, unit {d.unit}\nhost {d.host}, device {d.device}",
                        (d.step + 1, d.device), fontsize=8, color="#c62828",
                        xytext=(10, 10), textcoords="offset points")
        ax.set_ylabel("hidden state (int16, Q format of h)")
        ax.set_title(f"sequence {i}: host vs device hidden state per step (grey: the other units)",
                     fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        im = bx.imshow(np.abs(dev - host).T, aspect="auto", cmap="Reds", interpolation="nearest",
                       extent=(0.5, host.shape[0] + 0.5, host.shape[1] - 0.5, -0.5), vmin=0,
                       vmax=max(1, int(np.abs(dev - host).max())))
        fig.colorbar(im, ax=bx, label="|device - host| (LSB)")
        bx.set_xlabel("time step (1 = after the first input)")
        bx.set_ylabel("unit")
        fig.tight_layout()
        fig.savefig(path)

    return ("trace.png", draw)


def _draw_memory(m: MemoryParts) -> Plot:
    def draw(plt: Any, path: Path) -> None:
        colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
        fig, axes = plt.subplots(2, 1, figsize=(6.2, 3.6), dpi=100)
        ram_parts = dict(m.ram)
        ram_parts["stack reserve"] = m.stack_reserve
        for ax, label, parts, budget in ((axes[0], "flash", m.flash, m.flash_budget),
                                         (axes[1], "RAM", ram_parts, m.ram_budget)):
            left = 0
            for (name, size), color in zip(parts.items(), colors, strict=False):
                hatch = "//" if name == "stack reserve" else None
                ax.barh([0], [size], left=left, color=color, hatch=hatch, edgecolor="white",
                        label=f"{name} {size:,} B")
                left += size
            limit = budget if budget is not None else left
            if budget is not None:
                ax.axvline(budget, color="black", lw=2)
                ax.text(budget, -0.3, f"budget {budget:,} B ", ha="right", va="center", fontsize=8)
            ax.set_xlim(0, max(limit, left) * 1.02)
            ax.set_yticks([])
            used = sum(v for k, v in parts.items() if k != "stack reserve")
            share = f" ({100 * used / budget:.1f}% of the budget)" if budget else ""
            ax.set_title(f"{label}: {used:,} B used{share}", fontsize=9)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        axes[1].set_xlabel("bytes")
        fig.tight_layout()
        fig.savefig(path)

    return ("memory.png", draw)


def _draw_cycles(r: ParityReport, board: BoardProfile, steps: int) -> Plot:
    def draw(plt: Any, path: Path) -> None:
        fig, ax = plt.subplots(figsize=(6.2, 2.8), dpi=100)
        per_step = r.cycles_per_step or 0.0
        per_inf = r.cycles_per_inference or 0.0
        if r.ms_per_step is not None and per_step:
            hz = 1000.0 * per_step / r.ms_per_step
            ms_inf = 1000.0 * per_inf / hz
            ax.barh(["per step", f"per inference\n({steps} steps + logits)"], [r.ms_per_step, ms_inf],
                    color=["tab:blue", "tab:cyan"])
            for y, v in enumerate((r.ms_per_step, ms_inf)):
                ax.text(v, y, f" {v:.3g} ms", va="center", fontsize=8)
            ax.set_xlabel(f"milliseconds at {hz / 1e6:g} MHz ({r.cycle_source})")
            ax.set_title(f"{per_step:,.0f} per step = {r.ms_per_step:.3g} ms: "
                         f"{1000.0 / r.ms_per_step:,.0f} steps/s, {1000.0 / ms_inf:,.1f} inferences/s",
                         fontsize=9)
            ax.set_xlim(0, ms_inf * 1.3)
        else:
            ax.barh(["per step", f"per inference\n({steps} steps + logits)"], [per_step, per_inf],
                    color=["tab:gray", "silver"])
            for y, v in enumerate((per_step, per_inf)):
                ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
            ax.set_xlabel(r.cycle_source)
            ax.set_title("instruction counts, not time: QEMU models no pipeline or wait states", fontsize=9)
            ax.set_xlim(0, max(per_inf, 1.0) * 1.3)
        fig.tight_layout()
        fig.savefig(path)

    return ("cycles.png", draw)


def _cycles_rows(r: ParityReport, board: BoardProfile) -> list[list[str]]:
    clock = "n/a" if board.f_cpu_hz is None else f"{board.f_cpu_hz / 1e6:g} MHz"
    rows = [["board clock", clock], ["counts", esc(r.cycle_source)],
            ["per step (median)", _num(r.cycles_per_step)],
            ["per inference (median)", _num(r.cycles_per_inference)]]
    if r.ms_per_step is not None:
        rows += [["ms per step", f"{r.ms_per_step:.4g}"],
                 ["steps per second", f"{1000.0 / r.ms_per_step:,.0f}" if r.ms_per_step else "n/a"]]
    else:
        rows.append(["ms per step", "instructions, not time (QEMU -icount)"])
    return rows


def memory_of_project(project_dir: Path, r: ParityReport, board: BoardProfile, lib: str) -> MemoryParts | None:
    """Memory by part of the project's newest firmware (None on the host or without one)."""
    platform = platform_for(board)
    if not platform.measures_memory or r.flash_bytes is None or r.ram_bytes is None:
        return None
    elfs = [p for p in (project_dir / ".pio" / "build").glob("*/firmware.elf") if p.is_file()]
    if not elfs:
        return None
    elf = max(elfs, key=lambda p: p.stat().st_mtime)
    return memory_parts(elf, board, platform.toolchain_prefix, lib, r.flash_bytes, r.ram_bytes)


def _float_logits(project_dir: Path, checkpoint: str | None, data: str | os.PathLike | None) -> np.ndarray | None:
    if checkpoint is None or data is None:
        return None
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.frontend.data import load_sequences
    from edgecompile.reference import forward

    fm = load_checkpoint(project_dir / checkpoint)
    return forward(fm, load_sequences(str(data), fm))


def render_verify_page(r: ParityReport, board: BoardProfile, memory: MemoryParts | None, steps: int,
                       title: str, float_logits: np.ndarray | None = None
                       ) -> tuple[str, list[Plot]]:
    plots: list[Plot] = [_draw_parity(r)]
    parts = [f"<p>{esc(board.name)} (<code>{esc(board.id)}</code>), int{r.bits} weights, "
             f"{r.n} sequences of {steps} steps, run in {r.seconds:.1f} s.</p>",
             table(summary_rows(r), header=["", "value"], table_id="summary"), "<h2>Parity</h2>"]
    if r.mismatched:
        shown = ", ".join(map(str, r.mismatched[:50])) + (" ..." if len(r.mismatched) > 50 else "")
        parts.append(f'<p id="mismatched" class="bad">MISMATCH in {len(r.mismatched)} of {r.n} '
                     f"sequence(s): {esc(shown)}</p>")
    else:
        parts.append(f'<p id="mismatched" class="ok">all {r.n} sequences bit-exact</p>')
    d = r.first_divergence
    if d is not None:
        parts.append(table([["sequence", str(d.sequence)], ["step", str(d.step)], ["unit", str(d.unit)],
                            ["host", str(d.host)], ["device", str(d.device)]],
                           header=["first divergence", ""], table_id="divergence"))
    elif r.traced:
        parts.append(note("every hidden state of every sequence agrees (--trace)"))
    else:
        parts.append(note("hidden states not compared: run verify with --trace for the first divergence "
                          "and the per-step plot"))
    figs = [figure("parity.png", "exact and mismatched sequences; max logit difference per sequence")]
    if r.traced and r.host_states is not None and r.device_states is not None and r.n:
        i = traced_sequence(r)
        plots.append(_draw_trace(r, i))
        figs.append(figure("trace.png", f"hidden state per step, host vs device, sequence {i}"))
    parts.append('<div class="plots">' + "\n".join(figs) + "</div>")

    parts.append("<h2>Accuracy</h2>")
    floats = float_logits if float_logits is not None else r.float_logits
    if r.labels is not None and r.device_logits is not None and r.host_logits is not None:
        y = np.asarray(r.labels)
        classes = int(np.asarray(r.host_logits).shape[1])
        preds = ([("float", np.asarray(floats).argmax(1))] if floats is not None else []) + [
            (f"host int{r.bits}", np.asarray(r.host_logits).argmax(1)),
            ("device", np.asarray(r.device_logits).argmax(1))]
        parts.append(per_class_table(y, preds, classes))
        plots.append(("confusion.png", lambda plt, path: draw_confusions(plt, path, y, preds, classes)))
        figs = [figure("confusion.png", "confusion matrices", wide=True)]
    else:
        figs = []
        parts.append(note("no labels: run verify with --labels for per-class accuracy and confusion matrices"))
    if floats is not None and r.device_logits is not None and r.host_logits is not None:
        errors = [(f"host int{r.bits}", _dequantized(r, r.host_logits) - floats),
                  ("device", _dequantized(r, r.device_logits) - floats)]
        plots.append(("logit_error.png", lambda plt, path: draw_logit_errors(plt, path, errors)))
        figs.append(figure("logit_error.png", "logit error against the float model (device and host "
                                              "integer, dequantized)"))
    else:
        parts.append(note("the project holds no float model: no logit-error histogram"))
    parts.append('<div class="plots">' + "\n".join(figs) + "</div>")

    parts.append("<h2>Memory and cycles</h2>")
    figs = []
    if memory is not None:
        rows = [[esc(k), f"{v:,} B"] for k, v in memory.flash.items()]
        rows.append(["flash budget", "no limit" if memory.flash_budget is None else f"{memory.flash_budget:,} B"])
        rows += [[f"RAM: {esc(k)}", f"{v:,} B"] for k, v in memory.ram.items()]
        rows.append(["RAM: stack reserve", f"{memory.stack_reserve:,} B"])
        rows.append(["RAM budget", "no limit" if memory.ram_budget is None else f"{memory.ram_budget:,} B"])
        parts.append(table(rows, header=["memory", "bytes"], table_id="memory"))
        plots.append(_draw_memory(memory))
        figs.append(figure("memory.png", "flash and RAM by part against the board's budget"))
    else:
        parts.append(note("memory not measured (a host process, or no linked firmware)"))
    parts.append(table(_cycles_rows(r, board), header=["cycles", ""], table_id="cycles"))
    if r.cycles_per_step is not None:
        plots.append(_draw_cycles(r, board, steps))
        figs.append(figure("cycles.png", "cycles per step against the board's clock"))
    parts.append('<div class="plots">' + "\n".join(figs) + "</div>")
    return render_page(title, "\n".join(parts)), plots


def write_verify_report(r: ParityReport, project_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        *, data: str | os.PathLike | None = None, title: str | None = None) -> Path:
    """Write the verify page of ``r`` (from :func:`edgecompile.pipeline.verify.verify_project` on
    ``project_dir``) into ``out_dir``; returns ``out_dir/index.html``. ``data`` (the raw inputs)
    lets the page compare with the float model when verify had no labels."""
    from edgecompile.targets.manifest import read_manifest

    root = Path(project_dir)
    manifest = read_manifest(root)
    board = get_board(manifest.board)
    floats = r.float_logits if r.float_logits is not None else _float_logits(root, manifest.checkpoint, data)
    memory = memory_of_project(root, r, board, manifest.name)
    steps = int(np.asarray(r.host_states).shape[1]) if r.host_states is not None else _steps(data)
    html_text, plots = render_verify_page(r, board, memory, steps,
                                          title or f"edgecompile verify report: {manifest.name} on {board.id}",
                                          floats)
    return write_page(out_dir, html_text, plots)


def _steps(data: str | os.PathLike | None) -> int:
    if data is None:
        return 0
    try:
        return int(np.load(data, mmap_mode="r").shape[-2])
    except (OSError, ValueError, IndexError):
        return 0
