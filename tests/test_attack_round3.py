"""Round 3 attacks on the crt profile, the processes protocol and auto's slow start.

Each test quotes the promise it checks. Five broke it at first (buffer results under
processes, crt's upload timeout, redirect and header reading); all are fixed.
"""

from __future__ import annotations

import socket
import threading

import pytest

import attack3_helpers as helpers
import lambda_fanout
from lambda_fanout import aws


# -- helpers ----------------------------------------------------------------------------

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


class RawServer:
    """A one-answer-per-connection HTTP server on 127.0.0.1 whose answer a test writes by hand."""

    def __init__(self, answer) -> None:
        self.answer = answer  # callable(conn, request_bytes)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                self.answer(conn, data)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        # A listening socket closed while another thread blocks in accept() keeps
        # listening until that accept returns; shutdown wakes it and ends it now.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


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


# -- 1. crt: results equal to the botocore path over real HTTP ------------------------------

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


def _head(status: int, length: int, extra: str = "") -> bytes:
    reason = {200: "OK", 500: "Internal Server Error", 503: "Slow Down", 403: "Forbidden"}.get(status, "X")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Length: {length}\r\nContent-Type: application/xml\r\n"
            f"x-amz-request-id: r1\r\n{extra}\r\n").encode()


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
    server = RawServer(answer)
    try:
        default = _raw_run(server, make, list(items), "default")
        sent = server.requests
        crt = _raw_run(server, make, list(items), "crt")
    finally:
        server.close()
    return default, crt, (sent, server.requests - sent)


def _stalling(release):
    """An answer that sends 3 of 10 body bytes, then nothing until ``release`` is set."""
    def answer(conn, request):
        conn.sendall(_head(200, 10) + b"abc")
        release.wait(5)
    return answer


def _error_xml(code: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message>"
            "<RequestId>r1</RequestId></Error>").encode()


def test_crt_truncated_body_is_an_error_not_short_data(raw_env):
    """Promise (the crt profile): "results: the same bytes ... as default"; a failed
    connection raises ConnectionClosedError. A GetObject answer whose body stops short of
    its Content-Length (the connection closed mid-body) must fail, never return short bytes."""
    def answer(conn, request):
        conn.sendall(_head(200, 100) + b"x" * 50)  # then the connection closes

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert not default[0].ok
    assert not crt[0].ok, f"crt returned {len(crt[0].value)} bytes of a 100-byte object"


def test_crt_503_slowdown_equals_default(raw_env, monkeypatch):
    """Promise (the crt profile): errors are botocore's, "SlowDown with status 503, the same
    ResponseMetadata (RetryAttempts, MaxAttemptsReached)"; retries are standard mode's,
    "up to 3 attempts or AWS_MAX_ATTEMPTS"."""
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    body = _error_xml("SlowDown")

    def answer(conn, request):
        conn.sendall(_head(503, len(body)) + body)

    default, crt, (n_default, n_crt) = _against(answer, aws.s3_get_object)
    d, c = default[0].error, crt[0].error
    assert type(c).__name__ == type(d).__name__ and c.response["Error"]["Code"] == "SlowDown"
    assert c.response == d.response
    assert str(c) == str(d)
    assert n_crt == n_default == 2


def test_crt_500_then_ok_is_retried_like_default(raw_env):
    """Promise (the crt profile): "retries: botocore's standard-mode retry handler (... 5xx
    and transient errors ...)": two 500s then the object is the object."""
    body = _error_xml("InternalError")
    seen = {"n": 0}

    def answer(conn, request):
        seen["n"] += 1
        if seen["n"] % 3:
            conn.sendall(_head(500, len(body)) + body)
        else:
            conn.sendall(_head(200, 5) + b"hello")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert default[0].value == crt[0].value == b"hello"


