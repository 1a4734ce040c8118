"""``edgecompile verify``: prove over a serial link that a device computes, bit for bit, the
integer logits the host simulator predicts.

Layers: :func:`run_parity` needs only a connected :class:`~edgecompile.link.client.Client`, a
QuantizedModel and data (scriptable, testable with any device); :func:`verify_project` finds
the model and the firmware of an exported project, starts an emulator or opens a port, and calls
it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecompile.errors import CheckFailed, DataError, EdgecompileError, LinkError
from edgecompile.link.client import Client, open_port
from edgecompile.link.protocol import DeviceInfo

#: The keys of ``verify --json``: exactly these, in this order.
JSON_KEYS = ("n", "exact_match", "argmax_agreement", "max_abs_diff_lsb", "accuracy_device",
             "accuracy_float", "cycles_per_inference", "cycles_per_step", "cycle_source",
             "flash_bytes", "ram_bytes", "model_sha256")

Progress = Callable[[int, int], None]


@dataclass
class ParityReport:
    n: int
    exact_match: float
    argmax_agreement: float
    max_abs_diff_lsb: int
    accuracy_device: float | None
    accuracy_float: float | None
    cycles_per_inference: float | None
    cycles_per_step: float | None
    cycle_source: str
    flash_bytes: int | None
    ram_bytes: int | None
    model_sha256: str
    # Not in the JSON contract: details for the table and for scripts.
    mismatched: list[int] = field(default_factory=list)
    first_divergence: dict | None = None  # --trace: {"sequence", "step", "unit", "host", "device"}
    link: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.n > 0 and not self.mismatched

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in JSON_KEYS}

    def render(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f} %"

        def num(v: float | None) -> str:
            return "n/a" if v is None else f"{v:,.1f}"

        rows = [
            ("sequences", str(self.n)),
            ("exact match (every logit equal)", pct(self.exact_match)),
            ("argmax agreement", pct(self.argmax_agreement)),
            ("max |device - host| (logit LSB)", str(self.max_abs_diff_lsb)),
            ("accuracy on device", pct(self.accuracy_device)),
            ("accuracy of the float model", pct(self.accuracy_float)),
            ("per inference (median)", f"{num(self.cycles_per_inference)} [{self.cycle_source}]"),
            ("per step (median)", num(self.cycles_per_step)),
            ("flash / static RAM", f"{self.flash_bytes if self.flash_bytes is not None else 'n/a'}"
                                   f" / {self.ram_bytes if self.ram_bytes is not None else 'n/a'}"
                                   " bytes"),
            ("model sha256", self.model_sha256),
            ("run time", f"{self.seconds:.2f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
        if self.mismatched:
            shown = ", ".join(map(str, self.mismatched[:10]))
            more = " ..." if len(self.mismatched) > 10 else ""
            lines.append(f"  MISMATCH in {len(self.mismatched)} sequence(s): {shown}{more}")
        if self.first_divergence:
            d = self.first_divergence
            lines.append(f"  first divergence: sequence {d['sequence']}, step {d['step']}, unit "
                         f"{d['unit']}: host {d['host']}, device {d['device']}")
        lines.append("  PARITY OK: bit-exact" if self.ok else "  PARITY FAILED")
        return "\n".join(lines)


def cycle_scale(info: DeviceInfo, emulator: str | None,
                machine: str | None = None) -> tuple[float, str]:
    """Factor from device counts to the reported unit, and the unit's name (``cycle_source``)."""
    if info.cycle_source == "systick" and emulator == "qemu":
        # -icount shift=0: a fixed number of instructions per SysTick count, per machine.
        from edgecompile.emulators.process import QEMU_INSTRUCTIONS_PER_SYSTICK

        per = QEMU_INSTRUCTIONS_PER_SYSTICK.get(machine or "")
        if per is None:
            return 1e9 / info.cycle_hz, "qemu-icount instructions (SysTick, assumed at F_CPU)"
        return float(per), f"qemu-icount instructions (SysTick, {per} per count)"
    names = {"avr-timer1": "cpu cycles (AVR Timer1)", "dwt-cyccnt": "cpu cycles (DWT CYCCNT)",
             "systick": "cpu cycles (SysTick)", "posix-clock-ns": "nanoseconds (host clock)"}
    name = names.get(info.cycle_source, info.cycle_source)
    if emulator == "simavr":
        name += ", simavr cycle-exact"
    return 1.0, name


def check_model(info: DeviceInfo, expected_sha256: str | None, qm) -> None:
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


