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

Where awscrt is importable, the S3 sync case gains two probes of a native path that
is not shipped (see ``_crt_probes``): GETs through awscrt's HTTP client signed by
awscrt, bare, and with botocore's credentials and response parser; neither retries.
Their I/O runs on awscrt's own threads, counted too. awscrt is not in the
development requirements; to include the probes:

    .venv/bin/pip install --target /tmp/crt awscrt
    PYTHONPATH=/tmp/crt .venv/bin/python -m pytest tests/benchmarks/test_aws_cpu_bench.py -q -s -k ratios
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
            made[service, "sync", profile] = sync_batch(pair.sync, service)
            made[service, "aio", profile] = aio_batch(lambda pair=pair, service=service: getattr(
                pair.aio, operation[service]), service)
    probes = _crt_probes(endpoint.url)
    if probes is not None:
        made.update({("s3", "sync", name): batch for name, batch in probes[0].items()})
        closers.append(probes[1])
    for (service, _, _), batch in made.items():
        assert batch() == want[service]  # connects, fills caches, and checks the answer
    yield made
    for close in closers:
        close()
    reset_loop()  # closes the helpers' aiobotocore clients
    aws.reset_clients()


def _crt_probes(url: str) -> tuple[dict, object] | None:
    """({name: batch of CALLS_PER_BATCH GETs through awscrt}, close), or None without awscrt.

    ``crt-probe``: awscrt's HTTP client, signed by awscrt, the body joined: the floor.
    ``crt-probe+botocore``: the same with what boto3's contract needs on every call at
    least: frozen credentials from a botocore Credentials object (what the chain gives
    from environment variables), and the response through botocore's own parser (the
    exact response dict, and the error code a ClientError would carry).
    """
    try:
        import awscrt.auth
        import awscrt.http
        import awscrt.io
    except ImportError:
        return None
    import io
    from urllib.parse import urlsplit

    import botocore.session
    from botocore.awsrequest import HeadersDict
    from botocore.credentials import Credentials
    from botocore.response import StreamingBody

    from lambda_fanout._botocore import tune_session

    where = urlsplit(url)
    group = awscrt.io.EventLoopGroup(1)
    bootstrap = awscrt.io.ClientBootstrap(group, awscrt.io.DefaultHostResolver(group))
    connection = awscrt.http.HttpClientConnection.new(host_name=where.hostname, port=where.port,
                                                      bootstrap=bootstrap).result()
    signing = awscrt.auth.AwsSigningConfig(
        algorithm=awscrt.auth.AwsSigningAlgorithm.V4,
        signature_type=awscrt.auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=awscrt.auth.AwsCredentialsProvider.new_static(
            CREDENTIALS["aws_access_key_id"], CREDENTIALS["aws_secret_access_key"]),
        region=CREDENTIALS["region_name"], service="s3",
        signed_body_value=awscrt.auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        signed_body_header_type=awscrt.auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256)
    session = botocore.session.get_session()
    tune_session(session)
    output = session.get_service_model("s3").operation_model("GetObject").output_shape
    parsers = session.get_component("response_parser_factory")
    chain = Credentials(CREDENTIALS["aws_access_key_id"], CREDENTIALS["aws_secret_access_key"])

    def get(config) -> tuple[int, list, bytes]:
        request = awscrt.http.HttpRequest("GET", f"/{BUCKET}/{KEY}", awscrt.http.HttpHeaders([("host", where.netloc)]))
        awscrt.auth.aws_sign_request(request, config).result()
        head, chunks = [], []
        stream = connection.request(request, on_response=lambda status_code, headers, **_: head.append(
            (status_code, headers)), on_body=lambda chunk, **_: chunks.append(chunk))
        stream.activate()
        stream.completion_future.result()
        return (*head[0], b"".join(chunks))

    def floor() -> bytes:
        status, _, body = get(signing)
        assert status == 200, status
        return body

    def with_botocore() -> bytes:
        frozen = chain.get_frozen_credentials()
        status, headers, body = get(signing.replace(credentials_provider=awscrt.auth.AwsCredentialsProvider.new_static(
            frozen.access_key, frozen.secret_key, frozen.token)))
        headers = HeadersDict(headers)
        parsed = parsers.create_parser("rest-xml").parse(
            {"status_code": status, "headers": headers, "body": StreamingBody(io.BytesIO(body), len(body))}, output)
        assert status == 200, parsed
        return parsed["Body"].read()

    def batch_of(get_one):
        def batch() -> bytes:
            for _ in range(CALLS_PER_BATCH):
                out = get_one()
            return out
        return batch
    return {"crt-probe": batch_of(floor), "crt-probe+botocore": batch_of(with_botocore)}, (
        lambda: connection.close().result())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service,form", CASES)
@pytest.mark.benchmark(timer=time.process_time)
def test_client_cpu_per_call(benchmark, calls, service, form, variant):
    benchmark.group = f"client CPU per {service} {form} call (x{CALLS_PER_BATCH})"
    benchmark.extra_info["calls_per_round"] = CALLS_PER_BATCH
    benchmark.pedantic(calls[service, form, variant], rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("service,form", CASES)
def test_client_cpu_ratios(benchmark, calls, service, form):
    variants = [v for v in (*VARIANTS, "crt-probe", "crt-probe+botocore") if (service, form, v) in calls]
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
