"""FANOUT_AWS_CLIENT=crt: the S3 helpers through awscrt give what the botocore path gives.

Most tests run over real HTTP against moto's server behind the fault proxy. A crt
call never reaches botocore's sender: those tests count ``before-send`` events on the
pair's own boto3 client to prove the native path served it (and, for the fallbacks,
that botocore did). The last section serves what moto never answers (a body cut short,
a stalled or reset connection, odd headers, a redirect hint) from a hand-written server
(``rawhttp``) and checks that crt's outcome equals the default profile's.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lambda_fanout
import rawhttp
from lambda_fanout import _crt, _limiter, aws

pytestmark = pytest.mark.aws
STRATEGIES = ("threads", "asyncio")


class Sends:
    """How many requests botocore itself sent through a client (crt calls send none).

    Counted where botocore's endpoint sends each attempt (or has it answered at
    ``before-send``, as moto does): no event handler, since a handler on an event the
    crt path does not emit sends the calls through botocore. crt requests are shown to
    ``before-send`` handlers too, so that event would count them.
    """

    def __init__(self, client) -> None:
        self.count = 0
        endpoint = client._endpoint
        send = endpoint._do_get_response

        def counted(*args, **kwargs):
            self.count += 1
            return send(*args, **kwargs)

        endpoint._do_get_response = counted


@pytest.fixture
def pairs(aws_endpoint):
    """(crt pair, default pair, botocore send counter of the crt pair)."""
    crt, default = aws.clients("s3", profile="crt"), aws.clients("s3", profile="default")
    assert crt.native() is not None, "awscrt is in the dev requirements"
    return crt, default, Sends(crt.sync)


def run(task, items, strategy, max_workers=None):
    return lambda_fanout.map(task, items, strategy=strategy, errors="collect", max_workers=max_workers)


def helpers(bucket, pair):
    return {"get": aws.s3_get_object(bucket, clients=pair), "put": aws.s3_put_object(bucket, clients=pair),
            "head": aws.s3_head_object(bucket, clients=pair)}


def outcome(result):
    """One collected Outcome: its value, or its error as a user would inspect it."""
    error = result.error
    if error is None:
        return ("ok", result.value)
    response = getattr(error, "response", {}) or {}
    meta = response.get("ResponseMetadata", {})
    details = {k: v for k, v in response.get("Error", {}).items() if k not in ("RequestId", "HostId")}
    return ("error", type(error).__name__, details, meta.get("HTTPStatusCode"), meta.get("RetryAttempts"),
            meta.get("MaxAttemptsReached"))


def outcomes(results):
    return [outcome(r) for r in results]


keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda k: len(k.encode()) <= 1024 and k not in (".", "..") and not k.startswith("/"))
bodies = st.one_of(st.just(b""), st.binary(max_size=3000), st.text(max_size=50).map(str.encode))
metadata = st.dictionaries(st.text("abcdefghij-", min_size=1, max_size=8), st.text("xyz 0129", max_size=10),
                           max_size=3)
content_types = st.sampled_from([None, "text/plain", "application/json; charset=utf-8", "image/png"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys, body=bodies, meta=metadata, content_type=content_types, strategy=st.sampled_from(STRATEGIES))
def test_get_put_head_match_the_botocore_path(pairs, s3_bucket, key, body, meta, content_type, strategy):
    crt, default, sends = pairs
    before = sends.count
    seeded = {"Metadata": meta, **({"ContentType": content_type} if content_type else {})}
    default.sync.put_object(Bucket=s3_bucket, Key=key, Body=body, **seeded)
    native, botocore = helpers(s3_bucket, crt), helpers(s3_bucket, default)
    for op in ("get", "head"):
        assert outcomes(run(native[op], [key, key + "-absent"], strategy)) == \
            outcomes(run(botocore[op], [key, key + "-absent"], strategy))
    # Puts: the same ETag, and the same object stored, checksum included.
    ours, theirs = run(native["put"], [(key + "/crt", body)], strategy), \
        run(botocore["put"], [(key + "/boto", body)], strategy)
    assert outcomes(ours) == outcomes(theirs)
    stored = [default.sync.head_object(Bucket=s3_bucket, Key=key + suffix, ChecksumMode="ENABLED")
              for suffix in ("/crt", "/boto")]
    assert [{k: v for k, v in s.items() if k not in ("ResponseMetadata", "LastModified")} for s in stored][0] == \
        [{k: v for k, v in s.items() if k not in ("ResponseMetadata", "LastModified")} for s in stored][1]
    assert default.sync.get_object(Bucket=s3_bucket, Key=key + "/crt")["Body"].read() == body
    assert sends.count == before  # the crt pair's botocore client sent nothing


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_bucket_errors_match(pairs, strategy):
    crt, default, sends = pairs
    for op in ("get", "head"):
        ours = outcomes(run(helpers("fanout-no-such-bucket", crt)[op], ["k"], strategy))
        assert ours == outcomes(run(helpers("fanout-no-such-bucket", default)[op], ["k"], strategy))
        assert ours[0][1] in ("NoSuchBucket", "ClientError") and ours[0][3] == 404
    assert sends.count == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_access_denied_matches_and_is_not_retried(pairs, s3_bucket, aws_endpoint, strategy):
    crt, default, sends = pairs
    default.sync.put_object(Bucket=s3_bucket, Key="d", Body=b"d")
    aws_endpoint.configure(faults={"403": 1.0})
    for op, item in (("get", "d"), ("head", "d"), ("put", ("d", b"x"))):
        got = []
        for pair in (crt, default):
            aws_endpoint.reset_stats()
            got.append((outcomes(run(helpers(s3_bucket, pair)[op], [item], strategy)), aws_endpoint.stats()["requests"]))
        assert got[0] == got[1]
        (result,), requests = got[0]
        assert result[1] in ("ClientError", "AccessDenied") and result[3] == 403 and requests == 1
        assert result[2]["Code"] == ("403" if op == "head" else "AccessDenied")
    assert sends.count == 0


def test_the_exception_classes_are_the_clients(pairs, s3_bucket):
    from botocore.exceptions import ClientError

    crt, _, _ = pairs
    with pytest.raises(crt.sync.exceptions.NoSuchKey) as err:
        aws.s3_get_object(s3_bucket, clients=crt)("absent")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        aws.s3_head_object(s3_bucket, clients=crt)("absent")
    assert err.value.response["Error"]["Code"] == "404"
    assert err.value.operation_name == "HeadObject"


@pytest.mark.parametrize("op,code", [("get", "SlowDown"), ("head", "503")])  # a HEAD answer has no body
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_slowdown_is_retried_reported_and_raised_as_botocore_does(pairs, s3_bucket, aws_endpoint, strategy, op,
                                                                  code):
    crt, default, sends = pairs
    default.sync.put_object(Bucket=s3_bucket, Key="t/one", Body=b"x")
    got = []
    for pair in (crt, default):
        aws_endpoint.configure(throttle={"rate": 0.01, "burst": 1})  # a fresh bucket of one token
        aws_endpoint.reset_stats()
        limiter = _limiter.Limiter(64)
        results = lambda_fanout.map(_with_limiter(helpers(s3_bucket, pair)[op], limiter),
                                    ["t/one", "t/one"], strategy=strategy, errors="collect", max_workers=1)
        attempts = aws_endpoint.stats()["throttled"]
        got.append((outcomes(results), attempts, limiter.throttled))
    assert got[0] == got[1]
    (first, second), attempts, throttled = got[0]
    assert first[0] == "ok" and second[:2] == ("error", "ClientError")
    assert second[2]["Code"] == code and second[3] == 503 and second[4] == 2 and second[5] is True
    assert attempts == throttled == 3  # standard mode: three attempts, each one a signal
    assert sends.count == 0


def _with_limiter(task, limiter):
    """The task with ``limiter`` as the running one, as ``auto`` sets it per job."""
    def sync(item):
        _limiter.current.set(limiter)
        return task(item)

    async def aio(item):
        _limiter.current.set(limiter)
        return await task.async_fn(item)
    return lambda_fanout.Task(sync, aio)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_max_attempts_come_from_aws_max_attempts(pairs, s3_bucket, aws_endpoint, monkeypatch, strategy):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    aws.reset_clients()
    crt = aws.clients("s3", profile="crt")
    crt.sync.put_object(Bucket=s3_bucket, Key="t/one", Body=b"x")
    aws_endpoint.configure(throttle={"rate": 0.01, "burst": 1})
    aws_endpoint.reset_stats()
    results = run(aws.s3_get_object(s3_bucket, clients=crt), ["t/one", "t/one"], strategy, max_workers=1)
    assert [o[0] for o in outcomes(results)] == ["ok", "error"]
    assert aws_endpoint.stats()["throttled"] == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_transient_faults_are_retried(pairs, s3_bucket, aws_endpoint, monkeypatch, strategy):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "6")  # five faults in a row for one key: about 1 in 10^5 runs
    aws.reset_clients()
    crt, default = aws.clients("s3", profile="crt"), aws.clients("s3", profile="default")
    sends = Sends(crt.sync)
    keys = [f"r/{i}" for i in range(30)]
    for key in keys:
        default.sync.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    aws_endpoint.configure(faults={"500": 0.1, "reset": 0.1}, seed=7)
    aws_endpoint.reset_stats()
    results = lambda_fanout.map(aws.s3_get_object(s3_bucket, clients=crt), keys, strategy=strategy,
                                max_workers=4)
    stats = aws_endpoint.stats()
    assert results == [k.encode() for k in keys]
    assert sum(stats["faults"].values()) > 0
    assert stats["requests"] == len(keys) + sum(stats["faults"].values())  # one retry per fault
    assert sends.count == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_unreachable_endpoint_raises_botocores_connection_error(aws_endpoint, monkeypatch, strategy):
    from botocore.exceptions import EndpointConnectionError

    from lambda_fanout_dev.endpoint import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    aws.reset_clients()
    got = [outcomes(run(aws.s3_get_object("fanout-bucket", clients=aws.clients("s3", profile=profile)), ["k"],
                        strategy))[0][:2] for profile in ("crt", "default")]
    assert got[0] == got[1] == ("error", EndpointConnectionError.__name__)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_stalled_response_times_out_as_botocore_does(aws_endpoint, s3_bucket, monkeypatch, strategy):
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    aws.reset_clients()
    crt = aws.clients("s3", profile="crt")
    crt.sync.put_object(Bucket=s3_bucket, Key="slow", Body=b"x")
    aws_endpoint.configure(faults={"stall": 1.0}, stall_s=2.0)
    aws_endpoint.reset_stats()
    results = run(aws.s3_get_object(s3_bucket, clients=crt), ["slow"], strategy)
    assert outcomes(results)[0][:2] == ("error", ReadTimeoutError.__name__)
    assert aws_endpoint.stats()["faults"]["stall"] == 2  # both attempts, each given up after 0.3 s


def test_the_checksum_of_a_get_is_checked(pairs, s3_bucket):
    """A body that does not match the stored checksum raises botocore's FlexibleChecksumError."""
    from botocore.exceptions import FlexibleChecksumError

    crt, default, _ = pairs
    default.sync.put_object(Bucket=s3_bucket, Key="sum", Body=b"payload")
    native = crt.native()
    route = native.route("get_object", s3_bucket)
    assert route is not None and route.response_checksums
    headers = [("x-amz-checksum-crc32", default.sync.head_object(
        Bucket=s3_bucket, Key="sum", ChecksumMode="ENABLED")["ChecksumCRC32"])]
    assert native._checked(route, headers, b"payload") == b"payload"
    with pytest.raises(FlexibleChecksumError):
        native._checked(route, headers, b"pay1oad")


