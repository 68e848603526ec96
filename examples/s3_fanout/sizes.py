"""The README's 30-second example: add up the size of every object in an S3 notification.

    ./build.sh invoke --handler sizes.handler --task-root examples/s3_fanout --seed bench --event s3:20

``--seed bench`` writes the objects the ``s3:N`` sample names (the bench's bucket).
"""

import urllib.parse

import lambda_fanout
from lambda_fanout import aws

s3 = aws.clients("s3")  # one boto3 client per process, its pool sized to the workers


def object_size(record):
    bucket = record["s3"]["bucket"]["name"]
    key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])  # notification keys are URL-encoded
    return s3.sync.head_object(Bucket=bucket, Key=key)["ContentLength"]


def handler(event, context):
    sizes = lambda_fanout.map(object_size, event["Records"], context=context)
    return {"objects": len(sizes), "total": sum(sizes)}
