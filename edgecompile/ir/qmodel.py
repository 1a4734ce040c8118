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
from typing import Any

import numpy as np

from edgecompile import __version__
from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import PRE_FRAC, SIG, UNIT_FRAC
from edgecompile.ir.model import ModelShape

FORMAT_VERSION = 1
#: The arithmetic profiles of docs/fixed-point.md.
PROFILES = ("precise", "fast")


def nl_frac(nl: str) -> int:
    """The Q format of a nonlinearity's output: Q14, except relu's Q12 (its input format: [0, 8)
    does not fit int16 in Q14)."""
    return PRE_FRAC if nl == "relu" else UNIT_FRAC


@dataclass(frozen=True)
class QFactor:
    """One integer weight matrix ``[in, out]`` standing for ``values / 2^frac``."""

    values: np.ndarray
    frac: int
    sparse: bool = False  # store and visit only the non-zeros (decided by the quantizer)
    #: Per-column Q formats (one per output) of a per-unit final factor; None: every column Q(frac).
    #: ``frac`` is then the lowest of them.
    col_fracs: tuple[int, ...] | None = None

    @property
    def fracs(self) -> np.ndarray:
        """The Q format of every column ``[out]``: ``col_fracs``, or ``frac`` repeated."""
        if self.col_fracs is None:
            return np.full(self.shape[1], self.frac, dtype=np.int64)
        return np.asarray(self.col_fracs, dtype=np.int64)

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

    @property
    def per_unit(self) -> bool:
        """The final factor has per-column formats (its product is rescaled per unit, with U's)."""
        return self.factors[-1].col_fracs is not None

    def mid_shift(self, in_frac: int) -> int:
        """The rescaling shift of a low-rank matrix's first product, to ``mid_frac``."""
        if self.mid_frac is None or not self.low_rank:
            raise QuantError("a low-rank matrix needs the Q format of its intermediate (mid_frac)")
        return in_frac + self.factors[0].frac - self.mid_frac

    def acc_fracs(self, in_frac: int) -> np.ndarray:
        """Q format of each output of the final product ``[out]`` (before any rescale)."""
        a = self.mid_frac if self.low_rank else in_frac
        if a is None:
            raise QuantError("a low-rank matrix needs the Q format of its intermediate (mid_frac)")
        return a + self.factors[-1].fracs

    def shifts(self, in_frac: int) -> tuple[int, ...]:
        """Rescaling shifts after each product: to ``mid_frac`` (low rank) and then to Q12.

        Per-tensor form only: a per-unit matrix is rescaled together with the other one
        (``QuantizedModel.unit_shifts``).
        """
        if self.per_unit:
            raise QuantError("a per-unit matrix has one shift per unit: use QuantizedModel.unit_shifts()")
        if not self.low_rank:
            return (in_frac + self.factors[0].frac - PRE_FRAC,)
        if self.mid_frac is None:
            raise QuantError("a low-rank matrix needs the Q format of its intermediate (mid_frac)")
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
    #: The raw int16 input of ``<name>_step_raw`` (docs/fixed-point.md, "Raw int16 inputs"): the
    #: real value of one raw LSB and of raw 0, float64 ``[D]``; None: no raw helper.
    raw_scale: np.ndarray | None = None
    raw_offset: np.ndarray | None = None
    source_sha256: str = ""
    tool_version: str = __version__
    calibration: dict[str, Any] = field(default_factory=dict)  # provenance: method, ranges, formats
    #: Per-unit form: the final factors of W and U have per-column formats tied so that both
    #: products of unit j land in Q(A[j]); pre[j] = rshift(accW[j] + accU[j], A[j] - 12).
    per_unit: bool = False
    #: The arithmetic profile (docs/fixed-point.md): "precise" (interpolated tables) or "fast"
    #: (direct tables, a coef table, one floor shift per unit; always the per-unit form).
    profile: str = "precise"
    #: ERNN (docs/fixed-point.md, "ERNN"): one entry per inner step, the step size eta_i in
    #: Q(eta_frac) and the decay eta_i * alpha in Q(decay_frac), int16; None for the other cells.
    eta: tuple[int, ...] | None = None
    eta_frac: int | None = None
    decay: tuple[int, ...] | None = None
    decay_frac: int | None = None
    #: The format of the pre-activations, the biases added to them and a relu update's output:
    #: Q12 (the spec constant), or for an ERNN with a relu update a calibrated Q(0..12)
    #: (docs/fixed-point.md, "ERNN": relu commutes with the scale, the tables need Q12).
    pre_frac: int = PRE_FRAC

    @property
    def logit_frac(self) -> int:
        return self.hid_frac + self.FC.frac

    def unit_shifts(self) -> np.ndarray:
        """``A[j] - 12`` of the per-unit form ``[H]`` (int64), checking the tie of W and U."""
        if not self.per_unit or not (self.W.per_unit and self.U.per_unit):
            raise QuantError("not a per-unit quantized model: W and U need per-column formats")
        a_w = self.W.acc_fracs(self.in_frac)
        a_u = self.U.acc_fracs(self.hid_frac)
        if a_w.shape != a_u.shape or not np.array_equal(a_w, a_u):
            raise QuantError("per-unit formats of W and U do not tie: the quantized model is corrupt")
        return a_w - self.pre_frac

    @property
    def gate_frac(self) -> int:
        """gz: the Q format of the gate z (FastGRNN), 14 for FastRNN (beta_q is Q14 in its place);
        also the final shift of the residual update, back to Q(hid_frac)."""
        return nl_frac(self.gate_nl) if self.cell == "FastGRNN" else UNIT_FRAC

    @property
    def update_frac(self) -> int:
        """gc: the Q format of the update value c (a relu update keeps the pre-activations')."""
        return self.pre_frac if self.update_nl == "relu" else nl_frac(self.update_nl)

    @property
    def residual_shift(self) -> int:
        """The shift aligning ``coef * c`` (Q(14 + gc)) with ``z * h`` (Q(gz + hid_frac)):
        ``14 + gc - gz - hid_frac`` (``14 - hid_frac`` when both are Q14)."""
        return UNIT_FRAC + self.update_frac - self.gate_frac - self.hid_frac

    def grnn_terms(self) -> tuple[np.ndarray, int, int]:
        """FastGRNN's ``(bias_gate, zeta, nu)``."""
        if self.bias_gate is None or self.zeta is None or self.nu is None:
            raise QuantError(f"a {self.cell} quantized model has no FastGRNN gate terms")
        return self.bias_gate, self.zeta, self.nu

    def rnn_terms(self) -> tuple[int, int]:
        """FastRNN's ``(alpha, beta)``."""
        if self.alpha is None or self.beta is None:
            raise QuantError(f"a {self.cell} quantized model has no FastRNN residual scalars")
        return self.alpha, self.beta

    def ernn_terms(self) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
        """ERNN's ``(eta, decay, eta_shift, decay_shift)``: the inner steps' Q constants and the
        rescaling shifts of ``eta * phi`` (Q(eta_frac + gc) → Q(hid_frac)) and of ``decay * s``
        (Q(decay_frac + hid_frac) → Q(hid_frac))."""
        if self.eta is None or self.decay is None or self.eta_frac is None or self.decay_frac is None:
            raise QuantError(f"a {self.cell} quantized model has no ERNN inner-step constants")
        if len(self.eta) != len(self.decay) or not self.eta:
            raise QuantError("ERNN eta and decay differ in length: the quantized model is corrupt")
        return (self.eta, self.decay, self.eta_frac + self.update_frac - self.hid_frac, self.decay_frac)

    def quantized_sha256(self) -> str:
        """The identity of the integer kernel: sha256 over everything that changes what a device
        running this model computes, and nothing else.

        Covered: cell, weight bits, nonlinearities, every Q format and shift, every integer
        (factors with their sparse layout, biases, residual scalars), the input normalisation
        of the generated float helper, and the fixed-point tables and constants of the spec.
        Not covered: provenance (float model hash, tool version, calibration notes). The same
        model gives the same hash whether it was just quantized or read back from its JSON file.
        """

        def ints(v: np.ndarray | None) -> list[Any] | None:
            return None if v is None else np.asarray(v, dtype=np.int64).tolist()

        def floats(v: np.ndarray | None) -> list[str] | None:
            return None if v is None else [float(x).hex() for x in np.asarray(v, np.float64).ravel()]

        def factor(f: QFactor) -> dict[str, Any]:
            d = {"values": ints(f.values), "frac": int(f.frac), "sparse": bool(f.sparse)}
            if f.col_fracs is not None:  # absent in the per-tensor form: its hashes stay as they were
                d["col_fracs"] = [int(v) for v in f.col_fracs]
            return d

        def matrix(m: QMatrix) -> dict[str, Any]:
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
        if self.per_unit:
            doc["per_unit"] = True
        if self.pre_frac != PRE_FRAC:  # absent at Q12: those hashes stay as they were
            doc["pre_frac"] = int(self.pre_frac)
        if self.cell == "ERNN":  # absent for the other cells: their hashes stay as they were
            eta, decay, _, _ = self.ernn_terms()
            doc["ernn"] = {"eta": [int(v) for v in eta], "eta_frac": int(self.eta_frac or 0),
                           "decay": [int(v) for v in decay], "decay_frac": int(self.decay_frac or 0)}
        if self.profile != "precise":  # absent for the precise profile: its hashes stay as they were
            from edgecompile.sim.fast import fast_tables_doc

            doc["profile"] = self.profile
            doc["fast_tables"] = fast_tables_doc(self)
        if self.raw_scale is not None:  # absent without a raw helper: those hashes stay as they were
            doc["raw"] = [floats(self.raw_scale), floats(self.raw_offset)]
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def summary(self) -> str:
        """One line for generated-file headers: bits and every Q format."""
        def mat(name: str, m: QMatrix) -> str:
            parts = "*".join(f"Q{_fracs_text(f)}{'s' if f.sparse else ''}" for f in m.factors)
            mid = f"(mid Q{m.mid_frac})" if m.low_rank else ""
            return f"{name}={parts}{mid}"

        return (
            f"{self.cell} int{self.bits} weights; x Q{self.in_frac}, h Q{self.hid_frac}, "
            f"{mat('W', self.W)}, {mat('U', self.U)}, FC=Q{self.FC.frac}, "
            f"logits int32 Q{self.logit_frac}; gate={self.gate_nl if self.cell == 'FastGRNN' else '-'} "
            f"update={self.update_nl}" + (f"; pre Q{self.pre_frac}" if self.pre_frac != PRE_FRAC else "")
            + (f"; K={len(self.eta)} inner steps" if self.eta else "")
            + ("; profile fast" if self.profile == "fast" else "")
        )

    def per_unit_line(self) -> str:
        """``per-unit shifts: yes (W2,U2: 32 units, shifts 3..7)``, or ``per-unit shifts: no``."""
        if not self.per_unit:
            return "per-unit shifts: no"
        s = self.unit_shifts()
        names = ",".join(n + ("2" if m.low_rank else "") for n, m in (("W", self.W), ("U", self.U)))
        span = f"{int(s.min())}..{int(s.max())}" if s.min() != s.max() else f"{int(s.min())}"
        return f"per-unit shifts: yes ({names}: {s.size} units, shifts {span})"


