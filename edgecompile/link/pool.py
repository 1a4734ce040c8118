"""Several devices running the same build, used as one: sequences are spread over them and the
results come back in input order.

Each device keeps its own :class:`~edgecompile.link.client.Client` with every check of a single
link (framing, CRC, identity handshake, a deadline on every read, retransmission, reset and
garbage detection); the pool only hands out sequence indices. Emulated boards are run as
several instances this way: one emulated UART takes a byte at a time, so instances in parallel
multiply what the host can feed them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from edgecompile.errors import LinkError
from edgecompile.link.client import Client, InferResult, LinkStats
from edgecompile.link.protocol import DeviceInfo


class ClientPool:
    """Handshaken clients of devices that run one firmware image; quacks like a Client for
    :func:`edgecompile.verify.parity.run_parity` (``info``, ``handshake``, ``stats``,
    ``infer_all``)."""

    def __init__(self, clients: Sequence[Client]) -> None:
        if not clients:
            raise ValueError("a pool needs at least one client")
        self.clients = list(clients)

    @property
    def info(self) -> DeviceInfo | None:
        return self.clients[0].info

    def handshake(self) -> DeviceInfo:
        """Handshake every device; they must all report the same build."""
        infos = [c.handshake() for c in self.clients]
        for c, info in zip(self.clients[1:], infos[1:], strict=True):
            if info != infos[0]:
                raise LinkError(f"{c.name} runs another build than {self.clients[0].name}")
        return infos[0]

    @property
    def stats(self) -> LinkStats:
        total = LinkStats()
        for c in self.clients:
            for f in dataclasses.fields(LinkStats):
                setattr(total, f.name, getattr(total, f.name) + getattr(c.stats, f.name))
        return total

    def infer_all(self, xs: Sequence[np.ndarray] | np.ndarray, *, trace: bool = False
                  ) -> Iterator[InferResult]:
        """:meth:`Client.infer` of every sequence, spread over the devices, yielded in order.

        The first failure on any device ends the run: the other devices' reads are cancelled
        and the failure is raised here, as it would be from a single client.
        """
        if len(self.clients) == 1:
            yield from self.clients[0].infer_all(xs, trace=trace)
            return
        n = len(xs)
        cond = threading.Condition()
        results: dict[int, InferResult] = {}
        state = {"next": 0, "stop": False}
        failure: list[BaseException] = []

        def work(client: Client) -> None:
            while True:
                with cond:
                    i = state["next"]
                    if state["stop"] or failure or i >= n:
                        return
                    state["next"] = i + 1
                try:
                    res = client.infer(xs[i], trace=trace)
                except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                    with cond:
                        if not failure and not state["stop"]:
                            failure.append(exc)
                        cond.notify_all()
                    return
                with cond:
                    results[i] = res
                    cond.notify_all()

        workers = [threading.Thread(target=work, args=(c,), daemon=True, name=f"link-{k}")
                   for k, c in enumerate(self.clients)]
        for w in workers:
            w.start()
        try:
            for i in range(n):
                with cond:
                    while i not in results and not failure:
                        cond.wait(timeout=0.1)  # short waits: Ctrl-C stays prompt
                    if failure:
                        raise failure[0]
                    res = results.pop(i)
                yield res
        finally:
            with cond:
                state["stop"] = True
            if any(w.is_alive() for w in workers):
                for c in self.clients:
                    c.cancel()
            for w in workers:
                w.join(timeout=5.0)
