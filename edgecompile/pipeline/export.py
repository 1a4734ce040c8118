"""``export``: a complete PlatformIO project for a board, written atomically and reproducibly.

Layout of the project directory::

    platformio.ini, boards/, .edgecompile/, src/      board part (edgecompile.targets.project)
    lib/<name>/library.json, library.properties       PlatformIO + Arduino IDE library
    lib/<name>/src/<name>.h, <name>.c, <name>_data.h  the model library (templates/library/)
    lib/<name>/src/edgecompile_model.h                binding for the firmware harness
    model.qmodel.json                                 the QuantizedModel (verify reads it)
    model.npz                                         the float checkpoint, when known (float accuracy)
    edgecompile-manifest.json                         the Manifest: what build, flash and verify read
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgecompile import __version__
from edgecompile.codegen.arduino import example_sketch_files, library_zip
from edgecompile.codegen.names import c_ident, default_name
from edgecompile.codegen.render import DEFAULT_LIBRARY, LibraryInfo, render_library
from edgecompile.errors import CodegenError, one_line
from edgecompile.ir.model import FloatModel, Layout
from edgecompile.ir.qmodel import QuantizedModel, load_qmodel, qmodel_to_json
from edgecompile.targets.manifest import (
    GENERATOR,
    MANIFEST_FILE,
    Manifest,
    Quantization,
    is_project_path,
    parse_manifest,
)

CHECKPOINT_FILE = "model.npz"
QMODEL_FILE = "model.qmodel.json"
#: What build and verify leave in a project: replaced with it by ``--force``.
BUILD_OUTPUTS = (".pio", ".edgecompile/core")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_project` wrote."""

    out_dir: Path
    name: str
    board: str
    qmodel: QuantizedModel
    manifest: Manifest

    def to_json(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "name": self.name, "board": self.board,
                "summary": self.qmodel.summary(), "manifest": self.manifest.to_json()}


#: ``export --framework``: the harness on bare registers, or on the Arduino core's ``Serial``.
FRAMEWORKS = ("baremetal", "arduino")


def board_files(board: str, name: str, framework: str = "baremetal") -> dict[str, bytes]:
    """The board-specific part of the project: platformio.ini, board files, firmware harness."""
    from edgecompile.targets.project import project_files

    if framework not in FRAMEWORKS:
        raise CodegenError(f"framework '{framework}' is not one of {', '.join(FRAMEWORKS)}")
    return project_files(board, name, framework=None if framework == "baremetal" else framework)


#: ``progress(done, total, what)``: see :mod:`edgecompile.cli.progress`.
ProgressFn = Callable[[int, int, str], None]


def _load_model(model: str | os.PathLike[str] | FloatModel | QuantizedModel, bits: int | None,
                calib: str | os.PathLike[str] | np.ndarray | None, warn: Callable[[str], None] | None,
                progress: ProgressFn | None = None, layout: Layout | None = None,
                profile: str | None = None
                ) -> tuple[QuantizedModel, str, FloatModel | None]:
    """(QuantizedModel, default name, float model if known) from a path, a FloatModel or a
    QuantizedModel."""
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.quant.quantizer import CalibrationWarning, quantize

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
        from edgecompile.quant.profile import check_fixed_profile

        check_fixed_profile(qm, profile, "the quantized model")
        return qm, stem, None
    if isinstance(model, FloatModel):
        fm = model if model.sha256 else _with_hash(model)
    else:
        fm, stem = load_checkpoint(model, layout=layout, warn=warn), Path(model).stem
    if isinstance(calib, (str, os.PathLike)):
        from edgecompile.frontend.data import load_sequences

        calib = load_sequences(calib, fm)
    elif calib is not None:
        from edgecompile.frontend.data import check_fits

        calib = np.asarray(calib, dtype=np.float64)
        check_fits(calib, fm, "calibration data")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        qm = quantize(fm, 8 if bits is None else int(bits), calib, progress=progress, profile=profile)
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
                 float_model: FloatModel | None = None, zip_library: bool = False,
                 library: LibraryInfo = DEFAULT_LIBRARY, framework: str = "baremetal",
                 library_only: bool = False) -> dict[str, bytes]:
    """Every file of the exported project, in memory: ``{relative posix path: bytes}``.

    With the float model, a deterministic copy of its checkpoint goes along (``verify`` reports
    the float accuracy from it). The library carries an Arduino example sketch (it runs one
    all-zero raw sequence: the user puts in their own); ``zip_library`` adds ``<name>.zip`` for
    the Arduino IDE's "Add .ZIP Library"."""
    from edgecompile.frontend.checkpoint import checkpoint_bytes
    from edgecompile.targets.boards import get_board

    if library_only:
        return library_tree(qm, board, name, zip_library, library)
    files = dict(board_files(board, name, framework))
    # PlatformIO puts src/ and lib/<name>/src/ on one include path: no file name may repeat.
    taken = {rel.rsplit("/", 1)[-1] for rel in files if rel.startswith("src/")}
    lib_files = dict(render_library(qm, name, backend=get_board(board).kernel_backend, info=library))
    lib_files.update(example_sketch_files(qm, name))
    for rel, data in sorted(lib_files.items()):
        key = f"lib/{name}/{rel}"
        base = rel.rsplit("/", 1)[-1]
        if key in files or (rel.startswith("src/") and base in taken):
            raise CodegenError(f"model name {name!r}: {base} clashes with a firmware file; choose another --name")
        files[key] = data
    files[QMODEL_FILE] = qmodel_to_json(qm).encode()
    if float_model is not None:
        files[CHECKPOINT_FILE] = checkpoint_bytes(float_model)
    if zip_library:
        files[f"{name}.zip"] = library_zip(lib_files, name)
    files[MANIFEST_FILE] = project_manifest(qm, board, name, float_model is not None, files).to_bytes()
    return dict(sorted(files.items()))


