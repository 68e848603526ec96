"""A latency and fault proxy for HTTP on loopback, run in its own process.

It forwards each request to an upstream on 127.0.0.1 (moto's server) after a delay
drawn from a configurable distribution, and injects faults at given rates:
``503`` (S3 SlowDown / a throttle), ``500``, ``403`` (S3's AccessDenied / DynamoDB's
AccessDeniedException), ``reset`` (the connection is reset) and ``stall`` (the
response never comes until ``stall_s`` passes).

Throttling mode (``throttle={"rate": R, "burst": B}``): a token bucket of R requests
per second, B deep, per prefix (an S3 bucket plus the key up to its last ``/``; a
DynamoDB table). A request finding its bucket empty is answered at once the way
the service answers it: S3's ``503 SlowDown`` XML error, or DynamoDB's ``400
ProvisionedThroughputExceededException`` JSON. This is S3's documented behaviour
(3,500 writes and 5,500 reads per second per prefix), scaled down.

Replay mode (``replay=True``): a read (S3 GET or HEAD without a conditional header,
DynamoDB GetItem, BatchGetItem, Query, Scan, DescribeTable) that upstream has
answered before is answered again from the recorded bytes (status, headers, ETag,
checksums, body, error shape alike) instead of being forwarded, so upstream's own
cost stays out of the timed work; the delay, faults and throttling apply the same.
Everything else goes upstream, and anything that may change state (any request that
is not a read) forgets every recording. Writes sent straight to upstream, past the
proxy, must be followed by ``POST /__proxy__/forget``.

Freezing (``POST /__proxy__/freeze``) models what a SnapStart restore finds: every client
connection open at that moment stays open, silently, and the next request on it is
answered with a reset (RST), as a server that has long forgotten the connection answers
one; it is counted as ``frozen``. Connections opened later are served as usual. A new
config ends the freeze.

Control endpoints (never forwarded):
    GET  /__proxy__/stats[?since=N] -> {"requests": n, "served": n, "replayed": n, "faults": {...},
                                "throttled": n, "frozen": n, "cpu_s": s, "log": [...]}
                                (the log from request N+1 on; each entry's "delay" is the one applied)
    POST /__proxy__/config  <- {"delay_ms": 25, "tail_sigma": 0.5, "faults": {"503": 0.1},
                                "throttle": {"rate": 200, "burst": 10}, "replay": true, ...}
    POST /__proxy__/reset   clears the stats
    POST /__proxy__/freeze  freezes the connections open now
    POST /__proxy__/forget  drops every recorded answer

``cpu_s`` is the CPU time the endpoint has spent: this process's, plus the upstream
process's when its pid is given (``--upstream-pid``).

The server is an asyncio protocol over httptools (the llhttp parser of Node.js), on
uvloop where it is installed: the proxy answers a replayed read in a few tens of
microseconds of its own CPU, so the client being measured keeps the machine.

Run: python -m lambda_fanout_dev.proxy --upstream http://127.0.0.1:PORT [--port 0] [--upstream-pid PID]
Prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import http
import json
import math
import random
import socket
import struct
import sys
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httptools
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector
from multidict import CIMultiDict
from yarl import URL

FAULT_KINDS = ("503", "500", "403", "reset", "stall")
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length",
    "upgrade", "te", "trailer", "expect", "content-encoding",
}
#: DynamoDB operations that read and change nothing (as the X-Amz-Target header names them).
DYNAMODB_READS = frozenset({b"GetItem", b"BatchGetItem", b"Query", b"Scan", b"DescribeTable"})
_CONDITIONAL = frozenset({b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"})
#: Request headers that change a read's answer, beside its method, URL and body.
_ANSWER_HEADERS = (b"range", b"x-amz-checksum-mode", b"accept-encoding")
#: Request headers that say whose resource a read names: the host (an S3 bucket may be in
#: it) and the signature's credential scope (the account and region), read by :func:`_scope`.
_WHOSE_HEADERS = (b"host", b"authorization")
#: The request headers that decide how it is answered, kept by lower-case name as they are parsed.
WANTED = frozenset({b"x-amz-target", b"expect", *_CONDITIONAL, *_ANSWER_HEADERS, *_WHOSE_HEADERS})


#: The largest process id Linux gives (PID_MAX_LIMIT).
PID_MAX_LIMIT = 1 << 22


def process_cpu_clock(pid: int) -> int:
    """The clock id of another process's CPU time on Linux, as glibc's ``clock_getcpuclockid``
    makes it (``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``), for :func:`time.clock_gettime`.

    Raises:
        ValueError: ``pid`` is not a process id (0 and -1 would name the calling process).
    """
    if type(pid) is not int or not 0 < pid <= PID_MAX_LIMIT:
        raise ValueError(f"a process id is a whole number from 1 to {PID_MAX_LIMIT}, got {pid!r}")
    return ((~pid) << 3) | 2


def _scope(authorization: bytes | None) -> bytes | None:
    """A SigV4 Authorization header's access key, region and service (``Credential=AKID/date/region/service/...``),
    without the date, which changes nothing in the answer; the header itself when it has no credential."""
    if authorization is None:
        return None
    start = authorization.find(b"Credential=")
    if start < 0:
        return authorization
    parts = authorization[start + 11:].split(b",", 1)[0].split(b"/")
    return b"/".join(parts[:1] + parts[2:4])


class ProxyConfig:
    """Delay distribution, fault rates and replay; replaced whole by POST /__proxy__/config."""

    def __init__(self, delay_ms: float = 0.0, tail_sigma: float = 0.0, faults: dict | None = None,
                 stall_s: float = 30.0, seed: int | None = None, fault_after: int = 0,
                 throttle: dict | None = None, replay: bool = False) -> None:
        if delay_ms < 0 or tail_sigma < 0 or stall_s < 0:
            raise ValueError("delay_ms, tail_sigma and stall_s must be >= 0")
        self.throttle = TokenBuckets(**throttle) if throttle else None
        faults = dict(faults or {})
        unknown = set(faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; expected some of {FAULT_KINDS}")
        if sum(faults.values()) > 1 or any(r < 0 for r in faults.values()):
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {faults}")
        self.delay_ms = float(delay_ms)
        self.tail_sigma = float(tail_sigma)
        self.faults = faults
        self.stall_s = float(stall_s)
        self.fault_after = int(fault_after)
        self.replay = bool(replay)
        self.rng = random.Random(seed)

    def draw_delay_s(self) -> float:
        """Median delay_ms; a lognormal tail of width tail_sigma when it is > 0."""
        if self.delay_ms <= 0:
            return 0.0
        if self.tail_sigma <= 0:
            return self.delay_ms / 1000.0
        return self.delay_ms * math.exp(self.rng.gauss(0.0, self.tail_sigma)) / 1000.0

    def draw_fault(self) -> str | None:
        if not self.faults:
            return None
        roll = self.rng.random()
        for kind in FAULT_KINDS:
            rate = self.faults.get(kind, 0.0)
            if roll < rate:
                return kind
            roll -= rate
        return None


class TokenBuckets:
    """A token bucket per prefix: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"throttle needs rate > 0 and burst >= 1, got rate={rate!r} burst={burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}  # prefix -> (tokens, when)

    def admit(self, prefix: str, now: float) -> bool:
        tokens, then = self.buckets.get(prefix, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        admitted = tokens >= 1.0
        self.buckets[prefix] = (tokens - 1.0 if admitted else tokens, now)
        return admitted


def throttle_prefix(path: str, body: bytes, json_protocol: bool) -> str:
    """The unit a service throttles by: a DynamoDB table, or an S3 bucket and key prefix."""
    if json_protocol:
        try:
            return "table:" + str(json.loads(body or b"{}").get("TableName", ""))
        except (ValueError, AttributeError):
            return "table:"
    return path.rsplit("/", 1)[0] if path.count("/") > 1 else path


# -- answers as bytes on the wire ------------------------------------------------------------

def response_bytes(status: int, headers: list[tuple[str, str]], body: bytes, *, head: bool = False,
                   close: bool = False) -> bytes:
    """An HTTP/1.1 response: ``headers`` (no hop-by-hop ones), Content-Length, then ``body``.

    ``head``: the answer to a HEAD, whose headers are sent (with the body's Content-Length
    unless they hold one, as upstream's answer to a HEAD does) and whose body is not.
    """
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    if not head or not any(k.lower() == "content-length" for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


def _request_id() -> str:
    return uuid.uuid4().hex[:16].upper()


def json_error(status: int, error_type: str, message: str, extra: list[tuple[str, str]] = ()) -> tuple:
    body = json.dumps({"__type": error_type, "message": message}).encode()
    return status, [("Content-Type", "application/x-amz-json-1.0; charset=utf-8"), *extra], body


def xml_error(status: int, code: str, message: str, extra: list[tuple[str, str]] = (), tail: str = "") -> tuple:
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>{tail and chr(10)}<Error><Code>{code}</Code>'
           f"<Message>{message}</Message>{tail}</Error>")
    return status, [("Content-Type", "application/xml"), *extra], xml.encode()


def slow_down(json_protocol: bool) -> tuple[int, list[tuple[str, str]], bytes]:
    """S3's 503 SlowDown, or DynamoDB's ProvisionedThroughputExceededException, as AWS sends them."""
    request_id = _request_id()
    if json_protocol:
        return json_error(400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                          "The level of configured provisioned throughput for the table was exceeded. "
                          "Consider increasing your provisioning level with the UpdateTable API.",
                          [("x-amzn-RequestId", request_id)])
    return xml_error(503, "SlowDown", "Please reduce your request rate.",
                     [("x-amz-request-id", request_id), ("x-amz-id-2", uuid.uuid4().hex)],
                     tail=f"<RequestId>{request_id}</RequestId><HostId>{uuid.uuid4().hex}</HostId>")


def injected(fault: str, json_protocol: bool) -> tuple[int, list[tuple[str, str]], bytes]:
    """The error answer of an injected 503, 500 or 403."""
    status = int(fault)
    if json_protocol:
        code = {503: "ThrottlingException", 500: "InternalServerError", 403: "AccessDeniedException"}[status]
        return json_error(status, code, "injected by the fault proxy")
    code = {503: "SlowDown", 500: "InternalError", 403: "AccessDenied"}[status]
    return xml_error(status, code, "injected by the fault proxy")


# -- one request ---------------------------------------------------------------------------

class Request:
    """A parsed request: method, raw URL (path and query as sent), headers, body.

    Headers stay the bytes the parser gave until a forward needs them as text; the few
    that decide how the request is answered (``WANTED``) are kept by lower-case name.
    """

    __slots__ = ("method", "url", "raw_headers", "wanted", "body", "keep_alive")

    def __init__(self, method: str, url: str, raw_headers: list[tuple[bytes, bytes]], wanted: dict[bytes, bytes],
                 body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.url = url
        self.raw_headers = raw_headers
        self.wanted = wanted
        self.body = body
        self.keep_alive = keep_alive

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]

    @property
    def path(self) -> str:
        return unquote(self.url.split("?", 1)[0])

    @property
    def head(self) -> bool:
        """A HEAD: its answer has headers only."""
        return self.method == "HEAD"

    @property
    def json_protocol(self) -> bool:
        return b"x-amz-target" in self.wanted

    def read_key(self) -> tuple | None:
        """What identifies this request's answer if it is a read (None if it may change state).

        ``()`` for a read whose answer depends on a condition (it is forwarded, never replayed).
        """
        wanted = self.wanted
        target = wanted.get(b"x-amz-target")
        whose = (wanted.get(b"host"), _scope(wanted.get(b"authorization")))
        if target is not None:
            if target.rsplit(b".", 1)[-1] in DYNAMODB_READS:
                return (target, self.body) + whose
            return None
        if self.method not in ("GET", "HEAD"):
            return None
        if not wanted.keys().isdisjoint(_CONDITIONAL):
            return ()
        return (self.method, self.url) + tuple(map(wanted.get, _ANSWER_HEADERS)) + whose


def _log_entry(entry: list) -> dict:
    """A log entry as stats() reports it: n, method, path, fault, and the delay and status where it has them."""
    number, method, url, fault, delay, status = entry
    out = {"n": number, "method": method, "path": unquote(url.split("?", 1)[0]), "fault": fault}
    if delay is not None:
        out["delay"] = delay
    if status is not None:
        out["status"] = status
    return out


class DueAnswers:
    """Replayed answers waiting out their delays, sent by one timer.

    A timer per answer would cost the event loop a timer to make, arm and close, and a wake-up
    of its own, per request. Here one timer is armed for the earliest answer due; when it fires,
    every answer due by then, or within ``SLACK_S`` after (less than the loop's own timer
    resolution of a millisecond), goes out in the same wake-up.
    """

    SLACK_S = 0.0005

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Connection, bytes, bool]] = []
        self.count = 0  # a tie-break: answers due at the same time go in the order they were added
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for = math.inf

    def add(self, delay_s: float, conn: "Connection", answer: bytes, keep_alive: bool) -> None:
        """Send ``answer`` on ``conn`` ``delay_s`` from now."""
        due = time.monotonic() + delay_s
        self.count += 1
        heapq.heappush(self.heap, (due, self.count, conn, answer, keep_alive))
        if due < self.armed_for - self.SLACK_S:
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.armed_for = due
        self.timer = asyncio.get_running_loop().call_later(max(0.0, due - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self.timer, self.armed_for = None, math.inf
        heap = self.heap
        until = time.monotonic() + self.SLACK_S
        while heap and heap[0][0] <= until:
            _, _, conn, answer, keep_alive = heapq.heappop(heap)
            conn.send(answer, keep_alive)
        if heap:
            self._arm(heap[0][0])


# -- the proxy ----------------------------------------------------------------------------

class Proxy:
    """What the proxy knows: its config, stats, recordings and connections; and how it answers."""

    def __init__(self, upstream: str, upstream_pid: int | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the proxy only forwards to loopback, got upstream {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.upstream_clock = None if upstream_pid is None else process_cpu_clock(upstream_pid)
        self.config = ProxyConfig()
        self.session: ClientSession | None = None
        self.recorded: dict[tuple, bytes] = {}  # read key -> the answer's bytes (keep-alive form)
        self.connections: set[Connection] = set()
        self.answers = DueAnswers()
        self.frozen_connections: set[Connection] = set()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.requests = 0
        self.served = 0
        self.replayed = 0
        self.fault_counts = {kind: 0 for kind in FAULT_KINDS}
        self.throttled = 0
        self.frozen = 0
        # One entry per request: [n, method, URL, fault, delay or None, status or None], made a
        # dict by stats() (a list per request costs less than a dict on the hot path).
        self.log: list[list] = []

    def freeze(self) -> int:
        """Freeze every client connection open now; returns how many."""
        self.frozen_connections = {c for c in self.connections if not c.closed}
        return len(self.frozen_connections)

    def cpu_s(self) -> float:
        """CPU seconds this process and the upstream process have used, to the nanosecond: the
        upstream's from its process CPU-time clock, which counts every thread it ran, ended ones
        too (``/proc/PID/stat`` counts in 10 ms ticks, as much as a short round's whole figure)."""
        cpu = time.process_time()
        if self.upstream_clock is not None:
            try:
                cpu += time.clock_gettime(self.upstream_clock)
            except OSError:  # the upstream has exited
                pass
        return cpu

    def stats(self, since: int = 0) -> dict:
        return {"requests": self.requests, "served": self.served, "replayed": self.replayed,
                "faults": self.fault_counts, "throttled": self.throttled, "frozen": self.frozen,
                "cpu_s": self.cpu_s(), "log": [_log_entry(e) for e in self.log[since:]]}  # entry i is request i + 1

    # -- answering -----------------------------------------------------------------------

    def handle(self, conn: "Connection", req: Request) -> None:
        """Answer ``req`` on ``conn``: at once, after the delay, or through a task that goes upstream."""
        if req.url.startswith("/__proxy__/"):
            conn.send(response_bytes(*self.control(req), head=req.head, close=not req.keep_alive), req.keep_alive)
            return
        cfg = self.config
        self.requests += 1
        number = self.requests
        if conn in self.frozen_connections:
            self.frozen += 1
            self.log.append([number, req.method, req.url, "frozen", None, None])
            conn.abort(reset=True)
            return
        if cfg.throttle is not None:
            json_protocol = req.json_protocol
            if not cfg.throttle.admit(throttle_prefix(req.path, req.body, json_protocol), time.monotonic()):
                self.throttled += 1
                self.log.append([number, req.method, req.url, "throttle", None, None])
                conn.send(response_bytes(*slow_down(json_protocol), head=req.head, close=not req.keep_alive),
                          req.keep_alive)
                return
        delay = cfg.draw_delay_s()
        fault = cfg.draw_fault() if number > cfg.fault_after else None
        entry = [number, req.method, req.url, fault, delay, None]
        self.log.append(entry)
        key = req.read_key()
        if key is None:
            self.recorded.clear()  # it may change what any recording answered
        elif fault is None and key and cfg.replay:
            answer = self.recorded.get(key)
            if answer is not None:
                self.replayed += 1
                self.served += 1
                if not req.keep_alive:
                    answer = answer.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                entry[5] = int(answer[9:12])
                if delay:
                    self.answers.add(delay, conn, answer, req.keep_alive)
                else:
                    conn.send(answer, req.keep_alive)
                return
        conn.task = asyncio.ensure_future(self.answer_later(conn, req, delay, fault, entry, key))

    async def answer_later(self, conn: "Connection", req: Request, delay: float, fault: str | None,
                           entry: list, key: tuple | None) -> None:
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            self.fault_counts[fault] += 1
            if fault in ("503", "500", "403"):
                conn.send(response_bytes(*injected(fault, req.json_protocol), head=req.head,
                                         close=not req.keep_alive), req.keep_alive)
            else:
                if fault == "stall":
                    await asyncio.sleep(self.config.stall_s)
                conn.abort(reset=fault == "reset")
            return
        try:
            status, headers, body = await self.forward(req)
        except (OSError, ClientError, asyncio.TimeoutError) as exc:
            entry[5] = 502
            conn.send(response_bytes(502, [], f"upstream failed: {exc!r}".encode(), head=req.head, close=True), False)
            return
        if key is None:
            self.recorded.clear()
        if key and status < 500:
            self.recorded[key] = response_bytes(status, headers, body, head=req.head)
        self.served += 1
        entry[5] = status
        conn.send(response_bytes(status, headers, body, head=req.head, close=not req.keep_alive), req.keep_alive)

    async def forward(self, req: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        """Upstream's answer: status, headers (no hop-by-hop ones but a HEAD's Content-Length), body."""
        headers = CIMultiDict((k, v) for k, v in req.headers if k.lower() not in _HOP_BY_HOP)
        if self.session is None:
            self.session = ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None),
                                         auto_decompress=False)
        async with self.session.request(
            req.method, URL(self.upstream + req.url, encoded=True), headers=headers, data=req.body,
            allow_redirects=False, skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
        ) as upstream:
            payload = await upstream.read()
            out = [(k, v) for k, v in upstream.headers.items()
                   if k.lower() not in _HOP_BY_HOP or (req.method == "HEAD" and k.lower() == "content-length")]
            return upstream.status, out, payload

    def control(self, req: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        path, _, query = req.url.removeprefix("/__proxy__/").partition("?")
        code, doc = 200, {"ok": True}
        if path == "stats":
            since = parse_qs(query).get("since", ["0"])[0]
            doc = self.stats(int(since) if since.isdigit() else 0)
        elif path == "config" and req.method == "POST":
            try:
                self.config = ProxyConfig(**json.loads(req.body or b"{}"))
                self.frozen_connections = set()
            except (TypeError, ValueError) as exc:
                code, doc = 400, {"error": str(exc)}
        elif path == "freeze" and req.method == "POST":
            doc = {"frozen": self.freeze()}
        elif path == "reset" and req.method == "POST":
            self.reset_stats()
        elif path == "forget" and req.method == "POST":
            self.recorded.clear()
        else:
            code, doc = 404, {"error": f"unknown control {path!r}"}
        return code, [("Content-Type", "application/json; charset=utf-8")], json.dumps(doc).encode()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class Connection(asyncio.Protocol):
    """One client connection: httptools parses its requests, which are answered one at a time, in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[Request] = collections.deque()
        self.busy = False
        self.closed = False
        self.task: asyncio.Future | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._wanted: dict[bytes, bytes] = {}
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.connections.discard(self)
        self.proxy.frozen_connections.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send(response_bytes(400, [], b"bad request", close=True), keep_alive=False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._wanted, self._body = b"", [], {}, []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lower = name.lower()
        if lower in WANTED:
            self._wanted[lower] = value

    def on_headers_complete(self) -> None:
        if self._wanted.get(b"expect", b"").lower() == b"100-continue":
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.pending.append(Request(self.parser.get_method().decode(), self._url.decode("latin-1"), self._headers,
                                    self._wanted, b"".join(self._body), self.parser.should_keep_alive()))
        if not self.busy:
            self.next()

    # answering
    def next(self) -> None:
        if self.pending and not self.closed:
            self.busy = True
            self.proxy.handle(self, self.pending.popleft())
        else:
            self.busy = False

    def send(self, data: bytes, keep_alive: bool = True) -> None:
        """Write an answer; close after it unless kept alive; then take the next request."""
        if self.closed or self.transport is None:
            return
        self.transport.write(data)
        if not keep_alive:
            self.closed = True
            self.transport.close()
            return
        self.next()

    def abort(self, *, reset: bool) -> None:
        """Drop the connection; ``reset``: with an RST, so the client sees "connection reset by peer"."""
        if self.transport is None or self.closed:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and reset:
            # SO_LINGER 0: close() sends RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        self.transport.abort()


async def serve(upstream: str, port: int, upstream_pid: int | None = None) -> None:
    proxy = Proxy(upstream, upstream_pid)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(proxy), "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await proxy.close()


def _run(main: Any) -> None:
    """Run ``main`` on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the real endpoint")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--upstream-pid", type=int, help="the upstream's process id, to count its CPU time")
    args = parser.parse_args(argv)
    try:
        _run(serve(args.upstream, args.port, args.upstream_pid))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
