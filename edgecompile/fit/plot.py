"""``pareto.png``: validation accuracy against flash and against cycles per step."""

from __future__ import annotations

import io
from typing import Any

from edgecompile.fit.search import Limits


def pareto_png(records: list[dict[str, Any]], pareto: list[dict[str, Any]], chosen: dict[str, Any] | None,
               limits: Limits) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("accuracy_val") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    front = {r["key"] for r in pareto}
    for ax, key, label, limit in (
            (axes[0], "flash_bytes", "predicted flash (bytes)", limits.board.flash_bytes),
            (axes[1], "cycles_per_step", "predicted cycles per step", limits.max_cycles())):
        for fits, colour, name in ((True, "tab:blue", "fits"), (False, "tab:gray", "does not fit")):
            pts = [r for r in ok if bool(r.get("fits")) == fits]
            ax.scatter([r[key] for r in pts], [100 * r["accuracy_val"] for r in pts], s=22,
                       c=colour, alpha=0.7, label=name)
        fr = sorted((r for r in ok if r["key"] in front), key=lambda r: r[key])
        ax.plot([r[key] for r in fr], [100 * r["accuracy_val"] for r in fr], "o", mfc="none",
                mec="tab:orange", ms=9, label="Pareto front")
        if limit is not None:
            ax.axvline(limit, color="tab:red", ls="--",
                       label="flash budget" if key == "flash_bytes" else "latency limit")
        if chosen is not None:
            ax.plot([chosen[key]], [100 * chosen["accuracy_val"]], "*", c="tab:green", ms=16,
                    label="chosen")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    if limits.board.ram_bytes is not None:
        axes[0].set_title(f"{limits.board.name}: flash {limits.board.flash_bytes} B, RAM "
                          f"{limits.board.ram_bytes} B", fontsize=10)
    if limits.max_ms_per_step is not None:
        axes[1].set_title(f"latency limit {limits.max_ms_per_step:g} ms/step at "
                          f"{(limits.board.f_cpu_hz or 0) / 1e6:g} MHz", fontsize=10)
    axes[0].set_ylabel("validation accuracy, integer simulator (%)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
