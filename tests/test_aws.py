"""lambda_fanout.aws against moto's server over real HTTP, through the fault proxy."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

import lambda_fanout
from lambda_fanout import aws
from lambda_fanout._loop import run as run_on_loop

pytestmark = pytest.mark.aws

KEYS = [f"dir/obj-{i:03d}" for i in range(40)]


def body_of(key: str) -> bytes:
    return hashlib.sha256(key.encode()).hexdigest().encode() * 3


def test_every_strategy_reads_and_writes_the_same(s3_bucket, ddb_table):
    results = {}
    for name in lambda_fanout.STRATEGIES:
        per_call = []
        for _ in range(2):  # a first and a second (warm) call
            etags = lambda_fanout.map(aws.s3_put_object(s3_bucket), [(k, body_of(k)) for k in KEYS],
                                      strategy=name, max_workers=8)
            bodies = lambda_fanout.map(aws.s3_get_object(s3_bucket), KEYS, strategy=name, max_workers=8)
            heads = lambda_fanout.map(aws.s3_head_object(s3_bucket), KEYS, strategy=name, max_workers=8)
            items = [{"pk": {"S": k}, "size": {"N": str(len(body_of(k)))}} for k in KEYS]
            lambda_fanout.map(aws.dynamodb_put_item(ddb_table), items, strategy=name, max_workers=8)
            got = lambda_fanout.map(aws.dynamodb_get_item(ddb_table), [{"pk": {"S": k}} for k in KEYS],
                                    strategy=name, max_workers=8)
            per_call.append((etags, bodies, [h["ContentLength"] for h in heads], got))
        assert per_call[0] == per_call[1]
        results[name] = per_call[0]
    reference = results["sequential"]
    assert reference[1] == [body_of(k) for k in KEYS]
    assert reference[0] == [f'"{hashlib.md5(body_of(k)).hexdigest()}"' for k in KEYS]
    assert reference[3][0] == {"pk": {"S": KEYS[0]}, "size": {"N": str(len(body_of(KEYS[0])))}}
    for name, got in results.items():
        assert got == reference, name


def test_missing_item_and_missing_object(strategy_name, s3_bucket, ddb_table):
    assert lambda_fanout.map(aws.dynamodb_get_item(ddb_table), [{"pk": {"S": "absent"}}], strategy=strategy_name) == [None]
    out = lambda_fanout.map(aws.s3_get_object(s3_bucket), ["absent"], strategy=strategy_name, errors="collect")
    assert not out[0].ok and "NoSuchKey" in str(out[0].error)


def test_injected_503s_lose_nothing(strategy_name, aws_endpoint, s3_bucket):
    lambda_fanout.map(aws.s3_put_object(s3_bucket), [(k, body_of(k)) for k in KEYS], strategy="threads")
    endpoint = aws_endpoint
    endpoint.reset_stats()
    endpoint.configure(faults={"503": 0.10}, seed=7)
    out = lambda_fanout.map(aws.s3_get_object(s3_bucket), KEYS * 3, strategy=strategy_name,
                            max_workers=16, errors="collect")
    stats = endpoint.stats()
    assert len(out) == len(KEYS) * 3
    assert [o.index for o in out] == list(range(len(out)))
    ok = [o for o in out if o.ok]
    failed = [o for o in out if not o.ok]
    assert all(o.value == body_of(o.item) for o in ok)
    assert stats["faults"]["503"] > 0
    # Every success was served exactly once by moto; every failure is the 503 of its last
    # attempt, after standard mode's 3 attempts all got one.
    assert stats["served"] == len(ok)
    assert all(o.error.response["ResponseMetadata"]["HTTPStatusCode"] == 503 for o in failed)
    assert stats["faults"]["503"] >= 3 * len(failed)
    assert stats["requests"] == stats["served"] + stats["faults"]["503"]


def test_stalled_response_ends_within_the_read_timeout(concurrent_strategy, aws_endpoint, s3_bucket, monkeypatch):
    lambda_fanout.map(aws.s3_put_object(s3_bucket), [("stalled", b"x")], strategy="threads")
    monkeypatch.setenv(aws.ENV_READ_TIMEOUT_S, "1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    aws.reset_clients()
    aws_endpoint.configure(faults={"stall": 1.0}, stall_s=30)
    t0 = time.monotonic()
    out = lambda_fanout.map(aws.s3_get_object(s3_bucket), ["stalled"], strategy=concurrent_strategy, errors="collect")
    elapsed = time.monotonic() - t0
    assert not out[0].ok
    assert "timeout" in type(out[0].error).__name__.lower() or "timeout" in str(out[0].error).lower()
    assert elapsed < 10, f"took {elapsed:.1f} s with a 1 s read timeout"


def test_client_settings(aws_endpoint, monkeypatch):
    c = aws.clients("s3", max_workers=100, region_name="us-east-1")
    assert c is aws.clients("s3", max_workers=100, region_name="us-east-1")
    cfg = c.sync.meta.config
    assert cfg.max_pool_connections == 100
    assert cfg.retries["mode"] == "standard"
    assert (cfg.connect_timeout, cfg.read_timeout) == (aws.DEFAULT_CONNECT_TIMEOUT_S, aws.DEFAULT_READ_TIMEOUT_S)

    async def pool_size():
        client = await c.aio_client()
        return client.meta.config.max_pool_connections, client.meta.config.retries["mode"]

    assert run_on_loop(pool_size()) == (100, "standard")

    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    assert "retries" not in aws.client_settings(8)  # the user's choice is left to botocore
    assert aws.client_settings(8)["max_pool_connections"] == aws.POOL_FLOOR


@pytest.mark.parametrize("value", ["0", "-2", "soon", "", "\u0663", "\uff11\uff16", "1_0", "\u20073"])
def test_bad_timeout_setting(monkeypatch, value):
    monkeypatch.setenv(aws.ENV_READ_TIMEOUT_S, value)
    with pytest.raises(lambda_fanout.ConfigError, match=aws.ENV_READ_TIMEOUT_S):
        aws.client_settings(8)


def test_amap_on_a_callers_loop_closes_cleanly(aws_endpoint, s3_bucket):
    lambda_fanout.map(aws.s3_put_object(s3_bucket), [(k, body_of(k)) for k in KEYS[:5]], strategy="threads")

    async def handler():
        try:
            return await lambda_fanout.amap(aws.s3_get_object(s3_bucket), KEYS[:5], strategy="asyncio")
        finally:
            await aws.aclose()

    assert asyncio.run(handler()) == [body_of(k) for k in KEYS[:5]]


def test_aws_module_imports_nothing_heavy():
    from test_cold_start import HEAVY, fresh_modules

    loaded = fresh_modules("import lambda_fanout.aws as a; a.clients('s3'); a.s3_get_object('b')")
    assert not [m for m in HEAVY if m in loaded]
