"""The quantized model: integer tensors, Q formats and the decisions the quantizer made.

It is the contract between the quantizer and its two renderings (the simulator and the C
templates). Serialised as sorted JSON (``save_qmodel``/``load_qmodel``): deterministic bytes and
readable by a user.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecompile import __version__
from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import INT32_LIMIT, PRE_FRAC, UNIT_FRAC
from edgecompile.ir.model import ModelShape

FORMAT_VERSION = 1


@dataclass(frozen=True)
class QFactor:
    """One integer weight matrix ``[in, out]`` standing for ``values / 2^frac``."""

    values: np.ndarray
    frac: int
    sparse: bool = False  # store and visit only the non-zeros (decided by the quantizer)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    @property
    def nonzeros(self) -> int:
        return int(np.count_nonzero(self.values))


@dataclass(frozen=True)
class QMatrix:
    """W or U: one dense factor, or two factors computed as two products (low rank).

    ``mid_frac`` is the Q format of the int16 intermediate ``a @ M1`` of a low-rank matrix.
    """

    factors: tuple[QFactor, ...]
    mid_frac: int | None = None

    @property
    def low_rank(self) -> bool:
        return len(self.factors) == 2

    @property
    def in_dim(self) -> int:
        return self.factors[0].shape[0]

    @property
    def out_dim(self) -> int:
        return self.factors[-1].shape[1]

    def shifts(self, in_frac: int) -> tuple[int, ...]:
        """Rescaling shifts after each product: to ``mid_frac`` (low rank) and then to Q12."""
        if not self.low_rank:
            return (in_frac + self.factors[0].frac - PRE_FRAC,)
        f1, f2 = self.factors
        return (in_frac + f1.frac - self.mid_frac, self.mid_frac + f2.frac - PRE_FRAC)

    def macs(self) -> int:
        return sum(f.nonzeros if f.sparse else f.values.size for f in self.factors)


@dataclass(frozen=True)
class QuantizedModel(ModelShape):
    """Everything the integer kernel needs, plus the host-side input quantization."""

    cell: str
    bits: int
    gate_nl: str
    update_nl: str
    in_frac: int
    hid_frac: int
    W: QMatrix
    U: QMatrix
    FC: QFactor
    fc_bias: np.ndarray  # int32, Q(hid_frac + FC.frac)
    bias_update: np.ndarray  # int16 Q12 (Bh, or B for FastRNN)
    bias_gate: np.ndarray | None = None  # int16 Q12 (FastGRNN Bg)
    zeta: int | None = None  # Q14 sigmoid(zeta) (FastGRNN)
    nu: int | None = None  # Q14 sigmoid(nu)
    alpha: int | None = None  # Q14 sigmoid(alpha) (FastRNN)
    beta: int | None = None  # Q14 sigmoid(beta)
    mean: np.ndarray | None = None  # float64, [D] or [T*D]: host-side normalisation
    std: np.ndarray | None = None
    source_sha256: str = ""
    tool_version: str = __version__
    calibration: dict = field(default_factory=dict)

    @property
    def logit_frac(self) -> int:
        return self.hid_frac + self.FC.frac

    @property
    def residual_shift(self) -> int:
        """The shift aligning ``coef * c`` (Q28) with ``z * h`` (Q(14 + hid_frac))."""
        return 14 - self.hid_frac

    def quantized_sha256(self) -> str:
        """The identity of the integer kernel: sha256 over everything that changes what a device
        running this model computes, and nothing else.

        Covered: cell, weight bits, nonlinearities, every Q format and shift, every integer
        (factors with their sparse layout, biases, residual scalars), the input normalisation
        of the generated float helper, and the fixed-point tables and constants of the spec.
        Not covered: provenance (float model hash, tool version, calibration notes). The same
        model gives the same hash whether it was just quantized or read back from its JSON file.
        """
        from edgecompile.sim.nonlinear import SIG

        def ints(v: np.ndarray | None) -> list | None:
            return None if v is None else np.asarray(v, dtype=np.int64).tolist()

        def floats(v: np.ndarray | None) -> list | None:
            return None if v is None else [float(x).hex() for x in np.asarray(v, np.float64).ravel()]

        def factor(f: QFactor) -> dict:
            return {"values": ints(f.values), "frac": int(f.frac), "sparse": bool(f.sparse)}

        def matrix(m: QMatrix) -> dict:
            return {"factors": [factor(f) for f in m.factors],
                    "mid_frac": None if m.mid_frac is None else int(m.mid_frac)}

        grnn = self.cell == "FastGRNN"
        doc = {
            "identity": 1,
            "spec": {"pre_frac": PRE_FRAC, "unit_frac": UNIT_FRAC, "sig_table": ints(SIG)},
            "cell": self.cell, "bits": int(self.bits),
            "gate_nl": self.gate_nl if grnn else None, "update_nl": self.update_nl,
            "in_frac": int(self.in_frac), "hid_frac": int(self.hid_frac),
            "W": matrix(self.W), "U": matrix(self.U), "FC": factor(self.FC),
            "fc_bias": ints(self.fc_bias), "bias_update": ints(self.bias_update),
            "bias_gate": ints(self.bias_gate) if grnn else None,
            "scalars": [None if v is None else int(v)
                        for v in (self.zeta, self.nu, self.alpha, self.beta)],
            "mean": floats(self.mean), "std": floats(self.std),
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def summary(self) -> str:
        """One line for generated-file headers: bits and every Q format."""
        def mat(name: str, m: QMatrix) -> str:
            parts = "*".join(f"Q{f.frac}{'s' if f.sparse else ''}" for f in m.factors)
            mid = f"(mid Q{m.mid_frac})" if m.low_rank else ""
            return f"{name}={parts}{mid}"

        return (
            f"{self.cell} int{self.bits} weights; x Q{self.in_frac}, h Q{self.hid_frac}, "
            f"{mat('W', self.W)}, {mat('U', self.U)}, FC=Q{self.FC.frac}, "
            f"logits int32 Q{self.logit_frac}; gate={self.gate_nl if self.cell == 'FastGRNN' else '-'} "
            f"update={self.update_nl}"
        )

    def bound_report(self) -> list[dict]:
        """Worst-case magnitude of every int32 intermediate over the full int16 input range.

        Each entry: operation, worst case, limit 2^31, and whether it is proved (no overflow
        possible) — the quantizer only emits models where every entry is proved.
        """
        rows = []
        for name, m, a_frac in (("W", self.W, self.in_frac), ("U", self.U, self.hid_frac)):
            for k, (factor, shift) in enumerate(zip(m.factors, m.shifts(a_frac), strict=True)):
                worst = int(np.abs(factor.values).sum(axis=0).max()) * 32768
                worst += (1 << (shift - 1)) if shift > 0 else 0
                op = f"{name}{k + 1 if m.low_rank else ''} product"
                rows.append(_bound(op, worst))
                if shift < 0:
                    rows.append(_bound(f"{op} rescale", worst << -shift))
        worst_fc = int(np.abs(self.FC.values).sum(axis=0).max()) * 32768
        worst_fc += int(np.abs(self.fc_bias).max())
        rows.append(_bound("FC product + bias", worst_fc))
        pre = sum(_rescaled_worst(m, f) for m, f in ((self.W, self.in_frac), (self.U, self.hid_frac)))
        rows.append(_bound("pre-activation + bias", pre + 32768))
        rows.append(_bound("residual update", self._residual_worst()))
        return rows

    def _residual_worst(self) -> int:
        """Worst |keep + rshift(new, 14 - hid_frac)| of the hidden-state update.

        A tanh-type gate makes z negative, so ``1 - z`` reaches 2.0 and ``coef`` 3.0 (Q14).
        """
        if self.cell == "FastGRNN":
            z_min = -16384 if self.gate_nl in ("tanh", "quantTanh") else 0
            keep = 16384 * 32768
            coef = ((self.zeta * (16384 - z_min) + (1 << 13)) >> 14) + self.nu
        else:
            keep, coef = self.beta * 32768, self.alpha
        new = coef * 16384
        s = self.residual_shift
        return keep + (((new + (1 << (s - 1))) >> s) if s > 0 else new << -s)


def _rescaled_worst(m: QMatrix, a_frac: int) -> int:
    """Worst |value| of mat() after its final rescale (the low-rank middle saturates to int16)."""
    shifts = m.shifts(a_frac)
    last = m.factors[-1]
    worst = int(np.abs(last.values).sum(axis=0).max()) * 32768
    s = shifts[-1]
    return ((worst + (1 << (s - 1))) >> s) if s > 0 else worst << -s


def _bound(op: str, worst: int) -> dict:
    return {"operation": op, "worst_case": worst, "limit": INT32_LIMIT, "proved": worst < INT32_LIMIT}


def check_bounds(qm: QuantizedModel) -> None:
    """Raise :class:`QuantError` if any int32 intermediate could overflow."""
    for row in qm.bound_report():
        if not row["proved"]:
            raise QuantError(
                f"{row['operation']} could reach {row['worst_case']} >= 2^31: lower its Q format"
            )


# --- serialisation -------------------------------------------------------------------------

def _factor_to_json(f: QFactor) -> dict:
    return {"values": f.values.astype(int).tolist(), "frac": f.frac, "sparse": f.sparse}


def _factor_from_json(d: dict) -> QFactor:
    return QFactor(np.asarray(d["values"], dtype=np.int64).reshape(len(d["values"]), -1),
                   int(d["frac"]), bool(d["sparse"]))


def qmodel_to_json(qm: QuantizedModel) -> str:
    """Deterministic JSON text (sorted keys, integers as lists)."""
    d = asdict(qm)
    for name in ("W", "U"):
        m: QMatrix = getattr(qm, name)
        d[name] = {"factors": [_factor_to_json(f) for f in m.factors], "mid_frac": m.mid_frac}
    d["FC"] = _factor_to_json(qm.FC)
    for key in ("fc_bias", "bias_update", "bias_gate"):
        v = getattr(qm, key)
        d[key] = None if v is None else v.astype(int).tolist()
    for key in ("mean", "std"):
        v = getattr(qm, key)
        d[key] = None if v is None else [float(x) for x in v]
    d["format_version"] = FORMAT_VERSION
    text = json.dumps(d, indent=1, sort_keys=True)
    # one line per row of numbers, so matrices read as matrices
    return _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


_NUMBER_LIST = re.compile(r"\[\s*([-+0-9.eE,\s]+?)\s*\]")


def qmodel_from_json(text: str) -> QuantizedModel:
    d = json.loads(text)
    if d.pop("format_version", None) != FORMAT_VERSION:
        raise QuantError("quantized model file has an unknown format version: re-export it")
    for name in ("W", "U"):
        m = d[name]
        d[name] = QMatrix(tuple(_factor_from_json(f) for f in m["factors"]), m["mid_frac"])
    d["FC"] = _factor_from_json(d["FC"])
    for key in ("fc_bias", "bias_update", "bias_gate"):
        if d[key] is not None:
            d[key] = np.asarray(d[key], dtype=np.int64)
    for key in ("mean", "std"):
        if d[key] is not None:
            d[key] = np.asarray(d[key], dtype=np.float64)
    return QuantizedModel(**d)


def save_qmodel(qm: QuantizedModel, path: str | os.PathLike) -> None:
    Path(path).write_text(qmodel_to_json(qm))


def load_qmodel(path: str | os.PathLike) -> QuantizedModel:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise QuantError(f"{p}: cannot read the quantized model ({exc.strerror})") from None
    try:
        return qmodel_from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise QuantError(f"{p}: not a valid quantized model file ({exc})") from None