def run_parity(client: Client, qm, X: np.ndarray, labels: np.ndarray | None = None, *,
               float_logits: np.ndarray | None = None, trace: bool = False,
               progress: Progress | None = None, emulator: str | None = None,
               machine: str | None = None, expected_sha256: str | None = None) -> ParityReport:
    """Send every sequence of raw ``X [N,T,D]``; compare the device's int logits with
    :func:`edgecompile.sim.simulator.simulate`. With ``trace``, also every hidden state, naming the first
    (step, unit) that differs. Raises :class:`CheckFailed` for a device running another model."""
    from edgecompile.sim.simulator import quantize_inputs, simulate

    t_start = time.monotonic()
    info = client.info or client.handshake()
    check_model(info, expected_sha256, qm)
    x_q = quantize_inputs(qm, X)
    if trace:
        expected, states = simulate(qm, x_q, return_states=True)
    else:
        expected, states = simulate(qm, x_q), None
    n, steps = x_q.shape[0], x_q.shape[1]
    got = np.zeros_like(expected, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.float64)
    mismatched: list[int] = []
    first: dict | None = None
    for i in range(n):
        res = client.infer(x_q[i], trace=trace)
        got[i] = res.logits
        cycles[i] = res.cycles
        if not np.array_equal(res.logits, expected[i]):
            mismatched.append(i)
        if trace and first is None and not np.array_equal(res.hidden, states[i]):
            t, u = map(int, np.argwhere(res.hidden != states[i])[0])
            first = {"sequence": i, "step": t, "unit": u, "host": int(states[i][t, u]),
                     "device": int(res.hidden[t, u])}
            if i not in mismatched:
                mismatched.append(i)  # hidden states differ even if the logits agree
        if progress:
            progress(i + 1, n)
    scale, source = cycle_scale(info, emulator, machine)
    diff = np.abs(got - expected)
    per_inf = float(np.median(cycles)) * scale if n else None
    report = ParityReport(
        n=n,
        exact_match=float(np.mean(np.all(got == expected, axis=1))) if n else 0.0,
        argmax_agreement=float(np.mean(got.argmax(1) == expected.argmax(1))) if n else 0.0,
        max_abs_diff_lsb=int(diff.max()) if diff.size else 0,
        accuracy_device=None if labels is None else float(np.mean(got.argmax(1) == labels)),
        accuracy_float=(None if labels is None or float_logits is None
                        else float(np.mean(np.asarray(float_logits).argmax(1) == labels))),
        cycles_per_inference=per_inf,
        cycles_per_step=(float(np.median(cycles / steps)) * scale if n and steps else None),
        cycle_source=source,
        flash_bytes=None, ram_bytes=None,
        model_sha256=info.model_sha256,
        mismatched=sorted(mismatched),
        first_divergence=first,
        link=vars(client.stats).copy(),
        device={"fw_version": info.fw_version, "max_steps_per_frame": info.max_steps_per_frame,
                "cycle_hz": info.cycle_hz, "weight_bits": info.weight_bits,
                "qmodel_sha256": info.qmodel_sha256},
    )
    report.seconds = time.monotonic() - t_start
    return report


# ---- an exported project ----------------------------------------------------------------------

@dataclass
class Project:
    """What ``verify`` needs from an exported project directory."""

    root: Path
    board: object  # targets.BoardProfile
    qmodel: object  # QuantizedModel
    model_sha256: str
    manifest: dict
    float_model: object | None = None  # FloatModel, for accuracy_float


def _find_manifest(root: Path) -> tuple[Path | None, dict]:
    for p in sorted(root.glob("*.json")) + sorted(root.glob("*/*.json")):
        if "manifest" in p.name:
            try:
                return p, json.loads(p.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"{p}: unreadable manifest ({exc})") from None
    return None, {}


def _find_qmodel(root: Path, manifest_path: Path | None, manifest: dict):
    from edgecompile.ir.qmodel import load_qmodel, qmodel_from_json

    named = manifest.get("qmodel") or manifest.get("qmodel_file")
    if named and manifest_path is not None:
        return load_qmodel(manifest_path.parent / named)
    candidates = sorted(root.glob("*.qmodel.json")) + sorted(root.glob("*/*.qmodel.json"))
    candidates += [p for p in sorted(root.glob("*.json")) if "manifest" not in p.name]
    for p in candidates:
        with contextlib.suppress(Exception):
            return qmodel_from_json(p.read_text())
    raise DataError(f"{root}: no quantized model found (export writes one beside platformio.ini)")


def _find_float_model(root: Path, manifest_path: Path | None, manifest: dict):
    from edgecompile.frontend.checkpoint import load_checkpoint

    named = manifest.get("checkpoint") or manifest.get("float_model")
    paths = [manifest_path.parent / named] if named and manifest_path else []
    paths += sorted(root.glob("*.npz"))
    for p in paths:
        with contextlib.suppress(EdgecompileError, OSError):
            return load_checkpoint(p)
    return None


