"""What EdgeML's FastCells trainers write besides the arrays: ``command.txt`` and the layout.

``fastcell_example.py`` saves its own command line (``python fastcell_example.py -dir data/ -c
FastGRNN -id 16 -hd 32 -unl quantTanh ...``) as ``command.txt`` next to the ``.npy`` files; it
is the only record of the nonlinearities the model was trained with. :func:`read_command` reads
the flags that matter (cell, dimensions, ranks, nonlinearities) and ignores every other one.

A ``command.txt`` that is not a command line (binary data, not UTF-8, larger than
:data:`COMMAND_MAX_BYTES`, a flag without its value, a value of the wrong kind) is refused with
one line: it is the one place the nonlinearities are written, and guessing past it would give a
model that computes something else. One that names none of the flags gives a warning and
nothing is taken from it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from edgecompile.errors import CheckpointError
from edgecompile.files import open_regular
from edgecompile.ir.model import Layout

#: ``in-out``: ``x @ W`` with W ``[D,H]`` (EdgeML's TF trainer, edgeml_pytorch on GitHub,
#: edgecompile); ``out-in``: W ``[H,D]`` used as ``x @ W.T`` (edgeml-pytorch 0.3.0's FastGRNNCell).
LAYOUTS: tuple[Layout, ...] = ("in-out", "out-in")

COMMAND_FILE = "command.txt"
#: A training command line is a few hundred bytes; anything far larger is not one.
COMMAND_MAX_BYTES = 64 * 1024
#: Cells edgecompile compiles; the others EdgeML's trainers know are named in the error.
SUPPORTED_CELLS = ("FastGRNN", "FastRNN")

#: field -> (short flag, long flag), as ``getFastArgs`` in EdgeML's examples declares them.
FLAGS: dict[str, tuple[str, str]] = {
    "cell": ("-c", "--cell"),
    "input_dim": ("-id", "--input-dim"),
    "hidden_dim": ("-hd", "--hidden-dim"),
    "w_rank": ("-rW", "--wRank"),
    "u_rank": ("-rU", "--uRank"),
    "update_nl": ("-unl", "--update-nl"),
    "gate_nl": ("-gnl", "--gate-nl"),
}
#: Every long option of the trainer: argparse accepts an unambiguous prefix of one, so a prefix
#: is only read as one of :data:`FLAGS` when no other option shares it.
_TRAINER_LONG_OPTIONS = (
    "--data-dir", "--cell", "--input-dim", "--hidden-dim", "--epochs", "--batch-size",
    "--learning-rate", "--wRank", "--uRank", "--update-nl", "--gate-nl", "--output-file",
    "--decay-step", "--decay-rate", "--sW", "--sU",
)
_INT_FIELDS = ("input_dim", "hidden_dim", "w_rank", "u_rank")


class CheckpointWarning(UserWarning):
    """Something in a checkpoint that was read past (issued when no ``warn`` printer is given)."""


@dataclass(frozen=True)
class TrainingCommand:
    """The flags of an EdgeML training command line that describe the model (None: not given)."""

    path: str
    cell: str | None = None
    input_dim: int | None = None
    hidden_dim: int | None = None
    w_rank: int | None = None
    u_rank: int | None = None
    gate_nl: str | None = None
    update_nl: str | None = None
    #: field -> the flag as written in the file (for messages), e.g. ``{"hidden_dim": "-hd"}``
    spelled: dict[str, str] = field(default_factory=dict)

    def flag(self, name: str) -> str:
        return self.spelled.get(name, FLAGS[name][0])

    @property
    def empty(self) -> bool:
        return not self.spelled


def _field_of(token: str) -> tuple[str | None, str | None]:
    """(field, attached value) of a token that is one of :data:`FLAGS` (``--hidden-dim=32`` and
    unambiguous long prefixes included); (None, None) for anything else."""
    name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
    attached = value if eq else None
    for key, (short, long) in FLAGS.items():
        if name in (short, long):
            return key, attached
    if name.startswith("--") and len(name) > 2:
        matches = [o for o in _TRAINER_LONG_OPTIONS if o.startswith(name)]
        if len(matches) == 1:
            for key, (_, long) in FLAGS.items():
                if matches[0] == long:
                    return key, attached
    return None, None


def parse_command(text: str, path: str = COMMAND_FILE) -> TrainingCommand:
    """The model's flags from a training command line; later occurrences win (as in argparse).

    ``path`` names the file in errors. Raises :class:`CheckpointError` for a flag without a
    value or with a value of the wrong kind; unknown flags and positional words are skipped."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError:  # an unmatched quote: EdgeML joins argv with spaces, unquoted
        tokens = text.split()
    values: dict[str, str] = {}
    spelled: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        key, attached = _field_of(tokens[i])
        flag = tokens[i].partition("=")[0]
        i += 1
        if key is None:
            continue
        if attached is None:
            if i >= len(tokens) or (_field_of(tokens[i])[0] is not None):
                raise CheckpointError(f"{path}: {flag} has no value")
            attached = tokens[i]
            i += 1
        values[key], spelled[key] = attached, flag
    parsed: dict[str, int | str] = {}
    for key, value in values.items():
        if key in _INT_FIELDS:
            try:
                number = int(value, 10)
            except ValueError:
                number = 0
            if number <= 0:
                shown = value if len(value) <= 40 else value[:40] + "..."
                raise CheckpointError(f"{path}: {spelled[key]} is {shown!r}, expected a positive integer")
            parsed[key] = number
        else:
            parsed[key] = value
    return TrainingCommand(path=path, spelled=spelled, **parsed)  # type: ignore[arg-type]


