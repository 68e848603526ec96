"""Example: the worker a Step Functions Distributed Map invokes with a batch of items.

Each item is {"Key": ..., "Size": ...} from the S3 listing; the result is the
object's ContentType, read concurrently within the batch.
"""

import os

from lambda_fanout import aws

S3 = aws.clients("s3")
BUCKET = os.environ["BUCKET_NAME"]


def process(item):
    head = S3.sync.head_object(Bucket=BUCKET, Key=item["Key"])
    return {"key": item["Key"], "contentType": head.get("ContentType")}