def library_tree(qm: QuantizedModel, board: str, name: str, zip_library: bool = False,
                 library: LibraryInfo = DEFAULT_LIBRARY) -> dict[str, bytes]:
    """``export --library-only``: the contents of ``lib/<name>/`` (library.json,
    library.properties, src/, the Arduino example) with the kernel for ``board``'s core, and the
    manifest; no harness, no PlatformIO project."""
    from edgecompile.targets.boards import get_board

    lib_files = dict(render_library(qm, name, backend=get_board(board).kernel_backend, info=library))
    lib_files.update(example_sketch_files(qm, name))
    files = dict(lib_files)
    if zip_library:
        files[f"{name}.zip"] = library_zip(lib_files, name)
    files[MANIFEST_FILE] = project_manifest(qm, board, name, False, files).to_bytes()
    return dict(sorted(files.items()))


def project_manifest(qm: QuantizedModel, board: str, name: str, with_checkpoint: bool,
                     files: dict[str, bytes]) -> Manifest:
    """The manifest of a project whose other files are ``files``."""
    return Manifest(
        tool_version=__version__, board=board, name=name, bits=qm.bits,
        qmodel=QMODEL_FILE, qmodel_sha256=qm.quantized_sha256(),
        checkpoint=CHECKPOINT_FILE if with_checkpoint else None, model_sha256=qm.source_sha256,
        quantization=Quantization(
            summary=qm.summary(), cell=qm.cell, in_frac=qm.in_frac, hid_frac=qm.hid_frac,
            logit_frac=qm.logit_frac,
            method=qm.calibration.get("method") if qm.calibration else None),
        files={rel: _sha256(data) for rel, data in sorted(files.items())})


def _refuse_special(out: str | os.PathLike) -> Path:
    """The absolute path of ``out``; refuses an empty path, /, $HOME, the current directory and
    the directories above these."""
    if os.fspath(out) in ("", b""):
        raise CodegenError('the output directory is empty (-o ""): give the project directory to create')
    out = Path(os.path.abspath(out))
    real = Path(os.path.realpath(out))
    if real == real.parent:
        raise CodegenError(f"{out} is the root directory: refusing to write a project there")
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except OSError:
        cwd = None
    home = os.environ.get("HOME")
    for place, what in ((cwd, "the current directory"),
                        (Path(os.path.realpath(home)) if home else None, "the home directory ($HOME)")):
        if place is None:
            continue
        if real == place:
            raise CodegenError(f"{out} is {what}: refusing to write a project there; give a new directory")
        if real in place.parents:
            raise CodegenError(f"{out} holds {what}: refusing to write a project there; give a new directory")
    return out