def read_command(directory: Path) -> TrainingCommand | None:
    """``directory/command.txt`` parsed, or None when there is none.

    Refused in one line: a special file (FIFO, device), more than :data:`COMMAND_MAX_BYTES`,
    NUL bytes or text that is not UTF-8, and what :func:`parse_command` refuses."""
    path = directory / COMMAND_FILE
    if not os.path.lexists(path):
        return None
    with open_regular(path, CheckpointError) as fh:
        data = fh.read(COMMAND_MAX_BYTES + 1)
    if len(data) > COMMAND_MAX_BYTES:
        raise CheckpointError(
            f"{path}: larger than {COMMAND_MAX_BYTES} bytes: not a training command line "
            f"(remove it, or keep only the command EdgeML wrote)")
    if b"\0" in data:
        raise CheckpointError(f"{path}: binary data, not a training command line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text (byte {exc.start}): not a training command line") from None
    return parse_command(text, str(path))


def check_nonlinearity(name: str, where: str) -> str:
    """``name`` if edgecompile computes it (``edgecompile.reference.NONLINEAR_FUNCTIONS``), else
    a :class:`CheckpointError` naming the valid ones."""
    from edgecompile.reference import NONLINEAR_FUNCTIONS

    if name not in NONLINEAR_FUNCTIONS:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise CheckpointError(f"{where} is {shown!r}, expected one of {', '.join(NONLINEAR_FUNCTIONS)}")
    return name


def check_cell(command: TrainingCommand, arrays_cell: str | None = None) -> None:
    """The cell command.txt names is one edgecompile compiles, and (given ``arrays_cell``) the
    one the arrays hold."""
    if command.cell is None:
        return
    flag = command.flag("cell")
    if command.cell not in SUPPORTED_CELLS:
        shown = command.cell if len(command.cell) <= 40 else command.cell[:40] + "..."
        raise CheckpointError(
            f"{command.path}: {flag} {shown}: edgecompile compiles {' and '.join(SUPPORTED_CELLS)} "
            f"cells only, not {shown}")
    if arrays_cell is not None and command.cell != arrays_cell:
        raise CheckpointError(
            f"{command.path}: {flag} {command.cell}, but the arrays are a {arrays_cell}'s "
            f"({ {'FastRNN': 'B, alpha, beta', 'ERNN': 'B, eta, alpha'}.get(arrays_cell, 'Bg, Bh, zeta, nu')})")
