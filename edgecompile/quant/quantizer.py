"""Quantization: float model (+ calibration inputs) → QuantizedModel with power-of-two scales.

Formats start from calibrated ranges (the largest Q format that holds each range), every int32
intermediate is then proved free of overflow over the full int16 range, and a coordinate search
moves single formats by ±1 bit while that lowers disagreement with the float model on the
calibration set (argmax disagreements first, logit error second).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecompile.errors import QuantError
from edgecompile.ir.fixedpoint import INT32_LIMIT, ONE, PRE_FRAC, frac_for, round_half_up, to_fixed
from edgecompile.ir.model import ERNNParams, FastGRNNParams, FloatModel, Matrix
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel
from edgecompile.quant.biascorr import bias_correction as correct_biases
from edgecompile.quant.bounds import UNIT_FORMATS, OverflowBound, check_bounds, unit_worst
from edgecompile.quant.rounding import compact_activations, round_factor
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
    # ERNN's U multiplies s = g + h, up to twice the state (docs/fixed-point.md, "ERNN")
    s_scale = 2.0 if isinstance(model.params, ERNNParams) else 1.0
    r = {"in": x_max, "hid": s_scale * h_max}
    if _calibrated_pre(model):
        r["pre"] = (NO_CALIB_PRE_RANGE if measured is None
                    else _ernn_pre_max(model, measured[0], measured[1]))
    for name, m, low, acts, amax, scale in (("W", model.W, structure.w_low_rank, xs, x_max, 1.0),
                                             ("U", model.U, structure.u_low_rank, hs, h_max, s_scale)):
        if low:
            if acts is None:  # worst case over the assumed activation range
                r[name + "_mid"] = float(np.abs(m.factors[0]).sum(axis=0).max() * amax * scale)
            else:
                r[name + "_mid"] = float(np.abs(acts @ m.factors[0]).max() * scale)
    return r


#: Without calibration data a calibrated pre-activation format assumes |pre| < 8 (Q12).
NO_CALIB_PRE_RANGE = 7.99


def _calibrated_pre(model: FloatModel) -> bool:
    """ERNN with a relu update: its pre-activation format is calibrated (docs/fixed-point.md, "ERNN")."""
    return isinstance(model.params, ERNNParams) and model.update_nl == "relu"


def _ernn_pre_max(model: FloatModel, Xn: np.ndarray, states: np.ndarray) -> float:
    """The largest |s @ U + x @ W + B| of an ERNN's inner steps on normalised inputs and the
    float states they produce (each step restarted from the recorded h_{t-1})."""
    p = model.params
    assert isinstance(p, ERNNParams)
    H = model.hidden_dim
    h = np.concatenate([np.zeros_like(states[:, :1]), states[:, :-1]], axis=1).reshape(-1, H)
    drive = Xn.reshape(-1, Xn.shape[-1]) @ model.W.dense() + p.bias
    U, g, worst = model.U.dense(), h, 0.0
    for eta in p.eta:
        s = g + h
        pre = s @ U + drive
        worst = max(worst, float(np.abs(pre).max()))
        g = g + eta * (np.maximum(pre, 0.0) - p.alpha * s)
    return worst


def initial_formats(model: FloatModel, bits: int, ranges: dict[str, float],
                    structure: Structure) -> dict[str, int]:
    f = {"in": frac_for(ranges["in"], 16, 0, 15), "hid": frac_for(ranges["hid"], 16, 8, 15)}
    if "pre" in ranges:
        f["pre"] = frac_for(ranges["pre"], 16, 0, PRE_FRAC)
    for name, m, low in (("W", model.W, structure.w_low_rank), ("U", model.U, structure.u_low_rank)):
        for k, factor in enumerate(_float_factors(m, low)):
            f[f"{name}{k}"] = frac_for(float(np.abs(factor).max()), bits)
        if low:
            f[name + "_mid"] = frac_for(ranges[name + "_mid"], 16, 0, 15)
    f["FC"] = frac_for(float(np.abs(model.FC).max()), bits)
    return f


def build(model: FloatModel, bits: int, formats: dict[str, int], structure: Structure,
          calibration: dict[str, Any] | None = None,
          acts: dict[str, np.ndarray] | None = None, per_unit: bool = False,
          profile: str = "precise") -> QuantizedModel:
    """The QuantizedModel for explicit formats, lowering the formats each failed bound names.

    ``per_unit``: the final factors of W and U get per-column formats (:func:`_unit_fracs`),
    lowered unit by unit where the per-unit bound fails; ``formats`` then holds no entry for them.

    ``acts`` maps factor names (``W0``, ``U1``, ``FC``...) to the calibration activations each
    multiplies (see :func:`factor_activations`); factors without one are rounded to nearest.
    """
    formats = dict(formats)
    lowered = np.zeros(model.hidden_dim, dtype=np.int64)  # per-unit: bits taken off A[j] by the proof
    for _ in range(64):
        unit = _unit_fracs(model, bits, formats, structure) - lowered if per_unit else None
        qm = _build_once(model, bits, formats, structure, calibration or {}, acts, unit, profile)
        try:
            check_bounds(qm)
            return qm
        except OverflowBound as exc:
            if qm.per_unit and exc.bound.formats == UNIT_FORMATS:
                summed, rescaled = unit_worst(qm)
                lowered += [int(a >= INT32_LIMIT or b + 32768 >= INT32_LIMIT)
                            for a, b in zip(summed, rescaled, strict=True)]
            for k in exc.bound.formats:
                if k in formats:
                    formats[k] -= 1
    raise QuantError("no Q formats make this model overflow-free; is a weight huge?")


def _round(values: np.ndarray, frac: int | np.ndarray, bits: int,
           acts: dict[str, np.ndarray] | None, key: str) -> np.ndarray:
    """Integer weights of one float factor: rounding chosen on its activations, or nearest."""
    col_fracs = np.broadcast_to(np.asarray(frac, dtype=np.int64), (values.shape[1],))
    return round_factor(values, col_fracs, bits, None if acts is None else acts.get(key))


def factor_activations(model: FloatModel, Xn: np.ndarray, states: np.ndarray,
                       structure: Structure) -> dict[str, np.ndarray]:
    """What each float factor multiplies on the calibration data, compacted to its Gram root:
    W / W1 the normalised inputs x_t, U / U1 the states h_{t-1}, W2 / U2 the rank-r
    intermediates x_t W1 and h_{t-1} U1, FC the final state."""
    xs = Xn.reshape(-1, Xn.shape[-1])
    prev = np.concatenate([np.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    hs = prev.reshape(-1, prev.shape[-1])
    out: dict[str, np.ndarray] = {}
    for name, m, low, a in (("W", model.W, structure.w_low_rank, xs), ("U", model.U, structure.u_low_rank, hs)):
        out[name + "0"] = compact_activations(a)
        if low:
            out[name + "1"] = compact_activations(a @ m.factors[0])
    out["FC"] = compact_activations(states[:, -1])
    return out


def _build_once(model: FloatModel, bits: int, f: dict[str, int], structure: Structure,
                calibration: dict[str, Any], acts: dict[str, np.ndarray] | None = None,
                unit_fracs: np.ndarray | None = None, profile: str = "precise") -> QuantizedModel:
    def qmatrix(name: str, m: Matrix, low: bool) -> QMatrix:
        factors = []
        floats = _float_factors(m, low)
        for k, values in enumerate(floats):
            if unit_fracs is not None and k == len(floats) - 1:  # per-unit: tied column formats
                col = unit_fracs - _final_act_frac(f, name, low)
                q = _round(values, col, bits, acts, f"{name}{k}")
                factors.append(QFactor(q, int(col.min()), _prefer_sparse(q, bits), tuple(int(v) for v in col)))
                continue
            q = _round(values, f[f"{name}{k}"], bits, acts, f"{name}{k}")
            factors.append(QFactor(q, f[f"{name}{k}"], _prefer_sparse(q, bits)))
        return QMatrix(tuple(factors), f[name + "_mid"] if low else None)

    fc = QFactor(_round(model.FC, f["FC"], bits, acts, "FC"), f["FC"], False)
    logit_frac = f["hid"] + f["FC"]
    fc_bias = round_half_up(model.FCbias * 2.0**logit_frac)
    if np.abs(fc_bias).max() >= 2**31:
        raise QuantError(f"FC product + bias: FCbias does not fit int32 at Q{logit_frac}")

    def unit(raw: float) -> int:
        return int(round_half_up(float(sigmoid(np.float64(raw))) * ONE))

    p = model.params
    bias_gate: np.ndarray | None = None
    zeta = nu = alpha = beta = None
    ernn: dict[str, Any] = {}
    gate_nl: str
    if isinstance(p, FastGRNNParams):
        gate_nl, bias_update = p.gate_nl, p.bias_update
        bias_gate, zeta, nu = to_fixed(p.bias_gate, PRE_FRAC), unit(p.zeta), unit(p.nu)
    elif isinstance(p, ERNNParams):
        gate_nl, bias_update = "sigmoid", p.bias
        ernn = ernn_constants(p)
        ernn["pre_frac"] = f.get("pre", PRE_FRAC)
    else:
        gate_nl, bias_update = "sigmoid", p.bias  # the file format records the default for gateless cells
        alpha, beta = unit(p.alpha), unit(p.beta)
    return QuantizedModel(
        cell=model.cell, bits=bits, gate_nl=gate_nl, update_nl=model.update_nl,
        in_frac=f["in"], hid_frac=f["hid"],
        W=qmatrix("W", model.W, structure.w_low_rank), U=qmatrix("U", model.U, structure.u_low_rank),
        FC=fc, fc_bias=fc_bias.astype(np.int64),
        bias_update=to_fixed(bias_update, f.get("pre", PRE_FRAC)), bias_gate=bias_gate,
        zeta=zeta, nu=nu, alpha=alpha, beta=beta,
        mean=model.mean, std=model.std, source_sha256=model.sha256,
        calibration=calibration, per_unit=unit_fracs is not None, profile=profile, **ernn,
    )


#: The largest Q formats of ERNN's constants: every rounding term of their rescales stays in int32.
ETA_FRAC_MAX = 24
DECAY_FRAC_MAX = 30
#: eta_i <= 2047 keeps eta's format >= 4, so the shift of eta * phi stays >= 1; eta_i * alpha
#: <= 16383 keeps the decay's >= 1 (docs/fixed-point.md, "ERNN").
ETA_MAX, DECAY_MAX = 2047.0, 16383.0


def ernn_constants(p: ERNNParams) -> dict[str, Any]:
    """ERNN's int16 constants: ``eta`` in Q(eta_frac) and ``decay = eta * alpha`` in
    Q(decay_frac), each format the largest that holds every inner step's value."""
    eta = np.asarray(p.eta, dtype=np.float64)
    decay = eta * float(p.alpha)
    for what, v, most in (("eta", eta, ETA_MAX), ("eta * alpha", decay, DECAY_MAX)):
        if float(v.max()) > most:
            raise QuantError(f"ERNN {what} = {float(v.max()):g} is above {most:g}, beyond its int16 fixed point")
    eta_frac = frac_for(float(eta.max()), 16, 4, ETA_FRAC_MAX)
    decay_frac = frac_for(float(decay.max()), 16, 1, DECAY_FRAC_MAX)
    eta_q = to_fixed(eta, eta_frac)
    if (eta_q == 0).any():
        i = int(np.flatnonzero(eta_q == 0)[0])
        raise QuantError(f"ERNN eta[{i}] = {eta[i]:g} is below the resolution of its fixed point "
                         f"(2^-{eta_frac} beside eta = {float(eta.max()):g})")
    return {"eta": tuple(int(v) for v in eta_q), "eta_frac": eta_frac,
            "decay": tuple(int(v) for v in to_fixed(decay, decay_frac)), "decay_frac": decay_frac}


