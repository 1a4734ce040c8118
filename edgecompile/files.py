"""Writing output files: exactly the path asked for, atomically, failures as one-line errors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import EdgecompileError, one_line


def read_npy(path: str | os.PathLike, error: type[EdgecompileError]) -> np.ndarray:
    """One array from a ``.npy`` file (no pickles); anything else raises ``error`` in one line."""
    try:
        a = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise error(f"{path}: not a readable .npy array ({exc.strerror or exc})") from None
    except (ValueError, EOFError) as exc:
        raise error(f"{path}: not a readable .npy array ({one_line(exc)})") from None
    if not isinstance(a, np.ndarray):  # a .npz archive under a .npy name
        a.close()
        raise error(f"{path}: not a .npy array (it is a .npz archive)")
    return a


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(binary_file)``: a temporary file renamed into place, so a
    failure leaves nothing behind. Permissions follow the umask like ``open(path, "w")``.
    An unwritable path raises :class:`EdgecompileError` (exit status 2)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise EdgecompileError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise EdgecompileError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
