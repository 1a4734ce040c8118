"""The template context: everything the C templates need, computed from a QuantizedModel.

Only numbers, names and flags are computed here; all C text lives in ``templates/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecompile import __version__
from edgecompile.codegen.names import c_ident
from edgecompile.errors import CodegenError
from edgecompile.ir.fixedpoint import INT16_MAX, INT16_MIN, INT32_LIMIT, SIG
from edgecompile.ir.qmodel import QFactor, QMatrix, QuantizedModel

#: Bumped when the generated API changes incompatibly (checked at compile time by ``<name>.c``
#: and ``edgecompile_model.h``).
ABI_VERSION = 1

_NL_FUNCTIONS = {"sigmoid": "sigmoid", "tanh": "tanh", "quantSigm": "quant_sigm", "quantTanh": "quant_tanh",
                 "quantSigm4": "quant_sigm4", "relu": "relu"}
_LUT_NLS = ("sigmoid", "tanh")
_READ = {"int8_t": "EC_READ_I8", "int16_t": "EC_READ_I16", "int32_t": "EC_READ_I32",
         "uint8_t": "EC_READ_U8", "uint16_t": "EC_READ_U16", "uint32_t": "EC_READ_U32"}


def _uint_for(max_value: int) -> str:
    """The narrowest unsigned type holding ``max_value`` (loop counters, indices, offsets)."""
    for ctype, limit in (("uint8_t", 0xFF), ("uint16_t", 0xFFFF), ("uint32_t", 0xFFFFFFFF)):
        if max_value <= limit:
            return ctype
    raise CodegenError(f"a dimension of {max_value} is too large for generated code")


def _ints(values: np.ndarray, lo: int, hi: int, what: str) -> list[int]:
    v = np.asarray(values, dtype=np.int64).ravel()
    if v.size and (v.min() < lo or v.max() > hi):
        raise CodegenError(f"{what} has values outside [{lo}, {hi}]: the quantized model is corrupt")
    return [int(x) for x in v]


def _factor(sym: str, f: QFactor, bits: int, shift: int | None) -> dict[str, Any]:
    """One weight matrix, stored per output row ([out][in], the transpose of ``values``)."""
    wtype = f"int{bits}_t"
    lim = 1 << (bits - 1)
    rows = np.asarray(f.values, dtype=np.int64).T  # [out][in]
    out_dim, in_dim = rows.shape
    ctx: dict[str, Any] = {
        "sym": sym, "in_dim": in_dim, "out_dim": out_dim, "frac": f.frac, "shift": shift,
        "sparse": bool(f.sparse), "wtype": wtype, "wread": _READ[wtype],
        "in_loop": _uint_for(in_dim), "out_loop": _uint_for(out_dim),
        "nnz": f.nonzeros,
    }
    if f.sparse:
        index, value, start = [], [], [0]
        for j in range(out_dim):
            nz = np.flatnonzero(rows[j])
            index += [int(i) for i in nz]
            value += _ints(rows[j][nz], -lim, lim - 1, sym)
            start.append(len(index))
        itype = _uint_for(in_dim - 1)
        stype = _uint_for(len(index))
        ctx.update(
            # C has no empty arrays: an all-zero factor keeps one unused padding entry.
            index=index or [0], value=value or [0], start=start, storage=len(index) or 1,
            itype=itype, iread=_READ[itype], stype=stype, sread=_READ[stype],
        )
    else:
        ctx.update(rows=[_ints(r, -lim, lim - 1, sym) for r in rows], otype=_uint_for(out_dim * in_dim))
        # Fast kernels: the constant added to row j's exact sum before the final
        # rescale (the rounding term 2^(s-1) of rshift), and the same plus -32768 * (row sum)
        # mod 2^32 for the offset-binary dot product of the AVR kernel, which multiplies
        # unsigned bytes (w + 2^(bits-1)) * (a + 32768) and corrects with these per-row
        # constants and one per-vector term. Valid because the exact sum plus the rounding
        # term fits int32 (the quantizer's bound), so arithmetic mod 2^32 loses nothing.
        add = (1 << (shift - 1)) if shift is not None and shift > 0 else 0
        ctx.update(round_add=add, offset_k=[_offset_k(r, add) for r in rows])
    return ctx


def _offset_k(row: np.ndarray, add: int) -> int:
    return int((-32768 * int(np.sum(row)) + add) % (1 << 32))


def _matrix(name: str, m: QMatrix, in_frac: int, bits: int) -> dict[str, Any]:
    # per-unit: the final product has no shift of its own (one per unit, with the other matrix's)
    shifts: list[int | None]
    if m.per_unit:
        shifts = [m.mid_shift(in_frac), None] if m.low_rank else [None]
    else:
        shifts = list(m.shifts(in_frac))
    if m.low_rank:
        f1, f2 = m.factors
        return {"name": name, "low_rank": True, "rank": f1.shape[1], "mid_frac": m.mid_frac,
                "factors": [_factor(name + "1", f1, bits, shifts[0]), _factor(name + "2", f2, bits, shifts[1])]}
    return {"name": name, "low_rank": False, "factors": [_factor(name, m.factors[0], bits, shifts[0])]}


def _float_literal(x: float) -> str:
    """The shortest decimal that reads back as exactly this float32 (C99 ``f`` literal)."""
    return np.format_float_scientific(np.float32(x), unique=True, trim="0") + "f"


def _normalisation(qm: QuantizedModel) -> dict[str, Any] | None:
    if qm.mean is None:
        return None
    mean = np.asarray(qm.mean, dtype=np.float64)
    std = np.asarray(qm.std, dtype=np.float64)
    inv_std = 1.0 / std
    with np.errstate(over="ignore"):
        inv32, mis32 = inv_std.astype(np.float32), (mean / std).astype(np.float32)
    if not (np.all(np.isfinite(inv32)) and np.all(np.isfinite(mis32))):
        raise CodegenError("the normalisation (mean/std) does not fit float32 for the device's step_float")
    return {
        "btype": _uint_for(mean.size),
        "steps": qm.seq_len or 1,
        "size": int(mean.size),
        "inv_std": [_float_literal(v) for v in inv32],
        "mean_inv_std": [_float_literal(v) for v in mis32],
    }


def _c_int32(v: int) -> str:
    return "(-2147483647L - 1)" if v == -(1 << 31) else f"{v}L"


def _raw_input(qm: QuantizedModel) -> dict[str, Any] | None:
    """The raw int16 helper's constants (``sim.rawinput``), or None without a raw unit."""
    if qm.raw_scale is None:
        return None
    from edgecompile.sim.rawinput import raw_constants

    c = raw_constants(qm)
    scale = np.asarray(qm.raw_scale, np.float64)
    offset = np.asarray(qm.raw_offset if qm.raw_offset is not None else np.zeros(scale.size), np.float64)
    same = bool(np.all(scale == scale[0]) and np.all(offset == offset[0]))
    unit = (f"raw * {float(scale[0])!r} + {float(offset[0])!r}" if same
            else "per feature, see model.qmodel.json (raw_scale, raw_offset)")
    return {
        "steps": int(c.mul.shape[0]), "size": int(c.mul.size), "btype": _uint_for(c.mul.size),
        "mul": [_c_int32(int(v)) for v in c.mul.ravel()],
        "add": [_c_int32(int(v)) for v in c.add.ravel()],
        "shift": [f"{int(v)}u" for v in c.shift.ravel()],
        "unit": comment_safe(unit),
    }


