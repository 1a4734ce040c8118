"""One exception hierarchy; the CLI maps each class to an exit status.

Exit statuses of the ``edgecompile`` command:

- 0: success;
- 1: a check that ran and failed (parity mismatch, wrong model on the device);
- 2: bad input (files, data, options, environment values) or an unusable device/port;
- 3: an internal error, a bug in edgecompile (``--debug`` shows the traceback);
- 130: interrupted by Ctrl-C (SIGINT); 143: terminated by SIGTERM; 129: hang-up (SIGHUP).
"""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (what the CLI prints after ``edgecompile: error:``)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class EdgecompileError(Exception):
    """Base class for every error meant for the user (one clear line, no traceback)."""

    exit_code = EXIT_BAD_INPUT


class CheckpointError(EdgecompileError):
    """A checkpoint that cannot be read or does not describe a valid model."""


class DataError(EdgecompileError):
    """Input data (X, labels, calibration) that is unreadable or does not fit the model."""


class ConfigError(EdgecompileError):
    """An ``EDGECOMPILE_*`` environment variable with a value that cannot be used."""


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

    exit_code = EXIT_CHECK_FAILED


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP) turned into an exception, so that ``finally``
    blocks and ``except KeyboardInterrupt`` clean-ups (child processes) run as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
