"""Load, validate and save EdgeML-layout checkpoints (a ``.npz`` file or a directory of ``.npy``).

Every problem raises :class:`CheckpointError` with one line naming the key, the shape found and
the shape expected. Optional metadata keys (0-d string arrays) choose non-default
nonlinearities: ``gate_nonlinearity`` and ``update_nonlinearity``, each a name
``edgecompile.reference.NONLINEAR_FUNCTIONS`` knows. A directory written by EdgeML's trainer
also holds ``command.txt`` (see :mod:`edgecompile.frontend.edgeml`): its nonlinearities are used
when no metadata key gives them, and its dimensions and ranks are checked against the arrays.

Matrices are stored ``[in,out]`` (``x @ W``) or, as edgeml-pytorch 0.3.0's FastGRNNCell saves
them, ``[out,in]`` (``x @ W.T``); the layout is detected from the shapes (or given), and the
float model always holds them ``[in,out]``.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import stat
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np

from edgecompile.errors import CheckpointError, one_line
from edgecompile.files import npz_member_limit, open_regular, read_npy, read_npy_stream, stat_input, write_atomic
from edgecompile.frontend.edgeml import (
    COMMAND_FILE,
    FLAGS,
    LAYOUTS,
    CheckpointWarning,
    TrainingCommand,
    check_cell,
    check_nonlinearity,
    read_command,
)
from edgecompile.ir.model import (
    CellParams,
    ERNNParams,
    FastGRNNParams,
    FastRNNParams,
    FloatModel,
    Layout,
    Matrix,
    NlSource,
    Nonlinearity,
    Provenance,
)

Warn = Callable[[str], object]  # a one-line printer
_How = Literal["native", "detected", "given"]

GRNN_KEYS = {"Bg", "Bh", "zeta", "nu"}
RNN_KEYS = {"B", "alpha", "beta"}
ERNN_KEYS = {"B", "eta", "alpha"}  # eta (the K inner step sizes) marks an ERNN
MATRIX_KEYS = {"W", "W1", "W2", "U", "U1", "U2"}
COMMON_KEYS = {"FC", "FCbias", "mean", "std"}
META_KEYS = {"gate_nonlinearity", "update_nonlinearity"}
FLOAT32_MAX = float(np.finfo(np.float32).max)
KNOWN_KEYS = GRNN_KEYS | RNN_KEYS | ERNN_KEYS | MATRIX_KEYS | COMMON_KEYS | META_KEYS
#: The update nonlinearity a checkpoint without an ``update_nonlinearity`` key uses, per cell.
DEFAULT_UPDATE_NL: dict[str, Nonlinearity] = {"FastGRNN": "tanh", "FastRNN": "tanh", "ERNN": "relu"}


def load_checkpoint(path: str | os.PathLike[str], layout: Layout | None = None,
                    warn: Warn | None = None) -> FloatModel:
    """Read and validate a checkpoint; returns the float model IR.

    ``layout``: how the matrices are stored, ``in-out`` or ``out-in`` (None: detected from the
    shapes). A directory's ``command.txt`` is read too. ``warn`` prints each one-line warning
    (without it they are issued as :class:`CheckpointWarning`)."""
    p = Path(path)
    arrays = _read_arrays(p)
    command = read_command(p) if p.is_dir() else None
    model = model_from_arrays(arrays, source=str(path), command=command, layout=layout, warn=warn)
    return dataclasses.replace(model, sha256=model.content_hash())


def checkpoint_bytes(model: FloatModel) -> bytes:
    """``model`` as EdgeML-layout ``.npz`` bytes (float32 arrays), deterministic: sorted
    members, fixed timestamps, no compression — the same model always gives the same bytes."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in model.arrays().items()}
    if model.gate_nl not in (None, "sigmoid"):
        arrays["gate_nonlinearity"] = np.array(model.gate_nl)
    if model.update_nl != DEFAULT_UPDATE_NL[model.cell]:
        arrays["update_nonlinearity"] = np.array(model.update_nl)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, arrays[key], allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_checkpoint(model: FloatModel, path: str | os.PathLike[str]) -> None:
    """Write ``model`` as an EdgeML-layout ``.npz`` (float32 arrays), atomically and deterministically."""
    data = checkpoint_bytes(model)
    write_atomic(path, lambda fh: fh.write(data))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if stat.S_ISDIR(stat_input(path, CheckpointError).st_mode):
        files = sorted(path.glob("*.npy"))
        if not files:
            raise CheckpointError(f"{path}: directory holds no .npy files")
        return {f.stem: read_npy(f, CheckpointError) for f in files}
    with open_regular(path, CheckpointError) as fh:
        try:
            is_zip = zipfile.is_zipfile(fh)
            fh.seek(0)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if not is_zip:
            raise CheckpointError(f"{path}: not a .npz checkpoint (not a zip archive, or truncated)")
        try:
            return _read_npz(fh, path)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                RuntimeError) as exc:
            raise CheckpointError(f"{path}: unreadable .npz ({one_line(exc)})") from None