def test_other_calls_and_services_keep_botocore(pairs, s3_bucket, ddb_table):
    crt, _, sends = pairs
    aws.s3_delete_object(s3_bucket, clients=crt)("k")
    assert sends.count == 1
    table = aws.clients("dynamodb", profile="crt")
    assert table.native() is None
    aws.dynamodb_put_item(ddb_table, clients=table)({"pk": {"S": "a"}})
    assert aws.dynamodb_get_item(ddb_table, clients=table)({"pk": {"S": "a"}}) == {"pk": {"S": "a"}}
    # A file-like body is streamed by botocore.
    import io

    assert aws.s3_put_object(s3_bucket, clients=crt)(("f", io.BytesIO(b"file"))).startswith('"')
    assert sends.count == 2


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_without_awscrt_crt_warns_once_and_botocore_serves(aws_endpoint, s3_bucket, monkeypatch, strategy):
    # `import awscrt.http` now raises ImportError. Not the whole package: botocore, which
    # found awscrt at its own import, would then fail instead of falling back itself.
    monkeypatch.setitem(sys.modules, "awscrt.http", None)
    monkeypatch.setattr(_crt, "_loaded", None)
    monkeypatch.setenv("FANOUT_AWS_CLIENT", "crt")
    aws.reset_clients()
    pair = aws.clients("s3")
    assert pair.profile == "crt"
    sends = Sends(pair.sync)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lambda_fanout.map(aws.s3_put_object(s3_bucket), [("a", b"1"), ("b", b"2")], strategy=strategy)
        assert lambda_fanout.map(aws.s3_get_object(s3_bucket), ["a", "b"], strategy=strategy) == [b"1", b"2"]
        aws.reset_clients()
        assert aws.s3_get_object(s3_bucket)("a") == b"1"  # a new pair: no second warning
    said = [w for w in caught if issubclass(w.category, RuntimeWarning) and "awscrt" in str(w.message)]
    assert len(said) == 1
    assert "native zip" in str(said[0].message) and "FANOUT_AWS_CLIENT" in str(said[0].message)
    assert pair.native() is None
    assert sends.count == (4 if strategy == "threads" else 0)  # asyncio's calls went through aiobotocore