def _listed_files(out: Path) -> list[str] | None:
    """The files that ``out``'s manifest lists (None without a manifest); refuses a manifest that
    is not edgecompile's or names a path outside the project."""
    path = out / MANIFEST_FILE
    if not os.path.lexists(path):
        return None
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise ValueError("not a regular file")
        manifest = json.loads(path.read_bytes())
        if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
            raise ValueError("not written by edgecompile")
        listed = manifest.get("files")
        if not isinstance(listed, dict):
            raise ValueError("no list of files")
    except (OSError, ValueError) as exc:
        raise CodegenError(f"{path} is damaged ({one_line(exc)}): refusing to replace {out}") from None
    for rel in listed:
        if not is_project_path(rel):
            raise CodegenError(f"{path} lists {rel!r}, not a file inside the project: refusing to replace {out}")
    return sorted(listed)


def _check_target(out: str | os.PathLike, force: bool) -> tuple[bool, list[str] | None]:
    """(``out`` exists, the files its manifest lists when it is a non-empty project to replace).

    Refuses a path that is not a directory, a non-empty directory without ``force``, and a
    non-empty directory that edgecompile did not make (no manifest) even with ``force``."""
    out = _refuse_special(out)
    if not os.path.lexists(out):
        return False, None
    if out.is_symlink():
        raise CodegenError(f"{out} is a symlink: give the directory itself")
    if not out.is_dir():
        raise CodegenError(f"{out} exists and is not a directory")
    try:
        if not any(out.iterdir()):
            return True, None
    except OSError as exc:
        raise CodegenError(f"{out}: cannot read the directory ({exc.strerror or exc})") from None
    listed = _listed_files(out)
    if listed is None:
        raise CodegenError(f"{out} is not empty and edgecompile did not make it (no {MANIFEST_FILE}): "
                           f"choose another directory")
    if not force:
        raise CodegenError(f"{out} holds an exported project: use --force to replace it")
    return True, listed


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _inside(root: Path, rel: str) -> bool:
    """True if the directory holding ``root/rel`` resolves inside ``root`` (no symlink out)."""
    real_root = Path(os.path.realpath(root))
    parent = Path(os.path.realpath((root / rel).parent))
    return parent == real_root or real_root in parent.parents