def test_crt_stalled_body_is_read_timeout(raw_env, monkeypatch):
    """Promise (the crt profile): "a stalled one [raises] ReadTimeoutError after
    FANOUT_AWS_READ_TIMEOUT_S without data"; the call must not hang past it."""
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    release = threading.Event()
    server = RawServer(_stalling(release))
    try:
        crt = _raw_run(server, aws.s3_get_object, ["k"], "crt")
    finally:
        release.set()
        server.close()
    assert isinstance(crt[0].error, ReadTimeoutError), crt[0]


# -- 2. processes: the arena protocol -------------------------------------------------------

@pytest.fixture
def procs():
    """The processes strategy with two workers, started before the test."""
    lambda_fanout.map(helpers.sized, [1, 2, 3, 4], strategy="processes", max_workers=2)
    return "processes"


def test_processes_large_array_result_keeps_its_type(procs):
    """Promise (README, processes): items and results are plain data sent back to the caller;
    the strategies are interchangeable (sequential gives the array itself)."""
    expected = helpers.as_array(20_000)  # 160 KB of doubles
    got = lambda_fanout.map(helpers.as_array, [20_000], strategy=procs, max_workers=2)
    assert type(got[0]) is type(expected) and got[0] == expected


def test_processes_bytearray_results_keep_type_when_many(procs):
    """Promise (README, processes): "per worker an arena where each result is written as its
    item finishes": the arena is a transport, results equal sequential's."""
    items = [5_000] * 40  # 200 KB in all
    seq = lambda_fanout.map(helpers.as_bytearray, items, strategy="sequential")
    got = lambda_fanout.map(helpers.as_bytearray, items, strategy=procs, max_workers=2)
    assert [type(v) for v in got] == [type(v) for v in seq]


def test_processes_results_around_the_arena_size(procs):
    """Promise: results larger than the arena, exactly at its boundary, and many that overflow
    it come back whole and in order."""
    from lambda_fanout._procpool import wire as _procpool

    room = _procpool.ARENA_SIZE - _procpool._HEAD - _procpool._FRAME.size - 5  # marshal: type byte + length
    sizes = [room - 1, room, room + 1, 3 << 20, 7, 400_000, 400_000, 400_000, 1, room]
    got = lambda_fanout.map(helpers.sized, sizes, strategy=procs, max_workers=2)
    assert [len(v) for v in got] == sizes
    assert all(v == b"x" * n for v, n in zip(got, sizes))


def test_processes_unpicklable_result_fails_alone(procs):
    """Promise: "An item or result that cannot be pickled ... fails that item alone, saying so"."""
    got = lambda_fanout.map(helpers.maybe_unpicklable, range(8), strategy=procs, max_workers=2, errors="collect")
    assert [o.ok for o in got] == [True, False, True, False, True, False, True, False]
    assert [o.value for o in got if o.ok and o.index != 4] == [0, 2, 6]
    assert got[4].value == helpers.maybe_unpicklable(4)
    assert all("pickled" in str(o.error) for o in got if not o.ok)


def test_processes_deadline_kill_after_big_spill_keeps_results(procs, fake_context):
    """Promise (processes, Deadline): "a worker still running is killed: the items it had
    finished keep their results ... the one it was running is DeadlineExceeded with
    .started=True"."""
    from lambda_fanout import DeadlineExceeded

    items = [1] * 30 + [3 << 20, 2 << 20, -1, 5]
    got = lambda_fanout.map(helpers.big_then_hang, items, strategy=procs, max_workers=1, errors="collect",
                            context=fake_context(1600))
    hang = items.index(-1)
    for outcome, item in zip(got, items):
        if outcome.index < hang:
            assert outcome.ok and outcome.value == helpers.big_then_hang(item), outcome.index
    assert isinstance(got[hang].error, DeadlineExceeded) and got[hang].error.started is True
    assert isinstance(got[hang + 1].error, DeadlineExceeded)


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
    payload = _error_xml("AccessDenied") if body is None else body

    def answer(conn, request):
        head_only = request.startswith(b"HEAD")
        conn.sendall(_head(status, len(payload)) + (b"" if head_only else payload))

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
        conn.sendall(_head(200, 5, "x-amz-checksum-crc32: NhCmhg==\r\n") + b"hellp")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert isinstance(default[0].error, FlexibleChecksumError)
    assert isinstance(crt[0].error, FlexibleChecksumError)