def test_a_cancelled_async_call_closes_its_connection(pairs, s3_bucket, aws_endpoint):
    """Cancelling a waiting call (a deadline) leaves no half-read connection in the pool."""
    crt, default, _ = pairs
    default.sync.put_object(Bucket=s3_bucket, Key="c", Body=b"c")
    get = aws.s3_get_object(s3_bucket, clients=crt)

    async def main():
        assert await get.async_fn("c") == b"c"
        aws_endpoint.configure(delay_ms=1000)
        call = asyncio.ensure_future(get.async_fn("c"))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        aws_endpoint.configure()
        return await get.async_fn("c")

    assert asyncio.run(main()) == b"c"
    pool = crt.native().route("get_object", s3_bucket).pool
    assert len(pool.idle) == 1  # the cancelled call's connection was closed, not returned


def test_every_strategy_serves_crt_calls(aws_endpoint, s3_bucket, monkeypatch, strategy_name):
    """FANOUT_AWS_CLIENT=crt under each strategy (processes' workers make their own crt pairs)."""
    monkeypatch.setenv("FANOUT_AWS_CLIENT", "crt")
    items = [(f"s/{i}", bytes([i]) * i) for i in range(12)]
    etags = lambda_fanout.map(aws.s3_put_object(s3_bucket), items, strategy=strategy_name)
    bodies = lambda_fanout.map(aws.s3_get_object(s3_bucket), [k for k, _ in items], strategy=strategy_name)
    heads = lambda_fanout.map(aws.s3_head_object(s3_bucket), [k for k, _ in items], strategy=strategy_name)
    default = aws.clients("s3", profile="default").sync
    assert bodies == [body for _, body in items]
    assert etags == [default.head_object(Bucket=s3_bucket, Key=k)["ETag"] for k, _ in items]
    assert [h["ContentLength"] for h in heads] == [len(body) for _, body in items]
    if strategy_name != "processes":
        assert aws.clients("s3").native() is not None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys, region=st.sampled_from(["us-east-1", "eu-west-3"]))
def test_signatures_are_botocores(pairs, monkeypatch, key, region):
    """The same request at the same instant gets botocore's S3 SigV4 Authorization header, session token included."""
    import datetime

    import awscrt.auth
    import awscrt.http
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.utils import percent_encode

    native = pairs[0].native()
    when = datetime.datetime(2026, 11, 27, 12, 34, 56, tzinfo=datetime.timezone.utc)
    path = "/fanout-bucket/" + percent_encode(key, safe="/~")
    ours = awscrt.http.HttpRequest("GET", path, awscrt.http.HttpHeaders([("host", "127.0.0.1:4566")]))
    awscrt.auth.aws_sign_request(ours, native.signing(region).replace(date=when)).result()
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    theirs = AWSRequest(method="GET", url="http://127.0.0.1:4566" + path)
    botocore.auth.S3SigV4Auth(native.credentials.get_frozen_credentials(), "s3", region).add_auth(theirs)
    assert ours.headers.get("x-amz-security-token") == theirs.headers["X-Amz-Security-Token"] == "testing"
    assert ours.headers.get("authorization") == theirs.headers["Authorization"]


def test_explicit_keys_beat_the_chain(aws_endpoint):
    pair = aws.clients("s3", profile="crt", aws_access_key_id="AKIDEXPLICIT", aws_secret_access_key="secret")
    frozen = pair.native().credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("AKIDEXPLICIT", "secret", None)


def test_the_s3_endpoint_variable_beats_the_general_one(aws_endpoint, s3_bucket, monkeypatch):
    from lambda_fanout_dev.endpoint import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_endpoint.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    aws.reset_clients()
    pair = aws.clients("s3", profile="crt")
    assert aws.s3_put_object(s3_bucket, clients=pair)(("e", b"e")) and aws.s3_get_object(s3_bucket, clients=pair)("e") == b"e"
    assert pair.native().route("get_object", s3_bucket).url.startswith(aws_endpoint.url + "/" + s3_bucket + "/")


@pytest.fixture(scope="module")
def tls_endpoint(tmp_path_factory):
    """moto's server over HTTPS with a self-signed certificate for 127.0.0.1: (url, CA bundle path)."""
    import datetime
    import ipaddress
    import ssl
    import subprocess
    import time
    import urllib.request

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from lambda_fanout_dev.endpoint import free_port

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port),
                               "-c", str(folder / "cert.pem"), "-k", str(folder / "key.pem")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, trust = f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(folder / "cert.pem"))
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/moto-api/", context=trust, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url, str(folder / "cert.pem")
    finally:
        server.terminate()
        server.wait()