def _replace_in_place(out: Path, files: dict[str, bytes], listed: list[str]) -> None:
    """Replace the project in ``out``: what the old manifest lists, the manifest and the build
    outputs go; every other file stays. All or nothing."""
    # Listed entries that are files or symlinks (a folder at a listed path is not the project's).
    old = [rel for rel in [*listed, MANIFEST_FILE]
           if ((out / rel).is_symlink() or (out / rel).is_file()) and _inside(out, rel)]
    old += [rel for rel in BUILD_OUTPUTS if os.path.lexists(out / rel) and _inside(out, rel)]
    going = set(old)
    for rel in files:  # a user's file where a new one goes: refuse before touching anything
        parts = PurePosixPath(rel).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in going or any(sub.startswith(g + "/") for g in going):
                break
            p = out / sub
            if not os.path.lexists(p):
                break
            if i == len(parts) or p.is_symlink() or not p.is_dir():
                raise CodegenError(f"{p} is in the way of the new project and edgecompile did not make it: "
                                   f"move it, or choose another directory")
    stage: Path | None = None
    trash: Path | None = None
    moved: list[str] = []
    placed: list[Path] = []
    made: list[Path] = []
    try:
        stage = Path(tempfile.mkdtemp(prefix=".edgecompile-new-", dir=out))
        trash = Path(tempfile.mkdtemp(prefix=".edgecompile-old-", dir=out))
        _write_tree(stage, files)
        for rel in old:
            (trash / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(out / rel, trash / rel)
            moved.append(rel)
        for rel in files:
            target = out / rel
            missing = [d for d in target.parents if d != out and out in d.parents and not d.exists()]
            for d in reversed(missing):
                d.mkdir()
                made.append(d)
            os.rename(stage / rel, target)
            placed.append(target)
    except BaseException as exc:
        for target in reversed(placed):
            target.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        for rel in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(trash / rel, out / rel)  # type: ignore[operator]
        for tmp_dir in (stage, trash):
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise CodegenError(f"{out}: cannot write the project ({exc.strerror or exc})") from None
        raise
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
    # Folders that only held old project files go too (a user's file keeps its folder).
    for d in sorted({p for rel in old for p in (out / rel).parents if out in p.parents},
                    key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


def write_project(out: Path, files: dict[str, bytes], force: bool = False) -> None:
    """Write ``files`` as the directory ``out``: all or nothing.

    A new or empty ``out``: the tree is written into a temporary directory beside it and renamed
    into place. A non-empty ``out`` must be a project that edgecompile made, and ``force``: the
    files its manifest lists and the build outputs are replaced, anything else in it stays.
    """
    out = _refuse_special(out)
    exists, listed = _check_target(out, force)
    if listed is not None:
        _replace_in_place(out, files, listed)
        return
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
    zip_library: bool = False,
    library: LibraryInfo = DEFAULT_LIBRARY,
    progress: ProgressFn | None = None,
    framework: str = "baremetal",
    library_only: bool = False,
    layout: Layout | None = None,
    profile: str | None = None,
    raw_input: tuple[Any, Any] | None = None,
) -> ExportResult:
    """Quantize ``model`` (unless already quantized) and write a PlatformIO project for ``board``.

    ``model``: a checkpoint path (.npz or directory), a quantized-model JSON, a FloatModel or a
    QuantizedModel. ``bits``: 8 or 16 (default 8; must match a quantized model). ``calib``: raw
    calibration inputs ``[N, T, D]`` (array or .npy path). ``out_dir``: default ``<name>_<board>``.
    ``name``: the library's C name (default: the checkpoint's file stem). ``zip_library`` also
    writes ``<name>.zip`` (the library for the Arduino IDE). Refuses a non-empty
    ``out_dir`` unless it is a project edgecompile made and ``force`` (then only its files and
    build outputs are replaced), and refuses /, $HOME, the current directory and their parents.
    ``progress(done, total, what)`` receives the quantization search's trials, then the
    project's steps (rendering the files, writing them). ``framework``: ``baremetal`` (the
    harness on the family's register-level HAL) or ``arduino`` (the harness on the Arduino
    core's ``Serial``, ``firmware/arduino/``). ``library_only``: only the model library (the
    contents of ``lib/<name>/``) for the board's core. ``layout``: how a checkpoint's matrices
    are stored (``in-out``/``out-in``; None: detected). ``profile``: the arithmetic profile of
    a checkpoint's quantization (auto, precise or fast; None: precise). ``raw_input``:
    ``(raw_scale, raw_offset)`` of the raw int16 helper (``sim.rawinput.with_raw_input``; None:
    keep the model's). Raises :class:`EdgecompileError`
    subclasses (exit status 2).
    """
    from edgecompile.targets.boards import get_board

    if framework not in FRAMEWORKS:
        raise CodegenError(f"framework '{framework}' is not one of {', '.join(FRAMEWORKS)}")
    if library_only and framework != "baremetal":
        raise CodegenError("--library-only has no harness: --framework does not apply to it")

    board_id = get_board(board).id  # an unknown board fails before any work
    if name is not None:
        c_ident(name)
    if out_dir is not None:
        _check_target(out_dir, force)  # refuse early: nothing is computed or written
    if layout is not None and (not isinstance(model, (str, os.PathLike)) or str(model).endswith(".json")):
        raise CodegenError("--layout applies to a checkpoint, not to a quantized or in-memory model")
    qm, stem, fm = _load_model(model, bits, calib, warn, progress, layout, profile)
    if raw_input is not None:
        from edgecompile.sim.rawinput import with_raw_input

        qm = with_raw_input(qm, *raw_input)
    lib_name = name if name is not None else default_name(stem)
    out = Path(out_dir) if out_dir is not None else Path(f"{lib_name}_{board_id}")
    if progress is not None:
        progress(0, 2, "project steps (rendering, writing)")
    files = project_tree(qm, board_id, lib_name, fm, zip_library=zip_library, library=library,
                         framework=framework, library_only=library_only)
    if progress is not None:
        progress(1, 2, "project steps (rendering, writing)")
    write_project(out, files, force)
    if progress is not None:
        progress(2, 2, "project steps (rendering, writing)")
    return ExportResult(out, lib_name, board_id, qm, parse_manifest(json.loads(files[MANIFEST_FILE])))
