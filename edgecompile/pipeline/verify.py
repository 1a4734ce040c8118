"""``edgecompile verify`` on an exported project: read its manifest and models, build the
firmware if needed, measure its memory, open the board's port or emulator (through the board's
Platform), and run :func:`edgecompile.verify.parity.run_parity`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecompile.errors import DataError, EdgecompileError
from edgecompile.ir.model import FloatModel
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.link.client import Client, open_port
from edgecompile.link.pool import ClientPool
from edgecompile.link.timeouts import Timeouts, from_env
from edgecompile.targets.boards import BoardProfile
from edgecompile.targets.manifest import Manifest
from edgecompile.targets.platforms import Platform, platform_for
from edgecompile.verify.parity import Progress, run_parity
from edgecompile.verify.report import ParityReport


@dataclass(frozen=True)
class Project:
    """What ``verify`` needs from an exported project directory."""

    root: Path
    manifest: Manifest
    board: BoardProfile
    platform: Platform
    qmodel: QuantizedModel
    float_model: FloatModel | None  # for accuracy_float; None when export had no float model


def load_project(project_dir: str | Path) -> Project:
    """The project's manifest, board and models; each model must be the one the manifest names."""
    from edgecompile.pipeline.evaluate import load_project_models
    from edgecompile.targets.boards import get_board

    root = Path(project_dir)
    manifest, qm, fm = load_project_models(root)
    board = get_board(manifest.board)
    return Project(root, manifest, board, platform_for(board), qm, fm)


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
    from edgecompile.targets.build import build_project

    return build_project(project.root, echo=echo).elf


def memory_of(project: Project, elf: Path | None) -> tuple[int | None, int | None]:
    """Linked flash and static RAM of ``elf`` (None on the host or without an image)."""
    if elf is None or not project.platform.measures_memory:
        return None, None
    from edgecompile.targets.budget import linked_usage

    try:
        use = linked_usage(elf, project.board)
    except EdgecompileError:
        return None, None
    return use.flash, use.ram


#: Emulator instances ``verify --emulate`` runs unless ``EDGECOMPILE_EMULATOR_INSTANCES`` says
#: otherwise: one emulated UART takes about one byte per 25-30 us (QEMU), so several instances
#: are fed side by side (docs/protocol.md, "Emulated boards").
AUTO_EMULATOR_INSTANCES = 3
#: Fewest sequences per instance: below this the start-up of another emulator does not pay.
MIN_SEQUENCES_PER_INSTANCE = 32


def emulator_instances(n_sequences: int, timeouts: Timeouts | None = None) -> int:
    """How many emulator instances share ``n_sequences`` sequences (at least one)."""
    want = (timeouts or from_env()).emulator_instances or AUTO_EMULATOR_INSTANCES
    return max(1, min(want, n_sequences // MIN_SEQUENCES_PER_INSTANCE))


@contextlib.contextmanager
def connect(project: Project, *, port: str | None, elf: Path | None,
            log: Callable[[str], None] | None = None, sequences: int = 1
            ) -> Iterator[tuple[Client | ClientPool, dict[str, Any]]]:
    """A handshaken client on ``port``, or on the board's emulator running ``elf`` when
    ``port`` is None (several instances, one client each, for many ``sequences``); yields
    (client or pool, facts such as the emulator start-up time)."""
    from edgecompile.emulators.process import emulate_many

    if port is None:
        em = project.board.emulator
        if em is None:
            raise DataError(f"board '{project.board.id}' has no emulator; use --port")
        if elf is None:
            raise DataError(f"{project.root}: no firmware built")
        count = emulator_instances(sequences)
        with emulate_many(project.board, elf, count) as emus, contextlib.ExitStack() as ports:
            clients = []
            for k, emu in enumerate(emus):
                ser = emu.open()
                ports.callback(ser.close)
                tag = None if log is None or count == 1 else _tagged(log, k)
                clients.append(Client(ser, log=tag or log))
            link: Client | ClientPool = clients[0] if count == 1 else ClientPool(clients)
            link.handshake()
            yield link, {"emulator_start_s": max(e.startup_s or 0.0 for e in emus),
                         "machine": em.machine}
    else:
        ser = open_port(port)
        try:
            client = Client(ser, log=log)
            client.handshake()
            yield client, {}
        finally:
            ser.close()


def _tagged(log: Callable[[str], None], k: int) -> Callable[[str], None]:
    return lambda line: log(f"[{k}] {line}")


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
    if emulate:
        project.platform.check_emulator()  # before any build: a board without one says why
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
    with connect(project, port=port, elf=elf, log=log, sequences=X.shape[0]) as (client, facts):
        report = run_parity(client, qm, X, y, float_logits=float_logits, trace=trace,
                            progress=progress, platform=project.platform, emulated=emulate,
                            expected_sha256=project.manifest.model_sha256 or None)
        report.device.update(facts)
    report.flash_bytes, report.ram_bytes = memory_of(project, elf)
    report.board, report.bits, report.port = project.board.id, qm.bits, port
    return report