def _read_npz(fh: IO[bytes], path: Path) -> dict[str, np.ndarray]:
    """The members of an open ``.npz`` (as ``np.load`` names them: ``.npy`` stripped), each
    checked like a ``.npy`` file against the member's real size; duplicate names are refused."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(fh) as archive:
        infos = archive.infolist()
        seen: set[str] = set()
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in seen:
                raise CheckpointError(
                    f"{path}: two members named {key!r} (which one is meant is ambiguous)")
            seen.add(key)
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            where = f"{path}: member {info.filename}"
            if info.flag_bits & 0x1:
                raise CheckpointError(f"{where} is encrypted")
            with archive.open(info) as member:
                arrays[key] = read_npy_stream(member, npz_member_limit(info), where, CheckpointError)
                while member.read(1 << 20):  # the rest, so that the CRC is checked
                    pass
    return arrays


def _shape(a: np.ndarray) -> str:
    return "[" + ",".join(str(s) for s in a.shape) + "]"


def model_from_arrays(arrays: dict[str, np.ndarray], source: str = "checkpoint", *,
                      command: TrainingCommand | None = None, layout: Layout | None = None,
                      warn: Warn | None = None) -> FloatModel:
    """Validate raw named arrays (and the training command line, if any) and build the float
    model IR; ``layout`` as in :func:`load_checkpoint`."""
    if layout is not None and layout not in LAYOUTS:
        raise CheckpointError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if command is not None:
        check_cell(command)  # UGRNN, GRU, LSTM: named before their keys are called unknown
    keys = set(arrays)
    unknown = sorted(keys - KNOWN_KEYS)
    if unknown:
        raise CheckpointError(
            f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})"
        )
    meta = {k: _metadata(arrays[k], k, source) for k in META_KEYS & keys}
    if "eta" in keys and np.asarray(arrays["eta"]).size == 0:
        raise CheckpointError(f"{source}: eta has shape {_shape(arrays['eta'])}, expected [K] "
                              "with K >= 1 (one step size per inner step)")
    values = {k: _numeric(arrays[k], k, source) for k in keys - META_KEYS}

    if "eta" in keys and "beta" in keys:
        raise CheckpointError(f"{source}: has both eta (an ERNN's inner step sizes) and beta (a "
                              "FastRNN's); a checkpoint holds one cell")
    if "eta" in keys and keys & GRNN_KEYS:
        raise CheckpointError(
            f"{source}: mixes FastGRNN keys ({', '.join(sorted(keys & GRNN_KEYS))}) "
            f"with ERNN keys ({', '.join(sorted(keys & ERNN_KEYS))})"
        )
    if keys & GRNN_KEYS and keys & RNN_KEYS:
        raise CheckpointError(
            f"{source}: mixes FastGRNN keys ({', '.join(sorted(keys & GRNN_KEYS))}) "
            f"with FastRNN keys ({', '.join(sorted(keys & RNN_KEYS))})"
        )
    cell = "ERNN" if "eta" in keys else "FastRNN" if keys & RNN_KEYS else "FastGRNN"
    if command is not None:
        check_cell(command, cell)
    own = {"FastGRNN": GRNN_KEYS, "FastRNN": RNN_KEYS, "ERNN": ERNN_KEYS}[cell]
    needed = own | {"FC", "FCbias"}
    missing = sorted(needed - keys)
    if missing:
        article = "an" if cell == "ERNN" else "a"
        raise CheckpointError(f"{source}: missing key {missing[0]!r} for {article} {cell} checkpoint")

    refuse_square = command is not None and cell == "FastGRNN"
    hidden = {int(values[k].shape[0]) for k in ("FC",) if values[k].ndim == 2} | {
        int(values[k].size) for k in ("Bg", "B") if k in values}
    W, U, found, how = _cell_matrices(values, source, layout, refuse_square, hidden)
    D, H = W.in_dim, W.out_dim
    if command is not None:
        if command.empty:
            _warn(warn, f"{command.path} names none of {', '.join(f[0] for f in FLAGS.values())}: "
                        "nothing was taken from it")
        _check_dims(command, values, W, U, found)

    def vector(key: str, n: int) -> np.ndarray:
        a = values[key]
        if a.shape not in ((n,), (1, n)):
            raise CheckpointError(f"{source}: {key} has shape {_shape(a)}, expected [{n}] or [1,{n}]")
        return a.reshape(n)

    def scalar(key: str) -> float:
        a = values[key]
        if a.size != 1 or a.ndim > 2:
            raise CheckpointError(f"{source}: {key} has shape {_shape(a)}, expected a scalar or [1,1]")
        return float(a.reshape(()))

    fc = values["FC"]
    if fc.ndim != 2 or fc.shape[0] != H:
        hint = (" (it looks transposed: EdgeML stores [in,out])"
                if fc.ndim == 2 and fc.shape[1] == H else "")
        raise CheckpointError(f"{source}: FC has shape {_shape(fc)}, expected [{H},C]{hint}")
    C = fc.shape[1]
    fc_bias = vector("FCbias", C)
    params: CellParams
    update_nl, update_from = _nonlinearity("update_nonlinearity", meta, command, "update_nl",
                                           DEFAULT_UPDATE_NL[cell], source, warn)
    gate_from: NlSource | None = None
    if cell == "FastGRNN":
        gate_nl, gate_from = _nonlinearity("gate_nonlinearity", meta, command, "gate_nl", "sigmoid",
                                           source, warn)
        params = FastGRNNParams(bias_gate=vector("Bg", H), bias_update=vector("Bh", H),
                                zeta=scalar("zeta"), nu=scalar("nu"), gate_nl=gate_nl)
    elif cell == "ERNN":
        params = _ernn_params(values, vector("B", H), scalar("alpha"), source)
    else:
        params = FastRNNParams(bias=vector("B", H), alpha=scalar("alpha"), beta=scalar("beta"))

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    if ("mean" in keys) != ("std" in keys):
        present, absent = ("mean", "std") if "mean" in keys else ("std", "mean")
        raise CheckpointError(f"{source}: {present} given without {absent}")
    if "mean" in keys:
        mean, std = values["mean"].reshape(-1), values["std"].reshape(-1)
        if mean.size % D or mean.size == 0:
            raise CheckpointError(
                f"{source}: mean has shape {_shape(values['mean'])}, expected [{D}] or [T*{D}]"
            )
        if std.shape != mean.shape:
            raise CheckpointError(
                f"{source}: std has shape {_shape(values['std'])}, expected [{mean.size}] like mean"
            )
        if np.any(std <= 0):
            raise CheckpointError(f"{source}: std has a non-positive entry (it divides the input)")
    if cell != "FastGRNN" and "gate_nonlinearity" in meta:
        raise CheckpointError(f"{source}: gate_nonlinearity given for "
                              f"{'an' if cell == 'ERNN' else 'a'} {cell} (it has no gate)")
    provenance = Provenance(layout=found, layout_how=how, gate_nl_from=gate_from,
                            update_nl_from=update_from)
    return FloatModel(params=params, W=W, U=U, FC=fc, FCbias=fc_bias, mean=mean, std=std,
                      update_nl=update_nl, provenance=provenance)


def _ernn_params(values: dict[str, np.ndarray], bias: np.ndarray, alpha: float,
                 source: str) -> ERNNParams:
    """ERNN's step sizes (``eta [K]``, each > 0, K >= 1) and decay (``alpha >= 0``), as used."""
    eta = values["eta"]
    if eta.ndim > 2 or (eta.ndim == 2 and eta.shape[0] != 1):
        raise CheckpointError(f"{source}: eta has shape {_shape(eta)}, expected [K] "
                              "(one step size per inner step)")
    eta = eta.reshape(-1)
    if np.any(eta <= 0):
        bad = int(np.flatnonzero(eta <= 0)[0])
        raise CheckpointError(f"{source}: eta[{bad}] is {eta[bad]:g}, expected > 0 (an inner step size)")
    if alpha < 0:
        raise CheckpointError(f"{source}: alpha is {alpha:g}, expected >= 0 for an ERNN "
                              "(the decay toward equilibrium)")
    return ERNNParams(bias=bias, eta=np.ascontiguousarray(eta), alpha=alpha)


