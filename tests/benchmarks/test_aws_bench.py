"""S3 get_object fan-out through the latency proxy: each strategy beside the raw idioms.

500 small objects, 25 ms added latency per request, 32 workers. Wall time is what
pytest-benchmark reports; client CPU per call (time.process_time in this process,
the server and proxy run in others) goes into extra_info["cpu_ms_per_call"].
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import lambda_fanout
from lambda_fanout import aws

N_OBJECTS = 500
LATENCY_MS = 25
WORKERS = 32
BUCKET = "fanout-bench-s3"
KEYS = [f"bench/{i:05d}" for i in range(N_OBJECTS)]


@pytest.fixture(scope="module")
def seeded(endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint.moto_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode() * 8), KEYS))
    return BUCKET


def raw_boto3_threads(keys):
    """The hand-written idiom: one boto3 client, a ThreadPoolExecutor, executor.map."""
    import boto3
    from botocore.config import Config

    global _raw_s3
    if _raw_s3 is None:
        _raw_s3 = boto3.client("s3", config=Config(max_pool_connections=WORKERS))
    with ThreadPoolExecutor(WORKERS) as ex:
        return list(ex.map(lambda k: _raw_s3.get_object(Bucket=BUCKET, Key=k)["Body"].read(), keys))


_raw_s3 = None
_raw_aio: dict = {}


def raw_aiobotocore_gather(keys):
    """The hand-written idiom: one aiobotocore client on a reused loop, asyncio.gather."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    if "loop" not in _raw_aio:
        _raw_aio["loop"] = loop = asyncio.new_event_loop()
        ctx = get_session().create_client("s3", config=AioConfig(max_pool_connections=WORKERS))
        _raw_aio["ctx"] = ctx
        _raw_aio["client"] = loop.run_until_complete(ctx.__aenter__())
    client = _raw_aio["client"]

    async def get(k):
        resp = await client.get_object(Bucket=BUCKET, Key=k)
        async with resp["Body"] as stream:
            return await stream.read()

    async def main():
        return await asyncio.gather(*(get(k) for k in keys))

    return _raw_aio["loop"].run_until_complete(main())


def _close_raw():
    global _raw_s3
    if "loop" in _raw_aio:
        loop = _raw_aio["loop"]
        loop.run_until_complete(_raw_aio["ctx"].__aexit__(None, None, None))
        loop.close()
        _raw_aio.clear()
    _raw_s3 = None


RAW = {"raw:boto3+ThreadPoolExecutor": raw_boto3_threads, "raw:aiobotocore+gather": raw_aiobotocore_gather}


@pytest.mark.parametrize("impl", list(lambda_fanout.STRATEGIES) + list(RAW))
def test_s3_get_500_at_25ms(benchmark, impl, seeded, aws_endpoint):
    aws_endpoint.configure(delay_ms=LATENCY_MS)
    benchmark.group = f"s3 get_object: {N_OBJECTS} objects, {LATENCY_MS} ms added latency, {WORKERS} workers"
    if impl in RAW:
        fn = RAW[impl]
        call = lambda: fn(KEYS)  # noqa: E731
    else:
        task = aws.s3_get_object(seeded)
        call = lambda: lambda_fanout.map(task, KEYS, strategy=impl, max_workers=WORKERS)  # noqa: E731
    cpu: list[float] = []

    def measured():
        t0 = time.process_time()
        out = call()
        cpu.append(time.process_time() - t0)
        return out

    try:
        result = benchmark.pedantic(measured, rounds=3, iterations=1, warmup_rounds=1)
    finally:
        if impl in RAW:
            _close_raw()
    assert result == [k.encode() * 8 for k in KEYS]
    benchmark.extra_info["cpu_ms_per_call"] = statistics.median(cpu[1:] or cpu) * 1000 / N_OBJECTS
    benchmark.extra_info["items"] = N_OBJECTS
