"""Example for `./build.sh invoke`: a per-record function behind the zero-code handler.

    ./build.sh invoke --handler lambda_fanout.handler.handler --task-root examples/local \
        --env FANOUT_RECORD_HANDLER=app.process_record --event sqs:100

Each SQS body of the generated sample is {"n": ...}; every 25th record fails, so the
response lists those in batchItemFailures. Both forms are given, so every
FANOUT_STRATEGY runs it.
"""

import asyncio
import json
import time

from lambda_fanout import Task


def _number(record):
    n = json.loads(record["body"])["n"]
    if n % 25 == 24:
        raise ValueError("every 25th record fails, to show a partial-batch response")
    return n


def handle(record):
    time.sleep(0.01)  # stands in for a 10 ms call
    return _number(record)


async def ahandle(record):
    await asyncio.sleep(0.01)
    return _number(record)


process_record = Task(handle, ahandle)
