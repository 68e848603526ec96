"""Example for `./build.sh invoke`: a per-record function behind the zero-code handler.

    ./build.sh invoke --handler lambda_fanout.handler.handler --task-root examples/local \
        --env FANOUT_RECORD_HANDLER=app.process_record --event sqs:100

It takes a record of any source `./build.sh invoke` generates (``sqs``, ``fifo``,
``kinesis``, ``ddb``, ``kafka``, ``s3``, ``sns``, ``eventbridge``, ``dmap``): each
carries its position ``n`` in its payload, read here the way that source delivers it.
Every 25th record fails, so a partial-batch response lists those in batchItemFailures
(S3, SNS, EventBridge and Distributed Map have no partial response: there the
invocation fails, and Lambda would retry it). Both forms are given, so every
FANOUT_STRATEGY runs it.
"""

import asyncio
import base64
import json
import time
import urllib.parse

from lambda_fanout import Task


def _payload(record):
    """The position a generated record carries, wherever its source puts the payload."""
    if "body" in record:  # SQS
        return json.loads(record["body"])["n"]
    if "kinesis" in record:  # Kinesis: base64 data
        return json.loads(base64.b64decode(record["kinesis"]["data"]))["n"]
    if "dynamodb" in record:  # DynamoDB Streams: the new image, typed
        return int(record["dynamodb"]["NewImage"]["n"]["N"])
    if "offset" in record:  # Kafka: base64 value
        return json.loads(base64.b64decode(record["value"]))["n"]
    if "Sns" in record:  # SNS: the message
        return json.loads(record["Sns"]["Message"])["n"]
    if "s3" in record:  # S3 notification: the object's key (URL-encoded), bench/000123
        return int(urllib.parse.unquote_plus(record["s3"]["object"]["key"]).rpartition("/")[2])
    if "detail" in record:  # EventBridge: the whole event is the record
        return record["detail"]["n"]
    return record["n"]  # a Distributed Map item


def _number(record):
    n = _payload(record)
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
