"""Where the data folders shipped with the package live (``templates/``, ``firmware/``, ``boards/``).

In a wheel they sit inside the package; in a source checkout (editable install) at the repo root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder ``name`` (templates, firmware or boards), installed or from the checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgecompile is missing its {name}/ folder (broken installation?)")
