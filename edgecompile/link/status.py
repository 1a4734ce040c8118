"""Protocol status codes, read from the one table the C harness also uses
(``firmware/harness/ech_status.def``), so the two sides cannot drift."""

from __future__ import annotations

import re
from functools import lru_cache

from edgecompile.resources import resource_dir

_LINE = re.compile(r'^ECH_STATUS\((\d+),\s*([A-Z_]+),\s*"([^"]*)"\)\s*$', re.M)


@lru_cache(maxsize=1)
def status_table() -> dict[int, tuple[str, str]]:
    """``{code: (NAME, text)}`` from ech_status.def."""
    text = (resource_dir("firmware") / "harness" / "ech_status.def").read_text()
    table = {int(c): (name, msg) for c, name, msg in _LINE.findall(text)}
    if not table:
        raise RuntimeError("firmware/harness/ech_status.def has no ECH_STATUS entries")
    return table


def code(name: str) -> int:
    for c, (n, _) in status_table().items():
        if n == name:
            return c
    raise KeyError(name)


def describe(status: int) -> str:
    name, text = status_table().get(status, (f"STATUS_{status}", "unknown status"))
    return f"{name} ({text})"


OK = code("OK")
BAD_CRC = code("BAD_CRC")
BAD_FRAME = code("BAD_FRAME")
TOO_LONG = code("TOO_LONG")
BAD_LENGTH = code("BAD_LENGTH")
BAD_COMMAND = code("BAD_COMMAND")
BAD_ARG = code("BAD_ARG")
NO_SESSION = code("NO_SESSION")
BAD_SEQUENCE = code("BAD_SEQUENCE")
