"""Reading arrays and writing output files: exactly the path asked for (regular files atomically,
FIFOs, devices and standard output written through), failures as one-line errors."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import select
import stat
import sys
import tempfile
import time
import tokenize
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

from edgecompile.errors import EdgecompileError, one_line

#: Kinds of non-regular files, named in "not a regular file (...)" errors.
_FILE_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
               (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
               (stat.S_ISSOCK, "socket"))
#: Largest .npy header read (numpy's own default limit).
_NPY_MAX_HEADER = 10000
#: Deflate expands at most about 1032:1; a zip member claiming more is refused before reading.
_DEFLATE_MAX_RATIO = 1040


def _stat_failure(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file or directory"
    return exc.strerror or str(exc)


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is ("FIFO", "character device", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), "special file")


def stat_input(path: str | os.PathLike, error: type[EdgecompileError]) -> os.stat_result:
    """``os.stat`` (symlinks followed) of an input; a missing path or a symlink loop raises
    ``error`` in one line."""
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(path):
            raise error(f"{path}: dangling symlink (its target does not exist)") from None
        raise error(f"{path}: {_stat_failure(exc)}") from None
    except ValueError as exc:  # an embedded NUL byte
        raise error(f"{path}: {one_line(exc)}") from None


def open_regular(path: str | os.PathLike, error: type[EdgecompileError]) -> BinaryIO:
    """Open an input for reading only if it is a regular file (or a symlink to one).

    FIFOs, devices, sockets and directories are refused before they are opened (reading them
    could block forever or never end); the descriptor is opened non-blocking and checked again,
    so a file swapped in between is refused too."""
    kind = file_kind(stat_input(path, error).st_mode)
    if kind:
        raise error(f"{path}: not a regular file ({kind})")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{path}: cannot read ({_stat_failure(exc)})") from None
    kind = file_kind(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        raise error(f"{path}: not a regular file ({kind})")
    return os.fdopen(fd, "rb")


def read_npy_stream(fh: IO[bytes], available: int, where: str,
                    error: type[EdgecompileError]) -> np.ndarray:
    """One array from an open ``.npy`` stream holding ``available`` bytes. The header is checked
    against ``available`` before any memory is allocated: a header that claims more data than
    the stream holds, object dtypes (pickles) and truncated data raise ``error`` in one line."""
    def bad(why: str) -> EdgecompileError:
        return error(f"{where}: not a readable .npy array ({why})")

    try:
        head = fh.read(6)
        if head.startswith(b"PK\x03\x04"):
            raise error(f"{where}: not a .npy array (it is a .npz archive)")
        if head != np.lib.format.MAGIC_PREFIX:
            raise bad("no .npy header")
        version = tuple(fh.read(2))
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(fh, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(fh, max_header_size=_NPY_MAX_HEADER)
        else:
            raise bad(f"unsupported .npy format version {version}")
        shape, fortran, dtype = header
        if dtype.hasobject:
            raise bad("it holds Python objects; pickled arrays are not read")
        if dtype.itemsize == 0:
            raise bad(f"elements of {dtype} have no size")
        count = 1
        for n in shape:
            count *= int(n)
        need = count * dtype.itemsize
        have = available - fh.tell()
        if need > have:
            raise bad(f"the header claims shape {tuple(shape)} of {dtype}, {need:,} bytes, "
                      f"but only {max(have, 0):,} follow it")
        a = np.empty(count, dtype=dtype)
        raw = a.view(np.uint8).data if need else memoryview(b"")
        done = 0
        while done < need:
            chunk = fh.read(min(need - done, 1 << 20))
            if not chunk:
                raise bad(f"truncated: {done:,} of {need:,} data bytes")
            raw[done:done + len(chunk)] = chunk
            done += len(chunk)
    except EdgecompileError:
        raise
    except OSError as exc:
        raise bad(exc.strerror or one_line(exc)) from None
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError, tokenize.TokenError) as exc:
        raise bad(one_line(exc)) from None  # numpy parses the header as a Python literal
    except MemoryError:
        raise bad("too large for the memory of this machine") from None
    return a.reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | os.PathLike, error: type[EdgecompileError]) -> np.ndarray:
    """One array from a ``.npy`` file (a regular file; no pickles); anything else raises
    ``error`` in one line."""
    with open_regular(path, error) as fh:
        return read_npy_stream(fh, os.fstat(fh.fileno()).st_size, str(path), error)


def npz_member_limit(info: zipfile.ZipInfo) -> int:
    """The most bytes a zip member can really expand to: its recorded size, capped by what its
    compressed size can hold (stored: equal; deflate: about 1032:1)."""
    if info.compress_type == zipfile.ZIP_STORED:
        return min(info.file_size, info.compress_size)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return min(info.file_size, info.compress_size * _DEFLATE_MAX_RATIO + 64)
    return info.file_size


#: Paths that name this process's standard output or error: written through the descriptor itself.
_STD_PATHS = {"/dev/stdout": 1, "/dev/fd/1": 1, "/proc/self/fd/1": 1,
              "/dev/stderr": 2, "/dev/fd/2": 2, "/proc/self/fd/2": 2}
#: How long a write to a FIFO waits for a reader to open it.
FIFO_OPEN_TIMEOUT_S = 10.0
#: How long a write to a FIFO or a device may make no progress before it is given up.
WRITE_STALL_TIMEOUT_S = 30.0


def is_stdout(path: str | os.PathLike | None) -> bool:
    """True if ``path`` is ``-`` or names this process's standard output (``/dev/stdout``)."""
    return path is not None and (os.fspath(path) == "-" or _STD_PATHS.get(os.fspath(path)) == 1)