def _warn(warn: Warn | None, message: str) -> None:
    if warn is not None:
        warn(f"warning: {message}")
    else:
        warnings.warn(message, CheckpointWarning, stacklevel=4)


def _nonlinearity(key: str, meta: dict[str, Nonlinearity], command: TrainingCommand | None,
                  field: str, default: Nonlinearity, source: str,
                  warn: Warn | None) -> tuple[Nonlinearity, NlSource]:
    """A nonlinearity and where it came from: the metadata key, else command.txt, else the default;
    a metadata key that disagrees with command.txt wins, with a warning."""
    said = getattr(command, field) if command is not None else None
    if said is not None:
        assert command is not None
        check_nonlinearity(said, f"{command.path}: {command.flag(field)}")
    if key in meta:
        if said is not None and said != meta[key]:
            assert command is not None
            _warn(warn, f"{source}: {key} is {meta[key]} but {COMMAND_FILE} says "
                        f"{command.flag(field)} {said}; using {meta[key]} ({key} overrides {COMMAND_FILE})")
        return meta[key], "metadata"
    if said is not None:
        return cast(Nonlinearity, said), "command.txt"
    return default, "defaults"


def _check_dims(command: TrainingCommand, values: dict[str, np.ndarray], W: Matrix, U: Matrix,
                layout: Layout) -> None:
    """command.txt's dimensions and ranks agree with the matrices (read in ``layout``)."""
    read = "" if layout == "in-out" else ", read [out,in]"
    for name, actual, key, label in (
            ("input_dim", W.in_dim, "W1" if W.is_low_rank else "W", "D"),
            ("hidden_dim", W.out_dim, "W2" if W.is_low_rank else "W", "H")):
        want = getattr(command, name)
        if want is not None and want != actual:
            raise CheckpointError(f"{command.path}: {command.flag(name)} {want} ({label}), but {key} "
                                  f"has shape {_shape(values[key])} ({label}={actual}{read})")
    for name, m, base in (("w_rank", W, "W"), ("u_rank", U, "U")):
        want = getattr(command, name)
        if want is None or want == m.rank:
            continue
        if m.rank is None:
            raise CheckpointError(f"{command.path}: {command.flag(name)} {want} (rank of {base}), but "
                                  f"{base} is full rank (shape {_shape(values[base])})")
        raise CheckpointError(f"{command.path}: {command.flag(name)} {want} (rank of {base}), but "
                              f"{base}1 has shape {_shape(values[base + '1'])} (rank {m.rank}{read})")


