"""Client CPU per AWS call: raw boto3 / aiobotocore at botocore's defaults beside the helpers' profiles.

One 1 KiB object and one item, read again and again, each variant through its own
client over a kept-alive connection to the local endpoint (the proxy, no added
delay). moto's server and the proxy run in other processes, so the process CPU
counted is the client's alone: sync calls in this thread, aiobotocore's on the shared
event loop's thread (one hand-off per batch), and nothing else runs meanwhile.

- ``test_client_cpu_per_call``: one pytest-benchmark row per service, form and
  variant, timed in process CPU time (``timer=time.process_time``).
- ``test_client_cpu_ratios``: the variants interleaved, round after round in a
  rotating order, so drift on a shared machine hits them alike; the median CPU per
  call of each and its ratio to raw go into ``extra_info`` and are printed.

    .venv/bin/python -m pytest tests/benchmarks/test_aws_cpu_bench.py -q -s

The ``crt`` profile serves S3 GetObject through awscrt (its HTTP client and signer on
awscrt's own event-loop threads, counted too, as they are this process's), called
through the ``s3_get_object`` helper, the only way in; it changes no DynamoDB call,
so DynamoDB has no crt row.
"""

from __future__ import annotations

import statistics
import time

import pytest

from lambda_fanout import aws

pytestmark = pytest.mark.aws

#: "raw" is boto3 / aiobotocore as a user makes them: botocore's defaults, no Config.
VARIANTS = ("raw",) + aws.CLIENT_PROFILES
CASES = [(service, form) for service in ("s3", "dynamodb") for form in ("sync", "aio")]
BUCKET = "fanout-cpu-bench"
TABLE = "fanout-cpu-bench"
KEY = "bench/object"
BODY = bytes(range(256)) * 4
ITEM = {"pk": {"S": KEY}, "size": {"N": "1024"}, "name": {"S": "object"}}
CALLS_PER_BATCH = 40
ROUNDS = 20
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def calls(endpoint):
    """For each (service, form, variant): a function making CALLS_PER_BATCH calls, checked once."""
    import boto3
    from aiobotocore.session import get_session

    from lambda_fanout._loop import reset_loop, submit

    endpoint.configure()
    seed = boto3.session.Session().client("s3", endpoint_url=endpoint.moto_url, **CREDENTIALS)
    seed.create_bucket(Bucket=BUCKET)
    seed.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)
    ddb = boto3.session.Session().client("dynamodb", endpoint_url=endpoint.moto_url, **CREDENTIALS)
    ddb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    ddb.put_item(TableName=TABLE, Item=ITEM)
    seed.close(), ddb.close()

    kwargs = {"endpoint_url": endpoint.url, **CREDENTIALS}
    params = {"s3": {"Bucket": BUCKET, "Key": KEY}, "dynamodb": {"TableName": TABLE, "Key": {"pk": {"S": KEY}}}}
    operation = {"s3": "get_object", "dynamodb": "get_item"}
    want = {"s3": BODY, "dynamodb": ITEM}
    made, closers = {}, []

    def sync_batch(client, service):
        call, p = getattr(client, operation[service]), params[service]
        read = (lambda r: r["Body"].read()) if service == "s3" else (lambda r: r["Item"])

        def batch():
            for _ in range(CALLS_PER_BATCH):
                out = read(call(**p))
            return out
        return batch

    def aio_batch(get_call, service):
        p = params[service]

        async def read(response):
            if service == "s3":
                async with response["Body"] as stream:
                    return await stream.read()
            return response["Item"]

        async def batch():
            for _ in range(CALLS_PER_BATCH):
                out = await read(await get_call()(**p))
            return out
        return lambda: submit(batch()).result()

    def helper_batches(task):
        """(sync, aio) batches of CALLS_PER_BATCH calls of a helper task."""
        def batch():
            for _ in range(CALLS_PER_BATCH):
                out = task(KEY)
            return out

        async def abatch():
            for _ in range(CALLS_PER_BATCH):
                out = await task.async_fn(KEY)
            return out
        return batch, lambda: submit(abatch()).result()

    for service in ("s3", "dynamodb"):
        raw = boto3.session.Session().client(service, **kwargs)
        closers.append(raw.close)
        context = get_session().create_client(service, **kwargs)
        raw_aio = submit(context.__aenter__()).result()
        closers.append(lambda context=context: submit(context.__aexit__(None, None, None)).result())
        made[service, "sync", "raw"] = sync_batch(raw, service)
        made[service, "aio", "raw"] = aio_batch(lambda raw_aio=raw_aio, service=service: getattr(
            raw_aio, operation[service]), service)
        for profile in aws.CLIENT_PROFILES:
            pair = aws.clients(service, profile=profile, **kwargs)
            native = aws.NATIVE.get(profile)
            if native is None:
                made[service, "sync", profile] = sync_batch(pair.sync, service)
                made[service, "aio", profile] = aio_batch(lambda pair=pair, service=service: getattr(
                    pair.aio, operation[service]), service)
            elif service in native:
                assert pair.native() is not None, "awscrt is in the dev requirements"
                made[service, "sync", profile], made[service, "aio", profile] = helper_batches(
                    aws.s3_get_object(BUCKET, clients=pair))
    for (service, _, _), batch in made.items():
        assert batch() == want[service]  # connects, fills caches, and checks the answer
    yield made
    for close in closers:
        close()
    reset_loop()  # closes the helpers' aiobotocore clients
    aws.reset_clients()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service,form", CASES)
@pytest.mark.benchmark(timer=time.process_time)
def test_client_cpu_per_call(benchmark, calls, service, form, variant):
    if (service, form, variant) not in calls:
        pytest.skip(f"the {variant} profile changes no {service} call")
    benchmark.group = f"client CPU per {service} {form} call (x{CALLS_PER_BATCH})"
    benchmark.extra_info["calls_per_round"] = CALLS_PER_BATCH
    benchmark.pedantic(calls[service, form, variant], rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("service,form", CASES)
def test_client_cpu_ratios(benchmark, calls, service, form):
    variants = [v for v in VARIANTS if (service, form, v) in calls]
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    order = list(variants)

    def one_round():
        order.append(order.pop(0))  # rotate, so no variant always runs first
        for variant in order:
            batch = calls[service, form, variant]
            t0 = time.process_time()
            batch()
            cpu[variant].append((time.process_time() - t0) / CALLS_PER_BATCH)

    benchmark.group = f"client CPU ratios, {service} {form}, interleaved"
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    per_call = {v: statistics.median(times[1:] or times) for v, times in cpu.items()}  # [0]: the warm-up round
    ratios = {v: per_call[v] / per_call["raw"] for v in variants}
    benchmark.extra_info["cpu_us_per_call"] = {v: round(t * 1e6, 1) for v, t in per_call.items()}
    benchmark.extra_info["cpu_ratio_to_raw"] = {v: round(r, 3) for v, r in ratios.items()}
    print(f"\n{service} {form}: " + ", ".join(
        f"{v} {per_call[v] * 1e6:.0f} us ({ratios[v]:.2f}x)" for v in variants))
