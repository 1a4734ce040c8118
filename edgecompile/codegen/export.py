"""``export``: a complete PlatformIO project for a board, written atomically and reproducibly.

Layout of the project directory::

    platformio.ini, boards/, .edgecompile/, src/      board part (edgecompile.targets.project)
    lib/<name>/library.json, library.properties       PlatformIO + Arduino IDE library
    lib/<name>/src/<name>.h, <name>.c, <name>_data.h  the model library (templates/library/)
    lib/<name>/src/edgecompile_model.h                binding for the firmware harness
    model.qmodel.json                                 the QuantizedModel (verify reads it)
    model.npz                                         the float checkpoint, when known (float accuracy)
    edgecompile-manifest.json                         provenance + sha256 of every file
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import CodegenError
from ..model import FloatModel
from ..qmodel import QuantizedModel, load_qmodel, qmodel_to_json
from .names import c_ident, default_name
from .render import render_library

MANIFEST = "edgecompile-manifest.json"
CHECKPOINT_FILE = "model.npz"
QMODEL_FILE = "model.qmodel.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    name: str
    board: str
    qmodel: QuantizedModel
    manifest: dict


def board_files(board: str, name: str) -> dict[str, bytes]:
    """The board-specific part of the project: platformio.ini, board files, firmware harness."""
    from ..targets.project import project_files

    return project_files(board, name)


def _load_model(model, bits: int | None, calib, warn: Callable[[str], None] | None
                ) -> tuple[QuantizedModel, str, FloatModel | None]:
    """(QuantizedModel, default name, float model if known) from a path, a FloatModel or a
    QuantizedModel."""
    from ..checkpoint import load_checkpoint
    from ..quant import CalibrationWarning, quantize

    stem = "model"
    if isinstance(model, QuantizedModel) or (
            isinstance(model, (str, os.PathLike)) and str(model).endswith(".json")):
        if isinstance(model, QuantizedModel):
            qm = model
        else:
            qm, stem = load_qmodel(model), Path(model).name.split(".")[0]
        if calib is not None:
            raise CodegenError("the model is already quantized: --calib does not apply to it")
        if bits is not None and int(bits) != qm.bits:
            raise CodegenError(f"the quantized model has int{qm.bits} weights, not --bits {bits}")
        return qm, stem, None
    if isinstance(model, FloatModel):
        fm = model if model.sha256 else _with_hash(model)
    else:
        fm, stem = load_checkpoint(model), Path(model).stem
    if isinstance(calib, (str, os.PathLike)):
        from ..data import load_sequences

        calib = load_sequences(calib, fm)
    elif calib is not None:
        from ..data import check_fits

        calib = np.asarray(calib, dtype=np.float64)
        check_fits(calib, fm, "calibration data")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        qm = quantize(fm, 8 if bits is None else int(bits), calib)
    for w in caught:
        if warn is not None and issubclass(w.category, CalibrationWarning):
            warn(f"warning: {w.message}")
    return qm, stem, fm


def _with_hash(fm: FloatModel) -> FloatModel:
    import dataclasses

    return dataclasses.replace(fm, sha256=fm.content_hash())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def project_tree(qm: QuantizedModel, board: str, name: str,
                 float_model: FloatModel | None = None) -> dict[str, bytes]:
    """Every file of the exported project, in memory: ``{relative posix path: bytes}``.

    With the float model, a deterministic copy of its checkpoint goes along (``verify`` reports
    the float accuracy from it)."""
    from ..checkpoint import checkpoint_bytes

    files = dict(board_files(board, name))
    # PlatformIO puts src/ and lib/<name>/src/ on one include path: no file name may repeat.
    taken = {rel.rsplit("/", 1)[-1] for rel in files if rel.startswith("src/")}
    for rel, data in render_library(qm, name).items():
        key = f"lib/{name}/{rel}"
        base = rel.rsplit("/", 1)[-1]
        if key in files or (rel.startswith("src/") and base in taken):
            raise CodegenError(f"model name {name!r}: {base} clashes with a firmware file; choose another --name")
        files[key] = data
    files[QMODEL_FILE] = qmodel_to_json(qm).encode()
    if float_model is not None:
        files[CHECKPOINT_FILE] = checkpoint_bytes(float_model)
    summary = qm.summary()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "edgecompile",
        "tool_version": __version__,
        "model_sha256": qm.source_sha256,
        "name": name,
        "board": board,
        "bits": qm.bits,
        "qmodel": QMODEL_FILE,
        "checkpoint": CHECKPOINT_FILE if float_model is not None else None,
        "quantization": {
            "summary": summary,
            "cell": qm.cell,
            "in_frac": qm.in_frac,
            "hid_frac": qm.hid_frac,
            "logit_frac": qm.logit_frac,
            "method": qm.calibration.get("method") if qm.calibration else None,
        },
        "files": {rel: _sha256(data) for rel, data in sorted(files.items())},
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return dict(sorted(files.items()))


def _check_target(out: Path, force: bool) -> bool:
    """True if ``out`` exists (an empty directory, or a non-empty one with ``force``)."""
    if not (out.exists() or out.is_symlink()):
        return False
    if not out.is_dir() or out.is_symlink():
        raise CodegenError(f"{out} exists and is not a directory")
    if any(out.iterdir()) and not force:
        raise CodegenError(f"{out} is not empty: use --force to replace it")
    return True


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def write_project(out: Path, files: dict[str, bytes], force: bool = False) -> None:
    """Write ``files`` as the directory ``out``: all or nothing.

    The tree is written into a temporary directory beside ``out`` and renamed into place; a
    non-empty ``out`` is refused unless ``force`` (then it is replaced, never merged).
    """
    out = Path(os.path.abspath(out))
    exists = _check_target(out, force)
    created: list[Path] = []  # parents we create, removed again on failure
    parent = out.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    old: Path | None = None
    tmp: Path | None = None
    try:
        for p in reversed(created):
            p.mkdir()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        _write_tree(tmp, files)
        if exists:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "tree")
        os.rename(tmp, out)
        tmp = None
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "tree").exists() and not out.exists():
            os.rename(old / "tree", out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for p in created:
            shutil.rmtree(p, ignore_errors=True)
        if isinstance(exc, OSError):
            raise CodegenError(f"{out}: cannot write the project ({exc.strerror or exc})") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_project(
    model: str | os.PathLike | FloatModel | QuantizedModel,
    board: str,
    bits: int | None = None,
    calib: str | os.PathLike | np.ndarray | None = None,
    out_dir: str | os.PathLike | None = None,
    force: bool = False,
    name: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> ExportResult:
    """Quantize ``model`` (unless already quantized) and write a PlatformIO project for ``board``.

    ``model``: a checkpoint path (.npz or directory), a quantized-model JSON, a FloatModel or a
    QuantizedModel. ``bits``: 8 or 16 (default 8; must match a quantized model). ``calib``: raw
    calibration inputs ``[N, T, D]`` (array or .npy path). ``out_dir``: default ``<name>_<board>``.
    ``name``: the library's C name (default: the checkpoint's file stem). Refuses a non-empty
    ``out_dir`` unless ``force``. Raises :class:`EdgecompileError` subclasses (exit status 2).
    """
    from ..targets.boards import get_board

    board_id = get_board(board).id  # an unknown board fails before any work
    if name is not None:
        c_ident(name)
    if out_dir is not None:
        _check_target(Path(out_dir), force)  # refuse early: nothing is computed or written
    qm, stem, fm = _load_model(model, bits, calib, warn)
    lib_name = name if name is not None else default_name(stem)
    out = Path(out_dir) if out_dir is not None else Path(f"{lib_name}_{board_id}")
    files = project_tree(qm, board_id, lib_name, fm)
    write_project(out, files, force)
    manifest = json.loads(files[MANIFEST])
    return ExportResult(out, lib_name, board_id, qm, manifest)