def _metadata(a: np.ndarray, key: str, source: str) -> Nonlinearity:
    if a.dtype.kind not in "US" or a.size != 1 or a.ndim > 1:
        raise CheckpointError(
            f"{source}: {key} has dtype {a.dtype} shape {_shape(a)}, expected a 0-d string array"
        )
    value = a.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return cast(Nonlinearity, check_nonlinearity(str(value), f"{source}: {key}"))


def _numeric(a: np.ndarray, key: str, source: str) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise CheckpointError(f"{source}: {key} has dtype {a.dtype}, expected a float array")
    if a.size == 0:
        raise CheckpointError(f"{source}: {key} is empty (shape {_shape(a)})")
    out = a.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise CheckpointError(f"{source}: {key} contains NaN or Inf")
    if np.any(np.abs(out) > FLOAT32_MAX):
        raise CheckpointError(
            f"{source}: {key} has a value beyond the float32 range (|x| > {FLOAT32_MAX:.4g}); "
            "checkpoints are float32"
        )
    return out


class _ShapeError(CheckpointError):
    """A matrix shape that does not fit; ``progress``: how many factors were checked before it."""

    def __init__(self, message: str, progress: int) -> None:
        super().__init__(message)
        self.progress = progress


_MATRIX_KEYS = ("W", "W1", "W2", "U", "U1", "U2")


