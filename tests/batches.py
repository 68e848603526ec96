"""Batch events for the tests: the builders live in lambda_fanout_dev.events; test tasks here."""

from __future__ import annotations

import lambda_fanout
import xproc
from lambda_fanout_dev.events import (  # noqa: F401
    BUILDERS, EVENTS_DIR, KAFKA_OFFSET, KINESIS_SEQUENCE, dynamodb, identifier, kafka, kafka_records, kinesis,
    position_of, records, sample, sqs,
)


def failing_handler(bad: set, log=None, delay: float = 0.0) -> lambda_fanout.Task:
    """A Task failing for generated records whose position is in ``bad``; ``log`` gets each position run.

    For the processes strategy ``log`` must be an ``xproc.Log`` (a list stays in the caller).
    """
    handler = xproc.Failing(bad, log, delay)
    return lambda_fanout.Task(handler.sync_fn, handler.async_fn)
