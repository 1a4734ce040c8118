"""The search space of ``edgecompile fit`` and its deterministic batch strategy.

A candidate is (cell, hidden size, rank of W, rank of U, sparsity, bits); rank 0 means a full
matrix. Candidates come in batches of :data:`BATCH` (a constant, so the set of trials never
depends on how many workers run them). Batch ``b`` is drawn from ``numpy.random.default_rng((seed,
b))`` and from the finished results of batches ``0..b-1`` only, sorted by their configuration:

* batch 0: uniform samples of the space;
* later batches: half are one-step mutations (one coordinate moved to a neighbouring value) of
  the best candidates that fit the budget so far (accuracy, then smaller flash, then the
  configuration itself decide the order), the other half uniform samples.

A candidate never repeats. Each trial's training seed is a hash of its configuration and of the
search seed (:meth:`Candidate.train_seed`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Candidates per batch: fixed, so that the trials do not depend on the number of workers.
BATCH = 8
HIDDEN = (8, 12, 16, 24, 32, 48, 64)
W_RANKS = (0, 2, 4, 8)
U_RANKS = (0, 2, 4, 8, 16)
SPARSITY = (0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True, order=True)
class Candidate:
    cell: str
    hidden: int
    wrank: int  # 0: full W
    urank: int  # 0: full U
    sparsity: float
    bits: int

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        w = self.wrank or "full"
        u = self.urank or "full"
        return (f"{self.cell} H={self.hidden} wrank={w} urank={u} sparsity={self.sparsity:g} "
                f"int{self.bits}")

    def canonical(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def train_seed(self, seed: int) -> int:
        digest = hashlib.sha256(f"{self.canonical()}|{seed}".encode()).digest()
        return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class Space:
    cells: tuple[str, ...]
    bits: tuple[int, ...]
    inputs: int  # D: ranks of W stay below it

    def axes(self, hidden: int) -> dict[str, tuple]:
        return {
            "cell": self.cells, "hidden": HIDDEN,
            "wrank": tuple(r for r in W_RANKS if r < self.inputs),
            "urank": tuple(r for r in U_RANKS if r < hidden),
            "sparsity": SPARSITY, "bits": self.bits,
        }

    def size(self) -> int:
        n = 0
        for h in HIDDEN:
            a = self.axes(h)
            n += len(a["cell"]) * len(a["wrank"]) * len(a["urank"]) * len(a["sparsity"]) * len(a["bits"])
        return n

    def sample(self, rng: np.random.Generator) -> Candidate:
        hidden = int(rng.choice(HIDDEN))
        a = self.axes(hidden)
        return Candidate(cell=str(a["cell"][int(rng.integers(len(a["cell"])))]), hidden=hidden,
                         wrank=int(a["wrank"][int(rng.integers(len(a["wrank"])))]),
                         urank=int(a["urank"][int(rng.integers(len(a["urank"])))]),
                         sparsity=float(a["sparsity"][int(rng.integers(len(a["sparsity"])))]),
                         bits=int(a["bits"][int(rng.integers(len(a["bits"])))]))

    def mutate(self, c: Candidate, rng: np.random.Generator) -> Candidate:
        d = c.to_dict()
        name = ("cell", "hidden", "wrank", "urank", "sparsity", "bits")[int(rng.integers(6))]
        values = self.axes(c.hidden)[name]
        i = values.index(d[name]) if d[name] in values else 0
        step = 1 if rng.random() < 0.5 else -1
        d[name] = values[min(max(i + step, 0), len(values) - 1)]
        if d["urank"] >= d["hidden"]:
            d["urank"] = max(r for r in U_RANKS if r < d["hidden"])
        return Candidate(**d)


def next_batch(space: Space, seed: int, batch: int, proposed: Sequence[Candidate],
               elite: Sequence[Candidate], room: int) -> list[Candidate]:
    """Up to ``min(BATCH, room)`` new candidates for batch number ``batch``; ``elite`` are the
    finished candidates that fit, best first (from earlier batches only)."""
    rng = np.random.default_rng((seed, batch))
    seen = set(proposed)
    out: list[Candidate] = []
    want = min(BATCH, room, space.size() - len(seen))
    n_mut = want // 2 if elite else 0
    tries = 0
    while len(out) < want and tries < 200 * BATCH:
        tries += 1
        if len(out) < n_mut:
            parent = elite[min(int(rng.integers(3)), len(elite) - 1)]
            c = space.mutate(parent, rng)
        else:
            c = space.sample(rng)
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out
