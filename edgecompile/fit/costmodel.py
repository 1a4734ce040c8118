"""Flash, static RAM and cycles per step of the generated firmware, predicted without building.

The prediction is a linear model per board over counts the generated code depends on
(:func:`features`): weight bytes of the dense and of the sparse factors, index bytes, rows,
multiply-accumulates at each bit width and storage, unit updates, nonlinearities, H, D, C, the
cell (an ERNN runs U's products and its update K times a step), the arithmetic profile of
the quantized model (the one ``export`` takes for the board, as ``fit`` quantizes its trials)
and the step the code runs for it (on AVR: the precise assembly, the fast-profile assembly, or
the shared fast C step; each has its own coefficients there). The coefficients are fitted
by least squares to measured builds of the parity firmware (``edgecompile build``:
flash = ``.text + .data``, RAM = static ``.data + .bss``) and to the cycles per step that
``edgecompile verify --emulate`` reports, and shipped in ``costmodel.json`` beside this module.
``benchmarks/fit_costmodel.py`` re-measures and refits them (re-run it whenever the kernels or
the firmware harness change).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.codegen.context import avr_fast_step
from edgecompile.errors import BoardError
from edgecompile.ir.qmodel import QuantizedModel

COSTMODEL_PATH = Path(__file__).with_name("costmodel.json")
TARGETS = ("flash", "ram", "cycles")

#: For each target, the feature sets a board's fit chooses from (``benchmarks/fit_costmodel.py``
#: takes, per board and target, the one with the lowest worst leave-one-out error on the fitting
#: builds; the held-out builds only measure the choice). Names are :func:`features`' keys and
#: those :meth:`BoardCostModel.terms` adds.
_CYCLES_BASE = ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_dense",
                "rows_sparse", "rows16", "hidden", "grnn_hidden", "inputs", "factors", "fc_per_step",
                "per_step")
_CYCLES_STEP = ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16",
                "macs_cols_first", "macs_cols_first_looped", "macs_cols_final",
                "macs_cols_final_spilled", "cols_passes", "rows_cols_first", "rows_first", "rows_dense",
                "rows_sparse", "unit_updates", "nl_smooth", "grnn_hidden", "copy_units", "fc_per_step",
                "fc_cols_per_step", "per_step")
_FLASH_BASE = ("one", "weight_bytes_dense", "weight_bytes_sparse", "index_bytes", "rows_dense",
               "factors_dense", "factors_sparse", "hidden", "grnn", "bits16")
TERM_SETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "flash": (_FLASH_BASE, (*_FLASH_BASE, "fast", "ernn"), (*_FLASH_BASE, "fast", "ernn", "cols_passes"),
              (*_FLASH_BASE, "fast", "ernn", "cols_passes", "cols_final_rank"),
              (*_FLASH_BASE, "fast", "ernn", "cols_passes", "ernn_hidden", "rows_sparse")),
    "ram": (("one", "hidden", "inputs", "classes", "ranks", "grnn", "bits16", "frame_bytes"),),
    "cycles": ((*_CYCLES_BASE, "fast_units", "per_unit_units", "nl_smooth", "copy_units", "rows_first",
                "ernn_units"),
               _CYCLES_STEP, (*_CYCLES_STEP, "per_unit_units", "ernn_units"),
               (*_CYCLES_STEP, "per_unit_units", "ernn_units", "macs_fast", "fast_units")),
}
#: The terms that a profile-split set takes once more for the fast profile (``fast:NAME``).
FAST_SPLIT = ("macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_dense", "rows_sparse",
              "rows_first", "unit_updates", "ernn_units", "fc_per_step", "per_step", "weight_bytes_dense",
              "weight_bytes_sparse", "index_bytes", "factors_dense", "factors_sparse", "hidden")
_SPLIT_CYCLES = ("one", "fast", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_first",
                 "rows_dense", "rows_sparse", "rows16", "unit_updates", "per_unit_units", "nl_smooth",
                 "grnn_hidden", "copy_units", "inputs", "fc_per_step", "per_step")
TERM_SETS["cycles"] += ((*_SPLIT_CYCLES, *(f"fast:{t}" for t in FAST_SPLIT[:11])),)
TERM_SETS["flash"] += ((*_FLASH_BASE, "fast", "ernn", *(f"fast:{t}" for t in FAST_SPLIT[11:])),)
#: The indicators that split a term by the step the code runs (``PREFIX:NAME`` is the indicator
#: times NAME): ``fast`` the fast profile, ``asm`` the AVR kernel's fast-profile assembly
#: (``codegen.context.avr_fast_step``), ``fastc`` the fast profile without it (on AVR the shared
#: C step, ERNN's; on Cortex-M every fast-profile model), ``asmo`` the AVR assembly step on its
#: row routines (``avr_routines``), ``ernn`` an ERNN, ``prec`` the precise profile. On AVR the
#: three regimes (precise, ``asm``, ``fastc``) each take their own coefficients in the regime
#: sets below.
SPLITS = {"fast": "fast", "asm": "avr_asm", "asmo": "avr_other", "fastc": "fast_c", "ernn": "ernn",
          "prec": "precise"}
_REGIME_CYCLES = ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_first",
                  "rows_dense", "rows_sparse", "unit_updates", "per_unit_units", "grnn_hidden", "copy_units",
                  "fc_per_step", "per_step", "avr_calls", "avr_vsum", "macs_regs", "fc_vsum_per_step")
#: The AVR precise and fast assembly steps share the row-sum routines; the fast one adds the
#: column-outer ones and its own unit update.
_AVR_SHARED = (*_REGIME_CYCLES, "avr_cols", "macs_fcol8", "macs_fcol16")
_ASM_CYCLES = ("one", "macs_dense8", "macs_dense16", "rows_first", "rows_dense", "unit_updates", "grnn_hidden",
               "copy_units", "avr_calls", "avr_vsum", "avr_cols", "macs_regs")
_ASM_UNIT_CYCLES = ("one", "unit_updates", "grnn_hidden", "copy_units", "rows_dense")
_FASTC_CYCLES = ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_first",
                 "rows_dense", "rows_sparse", "unit_updates", "copy_units", "fc_per_step", "per_step",
                 "fc_vsum_per_step")
_FASTC_SMALL = ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_dense",
                "rows_sparse", "unit_updates", "fc_per_step", "per_step")
TERM_SETS["cycles"] += (
    (*_REGIME_CYCLES, *(f"asm:{t}" for t in _ASM_CYCLES), *(f"fastc:{t}" for t in _FASTC_CYCLES)),
    (*_AVR_SHARED, *(f"asm:{t}" for t in _ASM_UNIT_CYCLES), *(f"fastc:{t}" for t in _FASTC_CYCLES)),
    (*_AVR_SHARED, *(f"asm:{t}" for t in _ASM_UNIT_CYCLES), *(f"fastc:{t}" for t in _FASTC_SMALL)))
_REGIME_FLASH = ("one", "weight_bytes_dense", "weight_bytes_sparse", "index_bytes", "rows_dense", "factors_dense",
                 "factors_sparse", "hidden", "grnn", "bits16", "smooth_tables", "avr_unrolled")
_ASM_FLASH = ("one", "weight_bytes_dense", "hidden", "grnn", "bits16", "smooth_tables", "avr_lr", "avr_fr",
              "factors_dense")
#: The weights are stored alike in every regime: the shared C step differs by its code only.
_FASTC_FLASH = ("one", "factors_dense", "factors_sparse", "hidden", "bits16", "smooth_tables")
TERM_SETS["flash"] += (
    (*_REGIME_FLASH, *(f"asm:{t}" for t in _ASM_FLASH), *(f"fastc:{t}" for t in _FASTC_FLASH)),
    (*_REGIME_FLASH, "rows_sparse", *(f"asm:{t}" for t in (*_ASM_FLASH, "rows_dense")),
     *(f"fastc:{t}" for t in _FASTC_FLASH)))
TERM_SETS["ram"] += (("one", "hidden", "inputs", "classes", "ranks", "grnn", "bits16", "frame_bytes",
                      "fast", "avr_asm", "asm:hidden", "fastc:hidden"),)
#: The micro:bit (ARMv6-M): :func:`m0_features`, the straight code with the weights as immediates.
_M0_CYCLES = ("one", "m0_first_ops", "m0_first_pass", "m0_first_rows", "m0_first_l8", "m0_first_l16",
              "m0_first_iters", "m0_final_ops", "m0_fsums", "m0_final_l8", "m0_final_l16", "m0_final_rows",
              "m0_rs_rows", "m0_rs_macs", "m0_rl_rows", "m0_rl_macs", "m0_rl_tail", "m0_u_rows", "m0_u_macs",
              "m0_u_tail", "m0_snnz_first", "m0_snnz_final", "m0_snnz_full", "m0_srows_first", "m0_srows_final",
              "m0_srows_full", "m0_snnz16",
              "m0a_units", "m0c_units", "m0c_grnn", "m0c_smooth", "m0f_units", "m0_copy", "m0_per_step",
              "m0_fc_blocks_ps", "m0_fc_iters_ps", "m0_fc_snnz_ps", "m0_fc_srows_ps")
_M0_FLASH = ("one", "weight_bytes_dense", "weight_bytes_sparse", "index_bytes", "factors_dense", "factors_sparse",
             "hidden", "grnn", "bits16", "fast", "ernn", "ernn_hidden", "rows_sparse", "smooth_tables", "m0_code_w",
             "m0_code_l", "m0_written_bytes", "m0_fsums", "m0_fc_blocks", "m0_rows", "m0f_units", "m0a_units")
#: The row-by-row steps on ARMv6-M, the shared fast C step of an ERNN (``ernn:``) and the
#: precise profile's (``prec:``, taken where the calibration shows the fast one changing an
#: answer): dot products, short rows written out by the compiler; ERNN's sparse non-zeros pooled,
#: or split by what they read (a first factor the state, a final one the mids on the stack), the
#: precise step's by weight width.
_ROWS = ("one", "dot_rows_short", "dot_macs_short", "dot_rows_long", "dot_macs_long", "dot_tail_long", "bits16",
         "rows_sparse", "unit_updates", "fc_per_step", "per_step")
_SPARSE_POOLED, _SPARSE_SPLIT = ("macs_sparse",), ("sparse_nnz_first", "sparse_nnz_other")
_SPARSE_BITS = ("macs_sparse8", "macs_sparse16")
_PRECISE_UNITS = ("rows_first", "nl_smooth", "grnn_hidden", "copy_units")


def _m0_cycles(ernn_sparse: tuple[str, ...], precise_sparse: tuple[str, ...]) -> tuple[str, ...]:
    """The micro:bit's cycle terms: the fast step's forms, then ERNN's and the precise step's rows
    with the sparse terms given."""
    return (*_M0_CYCLES, *(f"ernn:{t}" for t in (*_ROWS, *ernn_sparse)),
            *(f"prec:{t}" for t in (*_ROWS, *_PRECISE_UNITS, *precise_sparse)))


#: The Uno's steps each with terms of their own only (so that every coefficient is a non-negative
#: cost of its step): the precise one, the fast assembly one (``asm``; ``asmo`` where it runs on
#: the row routines), whose sparse products (C dot products, either width pooled) and ERNN's
#: inner updates (in C) have terms of their own. No fast model takes the shared C step there.
_AVR_PRECISE = ("one", "macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16", "rows_first", "rows_dense",
                "rows_sparse", "unit_updates", "per_unit_units", "grnn_hidden", "copy_units", "nl_smooth",
                "fc_per_step", "per_step", "avr_calls", "avr_vsum", "macs_regs", "fc_vsum_per_step")
_AVR_ASM = ("one", "unit_updates", "grnn_hidden", "nl_smooth", "avr_calls", "avr_vsum", "avr_cols", "macs_regs",
            "macs_regs16", "macs_fcol8", "macs_fcol16", "avr_lr", "avr_fr", "rows_first", "copy_units",
            "fc_fcol_per_step", "fc_orows_per_step", "per_step")
_AVR_ASM_ROWS = ("macs_dense8", "macs_dense16", "rows_dense", "macs_regs", "macs_sparse", "rows_sparse",
                 "ernn_units")
_AVR_SPLIT = (*(f"prec:{t}" for t in _AVR_PRECISE), *(f"asm:{t}" for t in _AVR_ASM),
              *(f"asmo:{t}" for t in _AVR_ASM_ROWS))
#: Sets only one board's fit chooses from besides TERM_SETS (its code has forms the others lack).
BOARD_TERM_SETS: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "uno": {"cycles": (_AVR_SPLIT, (*_AVR_SPLIT, *(f"asmo:{t}" for t in ("ernn_hidden", "nl_smooth"))))},
    "microbit": {"cycles": tuple(_m0_cycles(e, _SPARSE_BITS) for e in (_SPARSE_POOLED, _SPARSE_SPLIT)),
                 "flash": (_M0_FLASH, (*_M0_FLASH, *(f"prec:{t}" for t in ("grnn", "smooth_tables", "bits16",
                                                                            "factors_dense", "factors_sparse",
                                                                            "rows_sparse")))),
                 },
}


def term_sets(board: str, target: str) -> tuple[tuple[str, ...], ...]:
    """The feature sets ``board``'s fit of ``target`` chooses from."""
    return TERM_SETS[target] + BOARD_TERM_SETS.get(board, {}).get(target, ())


