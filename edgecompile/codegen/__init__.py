"""C code generation: a QuantizedModel becomes the files of its C library, ``{path: bytes}``.

All C text lives in ``templates/``; this package only builds the template context and checks
the C names. Writing projects to disk is the pipeline's job (:mod:`edgecompile.pipeline.export`).
"""

from edgecompile.codegen.names import c_ident, default_name
from edgecompile.codegen.render import render_library

__all__ = ["c_ident", "default_name", "render_library"]
