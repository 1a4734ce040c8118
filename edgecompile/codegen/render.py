"""Render the library from the templates: deterministic bytes keyed by relative path."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import jinja2

from edgecompile.codegen.context import build_context
from edgecompile.errors import CodegenError
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

#: The fast kernel of each backend (templates/library/kernels/): AVR assembly, Cortex-M DSP,
#: and portable C for the cores without either (hand-unrolled on the MCUs, a plain loop the
#: host compiler vectorizes).
KERNELS = {"avr": "avr", "armv7em": "armv7em", "armv7m": "portable", "armv6m": "portable", "native": "portable"}
#: Compiler flags of the library's own sources (library.json): on AVR the step at -O2 is a few
#: percent faster than at the board's -Os, and without inlining small functions no larger.
BUILD_FLAGS = {"avr": ["-O2", "-fno-inline-small-functions"]}


@dataclass(frozen=True)
class LibraryInfo:
    """What the generated library says about itself in ``library.json``/``library.properties``.

    The library holds the user's weights, so nothing is claimed for them: the defaults are neutral
    and ``export --library-version/--library-author/--library-license/--library-url`` set them.
    """

    version: str = "1.0.0"
    author: str = "unspecified"
    license: str | None = None  # an SPDX id such as "MIT"; None: no license is stated
    url: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d+\.\d+\.\d+", self.version):
            raise CodegenError(f"library version {self.version!r} is not MAJOR.MINOR.PATCH (e.g. 1.0.0)")
        for what, value in (("author", self.author), ("license", self.license or ""), ("url", self.url)):
            if any(ord(c) < 32 for c in value) or (what == "author" and not value.strip()):
                raise CodegenError(f"library {what} {value!r} must be one non-empty line of text")


#: The neutral metadata of a library exported without ``--library-*`` options.
DEFAULT_LIBRARY = LibraryInfo()


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


def render_library(qm: QuantizedModel, name: str, *, backend: str,
                   info: LibraryInfo = DEFAULT_LIBRARY) -> dict[str, bytes]:
    """The files of ``lib/<name>/`` for ``qm`` with the fast kernel of ``backend`` (one of
    :data:`KERNELS`, a board's ``kernel_backend``): ``{relative posix path: bytes}``, sorted.

    The same model, name and backend give the same bytes (no timestamps, no absolute paths).
    """
    if backend not in KERNELS:
        raise CodegenError(f"kernel backend {backend!r} is not one of {', '.join(KERNELS)}")
    ctx = build_context(qm, name)
    ctx.update(backend=backend, kernel=KERNELS[backend], offset_weights=backend == "avr",
               build_flags=BUILD_FLAGS.get(backend, []), library=asdict(info))
    env = environment()
    out = {}
    for template, path in LIBRARY_FILES:
        text = env.get_template(template).render(ctx)
        out[path.format(name=name)] = text.encode("ascii")
    return dict(sorted(out.items()))