#: Every feature some set reads.
TERMS: dict[str, tuple[str, ...]] = {
    t: tuple(dict.fromkeys(name for terms in (*sets, *(ts for b in BOARD_TERM_SETS.values()
                                                                 for ts in b.get(t, ())))
                           for name in terms)) for t, sets in TERM_SETS.items()}
#: The split terms some set reads: (term, indicator, name).
_SPLIT_TERMS = tuple(dict.fromkeys((t, SPLITS[t.split(":")[0]], t.split(":")[1])
                                   for names in TERMS.values() for t in names if ":" in t))
#: The features a record must hold for every set (the others are derived by BoardCostModel.terms).
STORED_FEATURES = frozenset(
    {n for names in TERMS.values() for n in names if ":" not in n} - {"frame_bytes", "rows16"}
    | {ind for _, ind, _ in _SPLIT_TERMS} | {n for _, _, n in _SPLIT_TERMS} - {"rows16"})

#: Nonlinearities computed from a table (smooth) rather than by clipping (piecewise linear).
SMOOTH_NLS = ("sigmoid", "tanh")
#: The highest rank whose final factor the fast step sums against its mids held in locals.
COLS_MAX_RANK = 16
#: Rows of a column-outer product held in registers at once (one pass over the activations each).
COLS_GROUP = 6
#: Activations up to which a column-outer product is straight code (a loop past it).
COLS_STRAIGHT = 32
#: Weights up to which the ARMv6-M kernel writes a low-rank final factor out as immediates.
M0_WRITTEN = 320


