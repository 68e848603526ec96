"""Example: the per-record function behind the zero-code handler (FANOUT_RECORD_HANDLER=records.process).

Each SQS message body is stored as an object; a failure is reported for that
message only (ReportBatchItemFailures).
"""

import os

from lambda_fanout import aws

S3 = aws.clients("s3")
BUCKET = os.environ["BUCKET_NAME"]


def process(record):
    S3.sync.put_object(Bucket=BUCKET, Key=f"messages/{record['messageId']}.json", Body=record["body"].encode())
