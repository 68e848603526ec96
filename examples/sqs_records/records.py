"""Example: the per-record function behind the zero-code handler (FANOUT_RECORD_HANDLER=records.process).

Each SQS message body is stored as an object; a failure is reported for that
message only (ReportBatchItemFailures). ``process`` has both forms, so every
FANOUT_STRATEGY the template offers runs it: the thread strategies call the boto3
form, ``asyncio`` awaits the aiobotocore one.
"""

import os

from lambda_fanout import Task, aws

S3 = aws.clients("s3")
BUCKET = os.environ["BUCKET_NAME"]


def _key(record):
    return f"messages/{record['messageId']}.json"


def store(record):
    S3.sync.put_object(Bucket=BUCKET, Key=_key(record), Body=record["body"].encode())


async def astore(record):
    await S3.aio.put_object(Bucket=BUCKET, Key=_key(record), Body=record["body"].encode())


process = Task(store, astore)
