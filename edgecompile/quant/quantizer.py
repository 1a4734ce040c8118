"""Quantization: float model (+ calibration inputs) → QuantizedModel with power-of-two scales.

Formats start from calibrated ranges (the largest Q format that holds each range), every int32
intermediate is then proved free of overflow over the full int16 range, and a coordinate search
moves single formats by ±1 bit while that lowers disagreement with the float model on the
calibration set (argmax disagreements first, logit error second).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import ONE, PRE_FRAC, frac_for, round_half_up, to_fixed
from edgecompile.ir.model import FastGRNNParams, FloatModel, Matrix
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel
from edgecompile.quant.bounds import OverflowBound, check_bounds
from edgecompile.reference import forward, normalise, sigmoid

SEARCH_SEQUENCES = 256  # calibration sequences used to score candidate formats
NO_CALIB_INPUT_RANGE = 4.0  # assumed max |normalised input| without calibration data
NO_CALIB_HIDDEN_RANGE = 1.0  # assumed max |h| without calibration data


class CalibrationWarning(UserWarning):
    """Quantizing without calibration data: formats come from assumed ranges."""


@dataclass(frozen=True)
class Structure:
    """How each matrix is computed: low rank kept or multiplied out; which factors are sparse."""

    w_low_rank: bool
    u_low_rank: bool


def _keep_low_rank(m: Matrix) -> bool:
    """Two products when that is fewer MACs than the multiplied-out matrix."""
    return m.rank is not None and m.rank * (m.in_dim + m.out_dim) < m.in_dim * m.out_dim


def _prefer_sparse(values: np.ndarray, bits: int) -> bool:
    """Compact (CSR-like) storage when it is smaller than dense storage: fewer bytes and MACs.

    Dense: rows*cols weights. Sparse: non-zeros × (weight + 1-byte index) + a 2-byte row start
    per output column.
    """
    rows, cols = values.shape
    wbytes = bits // 8
    nnz = int(np.count_nonzero(values))
    return nnz * (wbytes + 1) + 2 * (cols + 1) < rows * cols * wbytes


def _float_factors(m: Matrix, low_rank: bool) -> tuple[np.ndarray, ...]:
    return m.factors if low_rank else (m.dense(),)


#: Normalised inputs are int16 with at least 0 fractional bits: |x| must stay below 2^15.
INPUT_LIMIT = 32768


def _ranges(model: FloatModel, measured: tuple[np.ndarray, np.ndarray] | None,
            structure: Structure) -> dict[str, float]:
    """Max |value| of each activation the formats must hold: ``measured`` (normalised inputs and
    float states) or, without it, assumed."""
    xs: np.ndarray | None = None
    hs: np.ndarray | None = None
    if measured is None:
        x_max, h_max = NO_CALIB_INPUT_RANGE, NO_CALIB_HIDDEN_RANGE
    else:
        Xn, states = measured
        x_max, h_max = float(np.abs(Xn).max()), float(np.abs(states).max())
        xs = Xn.reshape(-1, Xn.shape[-1])
        hs = states.reshape(-1, states.shape[-1])
    r = {"in": x_max, "hid": h_max}
    for name, m, low, acts, amax in (("W", model.W, structure.w_low_rank, xs, x_max),
                                      ("U", model.U, structure.u_low_rank, hs, h_max)):
        if low:
            if acts is None:  # worst case over the assumed activation range
                r[name + "_mid"] = float(np.abs(m.factors[0]).sum(axis=0).max() * amax)
            else:
                r[name + "_mid"] = float(np.abs(acts @ m.factors[0]).max())
    return r


def initial_formats(model: FloatModel, bits: int, ranges: dict[str, float],
                    structure: Structure) -> dict[str, int]:
    f = {"in": frac_for(ranges["in"], 16, 0, 15), "hid": frac_for(ranges["hid"], 16, 8, 15)}
    for name, m, low in (("W", model.W, structure.w_low_rank), ("U", model.U, structure.u_low_rank)):
        for k, factor in enumerate(_float_factors(m, low)):
            f[f"{name}{k}"] = frac_for(float(np.abs(factor).max()), bits)
        if low:
            f[name + "_mid"] = frac_for(ranges[name + "_mid"], 16, 0, 15)
    f["FC"] = frac_for(float(np.abs(model.FC).max()), bits)
    return f


def build(model: FloatModel, bits: int, formats: dict[str, int], structure: Structure,
          calibration: dict[str, Any] | None = None) -> QuantizedModel:
    """The QuantizedModel for explicit formats, lowering the formats each failed bound names."""
    formats = dict(formats)
    for _ in range(64):
        qm = _build_once(model, bits, formats, structure, calibration or {})
        try:
            check_bounds(qm)
            return qm
        except OverflowBound as exc:
            for k in exc.bound.formats:
                if k in formats:
                    formats[k] -= 1
    raise QuantError("no Q formats make this model overflow-free; is a weight huge?")


def _build_once(model: FloatModel, bits: int, f: dict[str, int], structure: Structure,
                calibration: dict[str, Any]) -> QuantizedModel:
    def qmatrix(name: str, m: Matrix, low: bool) -> QMatrix:
        factors = []
        for k, values in enumerate(_float_factors(m, low)):
            q = to_fixed(values, f[f"{name}{k}"], bits)
            factors.append(QFactor(q, f[f"{name}{k}"], _prefer_sparse(q, bits)))
        return QMatrix(tuple(factors), f[name + "_mid"] if low else None)

    fc = QFactor(to_fixed(model.FC, f["FC"], bits), f["FC"], False)
    logit_frac = f["hid"] + f["FC"]
    fc_bias = round_half_up(model.FCbias * 2.0**logit_frac)
    if np.abs(fc_bias).max() >= 2**31:
        raise QuantError(f"FC product + bias: FCbias does not fit int32 at Q{logit_frac}")

    def unit(raw: float) -> int:
        return int(round_half_up(float(sigmoid(np.float64(raw))) * ONE))

    p = model.params
    bias_gate: np.ndarray | None = None
    zeta = nu = alpha = beta = None
    gate_nl: str
    if isinstance(p, FastGRNNParams):
        gate_nl, bias_update = p.gate_nl, p.bias_update
        bias_gate, zeta, nu = to_fixed(p.bias_gate, PRE_FRAC), unit(p.zeta), unit(p.nu)
    else:
        gate_nl, bias_update = "sigmoid", p.bias  # the file format records the default for gateless cells
        alpha, beta = unit(p.alpha), unit(p.beta)
    return QuantizedModel(
        cell=model.cell, bits=bits, gate_nl=gate_nl, update_nl=model.update_nl,
        in_frac=f["in"], hid_frac=f["hid"],
        W=qmatrix("W", model.W, structure.w_low_rank), U=qmatrix("U", model.U, structure.u_low_rank),
        FC=fc, fc_bias=fc_bias.astype(np.int64),
        bias_update=to_fixed(bias_update, PRE_FRAC), bias_gate=bias_gate,
        zeta=zeta, nu=nu, alpha=alpha, beta=beta,
        mean=model.mean, std=model.std, source_sha256=model.sha256,
        calibration=calibration,
    )


def _score(qm: QuantizedModel, X: np.ndarray, ref_logits: np.ndarray) -> tuple[int, float]:
    from edgecompile.sim.simulator import predict_quantized

    logits = predict_quantized(qm, X)
    disagree = int((logits.argmax(axis=1) != ref_logits.argmax(axis=1)).sum())
    return disagree, float(np.mean((logits - ref_logits) ** 2))


def quantize(model: FloatModel, bits: int = 8, calib: np.ndarray | None = None,
             search: bool = True,
             progress: Callable[[int, int, str], None] | None = None) -> QuantizedModel:
    """Quantize ``model`` to int``bits`` weights; ``calib`` is raw inputs ``[N, T, D]``.

    Without ``calib`` a :class:`CalibrationWarning` is issued and formats come from assumed
    ranges (|normalised x| <= 4, |h| <= 1); with it, ranges are measured and formats searched.
    ``progress(done, total, what)`` receives the search's trials (``total`` is the most the
    two passes can try; the last call has ``done == total``).
    """
    if bits not in (8, 16):
        raise QuantError(f"--bits must be 8 or 16, got {bits}")
    structure = Structure(_keep_low_rank(model.W), _keep_low_rank(model.U))
    if calib is None:
        warnings.warn(
            "no calibration data (--calib): formats assume |normalised input| <= "
            f"{NO_CALIB_INPUT_RANGE:g} and |h| <= {NO_CALIB_HIDDEN_RANGE:g}; accuracy may suffer",
            CalibrationWarning, stacklevel=2)
        ranges = _ranges(model, None, structure)
        formats = initial_formats(model, bits, ranges, structure)
        info = {"method": "assumed ranges (no calibration data)", "sequences": 0,
                "ranges": ranges, "formats": formats}
        return build(model, bits, formats, structure, info)

    X = np.asarray(calib, dtype=np.float64)
    ref_logits, states = forward(model, X, return_states=True)
    ranges = _ranges(model, (normalise(model, X), states), structure)
    if ranges["in"] >= INPUT_LIMIT:
        warnings.warn(
            f"calibration inputs reach |x| = {ranges['in']:.3g} after normalisation, beyond what the "
            f"int16 input format holds (|x| < {INPUT_LIMIT}); such inputs saturate: check --calib "
            "(other units, or a damaged file?)", CalibrationWarning, stacklevel=2)
    formats = initial_formats(model, bits, ranges, structure)
    qm = build(model, bits, formats, structure)
    formats = _formats_of(qm)
    Xs, refs = X[:SEARCH_SEQUENCES], ref_logits[:SEARCH_SEQUENCES]
    best = _score(qm, Xs, refs)
    initial_score = best
    trials, most = 0, 2 * 2 * len(formats)
    if search:
        for _ in range(2):  # two passes of coordinate search
            improved = False
            for key in sorted(formats):
                for delta in (-1, 1):
                    if progress is not None:
                        progress(trials, most, "quantization trials")
                    trials += 1
                    trial = dict(formats, **{key: formats[key] + delta})
                    if not _valid(trial):
                        continue
                    try:
                        cand = build(model, bits, trial, structure)
                    except QuantError:
                        continue
                    if _formats_of(cand) != trial:
                        continue  # the bound proof moved it: already covered
                    s = _score(cand, Xs, refs)
                    if s < best:
                        best, formats, qm, improved = s, trial, cand, True
            if not improved:
                break
    if progress is not None:
        progress(most, most, "quantization trials")
    info = {
        "method": "calibrated ranges + coordinate search" if search else "calibrated ranges",
        "sequences": int(X.shape[0]), "search_sequences": int(Xs.shape[0]),
        "ranges": ranges, "formats": formats,
        "initial_disagreements": initial_score[0], "disagreements": best[0],
        "logit_mse": best[1],
    }
    return build(model, bits, formats, structure, info)


def _valid(formats: dict[str, int]) -> bool:
    return (0 <= formats["in"] <= 15 and 8 <= formats["hid"] <= 15
            and all(0 <= v <= 15 for k, v in formats.items() if k.endswith("_mid")))


def _formats_of(qm: QuantizedModel) -> dict[str, int]:
    f = {"in": qm.in_frac, "hid": qm.hid_frac, "FC": qm.FC.frac}
    for name in ("W", "U"):
        m: QMatrix = getattr(qm, name)
        for k, factor in enumerate(m.factors):
            f[f"{name}{k}"] = factor.frac
        if m.mid_frac is not None:
            f[name + "_mid"] = m.mid_frac
    return f