def test_crt_sends_the_session_token_signed(raw_env, monkeypatch):
    """Promise (the crt profile): credentials from the chain, "session tokens included", as botocore."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok-123")
    seen = []

    def answer(conn, request):
        seen.append(request.decode("latin-1").lower())
        conn.sendall(_head(200, 2) + b"ok")

    default, crt, _ = _against(answer, aws.s3_get_object, ["k"])
    assert default[0].value == crt[0].value == b"ok"
    for request in seen:
        assert "x-amz-security-token: tok-123" in request
        signed = request.split("signedheaders=")[1].split(",")[0]
        assert "x-amz-security-token" in signed.split(";")


def test_crt_missing_awscrt_warns_once_and_serves(s3_bucket, tmp_path):
    """Promise (the crt profile): "Where awscrt cannot be imported ... crt serves every call
    through botocore as default does, after one RuntimeWarning per process"."""
    import os
    import subprocess
    import sys

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
    import asyncio

    gate = threading.Event()
    count = {"n": 0}

    def answer(conn, request):
        count["n"] += 1
        if count["n"] == 1:
            conn.sendall(_head(200, 10) + b"STALE")  # the rest never comes
            gate.wait(5)
            return
        # keep-alive: answer every request on this connection
        while True:
            conn.sendall(_head(200, 5) + b"fresh")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk

    server = RawServer(answer)
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


# -- 3. auto: the limit within [1, cap] -----------------------------------------------------

@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map", "asyncio"])
def test_auto_limit_within_cap_when_tasks_fail_hang_and_throttle(strategy, fake_context):
    """Promise (Adaptive concurrency): "The limit stays within [1, cap] ... threads-map ...
    may run up to twice the limit, never more than the cap"; every item read ends exactly once."""
    from lambda_fanout import DeadlineExceeded, _limiter

    _limiter.forget()
    helpers.GAUGE.__init__()
    items = list(range(400))
    got = lambda_fanout.map(helpers.rough, items, strategy=strategy, max_workers="auto:8", errors="collect",
                            context=fake_context(1500))
    assert helpers.GAUGE.peak <= 8
    assert [o.index for o in got] == list(range(len(got)))
    for o in got:
        if o.ok:
            assert o.value == o.index
        elif not isinstance(o.error, DeadlineExceeded):
            assert o.index % 7 == 0 or o.index % 11 == 0, o
    limiter = _limiter.learned(helpers.rough, strategy)
    if limiter is not None:
        assert 1 <= limiter.limit <= 8 and all(1 <= limit <= 8 for _, limit in limiter.history)


@pytest.mark.parametrize("strategy", ["threads", "threads-map", "asyncio"])
def test_auto_very_fast_tasks(strategy):
    """Promise (Adaptive concurrency): under auto, results in input order, limit within
    [1, cap], very fast tasks timed one in a stride."""
    from lambda_fanout import _limiter

    _limiter.forget()
    helpers.GAUGE.__init__()
    got = lambda_fanout.map(helpers.fast, range(20_000), strategy=strategy, max_workers="auto:4")
    assert list(got) == [i * 2 for i in range(20_000)]
    assert helpers.GAUGE.peak <= 4
    limiter = _limiter.learned(helpers.fast, strategy)
    assert 1 <= limiter.limit <= 4


def test_processes_raise_in_one_call_does_not_stop_a_concurrent_call(procs):
    """Promise (processes, Stopping): "a worker whose item fails stops every worker *of the
    call*"; a board slot per call, so a concurrent call from another thread runs on."""
    from concurrent.futures import ThreadPoolExecutor

    def failing():
        with pytest.raises(lambda_fanout.TaskError):
            lambda_fanout.map(helpers.fail_on, [0] + [1] * 30, strategy="processes", max_workers=2)

    def other():
        return lambda_fanout.map(helpers.fail_on, list(range(1, 41)), strategy="processes", max_workers=2,
                                 errors="collect")

    with ThreadPoolExecutor(4) as ex:
        stops = [ex.submit(failing) for _ in range(2)]
        runs = [ex.submit(other) for _ in range(2)]
        for f in stops:
            f.result()
        for f in runs:
            got = f.result()
            assert [o.value for o in got] == list(range(1, 41)), [o.error for o in got if not o.ok][:3]


