"""The bench endpoint: reads answered from moto's recorded answers, writes still served by moto,
and the proxy's delays, faults and throttling applied to both alike; real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import re
import time
from urllib.parse import urlsplit

import pytest

from lambda_fanout_dev.quota import client_cpus, endpoint_cpus

#: What differs between two answers of moto to the same request (its clock, its request ids), and
#: what belongs to a connection rather than to the answer.
VARYING = {"date", "x-amz-request-id", "x-amzn-requestid", "x-amz-id-2", "connection", "keep-alive",
           "transfer-encoding"}


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple:
    """One signed request on a fresh connection: (status, [(header, value)...], body) as sent on the wire."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = dict(headers or {})
    service = "dynamodb" if "X-Amz-Target" in headers else "s3"
    request = AWSRequest(method, url + path, data=body, headers=headers)
    request.context["payload_signing_enabled"] = True
    SigV4Auth(Credentials("testing", "testing"), service, "us-east-1").add_auth(request)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=dict(request.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def without_varying(answer: tuple) -> tuple:
    status, headers, body = answer
    body = re.sub(rb"<(RequestId|HostId)>[^<]*</(RequestId|HostId)>", b"", body)  # an error's own ids
    return status, sorted((k.lower(), v) for k, v in headers if k.lower() not in VARYING), body


def ddb_request(operation: str, params: dict) -> tuple[bytes, dict]:
    return json.dumps(params).encode(), {"X-Amz-Target": f"DynamoDB_20120810.{operation}",
                                         "Content-Type": "application/x-amz-json-1.0"}


@pytest.fixture
def replaying(aws_endpoint):
    aws_endpoint.forget()
    aws_endpoint.configure(replay=True)
    yield aws_endpoint
    aws_endpoint.forget()


def test_a_replayed_read_is_moto_s_answer_byte_for_byte(replaying, s3_bucket, ddb_table):
    import boto3

    s3 = boto3.client("s3", endpoint_url=replaying.moto_url)
    s3.put_object(Bucket=s3_bucket, Key="k/one", Body=b"payload" * 50, ChecksumAlgorithm="CRC32")
    boto3.client("dynamodb", endpoint_url=replaying.moto_url).put_item(
        TableName=ddb_table, Item={"pk": {"S": "one"}, "v": {"S": "x" * 40}})
    replaying.forget()  # written past the proxy
    reads = [
        ("GET", f"/{s3_bucket}/k/one", b"", {"x-amz-checksum-mode": "ENABLED"}),
        ("GET", f"/{s3_bucket}/k/one", b"", {}),
        ("GET", f"/{s3_bucket}/k/one", b"", {"Range": "bytes=0-9"}),
        ("HEAD", f"/{s3_bucket}/k/one", b"", {}),
        ("GET", f"/{s3_bucket}/k/missing", b"", {}),  # NoSuchKey: an error shape
        ("GET", f"/{s3_bucket}?list-type=2&prefix=k%2F", b"", {}),
        ("POST", "/", *ddb_request("GetItem", {"TableName": ddb_table, "Key": {"pk": {"S": "one"}}})),
        ("POST", "/", *ddb_request("GetItem", {"TableName": "no-such-table", "Key": {"pk": {"S": "one"}}})),
    ]
    for method, path, body, headers in reads:
        direct = raw(replaying.moto_url, method, path, body, headers)
        forwarded = raw(replaying.proxy_url, method, path, body, headers)
        before = replaying.stats()["replayed"]
        replayed = raw(replaying.proxy_url, method, path, body, headers)
        assert replaying.stats()["replayed"] == before + 1, (method, path)
        assert replayed == forwarded, (method, path)  # status, every header (ETag, checksums, CRC32), body
        assert without_varying(forwarded) == without_varying(direct), (method, path)
    answers = {(m, p, b, tuple(h.items())): raw(replaying.proxy_url, m, p, b, h) for m, p, b, h in reads}
    statuses = [a[0] for a in answers.values()]
    assert statuses == [200, 200, 206, 200, 404, 200, 200, 400]
    _, headers, _ = raw(replaying.proxy_url, "GET", f"/{s3_bucket}/k/one", b"", {"x-amz-checksum-mode": "ENABLED"})
    got = {k.lower(): v for k, v in headers}
    assert got["etag"] and got["x-amz-checksum-crc32"]


def test_botocore_reads_the_replayed_answers_as_moto_s(replaying, s3_bucket, ddb_table):
    import boto3

    boto3.client("s3", endpoint_url=replaying.moto_url).put_object(Bucket=s3_bucket, Key="b/one", Body=b"abc" * 9)
    replaying.forget()
    s3 = boto3.client("s3")  # AWS_ENDPOINT_URL: the proxy
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=ddb_table, Item={"pk": {"S": "p"}, "n": {"N": "7"}})
    first = s3.get_object(Bucket=s3_bucket, Key="b/one")
    body = first["Body"].read()
    item = ddb.get_item(TableName=ddb_table, Key={"pk": {"S": "p"}})["Item"]
    before = replaying.stats()["replayed"]
    again = s3.get_object(Bucket=s3_bucket, Key="b/one")  # botocore checks the CRC32 it asked for
    assert again["Body"].read() == body == b"abc" * 9
    assert (again["ETag"], again.get("ChecksumCRC32")) == (first["ETag"], first.get("ChecksumCRC32"))
    assert ddb.get_item(TableName=ddb_table, Key={"pk": {"S": "p"}})["Item"] == item  # x-amz-crc32 checked
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=s3_bucket, Key="b/missing")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=s3_bucket, Key="b/missing")
    assert replaying.stats()["replayed"] == before + 3