def _other(layout: Layout) -> Layout:
    return "out-in" if layout == "in-out" else "in-out"


def _cell_matrices(values: dict[str, np.ndarray], source: str, layout: Layout | None,
                   refuse_square: bool, hidden: set[int]) -> tuple[Matrix, Matrix, Layout, _How]:
    """W and U as ``[in,out]`` matrices, the layout they were stored in and how it was found
    (``native``, ``detected``, ``given``). Every matrix square fits both layouts: that is
    refused when ``refuse_square`` (a trainer that writes either wrote it), else read
    ``[in,out]``. A shape error names the matrix to blame: the first of those whose transposes
    would fit, or the first that fits neither way. ``hidden``: the H the classifier and biases
    imply; a layout whose H is not among them is dropped (unless that leaves none)."""
    fits: dict[Layout, tuple[Matrix, Matrix]] = {}
    errors: dict[Layout, _ShapeError] = {}
    for frame in LAYOUTS:
        try:
            fits[frame] = _w_and_u(values, source, frame == "out-in")
        except _ShapeError as exc:
            errors[frame] = exc
    if layout is not None:
        if layout in fits:
            return *fits[layout], layout, "given"
        raise _explain(values, source, layout, errors[layout], _other(layout) in fits, given=True)
    consistent = {frame: wu for frame, wu in fits.items() if wu[0].out_dim in hidden}
    if len(fits) == 2 and len(consistent) == 1:
        fits = consistent
    if len(fits) == 2:
        if refuse_square:
            H = fits["in-out"][0].out_dim
            raise CheckpointError(
                f"{source}: every matrix is square [{H},{H}], so the shapes cannot tell whether "
                "they are stored [in,out] or [out,in] (as edgeml-pytorch 0.3.0 saves a FastGRNN): "
                "pass --layout in-out or --layout out-in")
        return *fits["in-out"], "in-out", "native"
    if "in-out" in fits:
        return *fits["in-out"], "in-out", "native"
    if "out-in" in fits:
        return *fits["out-in"], "out-in", "detected"
    hints = {frame: _flips(values, source, frame) for frame in LAYOUTS}
    found = [frame for frame in LAYOUTS if hints[frame]]
    if found:
        frame = min(found, key=lambda f: len(hints[f] or ()))
    else:
        frame = max(LAYOUTS, key=lambda f: errors[f].progress)  # ties: in-out (max keeps the first)
    raise _explain(values, source, frame, errors[frame], False, given=False, flips=hints[frame])


def _flips(values: dict[str, np.ndarray], source: str, frame: Layout) -> tuple[str, ...] | None:
    """The fewest non-square matrices whose transposes make every shape fit ``frame``."""
    flippable = [k for k in _MATRIX_KEYS if k in values
                 and values[k].ndim == 2 and values[k].shape[0] != values[k].shape[1]]
    for n in range(1, len(flippable) + 1):
        for keys in itertools.combinations(flippable, n):
            try:
                _w_and_u({**values, **{k: values[k].T for k in keys}}, source, frame == "out-in")
            except CheckpointError:
                continue
            return keys
    return None


