"""The data the AWS workloads read: S3 objects, DynamoDB items and SQS batches that name them."""

from __future__ import annotations

import hashlib
import json

#: In a batch, record i names a key that does not exist when i % FAIL_EVERY == FAIL_OFFSET,
#: so its S3 GET fails (NoSuchKey) and the record must be reported in batchItemFailures.
#: 97 spreads the failures over every FIFO message group (10 groups: 13, 110, 207 ... land
#: in groups 3, 0, 7 ...); the offset puts one in the smallest batches the tests run.
FAIL_EVERY = 97
FAIL_OFFSET = 13


def s3_keys(n: int) -> list[str]:
    return [f"bench/{i:06d}" for i in range(n)]


def s3_body(key: str) -> bytes:
    return (key.encode() + b"|") * 16


def ddb_keys(n: int) -> list[str]:
    return [f"item-{i:06d}" for i in range(n)]


def ddb_item(key: str) -> dict:
    return {"pk": {"S": key}, "payload": {"S": key * 4}}


def fails(index: int) -> bool:
    """Record ``index`` of a bench batch names a missing object."""
    return index % FAIL_EVERY == FAIL_OFFSET


def sqs_records(n: int, groups: int | None = None) -> list[dict]:
    """n SQS records, each naming an S3 key in its body; FIFO with ``groups`` message groups.

    Record i belongs to group i % groups, so every group spans the whole batch.
    """
    arn = "arn:aws:sqs:us-east-1:123456789012:lambda-fanout-bench" + (".fifo" if groups else "")
    records = []
    for i, key in enumerate(s3_keys(n)):
        body = json.dumps({"key": f"bench/missing-{i:06d}" if fails(i) else key})
        attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000",
                      "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1700000000001"}
        if groups:
            attributes.update(MessageGroupId=f"group-{i % groups}", MessageDeduplicationId=f"dedup-{i}",
                              SequenceNumber=str(18849496460467696128 + i))
        records.append({
            "messageId": f"msg-{i:06d}", "receiptHandle": f"handle-{i}", "body": body, "attributes": attributes,
            "messageAttributes": {}, "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
        })
    return records


def expected_failures(records: list[dict], groups: int | None = None) -> set[str]:
    """The messageIds a correct partial-batch response reports for :func:`sqs_records`.

    FIFO: once a record of a group fails, the later records of that group are reported
    too (not processed, so the retry keeps the order).
    """
    failed_groups: set[str] = set()
    out = set()
    for i, record in enumerate(records):
        group = record["attributes"].get("MessageGroupId") if groups else None
        if fails(i) or (group is not None and group in failed_groups):
            out.add(record["messageId"])
            if group is not None:
                failed_groups.add(group)
    return out


def seed(moto_url: str | None, bucket: str, table: str, n: int) -> None:
    """Create the bucket and table (if missing) and write n objects and n items."""
    import boto3
    from botocore.config import Config
    from concurrent.futures import ThreadPoolExecutor

    # A local endpoint takes any credentials; real AWS uses the usual chain.
    kwargs = ({"endpoint_url": moto_url, "region_name": "us-east-1", "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing"} if moto_url else {})
    kwargs["config"] = Config(max_pool_connections=16)  # one connection per seeding thread
    s3 = boto3.session.Session().client("s3", **kwargs)
    ddb = boto3.session.Session().client("dynamodb", **kwargs)
    # head/describe rather than list: they need only the bucket's and table's own permissions.
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)
    try:
        ddb.describe_table(TableName=table)
    except ddb.exceptions.ResourceNotFoundException:
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        ddb.get_waiter("table_exists").wait(TableName=table)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=s3_body(k)), s3_keys(n)))
        list(ex.map(lambda k: ddb.put_item(TableName=table, Item=ddb_item(k)), ddb_keys(n)))