#: Rows of a block on the AVR kernel (one call of its row-sum routine per block), at most.
AVR_BLOCK = 32
#: The AVR kernel's rank up to which a final factor's mids stay in registers (int8, or both
#: factors of a fast-profile step with both ranks up to it); its column-outer groups of units.
AVR_REG_RANK, AVR_GROUP = 5, 5
#: Vector lengths up to which the AVR fast low-rank step's column routine counts in one byte.
AVR_COUNT8 = 255


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def avr_routines(qm: QuantizedModel, steps: int) -> dict[str, float]:
    """The AVR kernel's row-sum routines for ``qm`` (``templates/library/kernels/avr.c.j2``) per
    time step: ``avr_calls`` calls (each saves and restores the call-saved registers),
    ``avr_vsum`` activations summed for their per-vector terms, ``avr_cols`` activations the
    column-outer routine steps through (a group of up to 5 units at once; ``macs_fcol8``,
    ``macs_fcol16`` its multiply-accumulates at each bit width), ``macs_regs``
    multiply-accumulates against activations held in registers (low-rank final factors;
    ``macs_regs16`` those of int16 weights);
    ``fc_vsum_per_step``: the classifier's ``avr_vsum`` (once per sequence) per step, whose
    multiply-accumulates per step are ``fc_fcol_per_step`` through the column-outer routines or
    ``fc_orows_per_step`` through the row routine; ``avr_other``: the fast assembly step of
    another shape (ranks past 5, one matrix low rank, sparse factors, an ERNN), on the row routines. For flash:
    ``avr_lr`` and ``avr_fr`` (the fast assembly step's forms for two ranks up to 5 and for two
    full matrices) and ``avr_unrolled``, the products written out in the unrolled routines."""
    H, D = qm.hidden_dim, qm.input_dim
    K = inner_steps(qm)
    blk = min(H, AVR_BLOCK)
    out = dict.fromkeys(("avr_calls", "avr_vsum", "avr_cols", "macs_regs", "macs_regs16", "avr_unrolled",
                         "macs_fcol8", "macs_fcol16"), 0.0)
    asm = qm.profile == "fast" and avr_fast_step(qm)
    wr, ur = (m.factors[0].shape[1] if m.low_rank else 0 for m in (qm.W, qm.U))
    # both forms take dense FastGRNN/FastRNN matrices only (an ERNN or a sparse factor: the row routines)
    dense = qm.cell != "ERNN" and not any(f.sparse for f in (*qm.W.factors, *qm.U.factors))
    fast_lr = (asm and dense and qm.W.low_rank and qm.U.low_rank and max(wr, ur) <= AVR_REG_RANK
               and max(D, H) <= AVR_COUNT8)
    fast_fr = asm and dense and not qm.W.low_rank and not qm.U.low_rank
    out.update(avr_lr=float(fast_lr), avr_fr=float(fast_fr), avr_other=float(asm and not (fast_lr or fast_fr)))
    # the column-outer routines' group sizes (one routine each)
    gset = {g for cnt in ((wr, ur) if fast_lr else (blk, H % blk) if fast_fr else ()) if cnt
            for g in (AVR_GROUP if cnt >= AVR_GROUP else 0, cnt % AVR_GROUP) if g}
    # the classifier through those routines (groups of 5 classes) when they have its group sizes
    C = qm.FC.shape[1]
    fc_cols = (bool(gset) and not qm.FC.sparse and (C < AVR_GROUP or AVR_GROUP in gset)
               and (C % AVR_GROUP == 0 or C % AVR_GROUP in gset))
    out.update(fc_fcol_per_step=H * C / max(steps, 1) if fc_cols else 0.0,
               fc_orows_per_step=0.0 if fc_cols or qm.FC.sparse else H * C / max(steps, 1))
    if fast_lr:  # one column-outer call per first factor, the final ones fused with the mids in registers
        nm = wr + ur
        out.update(avr_calls=2 + _ceil(H, blk), avr_vsum=D + H + _ceil(H, blk) * nm, avr_cols=D + H,
                   macs_regs=H * nm, avr_unrolled=sum(gset) + nm, macs_regs16=H * nm * (qm.bits == 16))
        out[f"macs_fcol{qm.bits}"] = D * wr + H * ur
    elif fast_fr:  # groups of 5 units over x then h, one per-vector term a step
        groups = sum(_ceil(min(blk, H - b0), AVR_GROUP) for b0 in range(0, H, blk))
        out.update(avr_calls=groups, avr_vsum=D + H, avr_cols=groups * (D + H), avr_unrolled=sum(gset))
        out[f"macs_fcol{qm.bits}"] = (D + H) * H
    else:
        out["avr_unrolled"] = sum({m.factors[1].shape[0] for m in (qm.W, qm.U)
                                   if m.low_rank and qm.bits == 8 and not m.factors[1].sparse
                                   and m.factors[1].shape[0] <= AVR_REG_RANK})
        for mat, runs in ((qm.W, 1), (qm.U, K)):
            for i, fac in enumerate(mat.factors):
                if fac.sparse:
                    continue
                rows_in, rows = fac.shape
                calls = runs * _ceil(rows, blk)
                out["avr_calls"] += calls
                if mat.low_rank and i == 1 and qm.bits == 8 and rows_in <= AVR_REG_RANK:
                    out["macs_regs"] += runs * fac.values.size
                else:
                    out["avr_vsum"] += calls * rows_in
    # the low-rank step's column routine sums its vector's term itself, once per group of classes
    vsums = _ceil(C, AVR_GROUP) if fast_lr and fc_cols else 1
    out["fc_vsum_per_step"] = (not qm.FC.sparse) * vsums * H / max(steps, 1)
    return out


