"""The Arduino IDE side of the model library: an ``examples/`` sketch and the ``.zip`` that the
IDE's "Sketch > Include Library > Add .ZIP Library..." installs.

The sketch runs one embedded sequence through the bit-exact integer path (``<name>_reset``,
``<name>_step``, ``<name>_logits``) and prints the class and the logits over ``Serial``. The
sequence is embedded already quantized on the host (``sim.quantize_inputs``: float64, the input
on which parity with the simulator is defined), so the device prints exactly the integer logits
of ``edgecompile predict`` for it.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import PurePosixPath

import numpy as np

from edgecompile.codegen.context import build_context
from edgecompile.codegen.names import c_ident
from edgecompile.codegen.render import environment
from edgecompile.errors import CodegenError
from edgecompile.ir.qmodel import QuantizedModel

SKETCH_TEMPLATE = "library/examples/sketch.ino.j2"
#: Steps of the all-zero sequence when no data is given and the model fixes no length.
DEFAULT_STEPS = 16
MAX_STEPS = 65535
#: The timestamp of every zip entry (the earliest a zip can hold): the same library gives the
#: same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sketch_name(name: str) -> str:
    """The example's sketch (and folder) name: ``kws_model`` -> ``KwsModelBasic``."""
    parts = [p for p in re.split(r"_+", c_ident(name)) if p]
    return "".join(p[0].upper() + p[1:] for p in parts) + "Basic"


def example_sequence(qm: QuantizedModel, X: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The int16 sequence ``[T, D]`` the example embeds and a phrase saying where it came from.

    ``X``: raw inputs ``[T, D]`` or ``[N, T, D]`` (the first sequence is used); None: raw zeros
    for the model's T steps (or :data:`DEFAULT_STEPS`)."""
    from edgecompile.sim.simulator import quantize_inputs

    if X is None:
        steps = qm.seq_len or DEFAULT_STEPS
        raw = np.zeros((1, steps, qm.input_dim))
        source = "a sequence of raw zeros (put one of your own sequences here)"
    else:
        raw = np.asarray(X, dtype=np.float64)
        if raw.ndim == 2:
            raw = raw[None]
        if raw.ndim != 3 or raw.shape[0] < 1:
            raise CodegenError(f"example data: expected [T, D] or [N, T, D] inputs, got shape {list(raw.shape)}")
        raw = raw[:1]
        source = "the first sequence of the data given at export"
    _, steps, dim = raw.shape
    if dim != qm.input_dim:
        raise CodegenError(f"example data: D={dim} but the model takes D={qm.input_dim}")
    if qm.seq_len is not None and steps != qm.seq_len:
        raise CodegenError(f"example data: T={steps} but the model's mean/std cover T={qm.seq_len} steps")
    if not 1 <= steps <= MAX_STEPS:
        raise CodegenError(f"example data: {steps} steps; the example takes 1 to {MAX_STEPS}")
    if not np.all(np.isfinite(raw)):
        raise CodegenError("example data: the sequence holds NaN or infinite values")
    return quantize_inputs(qm, raw)[0], source


def _c_int16(v: int) -> str:
    return "-32767 - 1" if v == -32768 else str(v)


def example_sketch_files(qm: QuantizedModel, name: str, X: np.ndarray | None = None) -> dict[str, bytes]:
    """The example sketch of the library ``name``: ``{path relative to lib/<name>/: bytes}``.

    One file, ``examples/<Sketch>/<Sketch>.ino`` (the Arduino IDE wants the folder and the
    sketch named alike). Deterministic: the same model, name and data give the same bytes."""
    ctx = build_context(qm, name)
    x_q, source = example_sequence(qm, X)
    sketch = sketch_name(name)
    ctx.update(sketch=sketch, steps=int(x_q.shape[0]), source=source,
               rows=[[_c_int16(int(v)) for v in row] for row in x_q])
    text = environment().get_template(SKETCH_TEMPLATE).render(ctx)
    return {f"examples/{sketch}/{sketch}.ino": text.encode("ascii")}


def library_zip(lib_files: dict[str, bytes], name: str) -> bytes:
    """A zip of the library for the Arduino IDE's "Add .ZIP Library...": every entry under the
    top folder ``<name>/``, sorted, with fixed timestamps and permissions (reproducible bytes).

    ``lib_files``: ``{path relative to lib/<name>/: bytes}``."""
    c_ident(name)
    if not lib_files:
        raise CodegenError(f"library {name}: no files to put in the zip")
    entries: list[tuple[str, bytes]] = []
    for rel, data in lib_files.items():
        parts = rel.split("/") if isinstance(rel, str) else [""]
        if "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise CodegenError(f"library {name}: {rel!r} is not a path inside the library")
        entries.append((f"{name}/{rel}", bytes(data)))
    folders = {f"{name}/"}
    for rel in lib_files:
        segments = PurePosixPath(rel).parts
        folders |= {f"{name}/" + "/".join(segments[:i]) + "/" for i in range(1, len(segments))}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in sorted([(f, b"") for f in folders] + entries):
            info = zipfile.ZipInfo(path, date_time=ZIP_DATE)
            info.create_system = 3  # unix: the permission bits below apply
            if path.endswith("/"):
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()
