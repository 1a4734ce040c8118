"""C code generation: QuantizedModel -> C library (templates/) -> PlatformIO project.

All C text lives in ``templates/``; this package builds the template context, validates names
and writes projects atomically.
"""

from .export import ExportResult, export_project, project_tree, write_project
from .names import c_ident, default_name
from .render import render_library

__all__ = ["ExportResult", "c_ident", "default_name", "export_project", "project_tree", "render_library",
           "write_project"]