#: The largest per-unit shift A[j] - 12 the column formats start from (all-zero columns).
MAX_UNIT_SHIFT = 30


def _final_act_frac(f: dict[str, int], name: str, low: bool) -> int:
    """The format of what the final factor of W / U multiplies: x, h, or the low-rank middle."""
    return f[name + "_mid"] if low else f["in" if name == "W" else "hid"]


def _unit_fracs(model: FloatModel, bits: int, f: dict[str, int], structure: Structure) -> np.ndarray:
    """``A[j]`` of the per-unit form ``[H]``: each final column's largest format holding its max
    |w| (:func:`frac_for`), moved to the product's format, the lower of W's and U's winning."""
    acc = []
    for name, m, low in (("W", model.W, structure.w_low_rank), ("U", model.U, structure.u_low_rank)):
        col_max = np.abs(_float_factors(m, low)[-1]).max(axis=0)
        acc.append(_final_act_frac(f, name, low) + np.array([frac_for(float(v), bits) for v in col_max]))
    return np.minimum(np.minimum(acc[0], acc[1]), f.get("pre", PRE_FRAC) + MAX_UNIT_SHIFT).astype(np.int64)


def _score(qm: QuantizedModel, X: np.ndarray, ref_logits: np.ndarray) -> tuple[int, float]:
    from edgecompile.sim.simulator import predict_quantized

    logits = predict_quantized(qm, X)
    disagree = int((logits.argmax(axis=1) != ref_logits.argmax(axis=1)).sum())
    return disagree, float(np.mean((logits - ref_logits) ** 2))


