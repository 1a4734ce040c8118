"""The parity report of ``verify``: its JSON contract and its text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The keys of ``verify --json``: exactly these, always present (None where one does not apply).
JSON_KEYS = ("board", "bits", "port", "n", "exact_match", "argmax_agreement", "max_abs_diff_lsb",
             "accuracy_device", "accuracy_float", "cycles_per_inference", "cycles_per_step",
             "ms_per_step", "cycle_source", "flash_bytes", "ram_bytes", "model_sha256",
             "mismatched", "first_divergence", "traced", "seconds")


@dataclass(frozen=True)
class Divergence:
    """The first hidden-state value where the device and the host differ (``--trace``)."""

    sequence: int
    step: int
    unit: int
    host: int
    device: int

    def to_json(self) -> dict[str, int]:
        return {"sequence": self.sequence, "step": self.step, "unit": self.unit,
                "host": self.host, "device": self.device}


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
    mismatched: list[int] = field(default_factory=list)  # sequence indices
    first_divergence: Divergence | None = None  # only with --trace
    board: str = ""  # the board id
    bits: int = 0  # weight width of the quantized model
    port: str | None = None  # None when emulated
    traced: bool = False  # hidden states compared step by step (--trace)
    seconds: float = 0.0
    # Not in the JSON: details for the table and for scripts.
    link: dict[str, int] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    #: The integer logits ``[N, C]`` the device sent, and their Q format (``logit_frac``).
    device_logits: np.ndarray | None = None
    logit_frac: int | None = None
    # For ``verify --report`` (not in the JSON): the host simulator's integer logits ``[N, C]``,
    # per sequence whether it matched, under ``--trace`` the hidden states ``[N, T, H]`` of the
    # host and of the device, and the labels and float-model logits when verify had them.
    host_logits: np.ndarray | None = None
    exact: list[bool] = field(default_factory=list)
    host_states: np.ndarray | None = None
    device_states: np.ndarray | None = None
    labels: np.ndarray | None = None
    float_logits: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.n > 0 and not self.mismatched

    def to_json(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in JSON_KEYS}
        doc["mismatched"] = [int(i) for i in self.mismatched]
        doc["first_divergence"] = None if self.first_divergence is None else self.first_divergence.to_json()
        doc["seconds"] = round(float(self.seconds), 3)
        return doc

    def dequantized_logits(self) -> np.ndarray:
        """The device's logits ``[N, C]`` as float64, dequantized exactly as ``predict`` does
        (integer / 2^logit_frac)."""
        if self.device_logits is None or self.logit_frac is None:
            raise ValueError("the report holds no device logits")
        return np.asarray(self.device_logits, dtype=np.float64) / float(2**self.logit_frac)

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
        where = self.port if self.port is not None else "emulated"
        rows = [
            ("board", f"{self.board or 'n/a'} (int{self.bits}), {where}"),
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
