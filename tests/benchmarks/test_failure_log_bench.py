"""The cost of the failure log line: a 1,000-record SQS batch where every record fails,
with FANOUT_LOG_FAILURES off, type-only (the default) and on, side by side in one group.

The lines go to a real handler writing to a StringIO (as Lambda's runtime writes them to
its log stream), so formatting and the handler's lock are paid, not a no-op logger.
"""

from __future__ import annotations

import io
import json
import logging

import pytest

import batches
import lambda_fanout

RECORDS = 1_000


def fail(record):
    raise ValueError("refused " + record["messageId"])


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("lambda_fanout")
    logger.addHandler(handler)
    logger.propagate = False  # pytest's own capture would double the work being measured
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.mark.benchmark(group="failure-log: 1,000 failing SQS records, threads")
@pytest.mark.parametrize("level", ["off", "type-only", "on"])
def test_failure_log_cost(benchmark, monkeypatch, log_stream, level):
    monkeypatch.setenv("FANOUT_LOG_FAILURES", level)
    event = batches.sqs(RECORDS)

    def run():
        log_stream.seek(0)
        log_stream.truncate()
        return lambda_fanout.process_batch(event, fail, strategy="threads")

    out = benchmark(run)
    assert len(out["batchItemFailures"]) == RECORDS
    written = log_stream.getvalue()
    assert written.count("lambda_fanout: sqs record #") == (0 if level == "off" else RECORDS)
    assert ("refused msg-" in written) == (level == "on")
    json.dumps(out)
