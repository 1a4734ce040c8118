"""The parity report of ``verify``: its JSON contract and its text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The keys of ``verify --json``: exactly these, in this order.
JSON_KEYS = ("n", "exact_match", "argmax_agreement", "max_abs_diff_lsb", "accuracy_device",
             "accuracy_float", "cycles_per_inference", "cycles_per_step", "ms_per_step",
             "cycle_source", "flash_bytes", "ram_bytes", "model_sha256")


@dataclass(frozen=True)
class Divergence:
    """The first hidden-state value where the device and the host differ (``--trace``)."""

    sequence: int
    step: int
    unit: int
    host: int
    device: int


@dataclass
class ParityReport:
    """What ``verify`` found; the fields named in :data:`JSON_KEYS` are its JSON."""

    n: int
    exact_match: float
    argmax_agreement: float
    max_abs_diff_lsb: int
    accuracy_device: float | None
    accuracy_float: float | None
    cycles_per_inference: float | None
    cycles_per_step: float | None
    #: Clock time per step; None when the counts are not time (QEMU -icount instructions).
    ms_per_step: float | None
    cycle_source: str
    flash_bytes: int | None
    ram_bytes: int | None
    model_sha256: str
    # Not in the JSON contract: details for the table and for scripts.
    mismatched: list[int] = field(default_factory=list)
    first_divergence: Divergence | None = None
    link: dict[str, int] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.n > 0 and not self.mismatched

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in JSON_KEYS}

    def render(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f} %"

        def num(v: float | None) -> str:
            return "n/a" if v is None else f"{v:,.1f}"

        if self.ms_per_step is not None:
            ms = f"{self.ms_per_step:.4g} ms"
        elif self.cycles_per_step is not None:
            ms = f"- (the counts are {self.cycle_source}, not clock time)"
        else:
            ms = "-"
        rows = [
            ("sequences", str(self.n)),
            ("exact match (every logit equal)", pct(self.exact_match)),
            ("argmax agreement", pct(self.argmax_agreement)),
            ("max |device - host| (logit LSB)", str(self.max_abs_diff_lsb)),
            ("accuracy on device", pct(self.accuracy_device)),
            ("accuracy of the float model", pct(self.accuracy_float)),
            ("per inference (median)", f"{num(self.cycles_per_inference)} [{self.cycle_source}]"),
            ("per step (median)", num(self.cycles_per_step)),
            ("time per step (median)", ms),
            ("flash / static RAM", f"{self.flash_bytes if self.flash_bytes is not None else 'n/a'}"
                                   f" / {self.ram_bytes if self.ram_bytes is not None else 'n/a'}"
                                   " bytes"),
            ("model sha256", self.model_sha256),
            ("run time", f"{self.seconds:.2f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
        if self.mismatched:
            shown = ", ".join(map(str, self.mismatched[:10]))
            more = " ..." if len(self.mismatched) > 10 else ""
            lines.append(f"  MISMATCH in {len(self.mismatched)} sequence(s): {shown}{more}")
        if self.first_divergence:
            d = self.first_divergence
            lines.append(f"  first divergence: sequence {d.sequence}, step {d.step}, unit "
                         f"{d.unit}: host {d.host}, device {d.device}")
        lines.append("  PARITY OK: bit-exact" if self.ok else "  PARITY FAILED")
        return "\n".join(lines)