def test_https_with_the_ca_bundle_and_without(aws_endpoint, tls_endpoint, monkeypatch):
    """TLS through awscrt: the chain's CA bundle is trusted; an unknown certificate is botocore's SSLError."""
    from botocore.exceptions import SSLError

    url, bundle = tls_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_CA_BUNDLE", bundle)
    aws.reset_clients()
    crt, default = aws.clients("s3", profile="crt"), aws.clients("s3", profile="default")
    default.sync.create_bucket(Bucket="fanout-tls")
    sends = Sends(crt.sync)
    assert aws.s3_put_object("fanout-tls", clients=crt)(("k", b"tls")) == \
        aws.s3_put_object("fanout-tls", clients=default)(("k", b"tls"))
    assert aws.s3_get_object("fanout-tls", clients=crt)("k") == b"tls"
    assert aws.s3_head_object("fanout-tls", clients=crt)("k") == aws.s3_head_object("fanout-tls", clients=default)("k")
    assert crt.native().route("get_object", "fanout-tls").url == f"{url}/fanout-tls/" and sends.count == 0
    monkeypatch.delenv("AWS_CA_BUNDLE")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    aws.reset_clients()
    for profile in ("crt", "default"):
        with pytest.raises(SSLError):
            aws.s3_get_object("fanout-tls", clients=aws.clients("s3", profile=profile))("k")


# -- test doubles and tracers see every call ---------------------------------------------------------

IN_PROCESS = [s for s in lambda_fanout.STRATEGIES if s != "processes"]  # a mock cannot reach a worker process


@pytest.fixture
def mocked_aws(monkeypatch):
    """moto's mock_aws() with no endpoint set: a crt request that went around it would leave the machine."""
    from moto import mock_aws

    for name in list(os.environ):
        if name.startswith("AWS_") and name not in ("AWS_LAMBDA_FUNCTION_NAME",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset_clients()
    with mock_aws():
        yield
    aws.reset_clients()


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_crt_inside_mock_aws_is_answered_by_the_mock(mocked_aws, strategy):
    import boto3

    boto3.client("s3").create_bucket(Bucket="mocked")
    crt = aws.clients("s3", profile="crt")
    assert crt.native() is not None
    sends = Sends(crt.sync)
    tasks = helpers("mocked", crt)
    put = run(tasks["put"], [(f"k{i}", f"body {i}".encode()) for i in range(6)], strategy)
    assert all(o.ok for o in put), outcomes(put)
    got = run(tasks["get"], [f"k{i}" for i in range(6)] + ["absent"], strategy)
    assert [o.value for o in got[:6]] == [f"body {i}".encode() for i in range(6)]
    assert outcome(got[6])[:4] == ("error", "NoSuchKey", {"Code": "NoSuchKey", "Message": "The specified key does not exist.", "Key": "absent"}, 404)
    head = run(tasks["head"], ["k1"], strategy)
    assert head[0].ok and head[0].value["ContentLength"] == len(b"body 1")
    assert sends.count == 0  # the crt path made every call, and the mock answered each
    # What the mock stored is what a plain boto3 client reads from it.
    assert boto3.client("s3").get_object(Bucket="mocked", Key="k5")["Body"].read() == b"body 5"


def test_a_function_using_powertools_keeps_the_crt_path(pairs, s3_bucket):
    """Importing Powertools registers its User-Agent handler on every client's ``request-created``:
    it traces and answers nothing, so crt still makes the calls (a function using Powertools
    is not sent through botocore)."""
    import aws_lambda_powertools  # noqa: F401 - registers the handler, as in a function that uses it

    aws.reset_clients()
    crt = aws.clients("s3", profile="crt")
    sends = Sends(crt.sync)
    tasks = helpers(s3_bucket, crt)
    assert all(o.ok for o in run(tasks["put"], [("pt", b"body")], "threads"))
    assert [o.value for o in run(tasks["get"], ["pt"], "threads")] == [b"body"]
    assert sends.count == 0


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_a_before_send_handler_sees_every_crt_request(pairs, s3_bucket, strategy):
    crt, _, sends = pairs
    seen = []
    crt.sync.meta.events.register("before-send.s3", lambda request, **_: seen.append((request.method, request.url)))
    before = sends.count
    tasks = helpers(s3_bucket, crt)
    assert all(o.ok for o in run(tasks["put"], [("a", b"1"), ("b", b"2")], strategy))
    assert [o.value for o in run(tasks["get"], ["a", "b"], strategy)] == [b"1", b"2"]
    assert sorted(method for method, _ in seen) == ["GET", "GET", "PUT", "PUT"]
    assert all(url.endswith(("/a", "/b")) for _, url in seen)
    assert sends.count == before  # seen, and still sent by the crt path


@pytest.mark.parametrize("strategy", [s for s in IN_PROCESS if s != "asyncio"])  # handlers on the sync client
def test_a_before_call_handler_makes_the_calls_go_through_botocore(pairs, s3_bucket, strategy):
    crt, _, sends = pairs
    seen = []
    crt.sync.meta.events.register("before-call.s3.GetObject", lambda model, **_: seen.append(model.name))
    tasks = helpers(s3_bucket, crt)
    assert all(o.ok for o in run(tasks["put"], [("a", b"1")], strategy))
    before = sends.count
    assert [o.value for o in run(tasks["get"], ["a", "a", "a"], strategy)] == [b"1"] * 3
    assert seen == ["GetObject"] * 3 and sends.count == before + 3


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_a_tracer_wrapping_the_client_call_sees_every_crt_call(pairs, s3_bucket, strategy, monkeypatch):
    # As Powertools Tracer / the X-Ray SDK and OpenTelemetry patch botocore.
    from botocore.client import BaseClient

    crt, _, _ = pairs
    traced = []
    original = BaseClient._make_api_call

    def make_api_call(self, operation_name, api_params):
        traced.append(operation_name)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    if strategy == "asyncio":  # its botocore path is aiobotocore's client, which a tracer patches as well
        from aiobotocore.client import AioBaseClient

        aio_original = AioBaseClient._make_api_call

        async def aio_make_api_call(self, operation_name, api_params):
            traced.append(operation_name)
            return await aio_original(self, operation_name, api_params)

        monkeypatch.setattr(AioBaseClient, "_make_api_call", aio_make_api_call)
    tasks = helpers(s3_bucket, crt)
    assert all(o.ok for o in run(tasks["put"], [("a", b"1"), ("b", b"2")], strategy))
    assert [o.value for o in run(tasks["get"], ["a", "b"], strategy)] == [b"1", b"2"]
    assert sorted(traced) == ["GetObject", "GetObject", "PutObject", "PutObject"]


@pytest.mark.parametrize("strategy", ["sequential", "threads"])  # a Stubber is attached to the sync client
def test_a_botocore_stubber_answers_every_call_as_under_default(pairs, s3_bucket, strategy):
    import io

    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    results = {}
    for name, pair in zip(("crt", "default"), pairs[:2]):
        with Stubber(pair.sync) as stub:
            for body in (b"first", b"second"):
                stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body))})
            results[name] = outcomes(run(aws.s3_get_object(s3_bucket, clients=pair), ["a", "b"], strategy))
            stub.assert_no_pending_responses()  # and no call of crt's own took one
    # A Stubber answers in the order calls reach it, which concurrent threads do not fix: compare the answers given.
    assert sorted(results["crt"]) == sorted(results["default"]) == [("ok", b"first"), ("ok", b"second")]


