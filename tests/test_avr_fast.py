"""The fast profile's AVR step (templates/library/kernels/_avr_step_fast.j2) in simavr.

The per-unit routine ``_funits`` is driven with its own vectors (summed products at and around
every per-unit shift's saturation, hidden states at the extremes) for every gate and update
nonlinearity, FastGRNN and FastRNN, every residual shift the formats give; the expected values
come from the fast profile's NumPy primitives (``edgecompile.sim.fast``, ``residual_update``),
never from the C. Whole fast models (int8 / int16, low rank and full rank, equal and unequal
per-unit shifts) then run in one atmega2560 image, bit-exact with ``sim.simulate`` in every hidden
state and logit.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any

import numpy as np
import pytest

from edgecompile.codegen import render_library
from edgecompile.ir.fixedpoint import sat16
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.quant.bounds import OverflowBound
from edgecompile.quant.quantizer import quantize
from edgecompile.sim.fast import floor_shift, unit_update

from .helpers.models import make_inputs, make_model
from .helpers.per_unit import per_unit_qmodel
from .test_avr_matrix import build_image, flash_constants_end, mismatches, need, run_image, saturating_inputs
from .test_avr_routines import MCU, Lib, _arr, build_and_run

NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu")
GATES = NLS


def fast_q(bits: int, **kw: Any) -> QuantizedModel:
    fm = make_model(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(fm, bits, make_inputs(fm, n=16, T=6), profile="fast")


def unit_spec(qm: QuantizedModel, acc: np.ndarray, h: np.ndarray, shifts: np.ndarray, bu: np.ndarray,
              bg: np.ndarray) -> np.ndarray:
    """The fast profile's per-unit update of ``acc = accW + accU`` and ``h`` ([N, units]) with the
    units' shifts and biases, per the spec (docs/fixed-point.md, "The fast profile")."""
    return unit_update(qm, sat16(floor_shift(acc, shifts)), h, bu, bg if qm.cell == "FastGRNN" else None)


#: The units of one vector row: every per-unit shift -31..31 once.
SHIFTS = np.arange(-31, 32, dtype=np.int64)


