"""The record handler the batch workload ships: ``FANOUT_RECORD_HANDLER=lambda_fanout.bench.records.read``.

Each SQS record's body names an S3 key; the handler reads that object (boto3 in its
sync form, aiobotocore in its async form) and returns its size. A key that does not
exist raises botocore's ClientError (NoSuchKey), so the record is reported failed.
The bench points it at its bucket with :func:`use_bucket` before a batch runs.
Powertools' processors call the same two forms with the keyword ``record``.
"""

from __future__ import annotations

import json
from typing import Any

from .. import Task, aws

_get: Task | None = None


def use_bucket(bucket: str) -> None:
    """Read from ``bucket`` from now on."""
    global _get
    _get = aws.s3_get_object(bucket)


def _task() -> Task:
    if _get is None:
        raise RuntimeError("lambda_fanout.bench.records: call use_bucket(bucket) before processing records")
    return _get


def _key(record: Any) -> str:
    return json.loads(record["body"])["key"]


def read_record(record: Any) -> int:
    """Read the object the record names (boto3); its size in bytes."""
    return len(_task().sync_fn(_key(record)))


async def aread_record(record: Any) -> int:
    """Read the object the record names (aiobotocore); its size in bytes."""
    return len(await _task().async_fn(_key(record)))


read = Task(read_record, aread_record, name="s3 get per record")
