"""One exception hierarchy; the CLI maps each class to an exit status.

Exit statuses (DESIGN.md): 0 success, 1 a failed check (parity mismatch, wrong model on the
device), 2 bad input or an unusable device/port.
"""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (what the CLI prints after ``edgecompile: error:``)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class EdgecompileError(Exception):
    """Base class for every error meant for the user (one clear line, no traceback)."""

    exit_code = 2


class CheckpointError(EdgecompileError):
    """A checkpoint that cannot be read or does not describe a valid model."""


class DataError(EdgecompileError):
    """Input data (X, labels, calibration) that is unreadable or does not fit the model."""


class QuantError(EdgecompileError):
    """A model that cannot be quantized as asked (e.g. provable overflow)."""


class CodegenError(EdgecompileError):
    """Generated output cannot be written (bad name, non-empty directory, ...)."""


class BoardError(EdgecompileError):
    """Unknown board, or a model that cannot fit the board's budget."""


class BuildError(EdgecompileError):
    """A firmware build or upload that failed."""


class LinkError(EdgecompileError):
    """A serial link that cannot be used: missing port, silence, garbage, protocol error."""


class LinkTimeout(LinkError):
    """No complete reply within the allowed time."""


class CheckFailed(EdgecompileError):
    """A check that ran and failed: parity mismatch, model hash mismatch."""

    exit_code = 1
