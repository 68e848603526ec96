"""A child that runs a failing SQS batch on request, under whatever CPU quota it was started in.

Reads one line per round on stdin: the FANOUT_LOG_FAILURES level and the Lambda
context's remaining time in ms. Every record fails with a deep chained traceback (a
``ValueError`` raised from a ``KeyError`` 30 calls down), the batch gets that remaining
time, and the failure lines go to a real handler writing to a StringIO. It answers one
JSON line: the time left before the deadline when process_batch returned (negative:
after it), the time from the first failure line to the last, the lines written and the
records reported failed.
"""

import io
import json
import logging
import os
import sys
import time

import lambda_fanout
from lambda_fanout_dev.events import sqs

DEPTH = 30


class SpanHandler(logging.StreamHandler):
    """A StreamHandler that notes when its first and last line of a round were written."""

    first = last = None

    def emit(self, record):
        super().emit(record)
        self.last = time.monotonic()
        if self.first is None:
            self.first = self.last


class Context:
    def __init__(self, remaining_ms: float) -> None:
        self.deadline = time.monotonic() + remaining_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def lookup(record, depth):
    if depth:
        return lookup(record, depth - 1)
    return {}[record["messageId"]]


def handle(record):
    try:
        return lookup(record, DEPTH)
    except KeyError as exc:
        raise ValueError("refused " + record["messageId"]) from exc


if __name__ == "__main__":
    event = sqs(int(sys.argv[1]))
    stream = io.StringIO()
    logger = logging.getLogger("lambda_fanout")
    handler = SpanHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    for line in sys.stdin:
        level, remaining_ms = line.split()
        os.environ["FANOUT_LOG_FAILURES"] = level
        stream.seek(0)
        stream.truncate()
        handler.first = handler.last = None
        context = Context(float(remaining_ms))
        out = lambda_fanout.process_batch(event, handle, context, strategy="threads")
        left_ms = (context.deadline - time.monotonic()) * 1000
        lines = sum(1 for text in stream.getvalue().splitlines() if text.startswith("lambda_fanout: "))
        log_ms = (handler.last - handler.first) * 1000 if handler.first is not None else 0.0
        print(json.dumps({"left_ms": round(left_ms, 1), "log_ms": round(log_ms, 1), "lines": lines,
                          "failed": len(out["batchItemFailures"])}), flush=True)
