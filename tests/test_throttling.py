"""The proxy's throttling mode over real HTTP, and what the limiter hears of it."""

from __future__ import annotations

import time

import pytest

from lambda_fanout import _limiter

pytestmark = pytest.mark.aws


def _no_retry_client(service, endpoint):
    import boto3
    from botocore.config import Config

    return boto3.client(service, endpoint_url=endpoint.url,
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def _outcomes(call, n):
    from botocore.exceptions import ClientError

    out = []
    for _ in range(n):
        try:
            call()
            out.append("ok")
        except ClientError as err:
            out.append(err)
    return out


def test_s3_gets_beyond_the_bucket_get_s3s_slowdown(aws_endpoint, s3_bucket):
    s3 = _no_retry_client("s3", aws_endpoint)
    for key in ("a/one", "b/one"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    aws_endpoint.configure(throttle={"rate": 0.01, "burst": 3})
    out = _outcomes(lambda: s3.get_object(Bucket=s3_bucket, Key="a/one")["Body"].read(), 8)
    assert out[:3] == ["ok"] * 3
    refused = out[3:]
    assert all(not isinstance(e, str) for e in refused)
    for err in refused:
        assert err.response["Error"]["Code"] == "SlowDown"
        assert err.response["Error"]["Message"] == "Please reduce your request rate."
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.response["ResponseMetadata"]["RequestId"]
        assert _limiter.is_throttle(err)
    # Another prefix has a bucket of its own.
    assert _outcomes(lambda: s3.get_object(Bucket=s3_bucket, Key="b/one")["Body"].read(), 3) == ["ok"] * 3
    stats = aws_endpoint.stats()
    assert stats["throttled"] == 5
    assert sum(1 for e in stats["log"] if e["fault"] == "throttle") == 5


def test_dynamodb_beyond_the_bucket_gets_provisioned_throughput_exceeded(aws_endpoint, ddb_table):
    ddb = _no_retry_client("dynamodb", aws_endpoint)
    aws_endpoint.configure(throttle={"rate": 0.01, "burst": 2})
    out = _outcomes(lambda: ddb.get_item(TableName=ddb_table, Key={"pk": {"S": "k"}}), 5)
    assert out[:2] == ["ok"] * 2
    for err in out[2:]:
        assert err.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        assert "provisioned throughput for the table was exceeded" in err.response["Error"]["Message"]
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert _limiter.is_throttle(err)


def test_the_bucket_refills_at_its_rate(aws_endpoint, s3_bucket):
    s3 = _no_retry_client("s3", aws_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="r/one", Body=b"x")
    aws_endpoint.configure(throttle={"rate": 20, "burst": 1})
    first = _outcomes(lambda: s3.head_object(Bucket=s3_bucket, Key="r/one"), 2)
    assert first[0] == "ok" and first[1] != "ok"
    time.sleep(0.15)  # three tokens' worth, capped at a burst of one
    again = _outcomes(lambda: s3.head_object(Bucket=s3_bucket, Key="r/one"), 2)
    assert again[0] == "ok" and again[1] != "ok"
    stats = aws_endpoint.stats()
    assert stats["requests"] == stats["served"] + stats["throttled"]


def test_bad_throttle_settings_are_refused(aws_endpoint):
    import urllib.error

    for bad in ({"rate": 0}, {"rate": 5, "burst": 0.5}, {"rate": 5, "per": "bucket"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            aws_endpoint.configure(throttle=bad)
        with err.value:
            assert err.value.code == 400
