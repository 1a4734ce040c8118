"""The float model IR: what a validated checkpoint is, and what every later stage consumes.

Matrices follow EdgeML's row-vector convention: ``x @ W`` with ``W`` stored ``[in, out]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

import numpy as np

Cell = Literal["FastGRNN", "FastRNN", "ERNN"]
#: The cells that quantize and compile to a target (every ``Cell`` loads, runs in float and trains).
DEPLOYABLE_CELLS: tuple[Cell, ...] = ("FastGRNN", "FastRNN", "ERNN")
Nonlinearity = Literal["sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu"]
NONLINEARITIES: tuple[str, ...] = ("sigmoid", "tanh", "quantSigm", "quantTanh", "quantSigm4", "relu")


Layout = Literal["in-out", "out-in"]
NlSource = Literal["metadata", "command.txt", "defaults"]


@dataclass(frozen=True)
class Provenance:
    """How a checkpoint was read: its stored layout (``native``: edgecompile's ``[in,out]``,
    ``detected`` from the shapes, ``given`` by ``--layout``) and where each nonlinearity came
    from (``None``: the cell has no gate)."""

    layout: Layout = "in-out"
    layout_how: Literal["native", "detected", "given"] = "native"
    gate_nl_from: NlSource | None = "defaults"
    update_nl_from: NlSource = "defaults"


@dataclass(frozen=True)
class Matrix:
    """An ``[in, out]`` matrix, stored full (one factor) or low rank (``M1 @ M2``)."""

    factors: tuple[np.ndarray, ...]

    @property
    def in_dim(self) -> int:
        return int(self.factors[0].shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.factors[-1].shape[1])

    @property
    def rank(self) -> int | None:
        """The inner dimension of a low-rank matrix, ``None`` for a full one."""
        return int(self.factors[0].shape[1]) if len(self.factors) == 2 else None

    @property
    def is_low_rank(self) -> bool:
        return len(self.factors) == 2

    def dense(self) -> np.ndarray:
        """The full ``[in, out]`` matrix (the product of the factors)."""
        if len(self.factors) == 1:
            return self.factors[0]
        return self.factors[0] @ self.factors[1]

    def nonzeros(self) -> int:
        return int(sum(np.count_nonzero(f) for f in self.factors))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Matrix):
            return NotImplemented
        return len(self.factors) == len(other.factors) and all(
            np.array_equal(a, b) for a, b in zip(self.factors, other.factors, strict=True)
        )

    def __hash__(self) -> int:
        return hash(tuple((f.shape, np.asarray(f, dtype="<f8").tobytes()) for f in self.factors))

    def params(self) -> int:
        return int(sum(f.size for f in self.factors))


class _Dims(Protocol):
    """What the shape needs of W: its input and output widths."""

    @property
    def in_dim(self) -> int: ...

    @property
    def out_dim(self) -> int: ...


class _Shaped(Protocol):
    @property
    def shape(self) -> tuple[int, ...]: ...


class ModelShape:
    """Dimensions and input normalisation, shared by the float and the quantized model.

    ``mean``/``std`` have length D, or T*D (EdgeML's layout: one entry per time-step offset), or
    are absent (identity)."""

    W: _Dims
    FC: _Shaped
    mean: np.ndarray | None
    std: np.ndarray | None

    @property
    def input_dim(self) -> int:
        return self.W.in_dim

    @property
    def hidden_dim(self) -> int:
        return self.W.out_dim

    @property
    def num_classes(self) -> int:
        return int(self.FC.shape[1])

    @property
    def seq_len(self) -> int | None:
        """T when the normalisation is per time-step offset (the T*D layout), else None."""
        if self.mean is not None and self.mean.size != self.input_dim:
            return self.mean.size // self.input_dim
        return None

    def normalisation(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-step ``(mean, std)`` arrays of shape ``[steps, D]`` (identity when absent)."""
        d = self.input_dim
        mean = np.zeros(d) if self.mean is None else self.mean
        std = np.ones(d) if self.std is None else self.std
        if mean.size == d:
            return np.broadcast_to(mean, (steps, d)), np.broadcast_to(std, (steps, d))
        return mean.reshape(steps, d), std.reshape(steps, d)


@dataclass(frozen=True, eq=False)
class FastGRNNParams:
    """FastGRNN's own parameters: gate and update biases, raw residual scalars, gate nonlinearity."""

    bias_gate: np.ndarray  # Bg
    bias_update: np.ndarray  # Bh
    zeta: float  # raw (before sigmoid), as EdgeML saves it
    nu: float
    gate_nl: Nonlinearity = "sigmoid"

    name: ClassVar[Cell] = "FastGRNN"

    def arrays(self) -> dict[str, np.ndarray]:
        return {"Bg": self.bias_gate, "Bh": self.bias_update,
                "zeta": np.asarray(self.zeta), "nu": np.asarray(self.nu)}


@dataclass(frozen=True, eq=False)
class FastRNNParams:
    """FastRNN's own parameters: one bias and the raw residual scalars."""

    bias: np.ndarray  # B
    alpha: float  # raw (before sigmoid), as EdgeML saves it
    beta: float

    name: ClassVar[Cell] = "FastRNN"

    def arrays(self) -> dict[str, np.ndarray]:
        return {"B": self.bias, "alpha": np.asarray(self.alpha), "beta": np.asarray(self.beta)}


@dataclass(frozen=True, eq=False)
class ERNNParams:
    """ERNN's own parameters: one bias, the K inner step sizes and the equilibrium decay, all as
    used (no transform): ``g_i = g_{i-1} + eta[i-1] * (phi((g_{i-1} + h) @ U + x @ W + B)
    - alpha * (g_{i-1} + h))`` for ``i = 1..K``, from ``g_0 = h``; the new state is ``g_K``."""

    bias: np.ndarray  # B [H]
    eta: np.ndarray  # [K], every entry > 0
    alpha: float  # >= 0

    name: ClassVar[Cell] = "ERNN"

    @property
    def inner_steps(self) -> int:
        """K, the number of inner steps per time step."""
        return int(self.eta.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"B": self.bias, "eta": self.eta, "alpha": np.asarray(self.alpha)}


CellParams = FastGRNNParams | FastRNNParams | ERNNParams


@dataclass(frozen=True)
class FloatModel(ModelShape):
    """A validated FastGRNN, FastRNN or ERNN classifier, all arrays float64.

    ``params`` holds what only one cell has (narrow it with ``isinstance``); ``cell`` names it.
    ``mean``/``std`` have length D, or T*D (then ``seq_len`` is T).
    """

    params: CellParams
    W: Matrix
    U: Matrix
    FC: np.ndarray
    FCbias: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    update_nl: Nonlinearity = "tanh"
    sha256: str = field(default="", compare=False)
    provenance: Provenance | None = field(default=None, compare=False)  # None: not from a file

    @property
    def cell(self) -> Cell:
        return self.params.name

    @property
    def gate_nl(self) -> Nonlinearity | None:
        """The gate nonlinearity, ``None`` for a cell without a gate."""
        return self.params.gate_nl if isinstance(self.params, FastGRNNParams) else None

    def arrays(self) -> dict[str, np.ndarray]:
        """The checkpoint arrays under their EdgeML names (what ``save_checkpoint`` writes)."""
        out: dict[str, np.ndarray] = {}
        for name, matrix in (("W", self.W), ("U", self.U)):
            if matrix.is_low_rank:
                out[name + "1"], out[name + "2"] = matrix.factors
            else:
                out[name] = matrix.factors[0]
        out.update(self.params.arrays())
        out["FC"] = self.FC
        out["FCbias"] = self.FCbias
        if self.mean is not None and self.std is not None:
            out["mean"] = self.mean
            out["std"] = self.std
        return out

    def __eq__(self, other: object) -> bool:
        """Same cell, nonlinearities and arrays (exact shapes and values); ``sha256`` is ignored."""
        if not isinstance(other, FloatModel):
            return NotImplemented
        mine, theirs = self.arrays(), other.arrays()
        return (
            (self.cell, self.gate_nl, self.update_nl) == (other.cell, other.gate_nl, other.update_nl)
            and mine.keys() == theirs.keys()
            and all(np.array_equal(mine[k], theirs[k]) for k in mine)
        )

    def __hash__(self) -> int:
        return hash(self.content_hash())

    def content_hash(self) -> str:
        """sha256 over the canonical content: names, shapes, float32 values, nonlinearities.

        The same model from a ``.npz`` or a directory of ``.npy`` files hashes the same. A cell
        without a gate hashes as gate ``sigmoid``, so that hashes stay those of earlier releases.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.cell};{self.gate_nl or 'sigmoid'};{self.update_nl}".encode())
        for name, value in sorted(self.arrays().items()):
            arr = np.ascontiguousarray(np.asarray(value, dtype="<f4"))
            digest.update(f";{name}{arr.shape}".encode())
            digest.update(arr.tobytes())
        return digest.hexdigest()

    def macs_per_step(self) -> int:
        """Multiply-accumulates of one time step as the checkpoint stores the matrices (ERNN:
        one product by W and K by U, one per inner step)."""
        w, u = (sum(int(f.shape[0] * f.shape[1]) for f in m.factors) for m in (self.W, self.U))
        k = self.params.inner_steps if isinstance(self.params, ERNNParams) else 1
        return w + k * u
