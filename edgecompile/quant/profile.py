"""The choice of arithmetic profile (docs/fixed-point.md): precise, fast, or auto.

``auto`` quantizes in both profiles and takes fast, unless the calibration data shows fast
changing an argmax that precise gets right (matches the float model): then precise. Without
calibration data it takes fast. Either way the calibration info's ``profile`` entry holds each
profile's nonlinearity error bounds (exhaustive, LSB of the output format) and, with
calibration data, its agreement with the float model (argmax agreement, logit MSE).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from edgecompile.errors import QuantError
from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import PROFILES, QuantizedModel

#: What ``--profile`` accepts.
PROFILE_CHOICES = ("auto", *PROFILES)
#: Cells whose fixed point exists in the fast profile only (docs/fixed-point.md, "ERNN").
FAST_ONLY_CELLS = ("ERNN",)

Progress = Callable[[int, int, str], None]


@cache
def _errors(profile: str) -> dict[str, dict[str, float | int]]:
    if profile == "fast":
        from edgecompile.sim.fast import measure_fast_errors

        return measure_fast_errors()
    from edgecompile.sim.nonlinear import measure_errors

    return measure_errors()


def _used_nls(qm: QuantizedModel) -> list[str]:
    return sorted({qm.update_nl} | ({qm.gate_nl} if qm.cell == "FastGRNN" else set()))


def nl_bounds(qm: QuantizedModel, profile: str) -> dict[str, float]:
    """Max error (LSB of the output format, exhaustive over int16 inputs) of each nonlinearity
    the model uses, in ``profile``."""
    errors = _errors(profile)
    return {n: round(float(errors[n]["max_lsb"]), 2) for n in _used_nls(qm)}


def _agreement(qm: QuantizedModel, X: np.ndarray, ref: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    from edgecompile.sim.simulator import predict_quantized

    logits = predict_quantized(qm, X)
    agree = logits.argmax(axis=1) == ref.argmax(axis=1)
    return ({"argmax_agreement": float(agree.mean()), "disagreements": int((~agree).sum()),
             "logit_mse": float(np.mean((logits - ref) ** 2))}, agree)


def choose_profile(model: FloatModel, bits: int, calib: np.ndarray | None, profile: str,
                   quantize_one: Callable[[str, Progress | None], QuantizedModel],
                   progress: Progress | None = None) -> QuantizedModel:
    """Quantize in ``profile`` ("auto", "precise" or "fast") through ``quantize_one(profile,
    progress)``; the result's calibration info gains a ``profile`` entry."""
    if profile not in PROFILE_CHOICES:
        raise QuantError(f"profile must be one of {', '.join(PROFILE_CHOICES)}, got {profile!r}")
    X = None if calib is None else np.asarray(calib, dtype=np.float64)
    ref = None
    if X is not None:
        from edgecompile.reference import forward

        ref = forward(model, X)

    def report(qm: QuantizedModel) -> dict[str, Any]:
        out: dict[str, Any] = {"nl_max_lsb": nl_bounds(qm, qm.profile)}
        if X is not None and ref is not None and np.isfinite(ref).all():
            out.update(_agreement(qm, X, ref)[0])
        return out

    def finish(qm: QuantizedModel, entry: dict[str, Any]) -> QuantizedModel:
        return dataclasses.replace(qm, calibration={**qm.calibration, "profile": entry})

    if model.cell in FAST_ONLY_CELLS:
        if profile == "precise":
            raise QuantError(f"{model.cell} has the fast profile only (docs/fixed-point.md): "
                             "give --profile fast or auto")
        qm = quantize_one("fast", progress)
        why = "requested" if profile == "fast" else f"{model.cell}: the fast profile, the only one it has"
        return finish(qm, {"requested": profile, "chosen": "fast", "why": why, "fast": report(qm)})
    if profile != "auto":
        qm = quantize_one(profile, progress)
        return finish(qm, {"requested": profile, "chosen": profile, "why": "requested",
                           profile: report(qm)})
    if X is None or ref is None:
        qm = quantize_one("fast", progress)
        return finish(qm, {"requested": "auto", "chosen": "fast",
                           "why": "no calibration data to compare the profiles on: fast, the default",
                           "fast": report(qm)})

    def part(k: int) -> Progress | None:
        if progress is None:
            return None
        p = progress
        return lambda done, total, what: p(500 * k + (500 * done) // max(total, 1), 1000, what)

    precise = quantize_one("precise", part(0))
    try:
        with warnings.catch_warnings():  # the calibration warnings were given once already
            warnings.simplefilter("ignore")
            fast: QuantizedModel | None = quantize_one("fast", part(1))
    except QuantError as exc:
        fast, why_not = None, str(exc)
    if fast is None:
        return finish(precise, {"requested": "auto", "chosen": "precise",
                                "why": f"the fast profile cannot hold this model ({why_not})",
                                "precise": report(precise)})
    from edgecompile.sim.simulator import predict_quantized

    ref_class = ref.argmax(axis=1)
    right = predict_quantized(precise, X).argmax(axis=1) == ref_class
    fast_wrong = predict_quantized(fast, X).argmax(axis=1) != ref_class
    flips = int((right & fast_wrong).sum())
    n = int(X.shape[0])
    entry = {"requested": "auto", "precise": report(precise), "fast": report(fast), "flips": flips}
    if flips:
        entry.update(chosen="precise",
                     why=f"fast changes {flips} of {n} calibration argmaxes that precise matches with float")
        return finish(precise, entry)
    entry.update(chosen="fast",
                 why=f"fast changes no argmax that precise matches with float on {n} calibration sequences")
    return finish(fast, entry)


def default_profile(cell: str) -> str:
    """The profile of the Python API when none is given: precise, or fast for a fast-only cell."""
    return "fast" if cell in FAST_ONLY_CELLS else "precise"


def mark_auto(qm: QuantizedModel, why: str) -> QuantizedModel:
    """Record in ``qm``'s calibration info that ``auto`` chose its profile, and why."""
    entry = {**qm.calibration.get("profile", {}), "requested": "auto", "chosen": qm.profile, "why": why}
    return dataclasses.replace(qm, calibration={**qm.calibration, "profile": entry})


def profile_lines(calibration: dict[str, Any]) -> list[str]:
    """``profile: fast (auto: ...)`` and one line per profile reported, for ``quantize``."""
    entry = calibration.get("profile")
    if not isinstance(entry, dict):
        return []
    why = entry["why"] if entry.get("requested") == "auto" else "--profile " + entry["chosen"]
    lines = [f"profile: {entry['chosen']} ({'auto: ' if entry.get('requested') == 'auto' else ''}{why})"]
    for name in PROFILES:
        r = entry.get(name)
        if not isinstance(r, dict):
            continue
        nl = ", ".join(f"{k} {v:g}" for k, v in r["nl_max_lsb"].items())
        agree = (f"argmax agreement with float {100 * r['argmax_agreement']:.2f}% "
                 f"({r['disagreements']} differ), logit MSE {r['logit_mse']:.3g}; "
                 if "argmax_agreement" in r else "")
        lines.append(f"  {name + ':':<8} {agree}nonlinearity error <= {nl} LSB")
    return lines


def check_fixed_profile(qm: QuantizedModel, profile: str | None, what: str) -> None:
    """A quantized model keeps its own profile: ``--profile`` may only repeat it (or be auto)."""
    if profile not in (None, "auto", qm.profile):
        from edgecompile.errors import DataError

        raise DataError(f"--profile {profile} conflicts with {what}: it is quantized in the "
                        f"{qm.profile} profile (give --profile {qm.profile} or leave --profile out)")
