"""A simulated service on a simulated clock, for the adaptive limiter's properties.

Requests are events on a heap; no real time passes. The driver keeps as many requests
in flight as the limiter allows, the way the thread and asyncio strategies do.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random

from lambda_fanout._limiter import Limiter


@dataclasses.dataclass
class Service:
    """A service: latency ``latency_s`` (lognormal width ``sigma``) up to ``capacity``
    requests in flight, growing in proportion beyond it; optionally a token bucket of
    ``rate`` requests per second (``burst`` deep) that answers the excess as throttled."""

    latency_s: float = 0.02
    sigma: float = 0.0
    capacity: float = math.inf
    rate: float = math.inf
    burst: float = 1.0
    throttle_latency_s: float = 0.002
    #: Attempts per request, as botocore retries a throttled one after a backoff.
    attempts: int = 1
    backoff_s: float = 0.5

    def draw(self, rng: random.Random, inflight: int) -> float:
        base = self.latency_s * (math.exp(rng.gauss(0.0, self.sigma)) if self.sigma else 1.0)
        return base * max(1.0, inflight / self.capacity)


@dataclasses.dataclass
class Trace:
    """What a simulation saw."""

    limits: list[int]  # the limit after each adjustment
    completions: int
    succeeded: int
    throttles: int
    elapsed_s: float

    @property
    def throughput(self) -> float:
        return self.succeeded / self.elapsed_s if self.elapsed_s else 0.0


class Simulation:
    """Drive ``limiter`` against ``service``; phases may swap the service mid-run."""

    def __init__(self, limiter_cap: int, *, initial: int = 16, seed: int = 0, limiter_cls=Limiter) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.limiter = limiter_cls(limiter_cap, initial=initial, clock=lambda: self.now)
        self.heap: list[tuple[float, int, float, bool, int]] = []
        self.seq = 0
        self.tokens = 0.0
        self.refilled_at = 0.0
        self.limits: list[int] = []

    def _take_token(self, service: Service) -> bool:
        if service.rate == math.inf:
            return True
        self.tokens = min(service.burst, self.tokens + (self.now - self.refilled_at) * service.rate)
        self.refilled_at = self.now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def _attempt(self, service: Service, started: float, attempt: int, at: float) -> None:
        if self._take_token(service):
            done, throttled = at + service.draw(self.rng, len(self.heap) + 1), False
        else:
            done, throttled = at + service.throttle_latency_s, True
        self.seq += 1
        heapq.heappush(self.heap, (done, self.seq, started, throttled, attempt))

    def _fill(self, service: Service) -> None:
        lim = self.limiter
        while len(self.heap) < lim.limit:
            self._attempt(service, lim.begin(), 1, self.now)

    def run(self, service: Service, *, completions: int, check=None) -> Trace:
        """Complete ``completions`` requests; ``check(limiter)`` runs after every event."""
        lim = self.limiter
        if not self.limits:
            self.tokens = service.burst
            self.refilled_at = self.now
        start, throttles = self.now, 0
        finished = succeeded = 0
        while finished < completions:
            self._fill(service)
            done, _, started, throttled, attempt = heapq.heappop(self.heap)
            self.now = max(self.now, done)
            seen = lim.adjustments
            if throttled:
                throttles += 1
                lim.throttle()
                if attempt < service.attempts:
                    # Retried inside the task: still in flight, after a jittered backoff.
                    backoff = self.rng.random() * service.backoff_s * 2 ** (attempt - 1)
                    self._attempt(service, started, attempt + 1, self.now + backoff)
                    continue
            finished += 1
            succeeded += not throttled
            lim.end(started, ok=not throttled)
            if lim.adjustments != seen:
                self.limits.append(lim.limit)
            if check is not None:
                check(lim)
        return Trace(list(self.limits), completions, succeeded, throttles, self.now - start)

    def drain(self) -> None:
        """Let every request in flight complete, starting none: the end of an invocation."""
        lim = self.limiter
        while self.heap:
            done, _, started, throttled, _ = heapq.heappop(self.heap)
            self.now = max(self.now, done)
            lim.end(started, ok=not throttled)
