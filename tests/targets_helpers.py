"""Helpers for the boards/build/flash tests: projects with the hand-written stand-in library."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgecompile.targets.manifest import MANIFEST_FILE, Manifest, Quantization
from edgecompile.targets.project import project_files, write_files

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STANDIN_LIB = FIXTURES / "standin" / "lib"
STANDIN_MAIN = FIXTURES / "standin" / "src"


def make_project(root: Path, board: str, *, harness: bool = True, src: Path | None = None,
                 framework: str | None = None, lib: Path = STANDIN_LIB) -> Path:
    """A project for ``board``: project_files() + the stand-in model library (+ ``src``) + a
    manifest naming the board and int8 weights (the stand-in has no quantized model)."""
    d = root / board
    write_files(d, project_files(board, "tiny", harness=harness, framework=framework))
    manifest = Manifest(tool_version="0", board=board, name="tiny", bits=8, qmodel="model.qmodel.json",
                        qmodel_sha256="0" * 64, checkpoint=None, model_sha256="",
                        quantization=Quantization("stand-in", "FastGRNN", 0, 0, 0, None), files={})
    (d / MANIFEST_FILE).write_bytes(manifest.to_bytes())
    shutil.copytree(lib, d / "lib", dirs_exist_ok=True)
    if src is not None:
        shutil.copytree(src, d / "src", dirs_exist_ok=True)
    return d


def set_define(project: Path, name: str, value: int) -> None:
    """Change ``#define NAME value`` in the stand-in library header of ``project``."""
    h = project / "lib" / "tiny" / "src" / "tiny.h"
    lines = []
    for line in h.read_text().splitlines():
        if line.startswith(f"#define {name} "):
            line = f"#define {name} {value}"
        lines.append(line)
    h.write_text("\n".join(lines) + "\n")


def export_real(root: Path, board: str, *, name: str = "kws", bits: int = 8, calib_n: int = 32,
                **shape) -> Path:
    """A real ``edgecompile export`` (quantizer + generated library + harness) of a random
    model with ``shape`` (tests.helpers.models.make_model keywords), calibrated on random inputs."""
    from edgecompile.pipeline.export import export_project

    from .helpers.models import make_inputs, make_model

    model = make_model(**(shape or {"D": 4, "H": 8, "C": 3}))
    out = root / f"{name}_{board}"
    export_project(model, board, bits=bits, calib=make_inputs(model, n=calib_n, T=12),
                   out_dir=out, name=name)
    return out
