"""Bias correction: remove the mean error that weight rounding leaves in the integer model.

Rounding weights shifts the expected value of every product (``E[x (W_q - W)]`` is not zero in
general), a systematic offset that a bias absorbs (the bias correction of Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019, here
measured on calibration data rather than predicted from batch-norm statistics). The errors are
measured on the integer model's own trajectory, so they include what earlier steps passed on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecompile.ir.fixedpoint import INT16_MAX, INT16_MIN, PRE_FRAC, round_half_up
from edgecompile.ir.model import FastGRNNParams, FloatModel
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.reference import forward, normalise


def _previous(states: np.ndarray) -> np.ndarray:
    """``h_{t-1}`` for every step ``t`` (zeros before the first step), flattened to rows."""
    prev = np.concatenate([np.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    return prev.reshape(-1, prev.shape[-1])


def pre_activation_error(qm: QuantizedModel, model: FloatModel, X: np.ndarray) -> np.ndarray:
    """Mean over all calibration steps of float pre-activation − dequantized integer
    pre-activation, per unit (real units), each model on its own hidden-state trajectory."""
    from edgecompile.sim.simulator import pre_activation, quantize_inputs, simulate

    X = np.asarray(X, dtype=np.float64)
    x_q = quantize_inputs(qm, X)
    _, states_q = simulate(qm, x_q, return_states=True)
    pre_q = pre_activation(qm, _previous(states_q).astype(np.int64),
                           x_q.reshape(-1, x_q.shape[-1]).astype(np.int64))
    _, states = forward(model, X, return_states=True)
    Xn = normalise(model, X)
    pre = Xn.reshape(-1, Xn.shape[-1]) @ model.W.dense() + _previous(states) @ model.U.dense()
    err: np.ndarray = (pre - pre_q / float(2**PRE_FRAC)).mean(axis=0)
    return err


def logit_error(qm: QuantizedModel, model: FloatModel, X: np.ndarray) -> np.ndarray:
    """Mean over the calibration sequences of float logits − dequantized integer logits."""
    from edgecompile.sim.simulator import predict_quantized

    err: np.ndarray = (forward(model, X) - predict_quantized(qm, X)).mean(axis=0)
    return err


def _shift16(bias: np.ndarray, delta: np.ndarray) -> np.ndarray:
    return np.clip(bias + delta, INT16_MIN, INT16_MAX).astype(np.int64)


def correct_pre_biases(qm: QuantizedModel, model: FloatModel, X: np.ndarray) -> tuple[QuantizedModel, np.ndarray]:
    """Bh and Bg (FastRNN: B) moved in Q12 by the mean error of pre-activation + bias; the
    shift of Bh (B) in LSBs."""
    err = pre_activation_error(qm, model, X)
    p = model.params

    def moved(q_bias: np.ndarray, float_bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        target = float_bias.ravel() + err  # what the integer bias must add, in real units
        delta = round_half_up(target * 2.0**PRE_FRAC).astype(np.int64) - q_bias
        return _shift16(q_bias, delta), delta

    if isinstance(p, FastGRNNParams):
        update, delta = moved(qm.bias_update, p.bias_update)
        gate, _ = moved(qm.grnn_terms()[0], p.bias_gate)
        return dataclasses.replace(qm, bias_update=update, bias_gate=gate), delta
    update, delta = moved(qm.bias_update, p.bias)
    return dataclasses.replace(qm, bias_update=update), delta


def correct_fc_bias(qm: QuantizedModel, model: FloatModel, X: np.ndarray) -> tuple[QuantizedModel, np.ndarray]:
    """FCbias moved in Q(logit_frac) by the mean logit error; the shift in LSBs."""
    delta = round_half_up(logit_error(qm, model, X) * 2.0**qm.logit_frac).astype(np.int64)
    bias = np.clip(qm.fc_bias + delta, -(2**31) + 1, 2**31 - 1).astype(np.int64)
    return dataclasses.replace(qm, fc_bias=bias), delta


def bias_correction(qm: QuantizedModel, model: FloatModel, X: np.ndarray,
                    score: Callable[[QuantizedModel], tuple[int, float]]) -> tuple[QuantizedModel, dict[str, Any]]:
    """The best of: no correction, pre-activation biases, FCbias, both (pre first), by ``score``
    (lower is better; no correction wins ties), and a record of what was applied."""
    from edgecompile.quant.bounds import OverflowBound, check_bounds

    fc_qm, fc_delta = correct_fc_bias(qm, model, X)
    candidates: list[tuple[str, QuantizedModel, np.ndarray | None, np.ndarray | None]] = [
        ("none", qm, None, None), ("FCbias", fc_qm, None, fc_delta)]
    if qm.cell != "ERNN":  # ERNN's pre-activations have K inner steps: only FCbias is corrected
        pre_qm, pre_delta = correct_pre_biases(qm, model, X)
        both_qm, both_fc = correct_fc_bias(pre_qm, model, X)
        candidates[1:1] = [("pre-activation", pre_qm, pre_delta, None)]
        candidates.append(("pre-activation + FCbias", both_qm, pre_delta, both_fc))
    best = None
    for name, cand, dpre, dfc in candidates:
        if name != "none":
            if not (dpre is not None and dpre.any()) and not (dfc is not None and dfc.any()):
                continue
            try:
                check_bounds(cand)
            except OverflowBound:
                continue
        s = score(cand)
        if best is None or s < best[0]:
            best = (s, name, cand, dpre, dfc)
    assert best is not None
    _, name, chosen, dpre, dfc = best

    def size(d: np.ndarray | None) -> dict[str, Any] | None:
        return None if d is None else {"max_abs_lsb": int(np.abs(d).max()), "mean_abs_lsb": float(np.abs(d).mean())}

    info = {"applied": name, "pre_activation_q12": size(dpre), "fc_bias": size(dfc),
            "disagreements": best[0][0], "logit_mse": best[0][1]}
    return chosen, info


def ptq_summary(calibration: dict[str, Any]) -> str | None:
    """One line on how the weights were rounded and which biases were corrected (None when the
    model was quantized without calibration data)."""
    if "rounding" not in calibration:
        return None
    text = f"rounding: {calibration['rounding']}; bias correction: "
    bc = calibration.get("bias_correction")
    if bc is None:
        return text + "off"
    sizes = [f"{what} up to {d['max_abs_lsb']} LSB" for what, d in
             (("Bh/Bg Q12", bc.get("pre_activation_q12")), ("FCbias", bc.get("fc_bias"))) if d]
    if bc["applied"] == "none":
        return text + "none kept (no gain on the calibration score)"
    return text + f"{bc['applied']} ({', '.join(sizes)}), {bc['disagreements']} calibration disagreements"
