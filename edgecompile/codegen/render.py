"""Rendering the C library from the templates: deterministic bytes keyed by relative path."""

from __future__ import annotations

import jinja2

from edgecompile.codegen.context import build_context
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.resources import resource_dir

#: Library files: (template under templates/, output path under lib/<name>/ with {name}).
LIBRARY_FILES = (
    ("library/library.json.j2", "library.json"),
    ("library/library.properties.j2", "library.properties"),
    ("library/edgecompile_model.h.j2", "src/edgecompile_model.h"),
    ("library/model.c.j2", "src/{name}.c"),
    ("library/model.h.j2", "src/{name}.h"),
    ("library/model_data.h.j2", "src/{name}_data.h"),
)


def environment() -> jinja2.Environment:
    """The Jinja environment over ``templates/``: strict (an undefined name is an error)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_library(qm: QuantizedModel, name: str) -> dict[str, bytes]:
    """The files of ``lib/<name>/`` for ``qm``: ``{relative posix path: bytes}``, sorted.

    The same model and name give the same bytes (no timestamps, no absolute paths).
    """
    ctx = build_context(qm, name)
    env = environment()
    out = {}
    for template, path in LIBRARY_FILES:
        text = env.get_template(template).render(ctx)
        out[path.format(name=name)] = text.encode("ascii")
    return dict(sorted(out.items()))
