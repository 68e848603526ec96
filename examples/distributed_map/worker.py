"""Example: the worker a Step Functions Distributed Map invokes with a batch of items.

Each item is {"Key": ..., "Size": ...} from the S3 listing; the result is the
object's ContentType, read concurrently within the batch. ``process`` has both
forms, so every FANOUT_STRATEGY the template offers runs it.
"""

import os

from lambda_fanout import Task, aws

S3 = aws.clients("s3")
BUCKET = os.environ["BUCKET_NAME"]


def _result(item, head):
    return {"key": item["Key"], "contentType": head.get("ContentType")}


def head(item):
    return _result(item, S3.sync.head_object(Bucket=BUCKET, Key=item["Key"]))


async def ahead(item):
    return _result(item, await S3.aio.head_object(Bucket=BUCKET, Key=item["Key"]))


process = Task(head, ahead)
