"""S3 get_object fan-out through the latency proxy: each strategy beside the raw idioms.

500 small objects, 25 ms added latency per request, 32 workers. Wall time is what
pytest-benchmark reports; client CPU per call (time.process_time in this process,
the server and proxy run in others) goes into extra_info["cpu_ms_per_call"].
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import lambda_fanout
from lambda_fanout import aws
from lambda_fanout.bench.workloads import WORKLOADS, Env, Options, s3_body

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
        list(ex.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=s3_body(k)), KEYS))
    return BUCKET


RAW = ("raw:boto3+ThreadPoolExecutor", "raw:aiobotocore+gather")


@pytest.mark.parametrize("impl", list(lambda_fanout.STRATEGIES) + list(RAW))
def test_s3_get_500_at_25ms(benchmark, impl, seeded, aws_endpoint):
    aws_endpoint.configure(delay_ms=LATENCY_MS)
    benchmark.group = f"s3 get_object: {N_OBJECTS} objects, {LATENCY_MS} ms added latency, {WORKERS} workers"
    raw = None
    if impl in RAW:
        raw = WORKLOADS["s3"].raw(impl, Options(), Env(seeded, seeded))
        call = lambda: raw(KEYS, WORKERS)  # noqa: E731
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
        if raw is not None:
            raw.close()
    assert result == [s3_body(k) for k in KEYS]
    benchmark.extra_info["cpu_ms_per_call"] = statistics.median(cpu[1:] or cpu) * 1000 / N_OBJECTS
    benchmark.extra_info["items"] = N_OBJECTS