def comment_safe(text: str) -> str:
    """Text usable inside a C block comment and on one line: ASCII, no ``*/``."""
    text = " ".join(str(text).split()).replace("*/", "* /")
    return text.encode("ascii", "replace").decode("ascii")


def build_context(qm: QuantizedModel, name: str) -> dict[str, Any]:
    """The complete, deterministic template context for the library of ``qm`` named ``name``."""
    c_ident(name)
    sha = qm.source_sha256
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise CodegenError("the quantized model does not carry its float model's sha256 (source_sha256)")
    if qm.bits not in (8, 16):
        raise CodegenError(f"weight width must be 8 or 16 bits, got {qm.bits}")
    if qm.num_classes > 255:
        raise CodegenError(f"{qm.num_classes} classes: generated code supports at most 255")
    for nl in {qm.update_nl, qm.gate_nl if qm.cell == "FastGRNN" else qm.update_nl}:
        if nl not in _NL_FUNCTIONS:
            raise CodegenError(f"nonlinearity {nl!r} has no fixed-point rendering")
    if qm.cell not in ("FastGRNN", "FastRNN", "ERNN"):
        raise CodegenError(f"cell {qm.cell!r} has no C rendering")
    if qm.cell == "ERNN" and qm.profile != "fast":
        raise CodegenError("an ERNN model renders in the fast profile only: the quantized model is corrupt")
    if not 0 <= qm.in_frac <= 15 or not 0 <= qm.hid_frac <= 15:
        raise CodegenError("input/hidden Q formats outside 0..15: the quantized model is corrupt")

    grnn = qm.cell == "FastGRNN"
    nls = [qm.update_nl] + ([qm.gate_nl] if grnn else [])
    H, D, C = qm.hidden_dim, qm.input_dim, qm.num_classes
    ctx: dict[str, Any] = {
        "name": name,
        "NAME": name.upper(),
        "tool_version": __version__,
        "abi_version": ABI_VERSION,
        "sha256": sha,
        "qmodel_sha256": qm.quantized_sha256(),
        "summary": comment_safe(qm.summary()),
        "cell": qm.cell,
        "grnn": grnn,
        "bits": qm.bits,
        "D": D, "H": H, "C": C,
        "T": qm.seq_len or 0,
        "in_frac": qm.in_frac, "hid_frac": qm.hid_frac, "logit_frac": qm.logit_frac,
        "d_loop": _uint_for(D), "h_loop": _uint_for(H), "c_loop": _uint_for(C),
        "W": _matrix("W", qm.W, qm.in_frac, qm.bits),
        "U": _matrix("U", qm.U, qm.hid_frac, qm.bits),
        "FC": _factor("FC", qm.FC, qm.bits, None),
        "fc_bias": _ints(qm.fc_bias, -(INT32_LIMIT - 1), INT32_LIMIT - 1, "FCbias"),
        "bias_update": _ints(qm.bias_update, INT16_MIN, INT16_MAX, "update bias"),
        "bias_gate": (_ints(qm.bias_gate, INT16_MIN, INT16_MAX, "gate bias")
                      if grnn and qm.bias_gate is not None else None),
        "update_nl": _NL_FUNCTIONS[qm.update_nl],
        "gate_nl": _NL_FUNCTIONS[qm.gate_nl] if grnn else None,
        "used_nls": sorted({_NL_FUNCTIONS[n] for n in nls}),
        "sig_table": [int(v) for v in SIG] if any(n in _LUT_NLS for n in nls) else None,
        "zeta": qm.zeta, "nu": qm.nu, "alpha": qm.alpha, "beta": qm.beta,
        "residual_shift": qm.residual_shift,
        # gz, gc: the Q formats of z and c (14, or 12 for relu); gz is also the final shift of the update
        "gate_frac": qm.gate_frac, "update_frac": qm.update_frac,
        "relu_gate": grnn and qm.gate_nl == "relu",
        "norm": _normalisation(qm),
        "raw": _raw_input(qm),
        "in_scale": _float_literal(2.0 ** qm.in_frac),
    }
    if not ctx["FC"]["sparse"]:
        # The offset-binary kernel's classifier rows start from FCbias too (logits need no add).
        ctx["FC"]["offset_k"] = [_offset_k(r, b) for r, b in zip(ctx["FC"]["rows"], ctx["fc_bias"], strict=True)]
    # Steps of SIG: the 16-bit interpolation of the fast kernels needs (SIG[i+1] - SIG[i]) * 255 + 128 < 2^16,
    # and the AVR one (one 8x8 MUL and the step's bit 8) steps in [0, 256].
    steps = np.diff(SIG)
    if ctx["sig_table"] is not None and (int(steps.min()) < 0 or int(steps.max()) > 256):
        raise CodegenError("the sigmoid table's steps are outside [0, 256]: no 16-bit interpolation")
    shifts = [f["shift"] for mat in (ctx["W"], ctx["U"]) for f in mat["factors"] if f["shift"] is not None]
    ctx["uses_mul_pow2"] = any(s < 0 for s in shifts + [qm.residual_shift])
    # Per-unit form: one rescaling shift per unit for the summed final products, int8 in flash.
    ctx["per_unit"] = qm.per_unit
    ctx["unit_shift"] = _ints(qm.unit_shifts(), -31, 31, "per-unit shift") if qm.per_unit else None
    # The AVR per-unit asm routine: FastGRNN with a sigmoid gate and a tanh update, any residual shift
    # (rshift(c * coef, s) + z * h stays within int32: the quantizer's bound); other cells keep the C update.
    ctx["unit_asm"] = bool(grnn and ctx["gate_nl"] == "sigmoid" and ctx["update_nl"] == "tanh"
                           and -15 <= qm.residual_shift <= 30)
    if grnn and ctx["bias_gate"] is None:
        raise CodegenError("FastGRNN without a gate bias: the quantized model is corrupt")
    for key in (("zeta", "nu") if grnn else () if qm.cell == "ERNN" else ("alpha", "beta")):
        if ctx[key] is None or not 0 <= ctx[key] <= 16384:
            raise CodegenError(f"residual scalar {key} missing or outside [0, 16384]")
    if H > 65535 or D > 65535:
        raise CodegenError("dimensions above 65535 are not supported")
    ctx.update(_fast_context(qm, nls))
    ctx["avr_fast_covered"] = avr_fast_step(qm)
    ctx["ernn"] = _ernn_context(qm)
    if ctx["ernn"] is not None:
        # ERNN has no residual shift; eta * phi is rescaled by a multiplication when its shift is < 0
        ctx["uses_mul_pow2"] = any(s < 0 for s in shifts) or ctx["ernn"]["eta_shift"] < 0
    return ctx


