"""Tasks used by the core tests, in both forms, so every strategy runs the same work."""

from __future__ import annotations

import asyncio
import time

import lambda_fanout


class Boom(ValueError):
    """The failure the test tasks raise."""


class _Fake:
    """Module level, so that the processes strategy can pickle it."""

    def __init__(self, delays: list[float], failing: set[int]) -> None:
        self.delays = delays
        self.failing = failing

    def check(self, item):
        index, value = item
        if index in self.failing:
            raise Boom(f"item {index} fails")
        return value * 2 + 1

    def delay(self, item) -> float:
        return self.delays[item[0] % len(self.delays)] if self.delays else 0.0

    def sync_fn(self, item):
        delay = self.delay(item)
        if delay:
            time.sleep(delay)
        return self.check(item)

    async def async_fn(self, item):
        await asyncio.sleep(self.delay(item))
        return self.check(item)


def make_task(delays: list[float], failing: set[int]) -> lambda_fanout.Task:
    """A Task over (index, value) items: sleeps delays[index], fails for indexes in ``failing``."""
    fake = _Fake(delays, failing)
    return lambda_fanout.Task(fake.sync_fn, fake.async_fn)


class FakeContext:
    """A Lambda context whose remaining time runs on the real monotonic clock."""

    def __init__(self, remaining_ms: float) -> None:
        self.deadline = time.monotonic() + remaining_ms / 1000.0
        self.function_name = "fanout-test"
        self.aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)
