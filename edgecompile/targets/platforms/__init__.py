"""One :class:`~edgecompile.targets.platforms.base.Platform` per SoC family.

A board's JSON names its platform (``"platform": "mps2"``): the module of that name here, whose
``PLATFORM`` class is built for the board. Adding a family is one module, its ``firmware/<name>/``
folder and the boards' JSON files (docs/targets.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from edgecompile.errors import BoardError
from edgecompile.targets.boards import BoardProfile, get_board
from edgecompile.targets.platforms.base import Platform


@cache
def platform_names() -> tuple[str, ...]:
    """The modules here that define a ``PLATFORM``."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        if hasattr(importlib.import_module(f"{__name__}.{info.name}"), "PLATFORM"):
            names.append(info.name)
    return tuple(sorted(names))


def platform_for(board: BoardProfile | str) -> Platform:
    """The Platform of ``board`` (a profile or an id); :class:`BoardError` when the board's JSON
    names no known platform or asks for something the platform does not do."""
    board = get_board(board)
    if board.platform not in platform_names():
        raise BoardError(f"board '{board.id}': platform '{board.platform}' is not one of "
                         f"{', '.join(platform_names())}")
    cls: type[Platform] = importlib.import_module(f"{__name__}.{board.platform}").PLATFORM
    return cls(board)


__all__ = ["Platform", "platform_for", "platform_names"]
