"""Example for `./build.sh invoke --snapstart`: S3 reads fanned out through clients made at init.

    ./build.sh invoke --snapstart --handler objects.handler --task-root examples/local --repeat 2

The init writes a few objects to the embedded endpoint and reads them back once, so the
client pair and its pooled connections are in the snapshot. Each restored environment
reads them again: its first invocation opens new connections (the frozen ones were
closed before the snapshot), and ``draw`` differs between environments (``random`` is
reseeded after each restore). ``FANOUT_STRATEGY`` picks the strategy as usual.
"""

import os
import random

import lambda_fanout
from lambda_fanout import aws

BUCKET = os.environ.get("BUCKET", "fanout-snapstart-example")
KEYS = [f"object-{i}" for i in range(32)]

s3 = aws.clients("s3")
if BUCKET not in {b["Name"] for b in s3.sync.list_buckets()["Buckets"]}:
    s3.sync.create_bucket(Bucket=BUCKET)
lambda_fanout.map(aws.s3_put_object(BUCKET), [(key, key.encode()) for key in KEYS])
read = aws.s3_get_object(BUCKET)
lambda_fanout.map(read, KEYS)  # warm: clients and pools made now are in the snapshot


def handler(event, context):
    bodies = lambda_fanout.map(read, KEYS, context=context)
    return {"objects": len(bodies), "bytes": sum(map(len, bodies)), "draw": random.random()}
