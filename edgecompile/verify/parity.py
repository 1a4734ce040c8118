"""The parity algorithm: run every sequence on a connected device and compare its integers with
the host simulator's, bit for bit.

:func:`run_parity` needs only a handshaken :class:`~edgecompile.link.client.Client`, a
QuantizedModel and data, so it runs against any device, emulated or real.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgecompile.errors import CheckFailed
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.link.client import Client
from edgecompile.link.pool import ClientPool
from edgecompile.link.protocol import DeviceInfo
from edgecompile.sim.simulator import quantize_inputs, simulate
from edgecompile.targets.platforms.base import CycleUnit, Platform
from edgecompile.verify.report import Divergence, ParityReport

Progress = Callable[[int, int], None]


def cycle_unit(info: DeviceInfo, platform: Platform | None, emulated: bool) -> CycleUnit:
    """The unit of the device's counts: the board's Platform knows it (CPU cycles, host
    nanoseconds, or QEMU instructions that are no clock time); without one, the raw counts of
    ``info.cycle_source``, not taken as time."""
    if platform is None:
        return CycleUnit(1.0, info.cycle_source, None)
    return platform.cycle_unit(info.cycle_source, float(info.cycle_hz), emulated)


def check_model(info: DeviceInfo, expected_sha256: str | None, qm: QuantizedModel) -> None:
    """The device must run this project's build: the float model's hash first, then the
    quantized model's (formats, integers, tables: another ``--bits`` or ``--calib`` is another
    build), then dimensions. Each mismatch is a :class:`CheckFailed` naming what differs."""
    if expected_sha256 and info.model_sha256 != expected_sha256.lower():
        raise CheckFailed(
            f"the device runs another model (sha256 {info.model_sha256[:16]}..., this project "
            f"{expected_sha256[:16]}...): flash this project first")
    want = qm.quantized_sha256()
    if info.qmodel_sha256 and info.qmodel_sha256 != want:
        hint = "" if info.weight_bits != qm.bits else " (other calibration or quantization)"
        raise CheckFailed(
            f"the board runs another build of this model (int{info.weight_bits}, quantized "
            f"sha256 {info.qmodel_sha256[:12]}...); this project is int{qm.bits} "
            f"({want[:12]}...){hint}: flash this project")
    if not info.qmodel_sha256 and info.weight_bits != qm.bits:
        raise CheckFailed(f"the board runs an int{info.weight_bits} build of this model; this "
                          f"project is int{qm.bits}: flash this project")
    dims = (qm.input_dim, qm.hidden_dim, qm.num_classes)
    got = (info.input_dim, info.hidden_dim, info.num_classes)
    if dims != got:
        raise CheckFailed(f"the device model has D,H,C = {got}, this project {dims}")


def run_parity(client: Client | ClientPool, qm: QuantizedModel, X: np.ndarray, labels: np.ndarray | None = None,
               *, float_logits: np.ndarray | None = None, trace: bool = False,
               progress: Progress | None = None, platform: Platform | None = None,
               emulated: bool = False, expected_sha256: str | None = None) -> ParityReport:
    """Send every sequence of raw ``X [N,T,D]``; compare the device's int logits with
    :func:`edgecompile.sim.simulator.simulate`. With ``trace``, also every hidden state, naming the first
    (step, unit) that differs. ``platform`` (the board's) and ``emulated`` name the unit of the
    cycle counts. Raises :class:`CheckFailed` for a device running another model."""
    t_start = time.monotonic()
    info = client.info or client.handshake()
    check_model(info, expected_sha256, qm)
    x_q = quantize_inputs(qm, X)
    states: np.ndarray | None = None
    if trace:
        expected, states = simulate(qm, x_q, return_states=True)
    else:
        expected = simulate(qm, x_q)
    n, steps = x_q.shape[0], x_q.shape[1]
    got = np.zeros_like(expected, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.float64)
    mismatched: list[int] = []
    first: Divergence | None = None
    dev_states = None if states is None else np.zeros_like(states)
    for i, res in enumerate(client.infer_all(x_q, trace=trace)):
        got[i] = res.logits
        if dev_states is not None and res.hidden is not None:
            dev_states[i] = res.hidden
        cycles[i] = res.cycles
        if not np.array_equal(res.logits, expected[i]):
            mismatched.append(i)
        if (states is not None and res.hidden is not None and first is None
                and not np.array_equal(res.hidden, states[i])):
            t, u = map(int, np.argwhere(res.hidden != states[i])[0])
            first = Divergence(i, t, u, int(states[i][t, u]), int(res.hidden[t, u]))
            if i not in mismatched:
                mismatched.append(i)  # hidden states differ even if the logits agree
        if progress:
            progress(i + 1, n)
    unit = cycle_unit(info, platform, emulated)
    diff = np.abs(got - expected)
    per_step = float(np.median(cycles / steps)) * unit.scale if n and steps else None
    report = ParityReport(
        n=n,
        exact_match=float(np.mean(np.all(got == expected, axis=1))) if n else 0.0,
        argmax_agreement=float(np.mean(got.argmax(1) == expected.argmax(1))) if n else 0.0,
        max_abs_diff_lsb=int(diff.max()) if diff.size else 0,
        accuracy_device=None if labels is None else float(np.mean(got.argmax(1) == labels)),
        accuracy_float=(None if labels is None or float_logits is None
                        else float(np.mean(np.asarray(float_logits).argmax(1) == labels))),
        cycles_per_inference=float(np.median(cycles)) * unit.scale if n else None,
        cycles_per_step=per_step,
        ms_per_step=None if per_step is None or unit.hz is None else 1000.0 * per_step / unit.hz,
        cycle_source=unit.name,
        flash_bytes=None, ram_bytes=None,
        model_sha256=info.model_sha256,
        mismatched=sorted(mismatched),
        first_divergence=first,
        traced=trace,
        device_logits=got,
        logit_frac=qm.logit_frac,
        host_logits=expected,
        exact=np.isin(np.arange(n), mismatched, invert=True).tolist(),
        host_states=states,
        device_states=dev_states,
        labels=None if labels is None else np.asarray(labels),
        float_logits=None if float_logits is None else np.asarray(float_logits),
        link=vars(client.stats).copy(),
        device={"fw_version": info.fw_version, "max_steps_per_frame": info.max_steps_per_frame,
                "cycle_hz": info.cycle_hz, "weight_bits": info.weight_bits,
                "qmodel_sha256": info.qmodel_sha256},
    )
    report.seconds = time.monotonic() - t_start
    return report