@pytest.mark.parametrize("strategy", [s for s in IN_PROCESS if s != "asyncio"])  # handlers on the sync client
def test_a_tracer_on_request_created_and_after_call_sees_every_call(pairs, s3_bucket, strategy):
    # As Sentry's boto3 integration traces: spans opened at request-created, closed at after-call(-error).
    import functools

    crt, _, _ = pairs
    spans = []
    events = crt.sync.meta.events
    events.register("request-created", functools.partial(
        lambda request, operation_name, service_id, **_: spans.append(("start", operation_name)), service_id="s3"))
    events.register("after-call", lambda context, parsed, **_: spans.append(("end",)))
    events.register("after-call-error", lambda context, exception, **_: spans.append(("error",)))
    tasks = helpers(s3_bucket, crt)
    assert all(o.ok for o in run(tasks["put"], [("a", b"1")], strategy))
    got = run(tasks["get"], ["a", "absent"], strategy)
    assert outcome(got[0]) == ("ok", b"1") and outcome(got[1])[1] == "NoSuchKey"
    assert sorted(span[0] for span in spans if span[0] == "start") == ["start"] * 3
    assert sorted(span[1] for span in spans if span[0] == "start") == ["GetObject", "GetObject", "PutObject"]
    assert sorted(span[0] for span in spans if span[0] != "start") == ["end", "end", "end"]


# -- answers moto never gives: a hand-written server, the default profile beside crt -------------

def _both(bucket, make, items, strategy="threads"):
    """The task made by ``make`` over ``items`` under the default and the crt profile: (default, crt)."""
    out = []
    for profile in ("default", "crt"):
        pair = aws.clients("s3", profile=profile)
        out.append(lambda_fanout.map(make(bucket, clients=pair), items, strategy=strategy, errors="collect"))
    return out



def _plain(results):
    out = []
    for r in results:
        if r.ok:
            value = r.value
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in ("LastModified",)} | {"LM": str(value.get("LastModified"))}
            out.append(value)
        else:
            e = r.error
            meta = getattr(e, "response", {}).get("ResponseMetadata", {})
            out.append((type(e).__name__, getattr(e, "response", {}).get("Error"), meta.get("HTTPStatusCode"),
                        meta.get("RetryAttempts")))
    return out


@pytest.fixture
def raw_env(monkeypatch):
    """Credentials and region for clients pointed at a RawServer; fresh client pairs."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    aws.reset_clients()
    yield
    aws.reset_clients()


def _raw_pair(server, profile):
    from botocore.config import Config

    if not hasattr(server, "config"):  # one Config per server, so clients() finds the same pair again
        server.config = Config(s3={"addressing_style": "path"})
    return aws.clients("s3", profile=profile, endpoint_url=server.url, config=server.config)


def _raw_run(server, make, items, profile):
    pair = _raw_pair(server, profile)
    return lambda_fanout.map(make("bkt", clients=pair), items, strategy="sequential", errors="collect")


def _against(answer, make, items=("k",)):
    """``make``'s task over ``items`` against a RawServer answering with ``answer``, under the
    default profile then crt: (default outcomes, crt outcomes, (requests of default, of crt))."""
    server = rawhttp.RawServer(answer)
    try:
        default = _raw_run(server, make, list(items), "default")
        sent = server.requests
        crt = _raw_run(server, make, list(items), "crt")
    finally:
        server.close()
    return default, crt, (sent, server.requests - sent)


KEYS = ["plain", "uni/ключ-日本語-é", "with space", "a+b", "100%", "what?x=1", "frag#ment", "k" * 900,
        "a//double", "tilde~and*star", "semi;colon,comma", "./dot", "../up", "trailing/", "/lead"]


def test_crt_put_get_head_equal_default_for_odd_keys(s3_bucket):
    """Promise (README, the crt profile): "results: the same bytes, ETag and HeadObject
    dict ... as default" for s3_put_object / s3_get_object / s3_head_object."""
    bodies = [f"body of {k}".encode() for k in KEYS]
    default_put, crt_put = _both(s3_bucket, aws.s3_put_object, list(zip(KEYS, bodies)))
    assert _plain(crt_put) == _plain(default_put)
    default_get, crt_get = _both(s3_bucket, aws.s3_get_object, KEYS)
    assert _plain(crt_get) == _plain(default_get)
    # moto itself resolves dot segments, so only the others must read back what was written
    assert [v for k, v in zip(KEYS, _plain(crt_get)) if "./" not in k] == [b for k, b in zip(KEYS, bodies) if "./" not in k]
    default_head, crt_head = _both(s3_bucket, aws.s3_head_object, KEYS)
    assert _plain(crt_head) == _plain(default_head)


