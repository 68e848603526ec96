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

Freezing (``POST /__proxy__/freeze``) models what a SnapStart restore finds: every client
connection open at that moment stays open, silently, and the next request on it is
answered with a reset (RST), as a server that has long forgotten the connection answers
one; it is counted as ``frozen``. Connections opened later are served as usual. A new
config ends the freeze.

Control endpoints (never forwarded):
    GET  /__proxy__/stats   -> {"requests": n, "served": n, "faults": {...}, "throttled": n, "frozen": n,
                                "log": [...]}
    POST /__proxy__/config  <- {"delay_ms": 25, "tail_sigma": 0.5, "faults": {"503": 0.1},
                                "throttle": {"rate": 200, "burst": 10}, ...}
    POST /__proxy__/reset   clears the stats
    POST /__proxy__/freeze  freezes the connections open now

Run: python -m lambda_fanout_dev.proxy --upstream http://127.0.0.1:PORT [--port 0]
Prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
import struct
import sys
import time
import uuid
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

FAULT_KINDS = ("503", "500", "403", "reset", "stall")
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length",
    "upgrade", "te", "trailer", "expect", "content-encoding",
}


class ProxyConfig:
    """Delay distribution and fault rates; replaced whole by POST /__proxy__/config."""

    def __init__(self, delay_ms: float = 0.0, tail_sigma: float = 0.0, faults: dict | None = None,
                 stall_s: float = 30.0, seed: int | None = None, fault_after: int = 0,
                 throttle: dict | None = None) -> None:
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
        self.rng = random.Random(seed)

    def draw_delay_s(self) -> float:
        """Median delay_ms; a lognormal tail of width tail_sigma when it is > 0."""
        if self.delay_ms <= 0:
            return 0.0
        if self.tail_sigma <= 0:
            return self.delay_ms / 1000.0
        return self.delay_ms * math.exp(self.rng.gauss(0.0, self.tail_sigma)) / 1000.0

    def draw_fault(self) -> str | None:
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


def slow_down(json_protocol: bool) -> web.Response:
    """S3's 503 SlowDown, or DynamoDB's ProvisionedThroughputExceededException, as AWS sends them."""
    request_id = uuid.uuid4().hex[:16].upper()
    if json_protocol:
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded. "
                       "Consider increasing your provisioning level with the UpdateTable API.",
        }
        return web.json_response(body, status=400, content_type="application/x-amz-json-1.0",
                                 headers={"x-amzn-RequestId": request_id})
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
           "<Message>Please reduce your request rate.</Message>"
           f"<RequestId>{request_id}</RequestId><HostId>{uuid.uuid4().hex}</HostId></Error>")
    return web.Response(status=503, body=xml.encode(), content_type="application/xml",
                        headers={"x-amz-request-id": request_id, "x-amz-id-2": uuid.uuid4().hex})


class Proxy:
    """The aiohttp application that forwards or faults each request."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the proxy only forwards to loopback, got upstream {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.config = ProxyConfig()
        self.session: ClientSession | None = None
        # Client connections by id of their transport (each holds its transport, so an id
        # is not reused while listed): those seen since the last freeze, and the frozen ones.
        self.connections: dict[int, asyncio.BaseTransport] = {}
        self.frozen_connections: dict[int, asyncio.BaseTransport] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.requests = 0
        self.served = 0
        self.fault_counts = {kind: 0 for kind in FAULT_KINDS}
        self.throttled = 0
        self.frozen = 0
        self.log: list[dict] = []

    def freeze(self) -> int:
        """Freeze every client connection open now; returns how many."""
        self.frozen_connections = {key: t for key, t in self.connections.items() if not t.is_closing()}
        self.connections = {}
        return len(self.frozen_connections)

    def _is_frozen(self, transport: asyncio.BaseTransport | None) -> bool:
        if transport is None:
            return False
        key = id(transport)
        if self.frozen_connections.get(key) is transport:
            return True
        if key not in self.connections:
            if len(self.connections) >= 1024:
                self.connections = {k: t for k, t in self.connections.items() if not t.is_closing()}
            self.connections[key] = transport
        return False

    async def start_session(self, app: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None), auto_decompress=False
        )

    async def close_session(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/__proxy__/"):
            return await self.control(request)
        cfg = self.config
        self.requests += 1
        number = self.requests
        body = await request.read()
        if self._is_frozen(request.transport):
            self.frozen += 1
            self.log.append({"n": number, "method": request.method, "path": request.path, "fault": "frozen"})
            return await self.fault(request, "reset", cfg)
        json_protocol = "X-Amz-Target" in request.headers
        if cfg.throttle is not None and not cfg.throttle.admit(
                throttle_prefix(request.path, body, json_protocol), time.monotonic()):
            self.throttled += 1
            self.log.append({"n": number, "method": request.method, "path": request.path,
                             "fault": "throttle"})
            return slow_down(json_protocol)
        delay = cfg.draw_delay_s()
        fault = cfg.draw_fault() if number > cfg.fault_after else None
        entry = {"n": number, "method": request.method, "path": request.path, "fault": fault}
        self.log.append(entry)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            self.fault_counts[fault] += 1
            return await self.fault(request, fault, cfg)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        assert self.session is not None
        async with self.session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body,
            allow_redirects=False, skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
        ) as upstream:
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            if request.method == "HEAD" and "Content-Length" in upstream.headers:
                # A HEAD response has no body; its Content-Length is the object's size.
                out_headers["Content-Length"] = upstream.headers["Content-Length"]
            self.served += 1
            entry["status"] = upstream.status
            return web.Response(status=upstream.status, headers=out_headers, body=payload)

    async def fault(self, request: web.Request, fault: str, cfg: ProxyConfig) -> web.StreamResponse:
        json_protocol = "X-Amz-Target" in request.headers
        if fault in ("503", "500", "403"):
            status = int(fault)
            if json_protocol:
                code = {503: "ThrottlingException", 500: "InternalServerError", 403: "AccessDeniedException"}[status]
                return web.json_response({"__type": code, "message": "injected by the fault proxy"},
                                         status=status, content_type="application/x-amz-json-1.0")
            code = {503: "SlowDown", 500: "InternalError", 403: "AccessDenied"}[status]
            xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                   "<Message>injected by the fault proxy</Message></Error>")
            return web.Response(status=status, body=xml.encode(), content_type="application/xml")
        transport = request.transport
        if fault == "stall":
            await asyncio.sleep(cfg.stall_s)
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None and fault == "reset":
                # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise asyncio.CancelledError  # nothing more is sent on this connection

    async def control(self, request: web.Request) -> web.Response:
        action = request.path.removeprefix("/__proxy__/")
        if action == "stats":
            return web.json_response({
                "requests": self.requests, "served": self.served,
                "faults": self.fault_counts, "throttled": self.throttled, "frozen": self.frozen, "log": self.log,
            })
        if action == "config" and request.method == "POST":
            try:
                self.config = ProxyConfig(**(await request.json()))
            except (TypeError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            self.frozen_connections = {}
            return web.json_response({"ok": True})
        if action == "freeze" and request.method == "POST":
            return web.json_response({"frozen": self.freeze()})
        if action == "reset" and request.method == "POST":
            self.reset_stats()
            return web.json_response({"ok": True})
        return web.json_response({"error": f"unknown control {action!r}"}, status=404)


async def serve(upstream: str, port: int) -> None:
    proxy = Proxy(upstream)
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    app.on_startup.append(proxy.start_session)
    app.on_cleanup.append(proxy.close_session)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the real endpoint")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.upstream, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