def test_writes_and_conditional_reads_go_to_moto(replaying, s3_bucket, ddb_table):
    import boto3

    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="w/one", Body=b"first")
    assert s3.get_object(Bucket=s3_bucket, Key="w/one")["Body"].read() == b"first"
    etag = s3.get_object(Bucket=s3_bucket, Key="w/one")["ETag"]  # replayed
    replayed = replaying.stats()["replayed"]
    assert replayed >= 1
    s3.put_object(Bucket=s3_bucket, Key="w/one", Body=b"second")  # a write: every recording is forgotten
    assert s3.get_object(Bucket=s3_bucket, Key="w/one")["Body"].read() == b"second"
    assert replaying.stats()["replayed"] == replayed
    # A conditional read is moto's to answer, every time.
    current = s3.head_object(Bucket=s3_bucket, Key="w/one")["ETag"]
    assert current != etag
    for _ in range(2):
        with pytest.raises(s3.exceptions.ClientError) as caught:
            s3.get_object(Bucket=s3_bucket, Key="w/one", IfNoneMatch=current)
        assert caught.value.response["Error"]["Code"] == "304"
    assert replaying.stats()["replayed"] == replayed
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=ddb_table, Item={"pk": {"S": "w"}, "v": {"S": "1"}})
    assert ddb.get_item(TableName=ddb_table, Key={"pk": {"S": "w"}})["Item"]["v"] == {"S": "1"}
    ddb.update_item(TableName=ddb_table, Key={"pk": {"S": "w"}}, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"S": "2"}})
    assert ddb.get_item(TableName=ddb_table, Key={"pk": {"S": "w"}})["Item"]["v"] == {"S": "2"}


def test_without_replay_every_read_goes_to_moto(aws_endpoint, s3_bucket):
    import boto3

    aws_endpoint.configure()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="n/one", Body=b"x")
    for _ in range(3):
        s3.get_object(Bucket=s3_bucket, Key="n/one")["Body"].read()
    stats = aws_endpoint.stats()
    assert stats["replayed"] == 0 and stats["served"] == stats["requests"] == 4


def test_delays_faults_and_throttling_apply_to_replayed_reads(replaying, s3_bucket):
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(retries={"total_max_attempts": 1}))
    s3.put_object(Bucket=s3_bucket, Key="d/one", Body=b"x")
    s3.get_object(Bucket=s3_bucket, Key="d/one")["Body"].read()  # recorded
    replaying.configure(replay=True, delay_ms=60)
    t0 = time.perf_counter()
    s3.get_object(Bucket=s3_bucket, Key="d/one")["Body"].read()
    assert time.perf_counter() - t0 >= 0.06
    assert replaying.stats()["log"][-1]["delay"] == pytest.approx(0.06)
    replaying.configure(replay=True, faults={"503": 1.0})
    with pytest.raises(s3.exceptions.ClientError) as caught:
        s3.get_object(Bucket=s3_bucket, Key="d/one")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    replaying.configure(replay=True, throttle={"rate": 0.01, "burst": 1})
    s3.get_object(Bucket=s3_bucket, Key="d/one")["Body"].read()
    with pytest.raises(s3.exceptions.ClientError) as caught:
        s3.get_object(Bucket=s3_bucket, Key="d/one")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    stats = replaying.stats()
    assert stats["faults"]["503"] == 1 and stats["throttled"] == 1