def quantize(model: FloatModel, bits: int = 8, calib: np.ndarray | None = None,
             search: bool = True,
             progress: Callable[[int, int, str], None] | None = None,
             rounding: str = "adaptive", bias_correction: bool = True,
             profile: str | None = None) -> QuantizedModel:
    """Quantize ``model`` in the arithmetic ``profile`` ("precise", "fast" or "auto": fast unless
    the calibration data shows fast changing an argmax that precise matches; see
    :mod:`edgecompile.quant.profile`; None: precise, or fast for a cell that has only that).
    The calibration info's ``profile`` entry reports each profile's nonlinearity error bounds
    and calibration agreement, and why one was chosen."""
    from edgecompile.quant.profile import choose_profile, default_profile

    profile = profile or default_profile(model.cell)
    return choose_profile(model, bits, calib, profile, lambda prof, prog: _quantize_one(
        model, bits, calib, search, prog, rounding, bias_correction, prof), progress)


def _quantize_one(model: FloatModel, bits: int = 8, calib: np.ndarray | None = None,
                  search: bool = True,
                  progress: Callable[[int, int, str], None] | None = None,
                  rounding: str = "adaptive", bias_correction: bool = True,
                  profile: str = "precise") -> QuantizedModel:
    """Quantize ``model`` in one profile to int``bits`` weights; ``calib`` is raw inputs ``[N, T, D]``.

    With calibration data, ``rounding="adaptive"`` rounds each weight up or down to minimise the
    output error of its factor on the calibration activations (:mod:`edgecompile.quant.rounding`;
    ``"nearest"``: round to nearest), and ``bias_correction`` moves the biases by the mean error
    left (:mod:`edgecompile.quant.biascorr`), kept only when it lowers the calibration score.

    Without ``calib`` a :class:`CalibrationWarning` is issued and formats come from assumed
    ranges (|normalised x| <= 4, |h| <= 1); with it, ranges are measured and formats searched.
    ``progress(done, total, what)`` receives the search's trials (``total`` is the most the
    two passes can try; the last call has ``done == total``).
    """
    if bits not in (8, 16):
        raise QuantError(f"--bits must be 8 or 16, got {bits}")
    if isinstance(model.params, ERNNParams) and profile != "fast":
        raise QuantError("ERNN has the fast profile only (docs/fixed-point.md, \"ERNN\"): "
                         "give --profile fast or auto")
    structure = Structure(_keep_low_rank(model.W), _keep_low_rank(model.U))
    if calib is None:
        warnings.warn(
            "no calibration data (--calib): formats assume |normalised input| <= "
            f"{NO_CALIB_INPUT_RANGE:g} and |h| <= {NO_CALIB_HIDDEN_RANGE:g}; accuracy may suffer",
            CalibrationWarning, stacklevel=2)
        ranges = _ranges(model, None, structure)
        formats = initial_formats(model, bits, ranges, structure)
        fast = profile == "fast"  # the fast profile is always in the per-unit form
        info = {"method": "assumed ranges (no calibration data)", "sequences": 0,
                "ranges": ranges, "formats": formats,
                "per_unit": {"chosen": fast, "why": ("the fast profile" if fast else
                                                     "per-unit shifts are chosen on calibration data")}}
        return build(model, bits, formats, structure, info, per_unit=fast, profile=profile)

    X = np.asarray(calib, dtype=np.float64)
    ref_logits, states = forward(model, X, return_states=True)
    if not (np.isfinite(states).all() and np.isfinite(ref_logits).all()):
        bad = int((~np.isfinite(states).reshape(states.shape[0], -1).all(axis=1)).sum())
        raise QuantError(
            f"the float model's hidden state is not finite on {bad} of {X.shape[0]} calibration "
            "sequences (it overflows): check --calib and the model's nonlinearities")
    ranges = _ranges(model, (normalise(model, X), states), structure)
    if ranges["in"] >= INPUT_LIMIT:
        warnings.warn(
            f"calibration inputs reach |x| = {ranges['in']:.3g} after normalisation, beyond what the "
            f"int16 input format holds (|x| < {INPUT_LIMIT}); such inputs saturate: check --calib "
            "(other units, or a damaged file?)", CalibrationWarning, stacklevel=2)
    if rounding not in ("adaptive", "nearest"):
        raise QuantError(f"rounding must be 'adaptive' or 'nearest', got {rounding!r}")
    acts = (factor_activations(model, normalise(model, X), states, structure)
            if rounding == "adaptive" else None)
    start = initial_formats(model, bits, ranges, structure)
    Xs, refs = X[:SEARCH_SEQUENCES], ref_logits[:SEARCH_SEQUENCES]
    # per-tensor formats, then the per-unit form (no formats for the two final factors)
    fast = profile == "fast"  # the fast profile is always in the per-unit form
    trials = _Trials(progress, (0 if fast else 2 * 2 * len(start)) + 2 * 2 * (len(start) - 2))
    unit: _Searched | None
    if fast:
        unit = tensor = _search(model, bits, start, structure, acts, Xs, refs, search, trials,
                                per_unit=True, profile=profile)
    else:
        tensor = _search(model, bits, start, structure, acts, Xs, refs, search, trials, per_unit=False)
        try:
            unit = _search(model, bits, start, structure, acts, Xs, refs, search, trials, per_unit=True)
        except QuantError:
            unit = None
    trials.finish()
    per_unit = fast or (unit is not None and _per_unit_pays(unit.best, tensor.best))
    chosen = unit if per_unit and unit is not None else tensor
    formats, best, initial_score = chosen.formats, chosen.best, chosen.initial
    info = {
        "method": "calibrated ranges + coordinate search" if search else "calibrated ranges",
        "sequences": int(X.shape[0]), "search_sequences": int(Xs.shape[0]),
        "ranges": ranges, "formats": formats,
        "initial_disagreements": initial_score[0], "disagreements": best[0],
        "logit_mse": best[1],
        "rounding": "adaptive (output error on calibration activations)" if acts else "nearest",
        "per_unit": {
            "chosen": per_unit,
            "per_tensor_score": {"disagreements": tensor.best[0], "logit_mse": tensor.best[1]},
            "per_unit_score": (None if unit is None else
                               {"disagreements": unit.best[0], "logit_mse": unit.best[1]}),
            "unit_fracs": (None if unit is None else [int(v) for v in unit.qm.W.acc_fracs(unit.qm.in_frac)]),
        },
    }
    qm = build(model, bits, formats, structure, info, acts, per_unit=per_unit, profile=profile)
    if bias_correction:
        qm, info["bias_correction"] = correct_biases(qm, model, X, lambda q: _score(q, Xs, refs))
        qm = dataclasses.replace(qm, calibration=info)
    return qm


