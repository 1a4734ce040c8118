"""`inspect`: what a checkpoint holds and what it costs per time step."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecompile.ir.model import ERNNParams, FloatModel
from edgecompile.ir.qmodel import QMatrix, QuantizedModel
from edgecompile.quant.bounds import bound_report


def _matrix_entry(factors: list[np.ndarray]) -> dict[str, Any]:
    params = int(sum(f.size for f in factors))
    nonzeros = int(sum(np.count_nonzero(f) for f in factors))
    return {
        "shape": [int(factors[0].shape[0]), int(factors[-1].shape[1])],
        "rank": int(factors[0].shape[1]) if len(factors) == 2 else None,
        "factors": [list(map(int, f.shape)) for f in factors],
        "params": params,
        "nonzeros": nonzeros,
        "sparsity": round(1.0 - nonzeros / params, 4),
    }


def inspect_report(model: FloatModel | QuantizedModel) -> dict[str, Any]:
    """A JSON-ready summary: cell, dims, ranks, non-zeros, parameters, bytes, MACs per step.

    Of a float checkpoint, or of a quantized model without one (then the non-zeros are those of
    its integers and ``model_sha256`` the hash of the float model it came from, "" if unknown)."""
    if isinstance(model, QuantizedModel):
        factors = {"W": [f.values for f in model.W.factors], "U": [f.values for f in model.U.factors],
                   "FC": [model.FC.values]}
        prov = None
        gate_nl: str | None = model.gate_nl if model.cell == "FastGRNN" else None
        sha256, seq_len = model.source_sha256, model.seq_len
    else:
        factors = {"W": list(model.W.factors), "U": list(model.U.factors), "FC": [model.FC]}
        gate_nl, sha256, seq_len = model.gate_nl, model.sha256, model.seq_len
    prov = None if isinstance(model, QuantizedModel) else model.provenance
    matrices = {name: _matrix_entry(fs) for name, fs in factors.items()}
    weights = sum(int(m["params"]) for m in matrices.values())
    vectors = model.hidden_dim * (2 if model.cell == "FastGRNN" else 1) + model.num_classes + 2
    ernn = model.params if isinstance(model, FloatModel) and isinstance(model.params, ERNNParams) else None
    q_eta = model.eta if isinstance(model, QuantizedModel) else None
    inner = ernn.inner_steps if ernn is not None else len(q_eta) if q_eta else 1
    if model.cell == "ERNN":  # B [H], eta [K] and alpha instead of two scalars
        vectors += inner - 1
    params = weights + vectors
    # ERNN: x @ W + B once per time step, a product by U in each of the K inner steps
    macs = sum(int(f.shape[0] * f.shape[1]) * (inner if name == "U" else 1)
               for name in ("W", "U") for f in factors[name])
    extra: dict[str, Any] = {} if ernn is None else {
        "inner_steps": inner, "eta": [float(e) for e in ernn.eta], "alpha": float(ernn.alpha)}
    if isinstance(model, QuantizedModel) and q_eta:  # the constants as the integers hold them
        eta, decay, _, _ = model.ernn_terms()
        eta_real = [v / 2.0 ** (model.eta_frac or 0) for v in eta]
        extra = {"inner_steps": inner, "eta": eta_real,
                 "alpha": decay[0] / 2.0 ** (model.decay_frac or 0) / eta_real[0]}
    return {
        "cell": model.cell,
        "input_dim": model.input_dim,
        "hidden_dim": model.hidden_dim,
        "num_classes": model.num_classes,
        "seq_len": seq_len,
        "gate_nonlinearity": gate_nl,
        "update_nonlinearity": model.update_nl,
        # how the checkpoint was read (null without one): stored layout, how it was found, and
        # where each nonlinearity came from (metadata / command.txt / defaults)
        "layout": None if prov is None else prov.layout,
        "layout_source": None if prov is None else prov.layout_how,
        "nonlinearity_sources": None if prov is None else {"gate": prov.gate_nl_from,
                                                          "update": prov.update_nl_from},
        "defaults_assumed": None if prov is None else (
            prov.update_nl_from == "defaults" and prov.gate_nl_from in (None, "defaults")),
        "normalisation": None if model.mean is None else ("per-step T*D" if seq_len else "per-feature D"),
        "matrices": matrices,
        "params": params,
        "bytes": {"float32": 4 * params, "int16": 2 * params, "int8": weights + 2 * vectors},
        "macs_per_step": macs,
        "macs_classifier": int(np.prod(factors["FC"][0].shape)),
        "model_sha256": sha256,
        "float_model": not isinstance(model, QuantizedModel),
        "quantized": None,
        **extra,
    }


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['cell']}  D={report['input_dim']}  H={report['hidden_dim']}  C={report['num_classes']}"
        + (f"  T={report['seq_len']}" if report["seq_len"] else ""),
        f"nonlinearities: gate={report['gate_nonlinearity'] or '-'}  update={report['update_nonlinearity']}"
        f"  normalisation: {report['normalisation'] or 'none'}",
        *_provenance_lines(report),
        *([f"inner steps: K={report['inner_steps']}  eta="
           + ",".join(f"{e:.4g}" for e in report["eta"]) + f"  alpha={report['alpha']:.4g}"]
          if "inner_steps" in report else []),
        "",
        f"{'matrix':<8}{'shape':<12}{'rank':<6}{'params':>8}{'nonzeros':>10}{'sparsity':>10}",
    ]
    for name, m in report["matrices"].items():
        shape = "x".join(str(s) for s in m["shape"])
        lines.append(
            f"{name:<8}{shape:<12}{str(m['rank'] or 'full'):<6}{m['params']:>8}{m['nonzeros']:>10}"
            f"{m['sparsity']:>10.0%}"
        )
    b = report["bytes"]
    lines += [
        "",
        f"parameters: {report['params']}   bytes: float32 {b['float32']}, int16 {b['int16']}, int8 {b['int8']}",
        f"MACs per step: {report['macs_per_step']}"
        + (f" (W once, U x{report['inner_steps']})" if "inner_steps" in report else "")
        + f"   classifier MACs: {report['macs_classifier']}",
        f"model sha256: {report['model_sha256'] or 'unknown'}",
    ]
    if not report.get("float_model", True):
        lines.append("(no float model: the counts are those of the quantized integers)")
    return "\n".join(lines)


_LAYOUT_HOW = {"native": "as stored, x @ W", "detected": "detected from the shapes, transposed on load",
               "given": "given by --layout"}


def _provenance_lines(report: dict[str, Any]) -> list[str]:
    """Where the layout and the nonlinearities came from (nothing for a model without a checkpoint)."""
    if report.get("layout") is None:
        return []
    stored = "[in,out]" if report["layout"] == "in-out" else "[out,in]"
    lines = [f"layout: {report['layout']} {stored} ({_LAYOUT_HOW[report['layout_source']]})"]
    sources = report["nonlinearity_sources"]
    if report["defaults_assumed"]:
        update = f"{report['update_nonlinearity']} update"  # the cell's default (ERNN: relu)
        assumed = f"sigmoid gate, {update}" if report["gate_nonlinearity"] is not None else update
        lines.append(f"nonlinearities from: defaults (no metadata, no command.txt: {assumed} assumed)")
    elif sources["gate"] in (None, sources["update"]):
        lines.append(f"nonlinearities from: {sources['update']}")
    else:
        lines.append(f"nonlinearities from: gate {sources['gate']}, update {sources['update']}")
    return lines


def quant_report(qm: QuantizedModel) -> dict[str, Any]:
    """The quantized side of ``inspect --bits``: formats, storage decisions, bounds, LUT errors."""
    from edgecompile.sim.nonlinear import measure_errors

    matrices: dict[str, dict[str, Any]] = {}
    m: QMatrix
    for name, m in (("W", qm.W), ("U", qm.U)):
        matrices[name] = {
            "computed_as": ("two products (low rank)" if m.low_rank else "one product (dense)")
            + (f", in each of the {len(qm.eta)} inner steps" if name == "U" and qm.eta else ""),
            "factors": [{"shape": list(f.shape), "frac": f.frac, "storage": "sparse" if f.sparse else "dense",
                         "nonzeros": f.nonzeros} for f in m.factors],
            "mid_frac": m.mid_frac,
            "macs": m.macs() * (len(qm.eta) if name == "U" and qm.eta else 1),
        }
    used = {qm.update_nl} | ({qm.gate_nl} if qm.cell == "FastGRNN" else set())
    if qm.profile == "fast":
        from edgecompile.sim.fast import measure_fast_errors

        errors = measure_fast_errors()
    else:
        errors = measure_errors()
    return {
        "bits": qm.bits,
        "summary": qm.summary(),
        "per_unit": qm.per_unit_line(),
        "in_frac": qm.in_frac,
        "hid_frac": qm.hid_frac,
        "logit_frac": qm.logit_frac,
        "matrices": matrices,
        "bounds": [b.to_json() for b in bound_report(qm)],
        "nonlinearity_error_lsb": {k: v for k, v in errors.items()},
        "nonlinearities_used": sorted(used),
        "ernn": None if qm.eta is None else {
            "eta": list(qm.eta), "eta_frac": qm.eta_frac, "decay": list(qm.decay or ()),
            "decay_frac": qm.decay_frac},
        "calibration": qm.calibration,
    }


def render_quant_report(q: dict[str, Any]) -> str:
    lines = ["", f"quantized (int{q['bits']}): {q['summary']}", f"  {q['per_unit']}"]
    for name, m in q["matrices"].items():
        factors = ", ".join(
            f"{'x'.join(map(str, f['shape']))} Q{f['frac']} {f['storage']} ({f['nonzeros']} nz)" for f in m["factors"]
        )
        mid = f", middle Q{m['mid_frac']}" if m["mid_frac"] is not None else ""
        lines.append(f"  {name}: {m['computed_as']}: {factors}{mid}; {m['macs']} MACs")
    lines.append("  int32 bounds (worst case over the full int16 input range):")
    for b in q["bounds"]:
        verdict = "proved" if b["proved"] else "OVERFLOW"
        lines.append(f"    {b['operation']:<26}{b['worst_case']:>14,} / 2^31  {verdict}")
    lines.append("  nonlinearity error vs exact, exhaustive over all 65,536 inputs (LSB of the output format):")
    for name, e in q["nonlinearity_error_lsb"].items():
        mark = "  (used)" if name in q["nonlinearities_used"] else ""
        lines.append(f"    {name:<10} Q{e['frac']} max {e['max_lsb']:.2f}  mean {e['mean_lsb']:.2f}{mark}")
    return "\n".join(lines)