def test_crt_truncated_body_is_an_error_not_short_data(raw_env):
    """Promise (the crt profile): "results: the same bytes ... as default"; a failed
    connection raises ConnectionClosedError. A GetObject answer whose body stops short of
    its Content-Length (the connection closed mid-body) must fail, never return short bytes."""
    def answer(conn, request):
        conn.sendall(rawhttp.head(200, 100) + b"x" * 50)  # then the connection closes

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert not default[0].ok
    assert not crt[0].ok, f"crt returned {len(crt[0].value)} bytes of a 100-byte object"


def test_crt_503_slowdown_equals_default(raw_env, monkeypatch):
    """Promise (the crt profile): errors are botocore's, "SlowDown with status 503, the same
    ResponseMetadata (RetryAttempts, MaxAttemptsReached)"; retries are standard mode's,
    "up to 3 attempts or AWS_MAX_ATTEMPTS"."""
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    body = rawhttp.error_xml("SlowDown")

    def answer(conn, request):
        conn.sendall(rawhttp.head(503, len(body)) + body)

    default, crt, (n_default, n_crt) = _against(answer, aws.s3_get_object)
    d, c = default[0].error, crt[0].error
    assert type(c).__name__ == type(d).__name__ and c.response["Error"]["Code"] == "SlowDown"
    assert c.response == d.response
    assert str(c) == str(d)
    assert n_crt == n_default == 2


def test_crt_500_then_ok_is_retried_like_default(raw_env):
    """Promise (the crt profile): "retries: botocore's standard-mode retry handler (... 5xx
    and transient errors ...)": two 500s then the object is the object."""
    body = rawhttp.error_xml("InternalError")
    seen = {"n": 0}

    def answer(conn, request):
        seen["n"] += 1
        if seen["n"] % 3:
            conn.sendall(rawhttp.head(500, len(body)) + body)
        else:
            conn.sendall(rawhttp.head(200, 5) + b"hello")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert default[0].value == crt[0].value == b"hello"


def test_crt_stalled_body_is_read_timeout(raw_env, monkeypatch):
    """Promise (the crt profile): "a stalled one [raises] ReadTimeoutError after
    FANOUT_AWS_READ_TIMEOUT_S without data"; the call must not hang past it."""
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    release = threading.Event()
    server = rawhttp.RawServer(rawhttp.stalling(release))
    try:
        crt = _raw_run(server, aws.s3_get_object, ["k"], "crt")
    finally:
        release.set()
        server.close()
    assert isinstance(crt[0].error, ReadTimeoutError), crt[0]


def test_crt_empty_and_large_bodies_equal_default(s3_bucket):
    """Promise (the crt profile): the same bytes and ETag as default, for an empty body and
    one over 1 MiB, both ways."""
    big = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MiB
    items = [("empty", b""), ("big", big), ("str", "text body é")]
    default_put, crt_put = _both(s3_bucket, aws.s3_put_object, items)
    assert _plain(crt_put) == _plain(default_put)
    default_get, crt_get = _both(s3_bucket, aws.s3_get_object, [k for k, _ in items])
    assert _plain(crt_get) == _plain(default_get) == [b"", big, "text body é".encode()]


def test_crt_head_with_metadata_equals_default(s3_bucket):
    """Promise (the crt profile): "the same ... HeadObject dict (timestamps, metadata, content type)"."""
    import boto3

    raw = boto3.client("s3", endpoint_url=aws.clients("s3").sync.meta.endpoint_url)
    raw.put_object(Bucket=s3_bucket, Key="m k+", Body=b"abc", Metadata={"owner": "x y", "n": "1"},
                   ContentType="text/plain; charset=utf-8", CacheControl="no-cache")
    default_head, crt_head = _both(s3_bucket, aws.s3_head_object, ["m k+", "absent"])
    assert _plain(crt_head) == _plain(default_head)
    assert crt_head[0].value["Metadata"] == {"owner": "x y", "n": "1"}


@pytest.mark.parametrize("op, status, body", [
    ("head_object", 403, b""), ("head_object", 404, b""), ("get_object", 403, None), ("put_object", 403, None)])
def test_crt_errors_equal_default(raw_env, op, status, body):
    """Promise (the crt profile): "errors: botocore's parser and exception classes ... a
    ClientError with code 404 for a missing HEAD"."""
    payload = rawhttp.error_xml("AccessDenied") if body is None else body

    def answer(conn, request):
        head_only = request.startswith(b"HEAD")
        conn.sendall(rawhttp.head(status, len(payload)) + (b"" if head_only else payload))

    make = getattr(aws, "s3_" + op)
    item = ("k", b"body") if op == "put_object" else "k"
    default, crt, _ = _against(answer, make, [item])
    d, c = default[0].error, crt[0].error
    assert type(c).__name__ == type(d).__name__  # each client has its own exception classes
    assert c.response == d.response  # the server's answers are identical, so everything is
    assert str(c) == str(d)


def test_crt_corrupt_body_fails_checksum(raw_env):
    """Promise (the crt profile): "GetObject asks for the object's checksum and checks it
    with botocore's code (FlexibleChecksumError)"."""
    from botocore.exceptions import FlexibleChecksumError

    def answer(conn, request):
        # the CRC32 of b"hello" is NhCmhg==; the body is not that
        conn.sendall(rawhttp.head(200, 5, "x-amz-checksum-crc32: NhCmhg==\r\n") + b"hellp")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert isinstance(default[0].error, FlexibleChecksumError)
    assert isinstance(crt[0].error, FlexibleChecksumError)