def _uint_bytes(max_value: int) -> int:
    """Bytes of the smallest unsigned C type holding ``max_value`` (as the generated code picks)."""
    return 1 if max_value <= 0xFF else 2 if max_value <= 0xFFFF else 4


def inner_steps(qm: QuantizedModel) -> int:
    """K, the products by U (and unit updates) per time step: an ERNN's inner steps, else 1."""
    return len(qm.eta) if qm.cell == "ERNN" and qm.eta else 1


def features(qm: QuantizedModel, steps: int) -> dict[str, float]:
    """The counts the generated code of ``qm`` depends on, for sequences of ``steps`` steps.

    Per time step the code runs W's products once and U's ``K`` times (:func:`inner_steps`: an
    ERNN's inner steps, 1 otherwise), each product row by row: the rows of a low-rank first
    factor (``rows_first``) end in a rescale to the intermediate, the final rows feed the unit
    updates (``unit_updates`` = H K), each with its nonlinearities (``nl_smooth``: sigmoid and
    tanh, from a table; the others clip), a per-unit shift (``per_unit_units``, the precise
    profile's per-unit form; the fast profile always shifts per unit: ``fast_units``), the gate
    of a FastGRNN and a copy of the new state when U is full. The classifier runs once per
    sequence (``fc_per_step``). Which step runs is ``avr_asm`` (1: a fast-profile model the AVR
    kernel's assembly step covers, ``codegen.context.avr_fast_step``) or ``fast_c`` (1: a
    fast-profile model without it; on AVR the shared C step); both 0 in the precise profile."""
    wbytes = qm.bits // 8
    K = inner_steps(qm)
    f: dict[str, float] = dict.fromkeys(
        ("weight_bytes_dense", "weight_bytes_sparse", "index_bytes", "rows_dense", "rows_sparse",
         "rows_first", "factors_dense", "factors_sparse", "macs_dense8", "macs_dense16",
         "macs_sparse8", "macs_sparse16", "macs_cols_first", "macs_cols_final", "rows_cols_first",
         "fc_cols_per_step", "cols_passes", "macs_cols_final_spilled", "macs_cols_first_looped",
         "cols_final_rank", *_DOT_ROWS, "sparse_nnz_first", "sparse_nnz_other"), 0.0)
    # the fast step of FastGRNN/FastRNN in column-outer form (low-rank first factors and the
    # classifier; final factors of rank <= COLS_MAX_RANK against their mids in locals)
    cols = qm.profile == "fast" and qm.cell != "ERNN"
    for mat, runs in ((qm.W, 1), (qm.U, K)):
        for i, fac in enumerate(mat.factors):
            rows_in, out = fac.shape
            if mat.low_rank and i == 0:
                f["rows_first"] += runs * out
            if fac.sparse:
                nnz = max(fac.nonzeros, 1)
                f["sparse_nnz_first" if mat.low_rank and i == 0 else "sparse_nnz_other"] += runs * fac.nonzeros
                f["weight_bytes_sparse"] += nnz * wbytes
                f["index_bytes"] += nnz * _uint_bytes(rows_in - 1) + (out + 1) * _uint_bytes(nnz)
                f["rows_sparse"] += runs * out
                f["factors_sparse"] += 1
                f[f"macs_sparse{qm.bits}"] += runs * fac.nonzeros
            else:
                f["weight_bytes_dense"] += fac.values.size * wbytes
                f["rows_dense"] += runs * out
                f["factors_dense"] += 1
                f[f"macs_dense{qm.bits}"] += runs * fac.values.size
                # the same factor as rows of dot products (the row-by-row steps: precise, ERNN's)
                _add_dot_rows(f, _DOT_ROWS, rows_in, out, runs)
                if cols and mat.low_rank:  # column-outer first factor, or final one against locals
                    if i == 0:
                        f["macs_cols_first"] += fac.values.size
                        f["rows_cols_first"] += out
                        f["cols_passes"] += rows_in * -(-out // COLS_GROUP)
                        if rows_in > COLS_STRAIGHT:  # a loop over the activations, not straight code
                            f["macs_cols_first_looped"] += fac.values.size
                    elif rows_in <= COLS_MAX_RANK:
                        f["macs_cols_final"] += fac.values.size
                        f["cols_final_rank"] += rows_in  # the unit loop's body: one MAC per mid
                        if rows_in > COLS_GROUP:  # more mids than registers
                            f["macs_cols_final_spilled"] += fac.values.size
    fc = qm.FC  # stored like the others, computed once per sequence
    if fc.sparse:
        nnz = max(fc.nonzeros, 1)
        f["weight_bytes_sparse"] += nnz * wbytes
        f["index_bytes"] += nnz * _uint_bytes(fc.shape[0] - 1) + (fc.shape[1] + 1) * _uint_bytes(nnz)
    else:
        f["weight_bytes_dense"] += fc.values.size * wbytes
        if cols:
            f["fc_cols_per_step"] = fc.values.size / max(steps, 1)
    H, D, C = qm.hidden_dim, qm.input_dim, qm.num_classes
    grnn = 1.0 if qm.cell == "FastGRNN" else 0.0
    fast = 1.0 if qm.profile == "fast" else 0.0
    per_unit = 1.0 if (qm.W.per_unit or qm.U.per_unit) and not fast else 0.0
    nls = [qm.update_nl] + ([qm.gate_nl] if grnn else [])
    smooth = sum(1 for n in nls if n in SMOOTH_NLS)
    asm = 1.0 if fast and avr_fast_step(qm) else 0.0
    ranks = sum(m.factors[0].shape[1] for m in (qm.W, qm.U) if m.low_rank)
    f.update(one=1.0, hidden=H, inputs=D, classes=C, ranks=ranks, grnn=grnn,
             ernn=1.0 if qm.cell == "ERNN" else 0.0, fast=fast, precise=1.0 - fast,
             ernn_units=H * K if qm.cell == "ERNN" else 0.0, ernn_hidden=H if qm.cell == "ERNN" else 0.0,
             macs_sparse=f["macs_sparse8"] + f["macs_sparse16"],
             macs_fast=fast * sum(f[k] for k in ("macs_dense8", "macs_dense16", "macs_sparse8", "macs_sparse16")),
             avr_asm=asm, fast_c=fast - asm, smooth_tables=len({n for n in nls if n in SMOOTH_NLS}),
             bits16=1.0 if qm.bits == 16 else 0.0, grnn_hidden=grnn * H,
             factors=f["factors_dense"] + f["factors_sparse"],
             unit_updates=H * K, fast_units=fast * H * K, per_unit_units=per_unit * H * K,
             nl_smooth=smooth * H * K, copy_units=0.0 if qm.U.low_rank else H * K, **avr_routines(qm, steps),
             fc_per_step=(H * C) / max(steps, 1), per_step=1.0 / max(steps, 1))
    f.update(m0_features(qm, steps))
    return f


#: ARMv6-M's column-outer groups: rows of a straight-code block, and of a looped one (the classifier,
#: first factors of more than COLS_STRAIGHT inputs); the looped blocks take COLS_UNROLL columns a turn.
M0_GROUP, M0_GROUP_LOOPED, COLS_UNROLL = 6, 3, 4


#: Inputs up to which the ARMv6-M compiler writes a dense row's dot product out in full (past it,
#: a loop of four products a turn and a tail).
M0_SHORT_ROW = 8
#: The names :func:`_add_dot_rows` counts into: the row-by-row steps' dot products
#: (:func:`features`), and the ARMv6-M fast step's rows other than a full U's (:func:`m0_features`).
_DOT_ROWS = ("dot_rows_short", "dot_macs_short", "dot_rows_long", "dot_macs_long", "dot_tail_long")
_M0_DOT_ROWS = ("m0_rs_rows", "m0_rs_macs", "m0_rl_rows", "m0_rl_macs", "m0_rl_tail")


def _add_dot_rows(f: dict[str, float], names: tuple[str, str, str, str, str], rows_in: int, rows: int,
                  runs: int = 1) -> None:
    """Add ``runs`` times a dense factor's ``rows`` dot products of ``rows_in`` inputs to ``f`` under
    ``names`` (short rows, their multiply-accumulates; long rows, theirs, their tail): rows of up to
    M0_SHORT_ROW inputs the compiler writes out in full, longer ones a loop of COLS_UNROLL products
    a turn and a tail of the rest."""
    rows_short, macs_short, rows_long, macs_long, tail_long = names
    if rows_in <= M0_SHORT_ROW:
        f[rows_short] += runs * rows
        f[macs_short] += runs * rows_in * rows
    else:
        f[rows_long] += runs * rows
        f[macs_long] += runs * rows_in * rows
        f[tail_long] += runs * rows * (rows_in % COLS_UNROLL)


def straight_ops(values: np.ndarray) -> float:
    """Instructions of ``values`` written out as straight code with each weight an immediate
    (``model_mac``): none for 0, ADDS/SUBS for +-1, a shift more for a power of two, MOVS and
    MULS more for the others, and a literal load more past MOVS's 8 bits."""
    m = np.abs(np.asarray(values, dtype=np.int64))
    pow2 = (m > 1) & ((m & (m - 1)) == 0)
    other = (m > 1) & ~pow2
    return float(np.count_nonzero(m == 1) + 2 * np.count_nonzero(pow2) + 3 * np.count_nonzero(other)
                 + np.count_nonzero(other & (m > 255)))


def m0_features(qm: QuantizedModel, steps: int) -> dict[str, float]:
    """The ARMv6-M fast step's forms for ``qm`` (``templates/library/kernels/_c_step_fast.j2``,
    the column-outer step of FastGRNN/FastRNN; all 0 for another model). Per time step:
    ``m0_first_ops`` / ``m0_final_ops`` the instructions of the multiply-accumulates written out
    as straight code with each weight an immediate (low-rank first factors of up to COLS_STRAIGHT
    inputs; final factors of rank <= COLS_MAX_RANK and at most M0_WRITTEN weights;
    :func:`straight_ops`: they depend on the weights' values), ``m0_first_pass`` the straight
    passes over the activations (one per input and group of M0_GROUP rows), ``m0_first_rows`` the
    mids; ``m0_first_l8``, ``m0_first_l16`` (by weight width) the multiply-accumulates of first
    factors read in a loop (``m0_first_iters`` its turns of COLS_UNROLL columns), ``m0_final_l8``,
    ``m0_final_l16`` those of final factors summed in a loop over the units against the mids
    (``m0_final_rows`` its rows), ``m0_rows`` the rows other dense factors sum by a dot product: a
    full U's inside the unit loop (``m0_u_rows``, ``m0_u_macs``, ``m0_u_tail``), the others' split
    as the row-by-row steps' (:func:`_add_dot_rows`) into rows of up to M0_SHORT_ROW inputs,
    ``m0_rs_rows``/``m0_rs_macs``, and longer ones, ``m0_rl_rows``/``m0_rl_macs``/``m0_rl_tail``;
    sparse factors by role (``m0_snnz_first``, ``_final``, ``_full``: non-zeros, ``m0_srows_*``:
    rows; ``m0_snnz16`` the int16 ones); ``m0f_units`` the units whose sum U's written-out pass
    shifts, saturates and adds the biases to, ``m0a_units``
    those updated in Thumb-1 assembly, ``m0c_units`` the others (``m0c_grnn``: of a FastGRNN,
    ``m0c_smooth``: their table nonlinearities), ``m0_copy`` the state copies of a full U, and
    the classifier per step (``m0_fc_blocks_ps``, ``m0_fc_iters_ps``; sparse: ``m0_fc_snnz_ps``,
    ``m0_fc_srows_ps``). For flash: ``m0_code_w`` the written-out products, ``m0_code_l`` those
    in a loop body (the classifier's included), ``m0_written_bytes`` the weights of the
    written-out factors, ``m0_fsums`` the written-out final rows (one store each) and
    ``m0_fc_blocks`` the classifier's blocks."""
    keys = ("m0_first_iters", "m0_final_rows", "m0_rows", "m0f_units", "m0a_units", "m0c_units", "m0_code_w",
            "m0_code_l", "m0_written_bytes", "m0_fsums", "m0_fc_blocks", "m0_first_ops", "m0_final_ops",
            "m0_first_pass", "m0_first_rows", "m0_first_l8", "m0_first_l16", "m0_final_l8", "m0_final_l16",
            *_M0_DOT_ROWS, "m0_snnz_first",
            "m0_snnz_final", "m0_snnz_full", "m0_srows_first", "m0_srows_final", "m0_srows_full",
            "m0_snnz16", "m0c_grnn", "m0c_smooth", "m0_copy", "m0_per_step", "m0_fc_blocks_ps",
            "m0_fc_iters_ps", "m0_fc_snnz_ps", "m0_fc_srows_ps", "m0_u_rows", "m0_u_macs", "m0_u_tail")
    f = dict.fromkeys(keys, 0.0)
    if qm.profile != "fast" or qm.cell == "ERNN":
        return f
    H = qm.hidden_dim
    wbytes = qm.bits // 8
    for mat in (qm.W, qm.U):
        for i, fac in enumerate(mat.factors):
            n, out = fac.shape
            role = "first" if mat.low_rank and i == 0 else "final" if mat.low_rank else "full"
            if fac.sparse:
                f[f"m0_snnz_{role}"] += fac.nonzeros
                f[f"m0_srows_{role}"] += out
                f["m0_snnz16"] += fac.nonzeros * (qm.bits == 16)
                continue
            if role == "first":
                f["m0_first_rows"] += out
                if n <= COLS_STRAIGHT:
                    f["m0_code_w"] += n * out
                    f["m0_first_ops"] += straight_ops(fac.values)
                    f["m0_first_pass"] += n * _ceil(out, M0_GROUP)
                else:
                    blocks = _ceil(out, M0_GROUP_LOOPED)
                    f[f"m0_first_l{qm.bits}"] += n * out
                    f["m0_first_iters"] += blocks * (n // COLS_UNROLL)
                    f["m0_code_l"] += out * (COLS_UNROLL + n % COLS_UNROLL)
            elif role == "final" and n <= COLS_MAX_RANK:
                if H * n <= M0_WRITTEN:
                    f["m0_code_w"] += H * n
                    f["m0_final_ops"] += straight_ops(fac.values)
                    f["m0_written_bytes"] += H * n * wbytes
                    f["m0_fsums"] += H
                else:
                    f[f"m0_final_l{qm.bits}"] += H * n
                    f["m0_final_rows"] += H
                    f["m0_code_l"] += n
            else:
                f["m0_rows"] += out
                if mat is qm.U:  # summed inside the unit loop
                    f["m0_u_rows"] += out
                    f["m0_u_macs"] += n * out
                    f["m0_u_tail"] += out * (n % COLS_UNROLL)
                else:
                    _add_dot_rows(f, _M0_DOT_ROWS, n, out)
    U = qm.U
    m0f = U.low_rank and not U.factors[1].sparse and U.factors[1].shape[0] <= COLS_MAX_RANK \
        and H * U.factors[1].shape[0] <= M0_WRITTEN
    from edgecompile.sim.fast import coef_table

    grnn = qm.cell == "FastGRNN"
    m0a = (m0f and grnn and qm.gate_nl == "sigmoid" and qm.update_nl == "tanh"
           and -31 <= qm.residual_shift <= 31 and 1 <= qm.gate_frac <= 30 and coef_table(qm) is not None)
    nls = [qm.update_nl] + ([qm.gate_nl] if grnn else [])
    f["m0f_units"] = H * float(m0f)
    f["m0a_units"] = H * float(m0a)
    f["m0c_units"] = H * float(not m0a)
    f["m0c_grnn"] = f["m0c_units"] * grnn
    f["m0c_smooth"] = f["m0c_units"] * sum(1 for n in nls if n in SMOOTH_NLS)
    f["m0_copy"] = 0.0 if U.low_rank else float(H)
    per_step = 1.0 / max(steps, 1)
    f["m0_per_step"] = per_step
    C = qm.FC.shape[1]
    if qm.FC.sparse:
        f["m0_fc_snnz_ps"] = qm.FC.nonzeros * per_step
        f["m0_fc_srows_ps"] = C * per_step
    else:
        f["m0_fc_blocks"] = _ceil(C, M0_GROUP_LOOPED)
        f["m0_code_l"] += C * (COLS_UNROLL + H % COLS_UNROLL)
        f["m0_fc_blocks_ps"] = f["m0_fc_blocks"] * per_step
        f["m0_fc_iters_ps"] = f["m0_fc_blocks"] * (H // COLS_UNROLL) * per_step
    return f


@dataclass(frozen=True)
class Cost:
    flash_bytes: int
    ram_bytes: int
    cycles_per_step: float


#: Bytes of the firmware's frame header, step-request fields, reply fields, info body and CRC
#: (``firmware/harness/ech_proto.h``): the serial frame buffer is the largest message.
_HEADER, _STEP_REQ, _REPLY, _INFO, _CRC = 3, 4, 6, 88, 2


def frame_bytes(feats: Mapping[str, float], frame_steps: int) -> float:
    """The harness's frame buffer for a board whose firmware takes ``frame_steps`` steps a frame."""
    request = _HEADER + _STEP_REQ + 2 * feats["inputs"] * frame_steps
    reply = _HEADER + _REPLY + 2 * feats["hidden"] + 4 * feats["classes"]
    return max(request, reply, _HEADER + _INFO) + _CRC


@dataclass(frozen=True)
class BoardCostModel:
    board: str
    coefficients: Mapping[str, Mapping[str, float]]  # target -> term -> coefficient
    errors: Mapping[str, float]  # target -> worst relative error on held-out builds
    frame_steps: int = 1  # steps per serial frame of the board's firmware (fitted)

    def terms(self, feats: Mapping[str, float]) -> dict[str, float]:
        """``feats`` and the derived terms: the frame buffer, rows at 16 bits, and the split terms
        ``PREFIX:NAME`` (:data:`SPLITS`: NAME in one regime only; a board whose code differs by
        regime has both). A feature ``feats`` leaves out is 0 (the shipped samples keep only the
        others)."""
        out = {**dict.fromkeys(STORED_FEATURES, 0.0), **feats}
        out.update(frame_bytes=frame_bytes(out, self.frame_steps),
                   rows16=(out["rows_dense"] + out["rows_sparse"]) * out["bits16"])
        out.update({term: out[ind] * out[name] for term, ind, name in _SPLIT_TERMS})
        return out

    def predict(self, feats: Mapping[str, float]) -> Cost:
        full = self.terms(feats)

        def one(target: str) -> float:
            return float(sum(c * full[t] for t, c in self.coefficients[target].items()))

        return Cost(int(round(one("flash"))), int(round(one("ram"))), round(one("cycles"), 1))


def load(path: Path | None = None) -> dict[str, BoardCostModel]:
    """The fitted cost models by board id."""
    data = json.loads((path or COSTMODEL_PATH).read_text())
    return {b: BoardCostModel(b, rec["coefficients"], rec.get("held_out_worst_error", {}),
                              int(rec.get("frame_steps", 1)))
            for b, rec in data["boards"].items()}


def for_board(board: str, path: Path | None = None) -> BoardCostModel:
    """The cost model of ``board``; a :class:`BoardError` naming the boards that have one."""
    models = load(path)
    if board not in models:
        raise BoardError(f"no fitted cost model for board '{board}'; boards with one: "
                         f"{', '.join(sorted(models))} (benchmarks/fit_costmodel.py measures more)")
    return models[board]


def fit_linear(rows: Sequence[Mapping[str, float]], measured: Sequence[float],
               terms: Sequence[str], ridge: float = 1e-6, nonnegative: bool = False) -> dict[str, float]:
    """Least-squares coefficients of ``measured ~ sum(c_t * row[t])``, each row weighted by
    ``1 / measured`` so that the relative errors are what is minimised (a tiny ridge keeps
    terms that never vary in the sample at zero). ``nonnegative``: every term is a cost, so a
    term whose coefficient comes out negative (one that stands in for others it correlates
    with) is dropped, the most negative first, and the rest fitted again."""
    b0 = np.asarray(measured, dtype=float)
    w = 1.0 / np.maximum(np.abs(b0), 1e-12)
    b = b0 * w
    kept = list(terms)
    while True:
        A = np.array([[float(r[t]) for t in kept] for r in rows]) * w[:, None]
        scale = np.maximum(np.abs(A).max(axis=0), 1e-12)
        As = A / scale
        coef = np.linalg.solve(As.T @ As + ridge * np.eye(len(kept)), As.T @ b) / scale
        if not nonnegative or coef.min() >= 0.0:
            break
        kept.pop(int(np.argmin(coef)))
    fitted = dict(zip(kept, (float(c) for c in coef), strict=True))
    return {t: fitted.get(t, 0.0) for t in terms}


def relative_errors(model: BoardCostModel, rows: Sequence[Mapping[str, float]],
                    measured: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """|predicted - measured| / measured per target, for each row."""
    out: dict[str, list[float]] = {t: [] for t in TARGETS}
    for r, m in zip(rows, measured, strict=True):
        p = model.predict(r)
        for t, v in (("flash", p.flash_bytes), ("ram", p.ram_bytes), ("cycles", p.cycles_per_step)):
            out[t].append(abs(v - m[t]) / m[t])
    return out


def to_json(models: Mapping[str, Any]) -> str:
    return json.dumps(models, indent=2, sort_keys=True) + "\n"
