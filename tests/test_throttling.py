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


@pytest.mark.serial  # two requests within 50 ms of each other, at 20 per second
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


def test_retried_throttles_reach_the_running_limiter_once_each(aws_endpoint, s3_bucket):
    """botocore retries a SlowDown inside the call; every attempt is a signal, and the
    ClientError from the last attempt is not counted again."""
    import asyncio

    from botocore.exceptions import ClientError

    from lambda_fanout import aws

    s3 = aws.clients("s3")
    s3.sync.put_object(Bucket=s3_bucket, Key="t/one", Body=b"x")
    aws_endpoint.configure(throttle={"rate": 0.01, "burst": 1})
    aws_endpoint.reset_stats()
    limiter = _limiter.Limiter(64)
    token = _limiter.current.set(limiter)
    try:
        s3.sync.head_object(Bucket=s3_bucket, Key="t/one")  # the bucket's one token
        assert limiter.throttled == 0
        with pytest.raises(ClientError) as err:
            s3.sync.head_object(Bucket=s3_bucket, Key="t/one")
        attempts = aws_endpoint.stats()["throttled"]
        assert attempts == 3  # botocore's standard mode: three attempts
        assert limiter.throttled == attempts
        _limiter.note_failure(limiter, err.value)
        assert limiter.throttled == attempts

        async def aio_call():
            _limiter.current.set(limiter)
            try:
                await s3.aio.head_object(Bucket=s3_bucket, Key="t/one")
            finally:
                await aws.aclose()

        with pytest.raises(ClientError):
            asyncio.run(aio_call())
        assert limiter.throttled == aws_endpoint.stats()["throttled"] == 6
    finally:
        _limiter.current.reset(token)
    # No limiter running: the hook stays silent.
    with pytest.raises(ClientError):
        s3.sync.head_object(Bucket=s3_bucket, Key="t/one")
    assert limiter.throttled == 6


def test_auto_sizes_the_pool_to_the_cap(monkeypatch):
    from lambda_fanout import aws

    monkeypatch.setenv("FANOUT_MAX_WORKERS", "auto:300")
    assert aws.clients("s3").max_workers == 300
    assert aws.client_settings(300)["max_pool_connections"] == 300
    assert aws.clients("s3", max_workers="auto").max_workers == _limiter.DEFAULT_CAP
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "auto:0")
    with pytest.raises(Exception, match="FANOUT_MAX_WORKERS"):
        aws.clients("s3")