def test_crt_sends_the_session_token_signed(raw_env, monkeypatch):
    """Promise (the crt profile): credentials from the chain, "session tokens included", as botocore."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok-123")
    seen = []

    def answer(conn, request):
        seen.append(request.decode("latin-1").lower())
        conn.sendall(rawhttp.head(200, 2) + b"ok")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert default[0].value == crt[0].value == b"ok"
    for request in seen:
        assert "x-amz-security-token: tok-123" in request
        signed = request.split("signedheaders=")[1].split(",")[0]
        assert "x-amz-security-token" in signed.split(";")


def test_crt_sends_the_lambda_trace_header_as_botocore_does(raw_env, monkeypatch):
    """Promise (the crt profile): botocore still decides what a user can observe: inside Lambda
    each request carries the invocation's X-Amzn-Trace-Id (X-Ray, recursive-loop detection)."""
    seen = []

    def answer(conn, request):
        lines = request.decode("latin-1").split("\r\n")
        seen.append([line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("x-amzn-trace-id:")])
        conn.sendall(rawhttp.head(200, 2) + b"ok")

    server = rawhttp.RawServer(answer)
    try:
        for lambda_env in (False, True):
            if lambda_env:
                monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
            else:
                monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
            for trace in ("Root=1-aaaa-1;Sampled=1", "Root=1-bbbb-2;Parent=c d;Sampled=0"):
                monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)  # Lambda sets it per invocation
                sent = {}
                for profile in ("default", "crt"):
                    del seen[:]
                    assert [o.value for o in _raw_run(server, aws.s3_get_object, ["k"], profile)] == [b"ok"]
                    sent[profile] = seen[:]
                assert sent["crt"] == sent["default"]
                assert sent["crt"] == ([["Root=1-aaaa-1;Sampled=1"]] if trace.endswith("=1") else
                                       [["Root=1-bbbb-2;Parent=c%20d;Sampled=0"]]) if lambda_env else [[]]
    finally:
        server.close()


def test_crt_missing_awscrt_warns_once_and_serves(s3_bucket, tmp_path):
    """Promise (the crt profile): "Where awscrt cannot be imported ... crt serves every call
    through botocore as default does, after one RuntimeWarning per process"."""
    script = tmp_path / "no_crt.py"
    script.write_text(f"""
import sys, warnings
sys.modules["awscrt"] = None  # awscrt cannot be imported in this process
import lambda_fanout
from lambda_fanout import aws
if __name__ == "__main__":
    aws.clients("s3").sync.put_object(Bucket={s3_bucket!r}, Key="a", Body=b"A")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for strategy in ("threads", "asyncio", "threads", "sequential"):
            got = lambda_fanout.map(aws.s3_get_object({s3_bucket!r}, clients=aws.clients("s3", profile="crt")),
                                    ["a"] * 10, strategy=strategy)
            assert list(got) == [b"A"] * 10, got
            aws.reset_clients()
    print("WARNINGS", len([w for w in caught if issubclass(w.category, RuntimeWarning)]))
""")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONWARNINGS="ignore::ResourceWarning"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "WARNINGS 1" in out.stdout, out.stdout + out.stderr[-2000:]


def test_crt_cancel_mid_body_then_next_call_is_clean(raw_env):
    """Promise (README, Guarantees): "Cancelling amap ... raises CancelledError in the caller
    at once"; the crt path's cancelled connection is not reused (no leftover bytes read as
    the next answer)."""
    gate = threading.Event()
    count = {"n": 0}

    def answer(conn, request):
        count["n"] += 1
        if count["n"] == 1:
            conn.sendall(rawhttp.head(200, 10) + b"STALE")  # the rest never comes
            gate.wait(5)
            return
        # keep-alive: answer every request on this connection
        while True:
            conn.sendall(rawhttp.head(200, 5) + b"fresh")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk

    server = rawhttp.RawServer(answer)
    try:
        pair = _raw_pair(server, "crt")
        task = aws.s3_get_object("bkt", clients=pair)

        async def main():
            with pytest.raises((asyncio.CancelledError, asyncio.TimeoutError)):
                await asyncio.wait_for(lambda_fanout.amap(task, ["k"], strategy="asyncio"), 0.5)
            return await lambda_fanout.amap(task, ["k", "k", "k"], strategy="asyncio")

        assert list(asyncio.run(main())) == [b"fresh"] * 3
    finally:
        gate.set()
        server.close()


def test_crt_stalled_body_is_read_timeout_under_asyncio(raw_env, monkeypatch):
    """Promise (the crt profile): a stalled connection raises ReadTimeoutError after
    FANOUT_AWS_READ_TIMEOUT_S without data, on the asyncio strategy's loop too."""
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    release = threading.Event()
    server = rawhttp.RawServer(rawhttp.stalling(release))
    try:
        pair = _raw_pair(server, "crt")
        got = lambda_fanout.map(aws.s3_get_object("bkt", clients=pair), ["k"], strategy="asyncio", errors="collect")
    finally:
        release.set()
        server.close()
    assert isinstance(got[0].error, ReadTimeoutError), got[0]
    assert server.requests == 2  # retried once, as standard mode does with 2 attempts


