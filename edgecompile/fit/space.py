"""The search space of ``edgecompile fit`` and its deterministic batch strategy.

A candidate is (cell, hidden size, rank of W, rank of U, sparsity, bits, inner steps); rank 0
means a full matrix. The inner steps K are ERNN's (each time step takes one product by W and K
products by U, :data:`INNER_STEPS`); they are 0 for the other cells, and only an ERNN's enter
its configuration (so the other cells' configurations, hashes and cached trials are those of a
space without ERNN). Candidates come in batches of :data:`BATCH` (a constant, so the set of trials never
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
from dataclasses import asdict, dataclass, replace

import numpy as np

#: Candidates per batch: fixed, so that the trials do not depend on the number of workers.
BATCH = 8
HIDDEN = (8, 12, 16, 24, 32, 48, 64)
W_RANKS = (0, 2, 4, 8)
U_RANKS = (0, 2, 4, 8, 16)
SPARSITY = (0.0, 0.25, 0.5, 0.75)
#: ERNN's inner steps per time step: 1 (one relaxation step) or 2 (a second one, twice the U work).
INNER_STEPS = (1, 2)
#: The cells that take inner steps.
INNER_CELLS = ("ERNN",)


@dataclass(frozen=True, order=True)
class Candidate:
    cell: str
    hidden: int
    wrank: int  # 0: full W
    urank: int  # 0: full U
    sparsity: float
    bits: int
    inner_steps: int = 0  # ERNN's K; 0 for a cell without inner steps

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        w = self.wrank or "full"
        u = self.urank or "full"
        k = f" K={self.inner_steps}" if self.inner_steps else ""
        return (f"{self.cell}{k} H={self.hidden} wrank={w} urank={u} sparsity={self.sparsity:g} "
                f"int{self.bits}")

    def canonical(self) -> str:
        d = self.to_dict()
        if not d["inner_steps"]:
            del d["inner_steps"]
        return json.dumps(d, sort_keys=True)

    def train_seed(self, seed: int) -> int:
        digest = hashlib.sha256(f"{self.canonical()}|{seed}".encode()).digest()
        return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class Space:
    cells: tuple[str, ...]
    bits: tuple[int, ...]
    inputs: int  # D: ranks of W stay below it

    def axes(self, hidden: int, cell: str | None = None) -> dict[str, tuple]:
        """The values of each coordinate; ``inner_steps`` is that of ``cell`` ((0,) for a cell
        without inner steps)."""
        return {
            "cell": self.cells, "hidden": HIDDEN,
            "wrank": tuple(r for r in W_RANKS if r < self.inputs),
            "urank": tuple(r for r in U_RANKS if r < hidden),
            "sparsity": SPARSITY, "bits": self.bits,
            "inner_steps": INNER_STEPS if cell in INNER_CELLS else (0,),
        }

    def size(self) -> int:
        n = 0
        for h in HIDDEN:
            a = self.axes(h)
            per_cell = sum(len(INNER_STEPS) if c in INNER_CELLS else 1 for c in a["cell"])
            n += per_cell * len(a["wrank"]) * len(a["urank"]) * len(a["sparsity"]) * len(a["bits"])
        return n

    def sample(self, rng: np.random.Generator) -> Candidate:
        hidden = int(rng.choice(HIDDEN))
        a = self.axes(hidden)
        cell = str(a["cell"][int(rng.integers(len(a["cell"])))])
        c = Candidate(cell=cell, hidden=hidden,
                      wrank=int(a["wrank"][int(rng.integers(len(a["wrank"])))]),
                      urank=int(a["urank"][int(rng.integers(len(a["urank"])))]),
                      sparsity=float(a["sparsity"][int(rng.integers(len(a["sparsity"])))]),
                      bits=int(a["bits"][int(rng.integers(len(a["bits"])))]))
        if cell in INNER_CELLS:  # drawn only for them: the other cells' draws stay as they were
            c = replace(c, inner_steps=int(INNER_STEPS[int(rng.integers(len(INNER_STEPS)))]))
        return c

    def mutate(self, c: Candidate, rng: np.random.Generator) -> Candidate:
        d = c.to_dict()
        names: tuple[str, ...] = ("cell", "hidden", "wrank", "urank", "sparsity", "bits")
        if c.cell in INNER_CELLS:
            names += ("inner_steps",)
        name = names[int(rng.integers(len(names)))]
        values = self.axes(c.hidden, c.cell)[name]
        i = values.index(d[name]) if d[name] in values else 0
        step = 1 if rng.random() < 0.5 else -1
        d[name] = values[min(max(i + step, 0), len(values) - 1)]
        if d["urank"] >= d["hidden"]:
            d["urank"] = max(r for r in U_RANKS if r < d["hidden"])
        if d["cell"] not in INNER_CELLS:
            d["inner_steps"] = 0
        elif not d["inner_steps"]:
            d["inner_steps"] = INNER_STEPS[0]
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
