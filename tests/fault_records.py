"""Record handlers for the guarantee tests, loaded by the zero-code handler (FANOUT_RECORD_HANDLER)."""

from __future__ import annotations

import asyncio
import json
import os
import threading

from lambda_fanout import Task, aws

#: The S3 read: the record body names the key; the bucket comes from FAULT_BUCKET.
READ = Task(
    lambda record: aws.s3_get_object(os.environ["FAULT_BUCKET"]).sync_fn(json.loads(record["body"])["key"]),
    None,
)


async def _aread(record):
    return await aws.s3_get_object(os.environ["FAULT_BUCKET"]).async_fn(json.loads(record["body"])["key"])


READ = Task(READ.sync_fn, _aread, name="read")

#: Set to let a hung record handler finish (the tests set it on teardown).
RELEASE = threading.Event()
HUNG_INDEX = 0
#: The record numbers a HANG handler started, in order.
STARTED: list = []


def _hangs(record) -> bool:
    return json.loads(record["body"])["n"] == HUNG_INDEX


def _hang_sync(record):
    STARTED.append(json.loads(record["body"])["n"])
    if _hangs(record):
        RELEASE.wait(30)
    return json.loads(record["body"])["n"]


async def _hang_async(record):
    STARTED.append(json.loads(record["body"])["n"])
    if _hangs(record):
        await asyncio.Event().wait()  # never completes; cancelled at the deadline
    return json.loads(record["body"])["n"]


HANG = Task(_hang_sync, _hang_async, name="hang")