#: Per-unit shifts cost about 8-12 % more cycles per step (docs/fixed-point.md): with equal
#: calibration disagreements they must halve the logit error to be chosen.
PER_UNIT_MIN_MSE_GAIN = 0.5


def _per_unit_pays(unit: tuple[int, float], tensor: tuple[int, float]) -> bool:
    """Per-unit shifts are worth their kernel cost: fewer argmax disagreements with float, or as
    few and a logit error at least :data:`PER_UNIT_MIN_MSE_GAIN` lower."""
    if unit[0] != tensor[0]:
        return unit[0] < tensor[0]
    return unit[1] <= (1.0 - PER_UNIT_MIN_MSE_GAIN) * tensor[1]


class _Trials:
    """The progress of the format searches: ``progress(done, most, what)`` before each trial."""

    def __init__(self, progress: Callable[[int, int, str], None] | None, most: int) -> None:
        self.progress, self.most, self.done = progress, most, 0

    def tick(self) -> None:
        if self.progress is not None:
            self.progress(min(self.done, self.most), self.most, "quantization trials")
        self.done += 1

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.most, self.most, "quantization trials")


@dataclass(frozen=True)
class _Searched:
    qm: QuantizedModel
    formats: dict[str, int]
    best: tuple[int, float]
    initial: tuple[int, float]


