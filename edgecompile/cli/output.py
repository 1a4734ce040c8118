"""What every command shares: warnings on stderr, JSON reports, output paths."""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from edgecompile.errors import EdgecompileError
from edgecompile.files import check_output, is_stdout, write_output


def warn(message: str) -> None:
    click.echo(f"edgecompile: {message}", err=True)


def write_json(path: str | None, report: dict[str, Any]) -> None:
    """The report as JSON to ``path`` (``-``: standard output); nothing without a path."""
    if path is not None:
        text = json.dumps(report, indent=2, sort_keys=True) + "\n"
        write_output(path, lambda fh: fh.write(text.encode()))


def save_npy(path: str, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended; ``-``: standard output)."""
    write_output(path, lambda fh: np.save(fh, array))


def human_to_stderr(*outputs: str | None) -> bool:
    """Check ``outputs`` before any work; True when one is standard output (the human text then
    goes to stderr)."""
    for p in outputs:
        if p is not None:
            check_output(p)
    if sum(is_stdout(p) for p in outputs) > 1:
        raise EdgecompileError("only one output can be standard output (-)")
    return any(is_stdout(p) for p in outputs)