def avr_fast_step(qm: QuantizedModel) -> bool:
    """The AVR kernel has its own step for this model in the fast profile: FastGRNN (any gate) or
    FastRNN with a residual shift in [-15, 30] (sparse factors' sums in C, every per-unit update
    in assembly), and ERNN (its products through the assembly row routines, its inner updates in
    C); other models run the fast profile's shared C step there."""
    return qm.cell == "ERNN" or (qm.cell in ("FastGRNN", "FastRNN") and -15 <= qm.residual_shift <= 30)


def _ernn_context(qm: QuantizedModel) -> dict[str, Any] | None:
    """ERNN's inner-step constants (docs/fixed-point.md, "ERNN"): eta_i and eta_i * alpha as
    int16 in flash, with the two rescaling shifts."""
    if qm.cell != "ERNN":
        return None
    eta, decay, eta_shift, decay_shift = qm.ernn_terms()
    if not (-30 <= eta_shift <= 30 and 1 <= decay_shift <= 30):
        raise CodegenError("ERNN shifts outside their ranges: the quantized model is corrupt")
    return {"K": len(eta), "eta": _ints(np.asarray(eta), 1, INT16_MAX, "ERNN eta"),
            "decay": _ints(np.asarray(decay), 0, INT16_MAX, "ERNN decay"),
            "eta_frac": qm.eta_frac, "decay_frac": qm.decay_frac,
            "eta_shift": eta_shift, "decay_shift": decay_shift,
            "k_loop": _uint_for(len(eta))}


def _fast_context(qm: QuantizedModel, nls: list[str]) -> dict[str, Any]:
    """The fast profile's tables (docs/fixed-point.md, "The fast profile"): direct 512-entry
    sigmoid / tanh tables (int16 Q14) and the per-model coef table (uint16 Q14), only those the
    model uses; the precise profile's interpolated table is then not emitted."""
    fast = qm.profile == "fast"
    out: dict[str, Any] = {"fast": fast, "profile": qm.profile,
                           "fast_sig": None, "fast_tanh": None, "fast_coef": None}
    if not fast:
        return out
    from edgecompile.sim.fast import FAST_SIG, FAST_TANH, coef_table

    if not qm.per_unit:
        raise CodegenError("a fast-profile model must be in the per-unit form: the quantized model is corrupt")
    coef = coef_table(qm)
    out.update(
        sig_table=None, unit_asm=False,
        fast_sig=_ints(FAST_SIG, INT16_MIN, INT16_MAX, "fast sigmoid table") if "sigmoid" in nls else None,
        fast_tanh=_ints(FAST_TANH, INT16_MIN, INT16_MAX, "fast tanh table") if "tanh" in nls else None,
        fast_coef=None if coef is None else _ints(coef, 0, 65535, "coef table"),
    )
    return out