def _cannot(path: str, why: object) -> EdgecompileError:
    if isinstance(why, OSError):
        why = why.strerror or why
    return EdgecompileError(f"{path}: cannot write ({why})")


def _render(write: Callable[[BinaryIO], object]) -> bytes:
    """The whole output in memory first: a failure while producing it writes nothing."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def write_output(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(binary_file)``, never turning the path into something else.

    - ``-``, ``/dev/stdout``, ``/dev/stderr``: the standard stream itself.
    - A regular file, or a new one: a temporary file renamed into place, so a failure leaves
      nothing behind. A symlink is followed: its target is replaced and the link stays. An existing
      file keeps its permissions; a new one follows the umask like ``open(path, "w")``.
    - A FIFO or a character device (``/dev/null``, a terminal): written through, once the whole
      output is ready; a FIFO waits :data:`FIFO_OPEN_TIMEOUT_S` for a reader.
    - A directory, a block device, a socket, a symlink loop, an empty path: refused.

    Every failure raises :class:`EdgecompileError` (exit status 2) in one line.
    """
    name = os.fsdecode(os.fspath(path))
    fd, st = _classify(name)
    if fd is not None:
        _write_fd(name, fd, _render(write))
        return
    if st is None or stat.S_ISREG(st.st_mode):
        target = os.path.realpath(name)
        try:
            same = st is None or os.path.samestat(st, os.stat(target))
        except OSError:
            same = False
        if same:
            _replace_atomic(name, Path(target), write, st)
        else:  # a descriptor link of /proc whose name resolves elsewhere: write the open file
            _write_through(name, _render(write), truncate=True)
        return
    _write_through(name, _render(write), fifo=stat.S_ISFIFO(st.st_mode))


def check_output(path: str | os.PathLike) -> None:
    """Refuse early, before any work, a path that :func:`write_output` would refuse."""
    _classify(os.fsdecode(os.fspath(path)))


def _classify(name: str) -> tuple[int | None, os.stat_result | None]:
    """(standard descriptor, None) for ``-``/``/dev/stdout``/..., else (None, the path's stat
    following symlinks, or None for a new file); refuses what cannot be written."""
    if name == "":
        raise EdgecompileError("the output path is empty: give a file name, or - for standard output")
    fd = 1 if name == "-" else _STD_PATHS.get(name)
    if fd is not None:
        return fd, None
    try:
        st = os.stat(name)
    except FileNotFoundError:  # a new file, or a symlink to one: its directory must exist
        parent = os.path.dirname(os.path.realpath(name))
        if not os.path.isdir(parent):
            raise _cannot(name, f"no such directory: {parent}") from None
        return None, None
    except OSError as exc:
        raise _cannot(name, "a symlink loop" if exc.errno == errno.ELOOP else exc) from None
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            raise _cannot(name, f"it is {what}")
    return None, st


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """:func:`write_output` (regular files are replaced atomically)."""
    write_output(path, write)


def _replace_atomic(name: str, target: Path, write: Callable[[BinaryIO], object],
                    st: os.stat_result | None) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise _cannot(name, exc) from None
    try:
        if st is not None:
            mode = stat.S_IMODE(st.st_mode)
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):
                    os.fchown(fd, st.st_uid, st.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, target)
    except OSError as exc:
        raise _cannot(name, exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_fd(name: str, fd: int, data: bytes) -> None:
    """``data`` to an inherited descriptor, after what Python buffered for it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise _cannot(name, exc) from None


def _write_through(name: str, data: bytes, fifo: bool = False, truncate: bool = False) -> None:
    """``data`` into an existing FIFO, device or open file, without replacing the path."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    deadline = time.monotonic() + FIFO_OPEN_TIMEOUT_S
    while True:
        try:
            fd = os.open(name, flags)
            break
        except OSError as exc:
            if not (fifo and exc.errno == errno.ENXIO):  # ENXIO: a FIFO nobody reads yet
                raise _cannot(name, exc) from None
            if time.monotonic() >= deadline:
                raise _cannot(name, f"no reader opened the FIFO within {FIFO_OPEN_TIMEOUT_S:g} s") from None
            time.sleep(0.02)
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:
                pass
            if not select.select([], [fd], [], WRITE_STALL_TIMEOUT_S)[1]:
                raise _cannot(name, f"nothing was taken for {WRITE_STALL_TIMEOUT_S:g} s")
    except OSError as exc:
        raise _cannot(name, exc) from None
    finally:
        os.close(fd)
