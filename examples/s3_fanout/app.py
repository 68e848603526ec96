"""Example: the library API. Sum the sizes of many S3 objects, concurrently.

Event: {"keys": ["a.json", "b.json", ...]}. FANOUT_STRATEGY / FANOUT_MAX_WORKERS
choose how the HeadObject calls run.
"""

import os

import lambda_fanout
from lambda_fanout import aws

HEAD = aws.s3_head_object(os.environ["BUCKET_NAME"])  # clients are made on first use, then reused


def handler(event, context):
    heads = lambda_fanout.map(HEAD, event["keys"], context=context)
    return {"objects": len(heads), "bytes": sum(h["ContentLength"] for h in heads)}