def load_project(project_dir: str | Path) -> Project:
    from edgecompile.targets.boards import get_board
    from edgecompile.targets.project import read_project_config

    root = Path(project_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (give the folder written by 'edgecompile export')")
    cfg = read_project_config(root)
    board = get_board(cfg.get("board", ""))
    mpath, manifest = _find_manifest(root)
    qm = _find_qmodel(root, mpath, manifest)
    sha = (manifest.get("model_sha256") or manifest.get("sha256")
           or getattr(qm, "source_sha256", "") or "")
    if isinstance(sha, dict):
        sha = sha.get("model") or ""
    return Project(root, board, qm, str(sha).lower(), manifest,
                   _find_float_model(root, mpath, manifest))


def firmware_image(project: Project, build: bool, echo: Callable[[str], None] | None) -> Path | None:
    """The project's built firmware; built (or rebuilt when sources are newer) if ``build``."""
    build_root = project.root / ".pio" / "build"
    names = ("firmware.elf", "program", "firmware", "program.elf")
    images = [p for p in build_root.glob("*/*") if p.name in names and p.is_file()]
    newest_src = max((p.stat().st_mtime for p in project.root.rglob("*")
                      if p.is_file() and ".pio" not in p.parts and p.suffix in
                      (".c", ".h", ".ini", ".cpp")), default=0.0)
    fresh = [p for p in images if p.stat().st_mtime >= newest_src]
    if fresh:
        return max(fresh, key=lambda p: p.stat().st_mtime)
    if not build:
        return max(images, key=lambda p: p.stat().st_mtime) if images else None
    # Integration point: the boards issue's PlatformIO build.
    from edgecompile.targets.build import build_project

    return build_project(project.root, echo=echo).elf


def memory_of(project: Project, elf: Path | None) -> tuple[int | None, int | None]:
    if elf is None or getattr(project.board, "family", "") == "native":
        return None, None
    from edgecompile.targets.budget import linked_usage

    try:
        use = linked_usage(elf, project.board)
    except EdgecompileError:
        return None, None
    return use.flash, use.ram


@contextlib.contextmanager
def connect(project: Project, *, port: str | None, emulate: bool, elf: Path | None,
            log: Callable[[str], None] | None = None) -> Iterator[tuple[Client, str | None, dict]]:
    """A handshaken client on ``port`` or on the board's emulator; yields (client, emulator
    kind or None, facts such as the emulator start-up time)."""
    from edgecompile.emulators.process import emulate as start_emulator

    if emulate:
        em = project.board.emulator
        if em is None:
            raise DataError(f"board '{project.board.id}' has no emulator; use --port")
        if elf is None:
            raise DataError(f"{project.root}: no firmware built")
        kind = "native" if em.kind == "process" else em.kind
        with start_emulator(kind, elf, em.machine if kind != "native" else None,
                            project.board.f_cpu_hz) as emu:
            ser = emu.open()
            try:
                client = Client(ser, log=log)
                client.handshake()
                yield client, kind, {"emulator_start_s": emu.startup_s, "machine": em.machine}
            finally:
                ser.close()
    else:
        ser = open_port(port)
        try:
            client = Client(ser, log=log)
            client.handshake()
            yield client, None, {}
        finally:
            ser.close()


def verify_project(project_dir: str | Path, *, data: str | Path, labels: str | Path | None = None,
                   port: str | None = None, emulate: bool = False, trace: bool = False,
                   progress: Progress | None = None, echo: Callable[[str], None] | None = None,
                   log: Callable[[str], None] | None = None) -> ParityReport:
    """The whole ``verify`` command as a function. Raises :class:`CheckFailed` (exit 1) for a
    wrong model; returns the report (``report.ok`` False on any mismatch)."""
    from edgecompile.frontend.data import check_normalised, load_labels, load_sequences

    if (port is None) == (not emulate):
        raise DataError("give exactly one of --port PORT and --emulate")
    project = load_project(project_dir)
    qm = project.qmodel
    X = load_sequences(data)
    if X.shape[2] != qm.input_dim:
        raise DataError(f"{data}: D={X.shape[2]} but the model takes D={qm.input_dim}")
    if qm.seq_len is not None and X.shape[1] != qm.seq_len:
        raise DataError(f"{data}: T={X.shape[1]} but the model's normalisation covers "
                        f"T={qm.seq_len} steps")
    if project.float_model is not None:
        check_normalised(X, project.float_model, str(data))
    y = load_labels(labels, X.shape[0], qm.num_classes) if labels is not None else None
    float_logits = None
    if y is not None and project.float_model is not None:
        from edgecompile.reference import forward

        float_logits = forward(project.float_model, X)
    elf = firmware_image(project, build=emulate, echo=echo)
    try:
        with connect(project, port=port, emulate=emulate, elf=elf, log=log) as (client, kind,
                                                                                  facts):
            report = run_parity(client, qm, X, y, float_logits=float_logits, trace=trace,
                                progress=progress, emulator=kind, machine=facts.get("machine"),
                                expected_sha256=project.model_sha256 or None)
            report.device.update(facts)
    except LinkError:
        raise
    report.flash_bytes, report.ram_bytes = memory_of(project, elf)
    return report
