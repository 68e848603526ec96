"""The bound of a round: what a perfect pool could do with the same delays and the same CPU quota.

A round of a latency-bound or AWS workload cannot finish sooner than either of:

- the makespan of the delays the endpoint actually applied in that round, scheduled
  in request order on the row's worker count (each request to the worker free first,
  no hand-off, no client time): what a zero-overhead pool of that size would take;
- the client's CPU time for the round divided by its CPU quota (the vCPUs of the
  emulated memory size): what the client's own work takes at full use of its share.

The larger of the two is the round's bound; ``wall / bound`` says how far a row is
from it. Unlike ``ceil(N / C) x median``, it holds the tail the endpoint drew in that
very round, and the client's CPU.
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence


def makespan(delays: Sequence[float], workers: int) -> float:
    """How long ``delays`` take on ``workers`` workers, each taken in order by the worker free first.

    Raises:
        ValueError: fewer than one worker, or a negative delay.
    """
    if workers < 1:
        raise ValueError(f"a pool needs at least one worker, got {workers!r}")
    if any(d < 0 for d in delays):
        raise ValueError("delays must be >= 0")
    free = [0.0] * min(workers, max(len(delays), 1))
    for delay in delays:
        heapq.heapreplace(free, free[0] + delay)
    return max(free)


def round_bound(delays: Sequence[float], workers: int, cpu_s: float, cpus: float) -> float:
    """A round's bound: the larger of the delays' makespan on ``workers`` and ``cpu_s / cpus``.

    Raises:
        ValueError: as :func:`makespan`, or a quota that is not positive.
    """
    if not cpus > 0:
        raise ValueError(f"the CPU quota must be > 0, got {cpus!r}")
    return max(makespan(delays, workers), cpu_s / cpus)


class EndpointRounds:
    """What the endpoint did in each timed round: the delays it applied and its CPU per request.

    Call :meth:`start` before each round and :meth:`finish` after the last (outside the
    timed region); each :meth:`start` closes the round before it. ``proxy`` is the
    fault proxy's control (``stats(since=n)``: counts, ``cpu_s`` and the log from request n + 1).
    """

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.delays: list[list[float]] = []
        self.cpu_ms_per_request: list[float] = []
        self._mark: tuple[int, float] | None = None

    def start(self) -> None:
        self.finish()
        stats = self.proxy.stats(since=1 << 62)  # the counts only
        self._mark = (stats["requests"], stats["cpu_s"])

    def finish(self) -> None:
        if self._mark is None:
            return
        requests, cpu_s = self._mark
        self._mark = None
        stats = self.proxy.stats(since=requests)
        self.delays.append([entry.get("delay", 0.0) for entry in stats["log"]])
        served = stats["requests"] - requests
        self.cpu_ms_per_request.append((stats["cpu_s"] - cpu_s) * 1000 / served if served else 0.0)