def _explain(values: dict[str, np.ndarray], source: str, frame: Layout, error: _ShapeError,
             other_fits: bool, given: bool, flips: tuple[str, ...] | None = None) -> CheckpointError:
    """The one-line error for shapes that do not fit ``frame``."""
    flips = flips if flips is not None or not given else _flips(values, source, frame)
    stored = {"in-out": "[in,out]", "out-in": "[out,in]"}
    if flips:
        first = values[flips[0]]
        hint = "it looks" if len(flips) == 1 else f"{', '.join(flips)} look"
        if other_fits:
            why = (f"the checkpoint looks {stored[_other(frame)]}: pass --layout {_other(frame)}, "
                   "or leave --layout out to detect it")
        else:
            why = ("a checkpoint stores every matrix [in,out] (x @ W), or every one [out,in]"
                   + (f"; read {stored[frame]} as --layout {frame} asks" if given else ""))
        return CheckpointError(f"{source}: {flips[0]} has shape {_shape(first)}, expected "
                               f"{_shape(first.T)} ({hint} transposed: {why})")
    if given:
        return CheckpointError(f"{error} (--layout {frame})")
    return CheckpointError(str(error) + (" (read [out,in], as W is stored)" if frame == "out-in" else ""))


def _w_and_u(values: dict[str, np.ndarray], source: str, transposed: bool) -> tuple[Matrix, Matrix]:
    W = _matrix(values, "W", source, None, None, transposed, done=0)
    H = W.out_dim
    return W, _matrix(values, "U", source, H, H, transposed, done=len(W.factors))


def _matrix(
    values: dict[str, np.ndarray], name: str, source: str, in_dim: int | None, out_dim: int | None,
    transposed: bool, done: int,
) -> Matrix:
    """A full ``name`` or low-rank ``name1 @ name2``, as ``[in,out]`` factors; ``None`` dims are
    free (named in errors). ``transposed``: the factors are stored ``[out,in]`` (used as
    ``x @ name1.T @ name2.T``); shapes in errors are the stored ones."""
    full, first, second = name, name + "1", name + "2"
    has_full, has_lr = full in values, (first in values or second in values)
    if has_full and has_lr:
        raise CheckpointError(f"{source}: both {full} and {first}/{second} given; use one form")
    if not has_full and not has_lr:
        raise CheckpointError(f"{source}: missing key {full!r} (or {first!r} and {second!r})")
    if has_lr and not (first in values and second in values):
        raise CheckpointError(
            f"{source}: missing key {second if first in values else first!r}: "
            f"a low-rank {name} needs both {first} and {second}"
        )

    def oriented(key: str) -> np.ndarray:
        f = values[key]
        return f.T if transposed and f.ndim == 2 else f

    in_name, out_name = ("D", "H") if name == "W" else ("H", "H")
    rank_name = "r" + name
    if has_full:
        expected = [(full, (in_dim, in_name), (out_dim, out_name))]
    else:
        f1 = oriented(first)
        rank = f1.shape[1] if f1.ndim == 2 else None
        expected = [
            (first, (in_dim, in_name), (None, rank_name)),
            (second, (rank, rank_name), (out_dim, out_name)),
        ]
    for index, (key, *dims) in enumerate(expected):
        f = oriented(key)
        shown = dims[::-1] if transposed else dims
        want = "[" + ",".join(label if n is None else str(n) for n, label in shown) + "]"
        if f.ndim != 2 or any(n is not None and f.shape[i] != n for i, (n, _) in enumerate(dims)):
            raise _ShapeError(f"{source}: {key} has shape {_shape(values[key])}, expected {want}",
                              done + index)
    return Matrix(tuple(np.ascontiguousarray(oriented(key)) for key, *_ in expected))