def _search(model: FloatModel, bits: int, start: dict[str, int], structure: Structure,
            acts: dict[str, np.ndarray] | None, Xs: np.ndarray, refs: np.ndarray, search: bool,
            trials: _Trials, per_unit: bool, profile: str = "precise") -> _Searched:
    """Two passes of coordinate search (single formats moved by +-1 while the calibration score
    drops) from ``start``, in the per-tensor or the per-unit form."""
    qm = build(model, bits, start, structure, acts=acts, per_unit=per_unit, profile=profile)
    formats = _formats_of(qm)
    best = initial = _score(qm, Xs, refs)
    if search:
        for _ in range(2):  # two passes of coordinate search
            improved = False
            for key in sorted(formats):
                for delta in (-1, 1):
                    trials.tick()
                    trial = dict(formats, **{key: formats[key] + delta})
                    if not _valid(trial):
                        continue
                    try:
                        cand = build(model, bits, trial, structure, acts=acts, per_unit=per_unit,
                                     profile=profile)
                    except QuantError:
                        continue
                    if _formats_of(cand) != trial:
                        continue  # the bound proof moved it: already covered
                    s = _score(cand, Xs, refs)
                    if s < best:
                        best, formats, qm, improved = s, trial, cand, True
            if not improved:
                break
    return _Searched(qm, formats, best, initial)


def _valid(formats: dict[str, int]) -> bool:
    return (0 <= formats["in"] <= 15 and 8 <= formats["hid"] <= 15 and 0 <= formats.get("pre", 0) <= PRE_FRAC
            and all(0 <= v <= 15 for k, v in formats.items() if k.endswith("_mid")))


def _formats_of(qm: QuantizedModel) -> dict[str, int]:
    f = {"in": qm.in_frac, "hid": qm.hid_frac, "FC": qm.FC.frac}
    if qm.cell == "ERNN" and qm.update_nl == "relu":
        f["pre"] = qm.pre_frac
    for name in ("W", "U"):
        m: QMatrix = getattr(qm, name)
        for k, factor in enumerate(m.factors):
            if factor.col_fracs is None:  # per-unit final factors follow the activations' formats
                f[f"{name}{k}"] = factor.frac
        if m.mid_frac is not None:
            f[name + "_mid"] = m.mid_frac
    return f
