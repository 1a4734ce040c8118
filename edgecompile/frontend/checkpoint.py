"""Load, validate and save EdgeML-layout checkpoints (a ``.npz`` file or a directory of ``.npy``).

Every problem raises :class:`CheckpointError` with one line naming the key, the shape found and
the shape expected. Optional metadata keys (0-d string arrays) choose non-default
nonlinearities: ``gate_nonlinearity`` and ``update_nonlinearity``, each one of
sigmoid, tanh, quantSigm, quantTanh.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, cast

import numpy as np

from edgecompile.errors import CheckpointError, one_line
from edgecompile.files import npz_member_limit, open_regular, read_npy, read_npy_stream, stat_input, write_atomic
from edgecompile.ir.model import (
    NONLINEARITIES,
    CellParams,
    FastGRNNParams,
    FastRNNParams,
    FloatModel,
    Matrix,
    Nonlinearity,
)

GRNN_KEYS = {"Bg", "Bh", "zeta", "nu"}
RNN_KEYS = {"B", "alpha", "beta"}
MATRIX_KEYS = {"W", "W1", "W2", "U", "U1", "U2"}
COMMON_KEYS = {"FC", "FCbias", "mean", "std"}
META_KEYS = {"gate_nonlinearity", "update_nonlinearity"}
FLOAT32_MAX = float(np.finfo(np.float32).max)
KNOWN_KEYS = GRNN_KEYS | RNN_KEYS | MATRIX_KEYS | COMMON_KEYS | META_KEYS


def load_checkpoint(path: str | os.PathLike[str]) -> FloatModel:
    """Read and validate a checkpoint; returns the float model IR."""
    arrays = _read_arrays(Path(path))
    model = model_from_arrays(arrays, source=str(path))
    return dataclasses.replace(model, sha256=model.content_hash())


def checkpoint_bytes(model: FloatModel) -> bytes:
    """``model`` as EdgeML-layout ``.npz`` bytes (float32 arrays), deterministic: sorted
    members, fixed timestamps, no compression — the same model always gives the same bytes."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in model.arrays().items()}
    if model.gate_nl not in (None, "sigmoid"):
        arrays["gate_nonlinearity"] = np.array(model.gate_nl)
    if model.update_nl != "tanh":
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


def model_from_arrays(arrays: dict[str, np.ndarray], source: str = "checkpoint") -> FloatModel:
    """Validate raw named arrays and build the float model IR."""
    keys = set(arrays)
    unknown = sorted(keys - KNOWN_KEYS)
    if unknown:
        raise CheckpointError(
            f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})"
        )
    meta = {k: _metadata(arrays[k], k, source) for k in META_KEYS & keys}
    values = {k: _numeric(arrays[k], k, source) for k in keys - META_KEYS}

    if keys & GRNN_KEYS and keys & RNN_KEYS:
        raise CheckpointError(
            f"{source}: mixes FastGRNN keys ({', '.join(sorted(keys & GRNN_KEYS))}) "
            f"with FastRNN keys ({', '.join(sorted(keys & RNN_KEYS))})"
        )
    cell = "FastRNN" if keys & RNN_KEYS else "FastGRNN"
    needed = (RNN_KEYS if cell == "FastRNN" else GRNN_KEYS) | {"FC", "FCbias"}
    missing = sorted(needed - keys)
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r} for a {cell} checkpoint")

    W, U = _cell_matrices(values, source)
    D, H = W.in_dim, W.out_dim

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
    if cell == "FastGRNN":
        params = FastGRNNParams(bias_gate=vector("Bg", H), bias_update=vector("Bh", H),
                                zeta=scalar("zeta"), nu=scalar("nu"),
                                gate_nl=meta.get("gate_nonlinearity", "sigmoid"))
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
    if cell == "FastRNN" and "gate_nonlinearity" in meta:
        raise CheckpointError(f"{source}: gate_nonlinearity given for a FastRNN (it has no gate)")
    return FloatModel(params=params, W=W, U=U, FC=fc, FCbias=fc_bias, mean=mean, std=std,
                      update_nl=meta.get("update_nonlinearity", "tanh"))


def _metadata(a: np.ndarray, key: str, source: str) -> Nonlinearity:
    if a.dtype.kind not in "US" or a.size != 1 or a.ndim > 1:
        raise CheckpointError(
            f"{source}: {key} has dtype {a.dtype} shape {_shape(a)}, expected a 0-d string array"
        )
    value = a.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value not in NONLINEARITIES:
        raise CheckpointError(f"{source}: {key} is {value!r}, expected one of {', '.join(NONLINEARITIES)}")
    return cast(Nonlinearity, value)


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


def _cell_matrices(values: dict[str, np.ndarray], source: str) -> tuple[Matrix, Matrix]:
    """W and U; a shape error names the matrices whose transposes would fit (EdgeML's CUDA cell
    stores them [out,in]) rather than a matrix checked against a dimension they implied."""
    try:
        return _w_and_u(values, source)
    except CheckpointError as exc:
        flippable = [k for k in ("W", "W1", "W2", "U", "U1", "U2") if k in values
                     and values[k].ndim == 2 and values[k].shape[0] != values[k].shape[1]]
        subsets = sorted((c for n in range(1, len(flippable) + 1)
                          for c in itertools.combinations(flippable, n)), key=len)
        for keys in subsets:
            try:
                _w_and_u({**values, **{k: values[k].T for k in keys}}, source)
            except CheckpointError:
                continue
            first = values[keys[0]]
            hint = ("it looks" if len(keys) == 1 else f"{', '.join(keys)} look")
            raise CheckpointError(
                f"{source}: {keys[0]} has shape {_shape(first)}, expected {_shape(first.T)} "
                f"({hint} transposed: EdgeML stores [in,out])"
            ) from None
        raise exc from None


def _w_and_u(values: dict[str, np.ndarray], source: str) -> tuple[Matrix, Matrix]:
    W = _matrix(values, "W", source, in_dim=None, out_dim=None)
    H = W.out_dim
    return W, _matrix(values, "U", source, in_dim=H, out_dim=H)


def _matrix(
    values: dict[str, np.ndarray], name: str, source: str, in_dim: int | None, out_dim: int | None
) -> Matrix:
    """A full ``name`` or low-rank ``name1 @ name2``; ``None`` dims are free (named in errors)."""
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
    in_name, out_name = ("D", "H") if name == "W" else ("H", "H")
    rank_name = "r" + name
    if has_full:
        expected = [(full, (in_dim, in_name), (out_dim, out_name))]
    else:
        rank = values[first].shape[1] if values[first].ndim == 2 else None
        expected = [
            (first, (in_dim, in_name), (None, rank_name)),
            (second, (rank, rank_name), (out_dim, out_name)),
        ]
    for key, *dims in expected:
        f = values[key]
        want = "[" + ",".join(label if n is None else str(n) for n, label in dims) + "]"
        if f.ndim != 2 or any(n is not None and f.shape[i] != n for i, (n, _) in enumerate(dims)):
            raise CheckpointError(f"{source}: {key} has shape {_shape(f)}, expected {want}")
    return Matrix(tuple(np.ascontiguousarray(values[key]) for key, *_ in expected))
