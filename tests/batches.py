"""Batch events for the tests: the builders live in lambda_fanout.testing.events; test tasks here."""

from __future__ import annotations

import asyncio
import threading
import time

import lambda_fanout
from lambda_fanout.testing.events import (  # noqa: F401
    BUILDERS, EVENTS_DIR, KAFKA_OFFSET, KINESIS_SEQUENCE, dynamodb, identifier, kafka, kafka_records, kinesis,
    position_of, records, sample, sqs,
)


def failing_handler(bad: set, log: list | None = None, delay: float = 0.0) -> lambda_fanout.Task:
    """A Task failing for generated records whose position is in ``bad``; ``log`` gets each position run."""
    lock = threading.Lock()

    def check(record):
        position = position_of(record)
        if log is not None:
            with lock:
                log.append(position)
        if position in bad:
            raise RuntimeError(f"record {position} fails")
        return position

    def sync_fn(record):
        time.sleep(delay)
        return check(record)

    async def async_fn(record):
        await asyncio.sleep(delay)
        return check(record)

    return lambda_fanout.Task(sync_fn, async_fn)