def test_processes_warm_calls_leak_no_fd_or_child(procs):
    """Promise (Guarantees): "processes leaks no process ... No zombie, and file descriptors,
    threads and processes flat over 1,000 warm invocations", with failures and big results."""
    import os

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def children():
        me = str(os.getpid())
        count = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        count += f.read().rsplit(")", 1)[1].split()[1] == me
                except OSError:
                    pass
        return count

    for _ in range(20):
        lambda_fanout.map(helpers.maybe_unpicklable, range(6), strategy="processes", max_workers=2, errors="collect")
    before = (fds(), children(), threading.active_count())
    for i in range(1000):
        if i % 100 == 0:
            lambda_fanout.map(helpers.sized, [2 << 20, 5], strategy="processes", max_workers=2)
        lambda_fanout.map(helpers.maybe_unpicklable, range(6), strategy="processes", max_workers=2, errors="collect")
    after = (fds(), children(), threading.active_count())
    assert after == before


def test_crt_stalled_body_is_read_timeout_under_asyncio(raw_env, monkeypatch):
    """Promise (the crt profile): a stalled connection raises ReadTimeoutError after
    FANOUT_AWS_READ_TIMEOUT_S without data, on the asyncio strategy's loop too."""
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    release = threading.Event()
    server = RawServer(_stalling(release))
    try:
        pair = _raw_pair(server, "crt")
        got = lambda_fanout.map(aws.s3_get_object("bkt", clients=pair), ["k"], strategy="asyncio", errors="collect")
    finally:
        release.set()
        server.close()
    assert isinstance(got[0].error, ReadTimeoutError), got[0]
    assert server.requests == 2  # retried once, as standard mode does with 2 attempts


