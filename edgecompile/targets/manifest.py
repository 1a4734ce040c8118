"""``edgecompile-manifest.json``: what ``export`` tells ``build``, ``flash`` and ``verify``.

``export`` writes one :class:`Manifest` per project; the later commands read it with
:func:`read_manifest`, which checks every field and names the first one that is wrong. It is the
only place they learn the board, the weight width and the model files from.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgecompile.errors import DataError

MANIFEST_FILE = "edgecompile-manifest.json"
#: Version 2 added ``qmodel_sha256``.
MANIFEST_VERSION = 2
GENERATOR = "edgecompile"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_project_path(rel: object) -> bool:
    """True for a relative posix path that stays inside the project (no ``..``, ``.``, ``\\``)."""
    if not isinstance(rel, str) or rel.startswith("/") or "\\" in rel:
        return False
    parts = PurePosixPath(rel).parts
    return bool(parts) and not any(p in ("..", ".") for p in parts)


@dataclass(frozen=True)
class Quantization:
    """Provenance of the quantized model: its one-line summary and its Q formats."""

    summary: str
    cell: str
    in_frac: int
    hid_frac: int
    logit_frac: int
    method: str | None


@dataclass(frozen=True)
class Manifest:
    """An exported project: tool, board, library, weight width, model files and their hashes."""

    tool_version: str
    board: str
    name: str  # the library's C name: lib/<name>/
    bits: int
    qmodel: str  # the QuantizedModel's file, relative to the project
    qmodel_sha256: str  # QuantizedModel.quantized_sha256(): what the firmware reports
    checkpoint: str | None  # the float checkpoint's file, None when export had no float model
    model_sha256: str  # the float model's hash ("" when unknown)
    quantization: Quantization
    files: dict[str, str]  # sha256 of every other file of the project

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "generator": GENERATOR,
            "tool_version": self.tool_version,
            "board": self.board,
            "name": self.name,
            "bits": self.bits,
            "qmodel": self.qmodel,
            "qmodel_sha256": self.qmodel_sha256,
            "checkpoint": self.checkpoint,
            "model_sha256": self.model_sha256,
            "quantization": vars(self.quantization).copy(),
            "files": dict(sorted(self.files.items())),
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in doc:
        raise ValueError(f"no '{key}'")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"'{key}' must be {what}, not {value!r}")
    return value


def _hash(doc: dict[str, Any], key: str, empty_ok: bool = False) -> str:
    value = _field(doc, key, str, "a sha256 in hex")
    if not _SHA256.match(value) and not (empty_ok and value == ""):
        raise ValueError(f"'{key}' must be a sha256 in hex, not {value!r}")
    return str(value)


def _file(doc: dict[str, Any], key: str) -> str:
    value = _field(doc, key, str, "a file name")
    if not is_project_path(value):
        raise ValueError(f"'{key}' names {value!r}, not a file inside the project")
    return str(value)


def parse_manifest(doc: object) -> Manifest:
    """The :class:`Manifest` in a decoded JSON document; ``ValueError`` names what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("generator") != GENERATOR:
        raise ValueError("not written by edgecompile")
    version = doc.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise ValueError(f"manifest version {version!r}, this edgecompile reads version "
                         f"{MANIFEST_VERSION}: export the project again")
    bits = _field(doc, "bits", int, "8 or 16")
    if bits not in (8, 16):
        raise ValueError(f"'bits' must be 8 or 16, not {bits}")
    q = _field(doc, "quantization", dict, "an object")
    try:
        quant = Quantization(
            summary=_field(q, "summary", str, "text"), cell=_field(q, "cell", str, "text"),
            in_frac=_field(q, "in_frac", int, "an integer"),
            hid_frac=_field(q, "hid_frac", int, "an integer"),
            logit_frac=_field(q, "logit_frac", int, "an integer"),
            method=None if q.get("method") is None else _field(q, "method", str, "text"))
    except ValueError as exc:
        raise ValueError(f"quantization: {exc}") from None
    files = _field(doc, "files", dict, "an object")
    for rel, digest in files.items():
        if not is_project_path(rel):
            raise ValueError(f"'files' lists {rel!r}, not a file inside the project")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ValueError(f"'files' gives {rel!r} the hash {digest!r}, not a sha256 in hex")
    return Manifest(
        tool_version=_field(doc, "tool_version", str, "text"),
        board=_field(doc, "board", str, "a board id"),
        name=_field(doc, "name", str, "a C name"),
        bits=bits,
        qmodel=_file(doc, "qmodel"),
        qmodel_sha256=_hash(doc, "qmodel_sha256"),
        checkpoint=None if doc.get("checkpoint", "") is None else _file(doc, "checkpoint"),
        model_sha256=_hash(doc, "model_sha256", empty_ok=True),
        quantization=quant,
        files=dict(files),
    )


def read_manifest(project_dir: str | Path) -> Manifest:
    """The manifest of the project ``export`` wrote in ``project_dir``; a :class:`DataError`
    naming the directory or the field that is wrong."""
    root = Path(project_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (give the folder written by 'edgecompile export')")
    path = root / MANIFEST_FILE
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise DataError(f"{root} has no {MANIFEST_FILE}: not a project written by 'edgecompile "
                        "export' (export it again)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path} is not a regular file")
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    try:
        return parse_manifest(doc)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
