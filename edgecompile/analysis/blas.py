"""One BLAS thread for the report's many small matrix products.

The analysis runs thousands of small products ([N, H] @ [H, H]); a multi-threaded OpenBLAS spends
more time waking and spinning its threads than computing, badly so on a busy machine. This sets
NumPy's OpenBLAS (when it is the one loaded) to one thread for the duration, through the
library's own ``*_set_num_threads`` entry point, and leaves anything else untouched.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads")


def _openblas_libraries() -> list[ctypes.CDLL]:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({fields[-1] for fields in (line.split() for line in maps.splitlines())
                    if len(fields) >= 6 and "openblas" in fields[-1].lower() and ".so" in fields[-1]})
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def _entry(lib: ctypes.CDLL, names: tuple[str, ...]) -> Any:
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


@contextmanager
def blas_threads(count: int = 1) -> Iterator[None]:
    """Run the block with ``count`` OpenBLAS threads, restoring the previous number after."""
    restore = []
    for lib in _openblas_libraries():
        setter, getter = _entry(lib, _SETTERS), _entry(lib, _GETTERS)
        if setter is None or getter is None:
            continue
        getter.restype = ctypes.c_int
        previous = int(getter())
        setter.argtypes = [ctypes.c_int]
        setter(count)
        restore.append((setter, previous))
    try:
        yield
    finally:
        for setter, previous in restore:
            setter(previous)