def test_crt_reset_mid_body_is_connection_closed(raw_env, monkeypatch):
    """Promise (the crt profile): "a refused or failed connection raises
    EndpointConnectionError / ConnectionClosedError"; never short data."""
    import struct

    from botocore.exceptions import ConnectionClosedError

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")

    def answer(conn, request):
        conn.sendall(_head(200, 100_000) + b"y" * 1000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close

    server = RawServer(answer)
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
    from lambda_fanout import _limiter

    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    body = _error_xml("SlowDown")

    def answer(conn, request):
        conn.sendall(_head(503, len(body)) + body)

    server = RawServer(answer)
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


def _slow_reader(pace_s: float, chunk: int, fast_tail: int):
    """An answer that reads a PutObject's body ``chunk`` bytes every ``pace_s`` (its last
    ``fast_tail`` bytes, which the client's socket buffers may hold, at once), then says 200."""
    import time

    def answer(conn, request):
        head, _, got = request.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        received = len(got)
        while received < length:
            if received < length - fast_tail:
                time.sleep(pace_s)
            data = conn.recv(chunk)
            if not data:
                return
            received += len(data)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "abc"\r\n\r\n')
    return answer


def test_crt_slow_steady_upload_is_not_a_read_timeout(raw_env, monkeypatch):
    """Promise (the crt profile): results and errors are the default profile's; "a stalled one
    [raises] ReadTimeoutError after FANOUT_AWS_READ_TIMEOUT_S without data". An upload the
    server keeps reading (data moving every 70 ms for about half a second) is not stalled."""
    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    body = b"z" * (10 << 20)
    server = RawServer(_slow_reader(0.07, 1 << 18, 8 << 20))
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    try:
        default = _raw_run(server, aws.s3_put_object, [("k", body)], "default")
        crt = _raw_run(server, aws.s3_put_object, [("k", body)], "crt")
    finally:
        server.close()
    assert default[0].ok, default[0].error
    assert crt[0].ok, crt[0].error



def test_processes_auto_cap_bounds_the_workers(procs):
    """Promise (processes): "auto means the same one-per-vCPU count (at most auto:N's cap)"."""
    got = lambda_fanout.map(helpers.pid_after, [0.03] * 12, strategy="processes", max_workers="auto:1")
    assert len(set(got)) == 1


def test_crt_plain_400_with_region_header_is_sent_once(raw_env):
    """Promise (the crt profile): botocore serves "a bucket in another region than the
    client's (after the first redirect answer)"; an ordinary 400 from the client's own
    region is an error like the default profile's, sent once, and crt keeps serving."""
    body = _error_xml("InvalidArgument")

    def answer(conn, request):
        conn.sendall(_head(400, len(body), "x-amz-bucket-region: us-east-1\r\n") + body)

    server = RawServer(answer)
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


def test_processes_numpy_result_comes_back_as_an_array(procs):
    """Promise (README, processes): CPU-bound work ("parsing, compression, hashing") runs in
    workers and its results come back; numpy arrays pickle, so they are sendable results."""
    numpy = pytest.importorskip("numpy")
    got = lambda_fanout.map(helpers.ndarray, [10, 50_000], strategy=procs, max_workers=2)
    assert isinstance(got[0], numpy.ndarray)  # a small one comes back whole
    assert isinstance(got[1], numpy.ndarray), type(got[1])
    assert (got[1] == numpy.arange(50_000, dtype="float64")).all()


def test_processes_raise_stops_other_workers_mid_chunk(procs, tmp_path):
    """Promise (processes, Stopping): "under errors="raise" ... a worker whose item fails
    stops every worker of the call before its next item, even mid-chunk"."""
    path = str(tmp_path / "ran")
    # warm the chunk sizer's estimate with cheap items first, so later chunks are long
    items = [(i, path) for i in range(1, 60)] + [(0, path)] + [(i, path) for i in range(60, 400)]
    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(helpers.logged_fail_on_zero, items, strategy=procs, max_workers=2)
    with open(path) as f:
        ran = [int(x) for x in f.read().split()]
    after = [i for i in ran if i >= 60]
    assert len(after) <= 4, after  # one item per worker may be under way when item 0 fails


@pytest.mark.parametrize("shape", ["gzip", "chunked"])
def test_crt_get_body_encodings_equal_default(raw_env, shape):
    """Promise (the crt profile): "the same bytes ... as default" whatever the answer's
    framing: a gzip Content-Encoding is handed over as stored, a chunked body joined."""
    import gzip

    data = gzip.compress(b"payload " * 1000)

    def answer(conn, request):
        if shape == "gzip":
            conn.sendall(_head(200, len(data), "Content-Encoding: gzip\r\n") + data)
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
    raw = _head(200, 3)[:-2] + extra.encode("utf-8") + b"\r\n"  # non-ASCII sent as UTF-8 bytes

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
    server = RawServer(lambda conn, request: None)
    server.close()  # nothing listens on its port now
    default = _raw_run(server, aws.s3_get_object, ["k"], "default")
    crt = _raw_run(server, aws.s3_get_object, ["k"], "crt")
    assert isinstance(default[0].error, EndpointConnectionError)
    assert isinstance(crt[0].error, EndpointConnectionError), crt[0].error


# cheap items first: the chunk sizer then sends the rest several to a request
@pytest.mark.parametrize("items", [[1] * 40 + [1, 2, 3, 4] * 10, [1] * 40 + [1, 200_000, 3, 2 << 20, 5] * 3])
def test_processes_result_that_does_not_unpickle_fails_alone(procs, items):
    """Promise (processes): a result that "pickles but cannot be unpickled on the other side
    fails that item alone, saying so", in a small request and in one that spills."""
    got = lambda_fanout.map(helpers.unloadable_on_3, items, strategy=procs, max_workers=1, errors="collect")
    for o, item in zip(got, items):
        if item == 3:
            assert not o.ok and "unpickled" in str(o.error), o
        else:
            assert o.ok and o.value == helpers.unloadable_on_3(item), o