def test_crt_an_answer_after_the_read_timeout_logs_nothing(raw_env, monkeypatch, caplog):
    """A response that completes after its read timeout failed the call is dropped: the
    event loop logs no error for it (its future was settled already)."""
    import logging
    import time

    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    release = threading.Event()
    server = rawhttp.RawServer(rawhttp.stalling(release))
    caplog.set_level(logging.ERROR, logger="asyncio")
    try:
        pair = _raw_pair(server, "crt")
        got = lambda_fanout.map(aws.s3_get_object("bkt", clients=pair), ["k1", "k2"], strategy="asyncio",
                                errors="collect")
        assert [type(o.error) for o in got] == [ReadTimeoutError] * 2, got
        release.set()  # the answers end now, after the calls failed
        time.sleep(0.5)
        lambda_fanout.map(aws.s3_get_object("bkt", clients=pair), [], strategy="asyncio")  # the loop ran them
    finally:
        release.set()
        server.close()
    assert server.requests == 2
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_crt_reset_mid_body_is_connection_closed(raw_env, monkeypatch):
    """Promise (the crt profile): "a refused or failed connection raises
    EndpointConnectionError / ConnectionClosedError"; never short data."""
    import struct

    from botocore.exceptions import ConnectionClosedError

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")

    def answer(conn, request):
        conn.sendall(rawhttp.head(200, 100_000) + b"y" * 1000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close

    server = rawhttp.RawServer(answer)
    try:
        got = _raw_run(server, aws.s3_get_object, ["k"], "crt")
    finally:
        server.close()
    assert isinstance(got[0].error, ConnectionClosedError), got[0]


def test_crt_many_threads_while_clients_are_reset(s3_bucket, monkeypatch):
    """Promise (the crt profile / aws): one pair shared by every thread; reset_clients()
    "the next clients() call makes new ones": calls racing a reset still get the right bytes."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("FANOUT_AWS_CLIENT", "crt")
    keys = [f"t/{i}" for i in range(40)]
    lambda_fanout.map(aws.s3_put_object(s3_bucket), [(k, k.encode() * 50) for k in keys])
    stop = threading.Event()

    def resetting():
        while not stop.is_set():
            aws.reset_clients()

    def reading():
        return [list(lambda_fanout.map(aws.s3_get_object(s3_bucket), keys, max_workers=16)) for _ in range(3)]

    with ThreadPoolExecutor(5) as ex:
        chaos = ex.submit(resetting)
        runs = [ex.submit(reading) for _ in range(4)]
        try:
            outs = [f.result() for f in runs]
        finally:
            stop.set()
            chaos.result()
    for out in outs:
        for bodies in out:
            assert bodies == [k.encode() * 50 for k in keys]


@pytest.mark.parametrize("strategy", ["threads", "asyncio", "threads-map"])
def test_crt_throttled_attempts_reach_auto_limiter_like_default(raw_env, monkeypatch, strategy):
    """Promise (the crt profile): "every throttled attempt reaches the auto limiter", as on
    the botocore path (each retried 503 once, the final error not a second time)."""
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    body = rawhttp.error_xml("SlowDown")

    def answer(conn, request):
        conn.sendall(rawhttp.head(503, len(body)) + body)

    server = rawhttp.RawServer(answer)
    counts = {}
    try:
        for profile in ("default", "crt"):
            _limiter.forget()
            task = aws.s3_get_object("bkt", clients=_raw_pair(server, profile))
            got = lambda_fanout.map(task, ["k"], strategy=strategy, max_workers="auto:8", errors="collect")
            assert not got[0].ok
            counts[profile] = _limiter.learned(task, strategy).throttled
    finally:
        server.close()
    assert counts["crt"] == counts["default"] >= 1, counts


def test_crt_slow_steady_upload_is_not_a_read_timeout(raw_env, monkeypatch):
    """Promise (the crt profile): results and errors are the default profile's; "a stalled one
    [raises] ReadTimeoutError after FANOUT_AWS_READ_TIMEOUT_S without data". An upload the
    server keeps reading (data moving every 70 ms for about half a second) is not stalled."""
    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    body = b"z" * (10 << 20)
    server = rawhttp.RawServer(rawhttp.slow_reader(0.07, 1 << 18, 8 << 20))
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    try:
        default = _raw_run(server, aws.s3_put_object, [("k", body)], "default")
        crt = _raw_run(server, aws.s3_put_object, [("k", body)], "crt")
    finally:
        server.close()
    assert default[0].ok, default[0].error
    assert crt[0].ok, crt[0].error


def test_crt_plain_400_with_region_header_is_sent_once(raw_env):
    """Promise (the crt profile): botocore serves "a bucket in another region than the
    client's (after the first redirect answer)"; an ordinary 400 from the client's own
    region is an error like the default profile's, sent once, and crt keeps serving."""
    body = rawhttp.error_xml("InvalidArgument")

    def answer(conn, request):
        conn.sendall(rawhttp.head(400, len(body), "x-amz-bucket-region: us-east-1\r\n") + body)

    server = rawhttp.RawServer(answer)
    try:
        default = _raw_run(server, aws.s3_get_object, ["k"], "default")
        sent_default = server.requests
        crt = _raw_run(server, aws.s3_get_object, ["k"], "crt")
        sent_crt = server.requests - sent_default
        pair = _raw_pair(server, "crt")  # the same pair, looked up again
    finally:
        server.close()
    assert crt[0].error.response["Error"] == default[0].error.response["Error"]
    assert sent_crt == sent_default == 1
    assert pair.native().route("get_object", "bkt") is not None


@pytest.mark.parametrize("shape", ["gzip", "chunked"])
def test_crt_get_body_encodings_equal_default(raw_env, shape):
    """Promise (the crt profile): "the same bytes ... as default" whatever the answer's
    framing: a gzip Content-Encoding is handed over as stored, a chunked body joined."""
    import gzip

    data = gzip.compress(b"payload " * 1000)

    def answer(conn, request):
        if shape == "gzip":
            conn.sendall(rawhttp.head(200, len(data), "Content-Encoding: gzip\r\n") + data)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 1000]), data[i:i + 1000])
                                    for i in range(0, len(data), 1000)) + b"0\r\n\r\n")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert default[0].value == crt[0].value == data


@pytest.mark.parametrize("extra", [
    "x-amz-meta-dup: one\r\nx-amz-meta-dup: two\r\n",  # botocore joins a repeated header: 'one, two'
    "x-amz-meta-name: caf\u00e9\r\n",  # raw UTF-8 bytes: botocore reads them as ISO-8859-1
    "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nETag: \"e\"\r\nx-amz-meta-Mixed-Case: V\r\n",
])
def test_crt_head_headers_equal_default(raw_env, extra):
    """Promise (the crt profile): "the same ... HeadObject dict (timestamps, metadata, content
    type) as default" for whatever headers the answer carries."""
    raw = rawhttp.head(200, 3)[:-2] + extra.encode("utf-8") + b"\r\n"  # non-ASCII sent as UTF-8 bytes

    def answer(conn, request):
        conn.sendall(raw)

    default, crt, _ = _against(answer, aws.s3_head_object, ["k"])
    assert default[0].ok, default[0].error
    assert crt[0].ok, crt[0].error
    assert crt[0].value == default[0].value


def test_crt_refused_connection_is_endpoint_connection_error(raw_env, monkeypatch):
    """Promise (the crt profile): "a refused or failed connection raises EndpointConnectionError"."""
    from botocore.exceptions import EndpointConnectionError

    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    server = rawhttp.RawServer(lambda conn, request: None)
    server.close()  # nothing listens on its port now
    default = _raw_run(server, aws.s3_get_object, ["k"], "default")
    crt = _raw_run(server, aws.s3_get_object, ["k"], "crt")
    assert isinstance(default[0].error, EndpointConnectionError)
    assert isinstance(crt[0].error, EndpointConnectionError), crt[0].error
