"""Tasks used by the core tests, in both forms, so every strategy runs the same work."""

from __future__ import annotations

import asyncio
import time

import lambda_fanout


class Boom(ValueError):
    """The failure the test tasks raise."""


def make_task(delays: list[float], failing: set[int]) -> lambda_fanout.Task:
    """A Task over (index, value) items: sleeps delays[index], fails for indexes in ``failing``."""

    def check(item):
        index, value = item
        if index in failing:
            raise Boom(f"item {index} fails")
        return value * 2 + 1

    def sync_fn(item):
        delay = delays[item[0] % len(delays)] if delays else 0.0
        if delay:
            time.sleep(delay)
        return check(item)

    async def async_fn(item):
        delay = delays[item[0] % len(delays)] if delays else 0.0
        await asyncio.sleep(delay)
        return check(item)

    return lambda_fanout.Task(sync_fn, async_fn)


class FakeContext:
    """A Lambda context whose remaining time runs on the real monotonic clock."""

    def __init__(self, remaining_ms: float) -> None:
        self.deadline = time.monotonic() + remaining_ms / 1000.0
        self.function_name = "fanout-test"
        self.aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)
