"""Record handlers for the guarantee tests, loaded by the zero-code handler (FANOUT_RECORD_HANDLER)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

import xproc

from lambda_fanout import Task, aws

def _read(record):
    """The S3 read: the record body names the key; the bucket comes from FAULT_BUCKET."""
    return aws.s3_get_object(os.environ["FAULT_BUCKET"]).sync_fn(json.loads(record["body"])["key"])


async def _aread(record):
    return await aws.s3_get_object(os.environ["FAULT_BUCKET"]).async_fn(json.loads(record["body"])["key"])


READ = Task(_read, _aread, name="read")

# Files, named in the environment, so that worker processes (processes strategy, which
# run in the caller's environment) share them with the test.
#: Set to let a hung record handler finish (the tests set it on teardown).
RELEASE = xproc.Flag(os.environ.setdefault("FAULT_RELEASE_FLAG", tempfile.mktemp(prefix="fanout-release-")))
HUNG_INDEX = 0
#: The record numbers a HANG handler started, in order.
STARTED = xproc.Log(os.environ.setdefault("FAULT_STARTED_LOG", tempfile.mktemp(prefix="fanout-started-")))


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