def _fracs_text(f: QFactor) -> str:
    """``7``, or ``3..9`` for per-column formats."""
    lo, hi = int(f.fracs.min()), int(f.fracs.max())
    return f"{f.frac}" if f.col_fracs is None else (f"{lo}..{hi}" if lo != hi else f"{lo}")


# --- serialisation -------------------------------------------------------------------------

def _factor_to_json(f: QFactor) -> dict[str, Any]:
    d: dict[str, Any] = {"values": f.values.astype(int).tolist(), "frac": f.frac, "sparse": f.sparse}
    if f.col_fracs is not None:
        d["col_fracs"] = [int(v) for v in f.col_fracs]
    return d


def _factor_from_json(d: dict[str, Any]) -> QFactor:
    col = d.get("col_fracs")
    return QFactor(np.asarray(d["values"], dtype=np.int64).reshape(len(d["values"]), -1),
                   int(d["frac"]), bool(d["sparse"]), None if col is None else tuple(int(v) for v in col))


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
    for key in ("mean", "std", "raw_scale", "raw_offset"):
        v = getattr(qm, key)
        d[key] = None if v is None else [float(x) for x in v]
    if qm.cell != "ERNN":  # the other cells' files read as they did before ERNN
        for key in ("eta", "eta_frac", "decay", "decay_frac"):
            del d[key]
    if qm.pre_frac == PRE_FRAC:
        del d["pre_frac"]
    if qm.profile == "precise":
        del d["profile"]  # the default: precise files read as they did before profiles
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
    for key in ("mean", "std", "raw_scale", "raw_offset"):
        if d.get(key) is not None:
            d[key] = np.asarray(d[key], dtype=np.float64)
    profile = d.get("profile", "precise")
    if profile not in PROFILES:
        raise QuantError(f"unknown arithmetic profile {profile!r} (one of {', '.join(PROFILES)})")
    if profile == "fast" and not d.get("per_unit"):
        raise QuantError("a fast-profile model must be in the per-unit form (per_unit: true)")
    for key in ("eta", "decay"):
        if d.get(key) is not None:
            d[key] = tuple(int(v) for v in d[key])
    if d.get("cell") == "ERNN" and (profile != "fast" or d.get("eta") is None):
        raise QuantError("an ERNN quantized model must be in the fast profile with its eta and decay")
    pre = d.get("pre_frac", PRE_FRAC)
    if pre != PRE_FRAC and not (d.get("cell") == "ERNN" and d.get("update_nl") == "relu" and 0 <= pre < PRE_FRAC):
        raise QuantError(f"pre_frac {pre}: only an ERNN with a relu update has a pre-activation format "
                         f"other than Q{PRE_FRAC} (0..{PRE_FRAC})")
    return QuantizedModel(**d)


def save_qmodel(qm: QuantizedModel, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(qmodel_to_json(qm))


def load_qmodel(path: str | os.PathLike[str]) -> QuantizedModel:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise QuantError(f"{p}: cannot read the quantized model ({exc.strerror})") from None
    try:
        return qmodel_from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise QuantError(f"{p}: not a valid quantized model file ({exc})") from None