def test_the_log_applies_the_configured_delay_distribution(replaying, s3_bucket):
    import boto3

    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="t/one", Body=b"x")
    replaying.configure(replay=True, delay_ms=2, tail_sigma=0.5, seed=7)
    replaying.reset_stats()
    for _ in range(40):
        s3.get_object(Bucket=s3_bucket, Key="t/one")["Body"].read()
    from lambda_fanout_dev.proxy import ProxyConfig

    expected = ProxyConfig(delay_ms=2, tail_sigma=0.5, seed=7)
    want = []
    for _ in range(40):  # the proxy draws a delay, then a fault, per request
        want.append(expected.draw_delay_s())
        expected.draw_fault()
    stats = replaying.stats()
    assert [e["delay"] for e in stats["log"]] == pytest.approx(want)
    assert [e["delay"] for e in replaying.stats(since=30)["log"]] == pytest.approx(want[30:])
    assert stats["cpu_s"] > 0


def test_the_endpoints_cpu_counts_the_upstreams_to_well_under_a_clock_tick():
    """The endpoint's CPU per request is read per round, and a short round's whole figure is a few
    milliseconds: the upstream's share is read to the nanosecond, its ended threads included,
    not in the 10 ms ticks of /proc/PID/stat."""
    import subprocess
    import sys

    from lambda_fanout_dev.proxy import Proxy

    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, threading, time\n"
        "def burn():\n"
        "    end = time.thread_time() + 0.0137\n"
        "    while time.thread_time() < end: pass\n"
        "threads = [threading.Thread(target=burn) for _ in range(2)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(repr(time.process_time()), flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with child:
        said = float(child.stdout.readline())
        proxy = Proxy("http://127.0.0.1:1", upstream_pid=child.pid)
        upstream = proxy.cpu_s() - time.process_time()
        child.stdin.close()
        child.wait(timeout=10)
    assert said > 0.027  # both threads' burn, though they have ended
    assert abs(upstream - said) < 0.0005, (upstream, said)
    gone = Proxy("http://127.0.0.1:1", upstream_pid=child.pid)
    assert abs(gone.cpu_s() - time.process_time()) < 0.0005  # the upstream has exited: its own CPU only
    # 0 and -1 would name the proxy itself (its CPU counted twice); a larger id than Linux gives, or
    # one given as text, would fail on every read of the stats rather than once, here.
    for pid in (0, -1, -2, 1 << 28, "1234", 1.0):
        with pytest.raises(ValueError, match="a process id is a whole number"):
            Proxy("http://127.0.0.1:1", upstream_pid=pid)


def test_the_endpoint_and_the_client_keep_to_their_own_cpus():
    assert endpoint_cpus({0}) is None
    assert endpoint_cpus({0, 1}) == {1}
    assert client_cpus(0.58, {1}, {0, 1}) == {0}
    assert client_cpus(1.7, {1}, {0, 1}) is None  # the quota needs both: shared
    assert client_cpus(1.7, {3}, {0, 1, 2, 3}) == {0, 1, 2}
    assert client_cpus(0.58, None, {0}) is None


def test_the_headers_that_decide_a_replay_are_matched_whatever_their_case(replaying, s3_bucket):
    import boto3

    boto3.client("s3", endpoint_url=replaying.moto_url).put_object(Bucket=s3_bucket, Key="c/one", Body=b"0123456789")
    replaying.forget()
    path = f"/{s3_bucket}/c/one"
    first = raw(replaying.proxy_url, "GET", path, b"", {"Range": "bytes=0-3"})
    before = replaying.stats()["replayed"]
    again = raw(replaying.proxy_url, "GET", path, b"", {"RANGE": "bytes=0-3"})
    assert again == first and again[0] == 206 and again[2] == b"0123"
    assert replaying.stats()["replayed"] == before + 1
    other = raw(replaying.proxy_url, "GET", path, b"", {"range": "bytes=4-5"})  # another answer: recorded anew
    assert other[2] == b"45" and replaying.stats()["replayed"] == before + 1
    etag = dict((k.lower(), v) for k, v in first[1])["etag"]
    for name in ("If-None-Match", "IF-NONE-MATCH"):  # a conditional read is moto's, however it is spelt
        assert raw(replaying.proxy_url, "GET", path, b"", {name: etag})[0] == 304
    assert replaying.stats()["replayed"] == before + 1