def unit_vectors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows of summed products and states over the units of SHIFTS: values at the int32
    extremes each shift allows (the quantizer's bound), next to the int16 saturation of pre after
    the shift, small ones, and h at +-max."""
    s = SHIFTS
    top = np.where(s > 0, (1 << 31) - 1, ((1 << 31) - 1) >> np.maximum(-s, 0))
    sat = np.where(s > 0, 32768 << np.maximum(s, 0), 32768 >> np.minimum(np.maximum(-s, 0), 15))
    acc = np.empty((n, s.size), dtype=np.int64)
    for k in range(n):
        kind = k % 4
        if kind == 0:
            acc[k] = rng.integers(-top, top + 1)
        elif kind == 1:
            step = np.maximum(1, np.where(s > 0, 1 << np.maximum(s, 0), 1))
            acc[k] = rng.choice([-1, 1], s.size) * sat + rng.integers(-3, 4, s.size) * step
        elif kind == 2:
            acc[k] = rng.integers(-40000, 40000, s.size) * np.where(s > 0, 1 << np.maximum(s, 0), 1)
        else:
            acc[k] = rng.integers(-sat, sat + 1)
        acc[k] = np.clip(acc[k], -top - (s <= 0), top)
    h = rng.integers(-32768, 32768, (n, s.size))
    h[0], h[1] = 32767, -32768
    return acc, h


def add_funits(lib: Lib, rng: np.random.Generator, n: int = 4) -> None:
    """Rows of 63 units (shifts -31..31) with random biases (and the extremes) through the routine."""
    qm = lib.qm
    H = SHIFTS.size
    acc, h = unit_vectors(rng, n)
    bu = rng.integers(-32768, 32768, H)
    bg = rng.integers(-32768, 32768, H)
    bu[:4], bg[:4] = [-32768, 32767, 0, -1], [32767, -32768, -1, 0]
    rec = [[int(s) % 256, int(u) % 256, (int(u) >> 8) % 256] + ([int(g) % 256, (int(g) >> 8) % 256]
                                                                 if qm.cell == "FastGRNN" else [])
           for s, u, g in zip(SHIFTS, bu, bg, strict=True)]
    want = unit_spec(qm, acc, h, SHIFTS, bu, bg)
    k_ = len(lib.want)
    lib.data += [_arr("uint32_t", f"acc{k_}", acc % (1 << 32)), _arr("int16_t", f"h{k_}", h),
                 _arr("uint8_t", f"rec{k_}", np.ravel(rec))]
    lib.case(
        f"    {{ extern uint32_t fu_b[{H}]; extern int16_t fu_ho[{H}];"
        f" uint32_t *b = fu_b; int16_t *ho = fu_ho; uint16_t r;\n"
        f"      for (r = 0; r < {n}u; ++r) {{\n"
        f"        for (i = 0; i < {H}u; ++i) {{ b[i] = pgm_read_dword(&acc{k_}[r * {H}u + i]);"
        f" ho[i] = (int16_t)pgm_read_word(&h{k_}[r * {H}u + i]); }}\n"
        # the routine may update h in place (hout = hin): the step calls it so
        f"        {lib.name}_funits(b, ho, ho, rec{k_}, {H}u);\n"
        f"        for (i = 0; i < {H}u; ++i) {{ tv_hex((uint32_t)(int32_t)ho[i]); }}\n"
        f"      }} }}\n",
        [int(v) for v in want.ravel()])


def routine_libs() -> list[Lib]:
    """Every (gate, update) pair of FastGRNN and every update of FastRNN, int8 and int16, at
    hidden formats 9..14 (per-unit models drawn directly) and the quantizer's own."""
    rng = np.random.default_rng(77)
    libs: list[Lib] = []
    cells = [("FastGRNN", g, u) for g in GATES for u in NLS] + [("FastRNN", "sigmoid", u) for u in NLS]
    for k, (cell, gate, update) in enumerate(cells):
        for seed in range(600 + 50 * k, 650 + 50 * k):  # the first draw within the residual update's bound
            try:
                qm = per_unit_qmodel(seed=seed, bits=8 if k % 2 else 16, D=3, H=5, cell=cell, gate_nl=gate,
                                     update_nl=update, shifts=(-9, 9))
                break
            except OverflowBound:
                continue
        qm = dataclasses.replace(qm, profile="fast")
        lib = Lib(f"u{k}", qm)
        add_funits(lib, rng)
        libs.append(lib)
    for k, (cell, gate, update) in enumerate(cells[::3]):
        kw: dict[str, Any] = dict(D=3, H=6, C=2, cell=cell, update_nl=update, seed=700 + k)
        if cell == "FastGRNN":
            kw["gate_nl"] = gate
        lib = Lib(f"q{k}", fast_q(8 + 8 * (k % 2), **kw))
        add_funits(lib, rng, 4)
        libs.append(lib)
    # one shift for every unit of the model: the routine's unrolled shift is that one (every residue
    # mod 8 and byte count, both signs, 0), the vectors' other shifts take the general path
    pairs = [("sigmoid", "tanh"), ("tanh", "sigmoid"), ("quantSigm", "tanh")]
    for k, sh in enumerate(UNROLLED):
        gate, update = pairs[k % len(pairs)]
        for seed in range(3000 + 50 * k, 3050 + 50 * k):
            try:
                qm = per_unit_qmodel(seed=seed, bits=8 if k % 2 else 16, D=3, H=5, gate_nl=gate, update_nl=update,
                                     shifts=(sh, sh))
                break
            except OverflowBound:
                continue
        lib = Lib(f"s{k}", dataclasses.replace(qm, profile="fast"))
        add_funits(lib, rng, 2)
        libs.append(lib)
    return libs


#: The shifts the per-unit routine is built around (one model each; the drawn models reach down to -13).
UNROLLED = [0, *range(-13, 32, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("part", [0, *(pytest.param(k, marks=pytest.mark.slowest) for k in (1, 2))])
def test_funits_vectors_in_simavr(part, tmp_path):
    """The per-unit routine in assembly, every nonlinearity pair, bit-exact with the spec (every
    third library in each part: ``make test`` runs one, ``make test-all`` all three)."""
    need("avr-gcc")
    need("simavr")
    libs = routine_libs()[part::3]
    for lib in libs:
        src = render_library(lib.qm, lib.name, backend="avr")[f"src/{lib.name}.c"].decode()
        assert f"{lib.name}_funits(" in src
        if lib.name.startswith("s"):
            assert f"s = {UNROLLED[int(lib.name[1:])]} here" in src, lib.name
    got: dict[tuple[str, int], list[int]] = {}
    for i in range(0, len(libs), 16):  # 16 libraries an image: their tables and vectors stay below 64 KB
        libs[i].data.append(f"uint32_t fu_b[{SHIFTS.size}]; int16_t fu_ho[{SHIFTS.size}];")
        got.update(build_and_run(libs[i:i + 16], tmp_path / f"img{i}"))
    bad = []
    for lib in libs:
        for k, want in enumerate(lib.want):
            dev = got.get((lib.name, k))
            if dev != want:
                first = next((i for i in range(len(want)) if dev is None or i >= len(dev) or dev[i] != want[i]), None)
                bad.append(f"{lib.name} ({lib.qm.cell} {lib.qm.gate_nl} {lib.qm.update_nl} rs {lib.qm.residual_shift})"
                           f" case {k}: first difference at {first}")
    assert len(libs) > 20
    assert not bad, f"{len(bad)} of {len(libs)} differ:\n" + "\n".join(bad[:30])


def add_sums(lib: Lib, rng: np.random.Generator) -> None:
    """The low-rank step's sums: ``_fcol<r>`` over x (W1) and h (U1) at the extremes (the exact
    sum of W1[:, q] * a plus rshift's rounding term 2^(s-1) mod 2^32, its own per-vector term
    summed in the routine), then ``_f2rows`` from W1's and U1's sums (around the mids' saturation
    and at the int32 ends): row j less v (left in ``_fv``, the per-unit routine takes it) is the
    exact sum of W2[j] * mid_W + U2[j] * mid_U mod 2^32, the mids sat16(floor_shift(sum, k))."""
    qm = lib.qm
    H, k_ = qm.hidden_dim, len(lib.want)
    for mat, frac in ((qm.W, qm.in_frac), (qm.U, qm.hid_frac)):
        f1 = np.asarray(mat.factors[0].values, dtype=np.int64)  # [n, r]
        n, r = f1.shape
        sh = mat.mid_shift(frac)
        sym = "W1" if mat is qm.W else "U1"
        for kind in range(3):
            a = rng.integers(-32768, 32768, n)
            if kind < 2:  # every activation at one end, then a mix of both ends
                a[:] = -32768 if kind == 0 else rng.choice([-32768, 32767], n)
            want = (a @ f1 + ((1 << (sh - 1)) if sh > 0 else 0)) % (1 << 32)
            lib.data.append(_arr("int16_t", f"ca{k_}", a))
            lib.case(f"    {{ static uint32_t co[{r}];\n"
                     f"    for (i = 0; i < {n}u; ++i) {{ a[i] = (int16_t)pgm_read_word(&ca{k_}[i]); }}\n"
                     f"    {lib.name}_fcol{r}({lib.name}_{sym}t, a, {n}u, co);\n"
                     f"    for (i = 0; i < {r}u; ++i) {{ tv_hex(co[i]); }} }}\n",
                     [int(v) for v in want])
            k_ += 1
    rw, ru = qm.W.factors[0].values.shape[1], qm.U.factors[0].values.shape[1]
    shifts = [qm.W.mid_shift(qm.in_frac)] * rw + [qm.U.mid_shift(qm.hid_frac)] * ru
    w2 = np.concatenate([np.asarray(qm.W.factors[1].values), np.asarray(qm.U.factors[1].values)])  # [nm, H]
    nm = len(shifts)
    for _ in range(3):
        sums = np.empty(nm, dtype=np.int64)
        for i, sh in enumerate(shifts):
            top = (1 << 31) - 1 if sh > 0 else ((1 << 31) - 1) >> -sh
            edge = min(top, 32768 << sh if sh > 0 else 32768 >> -sh)
            kind = int(rng.integers(0, 3))
            sums[i] = (rng.integers(-top, top + 1) if kind == 0 else
                       rng.choice([-1, 1]) * edge + int(rng.integers(-3, 4)) * (1 << max(sh, 0)) if kind == 1
                       else rng.integers(-edge, edge + 1))
            sums[i] = min(max(int(sums[i]), -top), top)
        mids = sat16(floor_shift(sums, np.asarray(shifts)))
        want = (mids @ w2) % (1 << 32)
        lib.data.append(_arr("uint32_t", f"fs{k_}", sums % (1 << 32)))
        row = 4 + nm * qm.bits // 8  # bytes a row of the W2 / U2 table
        calls = "".join(f"    {lib.name}_f2rows(&{lib.name}_f2[{j0 * row}u], fs, {min(32, H - j0)}u, &fo[{j0}]);\n"
                        for j0 in range(0, H, 32))
        lib.case(f"    {{ static uint32_t fs[{nm}], fo[{H}];\n"
                 f"    for (i = 0; i < {nm}u; ++i) {{ fs[i] = pgm_read_dword(&fs{k_}[i]); }}\n{calls}"
                 f"    for (i = 0; i < {H}u; ++i) {{ tv_hex(fo[i] - {lib.name}_fv); }} }}\n",
                 [int(v) for v in want])
        k_ += 1


@pytest.mark.slow
def test_lowrank_sums_in_simavr(tmp_path):
    """The low-rank step's assembly sums (``_fcol<r>``, ``_f2rows`` with the mids), ranks 1..5 of W
    and U, int8 and int16, one row block and two, bit-exact with the spec."""
    need("avr-gcc")
    need("simavr")
    rng = np.random.default_rng(55)
    libs = []
    for k in range(10):
        kw: dict[str, Any] = dict(wrank=1 + k % 5, urank=1 + (k * 3) % 5, H=[8, 32, 40, 13, 5][k % 5], D=4,
                                  shifts=(-4, 12))
        for seed in range(5000 + 50 * k, 5050 + 50 * k):
            try:
                qm = per_unit_qmodel(seed=seed, bits=8 if k % 2 else 16, **kw)
                break
            except OverflowBound:
                continue
        lib = Lib(f"w{k}", dataclasses.replace(qm, profile="fast"))
        assert f"{lib.name}_f2rows(" in render_library(lib.qm, lib.name, backend="avr")[f"src/{lib.name}.c"].decode()
        add_sums(lib, rng)
        libs.append(lib)
    got = build_and_run(libs, tmp_path)
    bad = [f"{lib.name} case {k}" for lib in libs for k, want in enumerate(lib.want) if got.get((lib.name, k)) != want]
    assert sum(len(lib.want) for lib in libs) >= 60
    assert not bad, f"{len(bad)} differ: {bad[:20]}"


def fast_models() -> list[tuple[str, QuantizedModel]]:
    """Fast FastGRNN / FastRNN models the AVR step takes: every gate (a relu gate included) and
    every update, int8 / int16, dense (one and two row blocks, in place and not), low rank (ranks
    1..8), sparse, and per-unit models drawn with shifts from -9 to 24."""
    out: list[tuple[str, QuantizedModel]] = []
    shapes = [dict(D=5, H=8, C=3), dict(D=5, H=8, C=3, wrank=3, urank=4), dict(D=6, H=40, C=3, wrank=2, urank=8),
              dict(D=4, H=37, C=2), dict(D=7, H=12, C=4, wrank=1, urank=5)]
    pairs = [(g, u) for g in GATES for u in NLS]
    for k, (gate, update) in enumerate(pairs[::2] + [("sigmoid", "tanh"), ("tanh", "sigmoid")]):
        out.append((f"g{k}", fast_q(8 if k % 2 else 16, cell="FastGRNN", gate_nl=gate, update_nl=update, seed=900 + k,
                                    **shapes[k % len(shapes)])))
    for k, update in enumerate(NLS):
        out.append((f"r{k}", fast_q(16 if k % 2 else 8, cell="FastRNN", update_nl=update, seed=950 + k,
                                    **shapes[(k + 2) % len(shapes)])))
    # low rank in two row blocks (H 40) with the logits through the column routine (C 5, 10)
    out.append(("l0", fast_q(8, cell="FastGRNN", D=6, H=40, C=5, wrank=5, urank=2, seed=990)))
    out.append(("l1", fast_q(16, cell="FastGRNN", D=6, H=40, C=10, wrank=3, urank=5, seed=991)))
    out.append(("l2", fast_q(8, cell="FastGRNN", D=16, H=32, C=10, wrank=5, urank=5, seed=992)))
    # sparse factors (their sums in C, the per-unit updates in the assembly): dense and low rank, every
    # factor sparse or some, int8 and int16, FastRNN, a relu gate
    out.append(("s0", fast_q(8, cell="FastGRNN", D=12, H=16, C=2, sparsity=0.8, seed=1010)))
    out.append(("s1", fast_q(16, cell="FastGRNN", D=12, H=16, C=3, wrank=3, urank=4, sparsity=0.7, seed=1011)))
    out.append(("s2", fast_q(8, cell="FastRNN", update_nl="tanh", D=9, H=40, C=4, sparsity=0.6, seed=1012)))
    out.append(("s3", fast_q(8, cell="FastGRNN", gate_nl="relu", update_nl="tanh", D=10, H=24, C=5, wrank=4,
                             sparsity=0.75, seed=1013)))
    # low rank drawn per unit: the mids' shifts of W1 and U1 over a wide range (both signs)
    lowrank = [(8 + 8 * (k % 2), dict(wrank=1 + k % 5, urank=5 - k % 5, shifts=(-4, 12))) for k in range(8)]
    for k, (bits, kw) in enumerate([(8, dict(shifts=(-9, 24))), (16, dict(wrank=3, urank=6, shifts=(-3, 16))),
                                    (8, dict(cell="FastRNN", update_nl="quantTanh", shifts=(0, 20))), *lowrank]):
        for seed in range(40 + 50 * k, 90 + 50 * k):
            try:
                qm = per_unit_qmodel(seed=seed, bits=bits, **kw)  # type: ignore[arg-type]
                break
            except OverflowBound:
                continue
        out.append((f"p{k}", dataclasses.replace(qm, profile="fast")))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("part", [0, *(pytest.param(k, marks=pytest.mark.slowest) for k in (1, 2))])
def test_fast_models_in_simavr(part, tmp_path):
    """Whole fast-profile models through the AVR step, a dozen an image, bit-exact with the
    simulator in every hidden state and logit (every third model in each part; the shifts the
    models reach are checked over all of them)."""
    need("avr-gcc")
    need("simavr")
    every = fast_models()
    models = every[part::3]
    mid_shifts: set[int] = set()
    for name, qm in every:
        src = render_library(qm, name, backend="avr")[f"src/{name}.c"].decode()
        assert f"{name}_funits(" in src, name
        mid_shifts |= {int(k) for k in re.findall(r"the mids of [WU]: sat16\(sum >> (-?\d+)\)", src)}
    # the low-rank step's mids: right shifts by bits (<= 5) and by 6, 7 bits (left over 40 bits), whole
    # bytes and more (the negative ones share the per-unit routine's shift code, its vectors above)
    assert len(mid_shifts) >= 8 and max(mid_shifts) >= 8, sorted(mid_shifts)
    assert {k % 8 >= 6 for k in mid_shifts} == {True, False}, sorted(mid_shifts)
    inputs = {name: saturating_inputs(qm.input_dim, seed=k % 4) for k, (name, qm) in enumerate(models)}
    bad: list[str] = []
    for i in range(0, len(models), 12):  # the constants of an image stay below 64 KB (LPM)
        part = models[i:i + 12]
        elf = build_image(tmp_path / f"img{i}", part, inputs, [], mcu=MCU)
        assert flash_constants_end(elf) <= 0x10000
        got = run_image(elf, MCU)
        assert len(got) == 6 * len(part)
        bad += mismatches(part, inputs, got)
    assert not bad, f"{len(bad)} sequences differ:\n" + "\n".join(bad[:20])


def test_avr_step_choice():
    """The AVR kernel takes its own fast step for every FastGRNN / FastRNN (every gate, a relu gate
    included; sparse factors' sums in C) and ERNN (the row routines, its inner updates in C), never
    the fast profile's shared C step; the precise profile keeps its own step."""
    from .test_ernn_fixed import ernn_q

    dense = fast_q(8, D=4, H=6, C=2, seed=3)
    relu = fast_q(8, D=4, H=6, C=2, seed=3, gate_nl="relu")
    sparse = fast_q(8, D=12, H=16, C=2, seed=4, sparsity=0.8)
    assert any(f.sparse for f in sparse.W.factors + sparse.U.factors)
    src = {k: render_library(qm, "m", backend="avr")["src/m.c"].decode()
           for k, qm in (("dense", dense), ("relu", relu), ("sparse", sparse), ("ernn", ernn_q(8, seed=1)))}
    assert all("m_funits(" in src[k] for k in ("dense", "relu", "sparse"))
    assert "m_estep_o(" in src["ernn"] and "m_orows(" in src["ernn"]
    assert all("Fast kernel (AVR)" in v for v in src.values())  # not the shared C step
    precise = dataclasses.replace(dense, profile="precise")
    assert "m_funits(" not in render_library(precise, "m", backend="avr")["src/m.c"].decode()
