"""The column-outer fast-profile step of the Cortex-M kernels (portable C on ARMv6-M/ARMv7-M and
native, SMLAD on ARMv7E-M): bit-exact with the simulator over ranks 1..20 (one or several row
groups, mids in locals or, above rank 16, through the row functions), dense and sparse, int8 and
int16, full rank, rows short enough for straight code and long enough for the loop, per-unit
shifts all positive, all non-positive or mixed. The same libraries also build clean for the
three Cortex-M cores with arm-none-eabi-gcc."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecompile.codegen.render import render_library
from edgecompile.quant.bounds import check_bounds
from edgecompile.sim.simulator import simulate

from .cbuild import PLAIN, STRICT, write_tree
from .helpers.codegen import assert_bit_exact, int_inputs
from .helpers.per_unit import first_per_unit_qmodel, per_unit_qmodel

NLS = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu")
BACKENDS = ("armv7em", "armv7m", "armv6m", "native")
SHIFTS = ((1, 16), (-3, 0), (-3, 16))


@st.composite
def fast_models(draw: st.DrawFn):
    bits = draw(st.sampled_from([8, 16]))
    low = draw(st.booleans())
    rank = st.integers(1, 20) if draw(st.booleans()) else st.integers(1, 8)
    kw = dict(bits=bits, D=draw(st.integers(1, 40)), H=draw(st.integers(1, 40)), C=draw(st.integers(1, 12)),
              wrank=draw(rank) if low else None, urank=draw(rank) if low or draw(st.booleans()) else None,
              sparse=draw(st.booleans()) and draw(st.booleans()), shifts=draw(st.sampled_from(SHIFTS)),
              gate_nl=draw(st.sampled_from(NLS)), update_nl=draw(st.sampled_from(NLS)),
              cell=draw(st.sampled_from(["FastGRNN", "FastGRNN", "FastRNN"])))
    qm = first_per_unit_qmodel(draw(st.integers(0, 2**31 - 1)), **kw)
    if qm is None:
        pytest.skip("no draw within the bounds")
    qm = dataclasses.replace(qm, profile="fast")
    check_bounds(qm)
    return qm


@pytest.mark.slowest
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qm=fast_models(), seed=st.integers(0, 2**31 - 1))
def test_cols_step_bit_exact_on_every_cortex_backend(qm, seed):
    x = int_inputs(np.random.default_rng(seed), 3, 5, qm.input_dim)
    for backend in BACKENDS:
        assert_bit_exact(qm, x, PLAIN, backend)


@pytest.mark.parametrize("bits", [8, 16])
def test_cols_step_builds_strict_for_cortex_m(tmp_path, bits):
    """-Wall -Wextra -Werror -pedantic with arm-none-eabi-gcc for M0, M3 and M4, for a model with
    straight and looped rows, two row groups and a mid above rank 16 (the row-function path)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    qm = dataclasses.replace(per_unit_qmodel(5, bits=bits, D=40, H=24, C=9, wrank=7, urank=17), profile="fast")
    for backend, cpu in (("armv6m", "cortex-m0"), ("armv7m", "cortex-m3"), ("armv7em", "cortex-m4")):
        root = write_tree(render_library(qm, "m", backend=backend), tmp_path / backend)
        proc = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-Os", *STRICT, "-c",
                               str(root / "src" / "m.c"), "-o", str(root / "m.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert_bit_exact(qm, int_inputs(np.random.default_rng(bits), 3, 4, qm.input_dim), PLAIN, backend)


@pytest.mark.parametrize("bits", [8, 16])
def test_armv6m_assembly_builds_at_every_level(tmp_path, bits):
    """The ARMv6-M step of the benchmark cell's shape (written-out passes, the units in Thumb-1
    assembly with fixed registers) builds clean at -O0 (with the frame pointer in r7) to -O3 with
    arm-none-eabi-gcc, and with Clang for thumbv6m when it is installed."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    qm = dataclasses.replace(per_unit_qmodel(0, bits=bits, D=16, H=32, C=10, wrank=5, urank=5), profile="fast")
    root = write_tree(render_library(qm, "m", backend="armv6m"), tmp_path)
    src = root / "src" / "m.c"
    assert "m_units_t1(sum" in src.read_text()
    cmds = [["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", *opt] for opt in
            (["-O0", "-fno-omit-frame-pointer"], ["-O1"], ["-Os"], ["-O3"])]
    if shutil.which("clang") is not None:
        cmds.append(["clang", "--target=thumbv6m-none-eabi", "-mcpu=cortex-m0", "-ffreestanding", "-Os"])
    for cmd in cmds:
        proc = subprocess.run([*cmd, *STRICT, "-c", str(src), "-o", str(tmp_path / "m.o")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, (cmd, proc.stderr)


# --- on the devices: the written-out passes and the Thumb-1 units run only there ----------------

def _extreme_weights(qm, seed: int):
    """qm with its final factors' weights moved to the values the ARMv6-M immediates treat apart
    (0, +-1, powers of two, the int8/int16 ends), unit by unit as far as the per-unit bound holds."""
    rng = np.random.default_rng(seed)
    lim = 1 << (qm.bits - 1)
    sets = (np.array([0, 1, -1, 64, -64, lim - 1, -lim]), np.array([0, 1, -1, 2, -2, 4, -8]))
    moved = 0
    for j in range(qm.hidden_dim):
        for special in sets:
            mats = []
            for mat in (qm.W, qm.U):
                f = mat.factors[-1]
                v = np.array(f.values, dtype=np.int64)
                v[:, j] = rng.choice(special, v.shape[0])
                mats.append(dataclasses.replace(mat, factors=(*mat.factors[:-1], dataclasses.replace(f, values=v))))
            cand = dataclasses.replace(qm, W=mats[0], U=mats[1])
            try:
                check_bounds(cand)
            except Exception:  # noqa: BLE001 - over this unit's bound: the smaller values
                continue
            qm, moved = cand, moved + 1
            break
    assert moved >= qm.hidden_dim // 2, moved
    return qm


def device_models():
    """Fast models that take every path of the Cortex-M fast step: the benchmark cell's shape
    (written-out W2/U2 passes, Thumb-1 units) at int8 and int16 and residual shifts 0, > 0 and
    < 0 (h in Q15), weights at the immediates' special values, non-table nonlinearities and
    FastRNN (written-out passes, C units), full-rank and sparse factors, a final factor just
    inside and just past the written-out limit, a rank above 16."""
    specs = {
        "usps8": dict(seed=0, bits=8, D=16, H=32, C=10, wrank=5, urank=5),
        "usps16": dict(seed=1, bits=16, D=16, H=32, C=10, wrank=5, urank=5),
        "rszero": dict(seed=4, bits=8, D=7, H=20, C=4, wrank=3, urank=6),
        "qnl": dict(seed=2, bits=8, D=9, H=20, C=4, wrank=4, urank=5, gate_nl="quantSigm", update_nl="quantTanh"),
        "rnn": dict(seed=3, bits=16, D=9, H=20, C=4, wrank=4, urank=5, cell="FastRNN", update_nl="tanh"),
        "wfull": dict(seed=5, bits=8, D=6, H=16, C=3, urank=4),
        "ufull": dict(seed=6, bits=16, D=6, H=16, C=3, wrank=3),
        "sparse": dict(seed=7, bits=8, D=10, H=18, C=5, wrank=4, urank=3, sparse=True),
        "edge320": dict(seed=8, bits=8, D=5, H=20, C=3, wrank=2, urank=16),
        "past320": dict(seed=9, bits=8, D=5, H=24, C=3, wrank=2, urank=14),
        "rank17": dict(seed=10, bits=16, D=5, H=12, C=3, wrank=17, urank=17),
        "longrows": dict(seed=11, bits=8, D=40, H=36, C=7, wrank=3, urank=4),
    }
    models = []
    for name, kw in specs.items():
        qm = first_per_unit_qmodel(**kw)
        assert qm is not None, name
        models.append((name, dataclasses.replace(qm, profile="fast")))
    base = dict(models)
    models.append(("extreme8", _extreme_weights(base["usps8"], 1)))
    models.append(("extreme16", _extreme_weights(base["usps16"], 2)))
    q15 = dataclasses.replace(base["rszero"], hid_frac=15)
    check_bounds(q15)
    models.append(("rsneg", q15))
    return models


@pytest.fixture(scope="module")
def on_device():
    from .test_avr_matrix import saturating_inputs

    models = device_models()
    inputs = {name: saturating_inputs(qm.input_dim, seed=i) for i, (name, qm) in enumerate(models)}
    return models, inputs


def test_device_models_cover_the_paths(on_device):
    """The models reach what the device test is there for: residual shifts below, at and above
    0; the ARMv6-M units in assembly (sigmoid/tanh with a coef table) and in C; written-out and
    looped final passes; both table bins clamped and h saturated at both ends on these inputs."""
    from .test_avr_matrix import nl_inputs

    models, inputs = on_device
    shifts = {qm.residual_shift for _, qm in models}
    assert min(shifts) < 0 and 0 in shifts and max(shifts) > 0, shifts
    sources = {name: render_library(qm, name, backend="armv6m")[f"src/{name}.c"].decode() for name, qm in models}
    asm = {n for n, src in sources.items() if f"{n}_units_t1(sum" in src}
    assert {"usps8", "usps16", "extreme8", "extreme16", "rszero", "rsneg"} <= asm, asm
    assert not asm & {"qnl", "rnn", "ufull", "past320", "rank17"}, asm
    written = {n for n, src in sources.items() if "U's sums added, straight code" in src}
    assert {"usps8", "edge320", "qnl", "rnn"} <= written and not written & {"past320", "rank17"}, written
    clamped = {"lo": 0, "hi": 0}
    for name in asm:
        qm = dict(models)[name]
        _, states = simulate(qm, inputs[name], return_states=True)
        upd, gate = nl_inputs(qm, inputs[name], states)
        clamped["lo"] += int((upd < -16384).any() and (gate == -32768).any() and states.min() == -32768)
        clamped["hi"] += int((upd > 16383).any() and (gate == 32767).any() and states.max() == 32767)
    assert clamped["lo"] >= 1 and clamped["hi"] >= 1, clamped


@pytest.mark.parametrize("board", ["microbit", "mps2_an385", "mps2_an386"])
def test_device_models_on_qemu(on_device, board, tmp_path):
    """All the device models in one image per Cortex-M kernel (armv6m on the micro:bit, armv7m on
    AN385, armv7em on AN386) under QEMU: every hidden state (hashed per sequence) and logit equal
    to the simulator's."""
    from .helpers.matrix import check_on_qemu

    models, inputs = on_device
    check_on_qemu(tmp_path, board, models, inputs)