def test_an_expect_100_continue_upload_is_told_to_go_on_and_reaches_moto(replaying, s3_bucket):
    import boto3

    parts = urlsplit(replaying.proxy_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("PUT", f"/{s3_bucket}/e/one")
        conn.putheader("Expect", "100-continue")
        conn.putheader("Content-Length", "5")
        conn.endheaders()
        interim = conn.sock.recv(64)  # the proxy answers the headers before the body is sent
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        conn.send(b"hello")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert boto3.client("s3", endpoint_url=replaying.moto_url).get_object(
        Bucket=s3_bucket, Key="e/one")["Body"].read() == b"hello"


def test_answers_held_back_together_each_reach_their_own_connection(replaying, s3_bucket):
    """Many connections at once, each answer held for its own delay: every one gets its own answer,
    and the log holds each request's applied delay and status."""
    import boto3
    from concurrent.futures import ThreadPoolExecutor

    s3 = boto3.client("s3", endpoint_url=replaying.moto_url)
    keys = [f"h/{i:02d}" for i in range(24)]
    for key in keys:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode() * 3)
    replaying.forget()
    for key in keys:  # recorded
        raw(replaying.proxy_url, "GET", f"/{s3_bucket}/{key}")
    replaying.configure(replay=True, delay_ms=5, tail_sigma=1.0, seed=3)
    replaying.reset_stats()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda key: raw(replaying.proxy_url, "GET", f"/{s3_bucket}/{key}"), keys * 2))
    assert [a[2] for a in answers] == [key.encode() * 3 for key in keys * 2]
    stats = replaying.stats()
    assert stats["replayed"] == stats["requests"] == 48
    assert sorted(e["path"] for e in stats["log"]) == sorted(f"/{s3_bucket}/{key}" for key in keys * 2)
    assert all(e["status"] == 200 and e["delay"] > 0 and e["fault"] is None for e in stats["log"])
    assert len({e["delay"] for e in stats["log"]}) > 40  # drawn per request from the tail


def test_the_bench_endpoint_runs_its_proxy_promptly_where_the_system_allows():
    import os

    from lambda_fanout_dev.endpoint import LocalEndpoint

    with LocalEndpoint(prompt=True) as ep:
        assert ep.priority in ("real-time", "nice -10", "normal")
        policy = os.sched_getscheduler(ep.proxy.pid)
        if ep.priority == "real-time":
            assert policy == os.SCHED_FIFO
        elif ep.priority == "nice -10":
            assert os.getpriority(os.PRIO_PROCESS, ep.proxy.pid) == -10
        assert ep.stats()["requests"] == 0  # and it serves
    with LocalEndpoint() as plain:
        assert plain.priority == "normal" and os.sched_getscheduler(plain.proxy.pid) == os.SCHED_OTHER


def test_a_read_is_replayed_only_for_the_same_account_and_region(replaying):
    """The same GetItem signed for another region names another table: it is answered
    from that region's recording, never from the first region's."""
    import uuid

    import boto3

    table = f"whose-{uuid.uuid4().hex[:8]}"
    clients = {}
    for region, value in (("us-east-1", "EAST"), ("eu-west-1", "WEST")):
        ddb = clients[region] = boto3.client("dynamodb", endpoint_url=replaying.proxy_url, region_name=region)
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        ddb.put_item(TableName=table, Item={"pk": {"S": "1"}, "v": {"S": value}})
    before = replaying.stats()["replayed"]
    seen = [(region, ddb.get_item(TableName=table, Key={"pk": {"S": "1"}})["Item"]["v"]["S"])
            for _ in range(2) for region, ddb in clients.items()]
    assert seen == [("us-east-1", "EAST"), ("eu-west-1", "WEST")] * 2
    assert replaying.stats()["replayed"] == before + 2  # the second read of each region


def test_the_nice_fallback_reaches_every_thread_of_the_proxy(monkeypatch):
    """Where real-time priority is refused, every thread of the process runs at nice -10,
    not only its main thread."""
    import os
    import subprocess
    import sys

    from lambda_fanout_dev import endpoint

    if os.geteuid() != 0:
        pytest.skip("lowering a nice value needs root")
    child = subprocess.Popen([sys.executable, "-c",
                              "import threading, time\n"
                              "for _ in range(3): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                              "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"

        def refused(*args):
            raise PermissionError("real-time priority refused")

        monkeypatch.setattr(endpoint.os, "sched_setscheduler", refused)
        assert endpoint._raise_priority(child.pid) == "nice -10"
        threads = [int(tid) for tid in os.listdir(f"/proc/{child.pid}/task")]
        assert len(threads) == 4
        assert [os.getpriority(os.PRIO_PROCESS, tid) for tid in threads] == [-10] * 4
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
