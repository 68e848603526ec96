"""``FANOUT_AWS_CLIENT=crt``: S3 GetObject, PutObject and HeadObject through awscrt's HTTP client.

Loaded when a ``crt`` client pair first serves one of those calls; awscrt itself is
imported then, never at ``import lambda_fanout``. awscrt does the HTTP/1.1 exchange
on its own event-loop threads and the SigV4 signing; botocore still decides
everything a user can observe, once per bucket or per error rather than per call:

- where a request goes and how it is signed: one botocore call per (operation,
  bucket) is stopped at its ``before-call`` event, and its URL, headers, signing
  region and checksum context are kept. A bucket botocore would not sign with plain
  SigV4 for ``s3`` (S3 Express, access points in other partitions, SigV4a), a
  proxy, or an unusual body goes through botocore instead;
- the result: errors and HeadObject answers go through botocore's own parser and
  ``before-parse`` handlers, errors are raised as botocore would (``ClientError``
  subclasses from the client's exception factory), and checksums are computed and
  checked by ``botocore.httpchecksum``;
- retries: botocore's standard-mode handler (attempts, throttling and transient
  conditions, backoff with jitter, retry quota), every throttled attempt reported
  to the ``auto`` limiter as the botocore path does;
- what watches the calls: each signed request is shown to the ``before-send``
  handlers, whose answer (moto's ``mock_aws()``, a stub) is taken as the response; a
  handler not botocore's own on an event this path does not emit (``before-call``,
  ``request-created``, ``after-call`` ...), botocore's ``Stubber``, or a wrapped
  ``_make_api_call`` (a tracer) sends the calls through botocore, where they see them;
- inside Lambda, the ``X-Amzn-Trace-Id`` header botocore's recursion detection adds.

One sans-I/O generator holds the logic of a call; :func:`run` drives it by blocking
(sync strategies) and :func:`arun` by awaiting (asyncio), so neither form has its
own copy.
"""

from __future__ import annotations

import functools
import io
import sys
import threading
import time
import warnings

from . import _limiter

# Annotations only (postponed by `from __future__ import annotations`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Generator

#: The helper operations this path serves, by botocore operation name.
OPERATIONS = {"get_object": "GetObject", "put_object": "PutObject", "head_object": "HeadObject"}
#: What a call's steps return when botocore must serve the call after all (a redirect).
DEFER = object()
#: Bytes per second an upload is assumed to reach at least: a PutObject body larger than
#: the read timeout's worth of it goes through botocore (see S3Native.prepare).
UPLOAD_FLOOR_BPS = 1_000_000
_PROBE_KEY = "k"
#: Seconds :meth:`S3Native.close` waits for awscrt to close the idle connections.
CLOSE_TIMEOUT_S = 2.0

_lock = threading.Lock()
_loaded: bool | None = None  # None: not tried yet


def available() -> bool:
    """Whether awscrt imports; the first failure warns once per process.

    Without awscrt the ``crt`` profile serves every call through botocore, with the
    default profile's settings.
    """
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                try:
                    import awscrt.auth  # noqa: F401
                    import awscrt.http  # noqa: F401
                    import awscrt.io  # noqa: F401
                except ImportError as exc:
                    warnings.warn(
                        f"FANOUT_AWS_CLIENT=crt needs awscrt, which cannot be imported here ({exc}); S3 "
                        "GetObject, PutObject and HeadObject go through botocore instead, as under 'default'. "
                        "Use the layer's native zip for the function's Python version and architecture "
                        "(lambda-fanout-layer-py3.X-ARCH.zip, not the universal one), or install awscrt, "
                        "or unset FANOUT_AWS_CLIENT.", RuntimeWarning, stacklevel=4)
                    _loaded = False
                else:
                    _loaded = True
    return _loaded


class _Http:
    """What botocore's retry handler and limiter hook read of an HTTP response."""

    __slots__ = ("url", "status_code", "headers")

    def __init__(self, url: str, status_code: int, headers: Any) -> None:
        self.url, self.status_code, self.headers = url, status_code, headers


class _Exchange:
    """One response, filled in on awscrt's event-loop thread."""

    __slots__ = ("status", "headers", "chunks", "last")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list = []
        self.chunks: list = []
        self.last = time.monotonic()

    def on_response(self, status_code: int, headers: list, **_: Any) -> None:
        self.status, self.headers, self.last = status_code, headers, time.monotonic()

    def on_body(self, chunk: bytes, **_: Any) -> None:
        self.chunks.append(chunk)
        self.last = time.monotonic()


def _headers(pairs: list) -> Any:
    """Response headers as botocore builds them: values read as ISO-8859-1 (http.client's
    reading of raw bytes, where awscrt decodes UTF-8), a repeated header joined with ", "."""
    from botocore.awsrequest import HeadersDict

    headers = HeadersDict()
    for name, value in pairs:
        try:
            value = value.encode("utf-8").decode("iso-8859-1")
        except UnicodeError:  # (never for str: kept as awscrt gave it)
            pass
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class _Await:
    """A response to wait for, failing once nothing has arrived for ``idle`` seconds (botocore's read timeout)."""

    __slots__ = ("future", "exchange", "idle", "timer")

    def __init__(self, future: Any, exchange: _Exchange, idle: float) -> None:
        self.future, self.exchange, self.idle = future, exchange, idle
        self.timer: Any = None

    def remaining(self) -> float:
        return max(0.0, self.exchange.last + self.idle - time.monotonic())


class _Route:
    """Where and how one (operation, bucket) is sent, as botocore resolved it."""

    __slots__ = ("bucket", "method", "authority", "prefix", "url", "region", "headers", "checksum", "response_checksums", "pool")


class _Pool:
    """Idle kept-alive connections to one host (awscrt's Python API has no connection manager)."""

    def __init__(self, host: str, port: int, tls: Any, socket_options: Any, size: int) -> None:
        self.host, self.port, self.tls, self.socket_options, self.size = host, port, tls, socket_options, size
        self.idle: list = []
        self.closing: list = []  # awscrt's futures of connections closed beyond the size, until done
        self.lock = threading.Lock()

    def take(self) -> Any:
        idle = self.idle
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                return None
            if connection.is_open():
                return connection
        return None

    def connect(self) -> Any:
        import awscrt.http

        return awscrt.http.HttpClientConnection.new(
            host_name=self.host, port=self.port, socket_options=self.socket_options,
            tls_connection_options=self.tls() if self.tls is not None else None)

    def give(self, connection: Any, reusable: bool) -> None:
        # As botocore's urllib3 pool: connections beyond the pool's size are closed, not kept.
        if reusable and connection.is_open():
            with self.lock:
                if len(self.idle) < self.size:
                    self.idle.append(connection)
                    return
        closed = connection.close()
        with self.lock:
            self.closing = [future for future in self.closing if not future.done()]
            self.closing.append(closed)

    def close(self) -> list:
        """Start closing every idle connection; returns awscrt's futures of every shutdown not yet done.

        Those include connections closed earlier for being beyond the pool's size: awscrt
        closes them on its own thread, so their sockets may still be open.
        """
        with self.lock:
            idle, self.idle = self.idle, []
            closing, self.closing = self.closing, []
        return [connection.close() for connection in idle] + [future for future in closing if not future.done()]


class S3Native:
    """The crt path of one ``lambda_fanout.aws`` client pair for S3.

    Args:
        pair: the ``Clients`` it serves; its boto3 client supplies the region,
            endpoint, configuration, credentials, parser and exception classes.

    Raises:
        botocore.exceptions.NoCredentialsError: the credential chain found nothing.
    """

    def __init__(self, pair: Any) -> None:
        import awscrt.io
        from botocore.exceptions import NoCredentialsError
        from botocore.retries import quota, standard

        client = pair.sync
        self.client = client
        self.events = client.meta.events
        service = client.meta.service_model
        self.models = {op: service.operation_model(name) for op, name in OPERATIONS.items()}
        self.parsers = pair.session.get_component("response_parser_factory")
        config = client.meta.config
        self.read_timeout = float(config.read_timeout)
        self.socket_options = awscrt.io.SocketOptions()
        self.socket_options.connect_timeout_ms = int(config.connect_timeout * 1000)
        self.pool_size = config.max_pool_connections
        self.proxied = bool(config.proxies)
        self.verify = pair.client_kwargs.get("verify")
        self.ca_bundle = pair.session.get_config_variable("ca_bundle")
        # botocore's standard mode, built as botocore.retries.standard.register_retry_handler
        # builds it, with the attempts the client was configured with (AWS_MAX_ATTEMPTS included).
        attempts = (config.retries or {}).get("total_max_attempts") or standard.DEFAULT_MAX_ATTEMPTS
        adapter = standard.RetryEventAdapter()
        detector = standard.ThrottlingErrorDetector(adapter)
        self.quota = standard.RetryQuotaChecker(quota.RetryQuota(), detector)
        self.retry = standard.RetryHandler(
            retry_policy=standard.RetryPolicy(
                retry_checker=standard.StandardRetryConditions(max_attempts=attempts),
                retry_backoff=standard.ExponentialBackoff(service_name="s3", throttling_detector=detector)),
            retry_event_adapter=adapter, retry_quota=self.quota, service_name="s3")
        self.credentials = pair.credentials()
        if self.credentials is None:
            raise NoCredentialsError()
        self._signing: dict = {}  # (region, frozen credentials) -> AwsSigningConfig
        self.routes: dict = {}
        self.pools: dict = {}
        self._probe = threading.local()
        self._watch: dict = {}  # operation -> ((operation, handler cache, the _make_api_calls), watched)
        self.events.register_first("before-call.s3", self._capture, unique_id="lambda-fanout-crt-route")

    # -- where a call goes: botocore's resolution, once per operation and bucket --------------

    def _capture(self, params: dict, context: dict, **_: Any) -> Any:
        captured = getattr(self._probe, "captured", None)
        if captured is None:
            return None  # an ordinary call on the shared client
        captured.append((params, context))
        return _Http(params.get("url", ""), 200, {}), {}

    def route(self, operation: str, bucket: str) -> _Route | None:
        """How ``operation`` on ``bucket`` is sent, or None when botocore must send it."""
        key = (operation, bucket)
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = self._resolve(operation, bucket) or False
        return found or None

    def _resolve(self, operation: str, bucket: str) -> _Route | None:
        from urllib.parse import urlsplit
        from urllib.request import getproxies, proxy_bypass

        captured: list = []
        self._probe.captured = captured
        try:
            extra = {"Body": b""} if operation == "put_object" else {}
            getattr(self.client, operation)(Bucket=bucket, Key=_PROBE_KEY, **extra)
        except Exception:
            return None  # a bad bucket name and the like: botocore reports it on the real call
        finally:
            self._probe.captured = None
        if not captured:
            return None
        params, context = captured[0]
        signing = context.get("signing") or {}
        schemes = (context.get("endpoint_properties") or {}).get("authSchemes") or [{"name": "sigv4"}]
        url = params.get("url", "")
        where = urlsplit(url)
        if (context.get("auth_type") != "v4" or signing.get("signing_name", "s3") != "s3"
                or schemes[0].get("name") != "sigv4" or params.get("query_string") or where.query
                or not url.endswith("/" + _PROBE_KEY) or where.scheme not in ("http", "https")
                or self.proxied or (where.scheme in getproxies() and not proxy_bypass(where.hostname or ""))):
            return None
        checksum = (context.get("checksum") or {})
        request_checksum = checksum.get("request_algorithm")
        if request_checksum is not None and not isinstance(request_checksum, dict):
            return None  # conditional MD5 and other special cases stay with botocore
        tls = where.scheme == "https"
        port = where.port or (443 if tls else 80)
        pool_key = (where.hostname, port, tls)
        pool = self.pools.get(pool_key)
        if pool is None:
            pool = self.pools[pool_key] = _Pool(where.hostname, port, self._tls(where.hostname) if tls else None,
                                                self.socket_options, self.pool_size)
        route = _Route()
        route.bucket = bucket
        route.method = params["method"]
        route.authority = where.netloc
        route.url = url[:-len(_PROBE_KEY)]
        route.prefix = where.path[:-len(_PROBE_KEY)]
        route.region = signing.get("region") or self.client.meta.region_name
        route.headers = [(name, value) for name, value in params["headers"].items() if name.lower() != "expect"]
        if request_checksum is not None:
            # Sent in a header over http and https alike (botocore uses a trailer over https); S3
            # stores and checks the same checksum either way.
            checksum = dict(checksum, request_algorithm=dict(request_checksum, **{"in": "header"}))
        route.checksum = checksum if request_checksum is not None else None
        route.response_checksums = checksum.get("response_algorithms")
        route.pool = pool
        return route

    def _tls(self, host: str) -> Any:
        import awscrt.io

        options = awscrt.io.TlsContextOptions()
        if self.verify is False:
            options.verify_peer = False
        else:
            bundle = self.verify if isinstance(self.verify, str) else self.ca_bundle
            if bundle:
                options.override_default_trust_store_from_path(None, bundle)
        context = awscrt.io.ClientTlsContext(options)

        def connection_options() -> Any:
            made = context.new_connection_options()
            made.set_server_name(host)
            return made
        return connection_options

    def signing(self, region: str) -> Any:
        """The SigV4 configuration for ``region`` with the chain's current credentials."""
        import awscrt.auth

        frozen = self.credentials.get_frozen_credentials()
        key = (region, frozen)
        found = self._signing.get(key)
        if found is None:
            if len(self._signing) > 16:  # credentials rotated: drop the old ones
                self._signing.clear()
            found = self._signing[key] = awscrt.auth.AwsSigningConfig(
                algorithm=awscrt.auth.AwsSigningAlgorithm.V4,
                signature_type=awscrt.auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
                credentials_provider=awscrt.auth.AwsCredentialsProvider.new_static(
                    frozen.access_key, frozen.secret_key, frozen.token),
                region=region, service="s3",
                # S3's SigV4: the path signed as sent, as botocore's S3 signer does.
                use_double_uri_encode=False, should_normalize_uri_path=False,
                signed_body_header_type=awscrt.auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256)
        return found

    # -- one call -------------------------------------------------------------------------------

    def prepare(self, operation: str, params: dict) -> Generator | None:
        """The steps of one call (for :func:`run` / :func:`arun`), or None when botocore must make it."""
        key, body = params.get("Key"), params.get("Body", b"")
        if type(key) is not str or not key or len(params) != (3 if operation == "put_object" else 2):
            return None  # botocore validates, or takes arguments this path does not send
        if isinstance(body, str):
            body = body.encode("utf-8")  # as botocore encodes a str blob
        elif not isinstance(body, (bytes, bytearray)):
            return None  # a file-like body: botocore streams it
        if len(body) > self.read_timeout * UPLOAD_FLOOR_BPS:
            # awscrt takes the whole body at once and tells nothing of its progress, so an
            # upload that may outlast the read timeout could not be told from a stall:
            # botocore, whose timeout applies per socket operation, sends it.
            return None
        if self._watched(operation):
            return None  # a tracer or a test double must see the call: botocore makes it
        route = self.route(operation, params["Bucket"])
        if route is None:
            return None
        return self._call(operation, route, key, bytes(body))

    def _watched(self, operation: str) -> bool:
        """True when something not botocore's own watches ``operation`` at the call itself.

        That is a wrapper around the client's ``_make_api_call`` (Powertools Tracer and
        the X-Ray SDK, OpenTelemetry's botocore instrumentation), a handler from elsewhere
        on an event this path does not emit (Sentry's ``request-created`` and
        ``after-call``), or botocore's own ``Stubber``: botocore then makes the call, so
        they see it. A ``before-send`` handler (moto's) sees each crt request instead
        (:meth:`_answered`). Decided again only when the client's handlers change.
        """
        emitter = getattr(self.events, "_emitter", None)
        handlers = getattr(emitter, "_handlers", None)
        cache = getattr(emitter, "_lookup_cache", None)  # replaced by botocore whenever a handler is (un)registered
        api_call = _static(type(self.client), "_make_api_call")
        aio = sys.modules.get("aiobotocore.client")  # the asyncio strategy's botocore path, where loaded
        aio_call = _static(aio.AioBaseClient, "_make_api_call") if aio is not None else None
        key = (operation, cache, api_call, aio_call)
        known = self._watch.get(operation)
        if known is not None and known[0][1] is cache and known[0][2] is api_call and known[0][3] is aio_call:
            return known[1]
        if handlers is None or cache is None:
            watched = True  # botocore changed inside: when unsure, botocore makes the call
        else:
            name = self.models[operation].name
            watched = not _botocores(api_call) or (aio_call is not None and not _botocores(aio_call)) or any(
                not _own_handler(handler) for event in _SKIPPED_EVENTS
                for handler in handlers.prefix_search(event.format(name)))
        self._watch[operation] = (key, watched)
        return watched

    def _call(self, operation: str, route: _Route, key: str, body: bytes) -> Generator:
        model = self.models[operation]
        request_context: dict = {}
        attempts = 0
        while True:
            attempts += 1
            http = parsed = error = None
            try:
                status, pairs, payload = yield from self._attempt(operation, route, key, body)
            except _connection_errors() as exc:
                error = exc
            else:
                if status < 300:
                    break  # standard mode never retries a 2xx answer (nor does the limiter hear of one)
                headers = _headers(pairs)
                http = _Http(route.url, status, headers)
                parsed = self._parse(model, status, headers, payload)
                if status < 400 or (status == 400 and headers.get("x-amz-bucket-region") not in (None, route.region)):
                    # The bucket lives in another region: botocore's redirect handling takes it from here.
                    self.routes[(operation, route.bucket)] = False
                    return DEFER
            response = (http, parsed) if http is not None else None
            _limiter.botocore_retry_hook(response=response)
            delay = self.retry.needs_retry(request_dict={"context": request_context}, response=response,
                                           attempts=attempts, operation=model, caught_exception=error)
            if not delay:
                if http is None:
                    raise error
                parsed.setdefault("ResponseMetadata", {})["RetryAttempts"] = attempts - 1
                code = parsed.get("Error", {}).get("Code")
                raise self.client.exceptions.from_code(code)(parsed, model.name)
            yield float(delay)
        self.quota.release_retry_quota(request_context, _Http(route.url, status, None))
        if operation == "get_object":
            return self._checked(route, pairs, payload)
        headers = _headers(pairs)
        if operation == "put_object":
            return headers["ETag"]
        parsed = self._parse(model, status, headers, payload)
        parsed.pop("ResponseMetadata", None)
        return parsed

    def _attempt(self, operation: str, route: _Route, key: str, body: bytes) -> Generator:
        import awscrt.auth
        import awscrt.http
        from awscrt.exceptions import AwsCrtError
        from botocore.exceptions import (
            ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError, SSLError,
        )
        from botocore.handlers import add_recursion_detection_header
        from botocore.httpchecksum import apply_request_checksum
        from botocore.utils import percent_encode

        headers = [("host", route.authority), *route.headers]
        stream = None
        if operation == "put_object":
            headers.append(("content-length", str(len(body))))
            if route.checksum is not None:
                prepared = {"headers": {}, "body": body, "context": {"checksum": route.checksum}}
                apply_request_checksum(prepared)
                headers += prepared["headers"].items()
            stream = io.BytesIO(body)
        path = percent_encode(key, safe="/~")
        request = awscrt.http.HttpRequest(route.method, route.prefix + path, awscrt.http.HttpHeaders(headers), stream)
        yield awscrt.auth.aws_sign_request(request, self.signing(route.region))
        # Added after signing, as botocore leaves it unsigned (SIGNED_HEADERS_BLACKLIST).
        traced: dict = {}
        add_recursion_detection_header({"headers": traced})
        for name, value in traced.items():
            request.headers.add(name, value)
        answer = self._answered(operation, route.method, route.url + path, request.headers, body)
        if answer is not None:
            return answer
        pool = route.pool
        connection = pool.take()
        if connection is None:
            try:
                connection = yield pool.connect()
            except AwsCrtError as exc:
                if "_TLS_" in exc.name:
                    raise SSLError(endpoint_url=route.url, error=exc) from exc
                kind = ConnectTimeoutError if "TIMEOUT" in exc.name else EndpointConnectionError
                raise kind(endpoint_url=route.url) from exc
        done = False
        try:
            exchange = _Exchange()
            try:
                sent = connection.request(request, exchange.on_response, exchange.on_body)
                sent.activate()
                yield _Await(sent.completion_future, exchange, self.read_timeout)
            except TimeoutError as exc:
                raise ReadTimeoutError(endpoint_url=route.url) from exc
            except AwsCrtError as exc:
                raise ConnectionClosedError(endpoint_url=route.url) from exc
            done = True
            return exchange.status, exchange.headers, b"".join(exchange.chunks)
        finally:
            pool.give(connection, done)

    def _answered(self, operation: str, method: str, url: str, headers: Any, body: bytes) -> tuple | None:
        """``before-send`` as botocore emits it, for the signed request: an answer a handler gives.

        moto's ``mock_aws()`` and other test doubles answer there; a handler that only
        looks returns None, and the request is then sent.

        Returns:
            (status, header pairs, payload) from a handler's response, or None.
        """
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.hooks import first_non_none_response

        prepared = AWSPreparedRequest(method, url, dict(headers), body if operation == "put_object" else None,
                                      stream_output=False)
        response = first_non_none_response(
            self.events.emit(f"before-send.s3.{self.models[operation].name}", request=prepared))
        if response is None:
            return None
        return response.status_code, list(response.headers.items()), response.content

    def _parse(self, model: Any, status: int, headers: Any, payload: bytes) -> dict:
        # As botocore.endpoint.Endpoint._do_get_response, for a response read whole.
        response = {"headers": headers, "status_code": status, "body": payload,
                    "context": {"operation_name": model.name}}
        customized: dict = {}
        self.events.emit(f"before-parse.s3.{model.name}", operation_model=model, response_dict=response,
                         customized_response_dict=customized)
        parser = self.parsers.create_parser("rest-xml")
        parsed = parser.parse(response, model.output_shape)
        parsed.update(customized)
        code = parsed.get("Error", {}).get("Code") if status >= 300 else None
        shape = model.service_model.shape_for_error_code(code) if code is not None else None
        if shape is not None:
            parsed.update(parser.parse(response, shape))
        return parsed

    def _checked(self, route: _Route, pairs: list, payload: bytes) -> bytes:
        """The body, checked against the response's checksum as botocore checks it."""
        if not route.response_checksums or not any(name[:15].lower() == "x-amz-checksum-" for name, _ in pairs):
            return payload
        from botocore.httpchecksum import handle_checksum_body

        response = {"headers": _headers(pairs), "body": None, "context": {}}
        handle_checksum_body(_Raw(io.BytesIO(payload)), response, {"checksum": {
            "response_algorithms": route.response_checksums}}, self.models["get_object"])
        body = response["body"]
        return payload if body is None else body.read()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close every idle connection, waiting up to ``timeout`` seconds for their sockets to close.

        awscrt closes a connection on its event-loop thread; without the wait a SnapStart
        snapshot taken right after could still hold the sockets.
        """
        import concurrent.futures

        closing = [future for pool in list(self.pools.values()) for future in pool.close()]
        if closing:
            concurrent.futures.wait(closing, timeout=timeout)


def _static(cls: type, name: str) -> Any:
    # The attribute as the class holds it (a wrapper stays a wrapper), or None.
    for klass in cls.__mro__:
        found = klass.__dict__.get(name)
        if found is not None:
            return found
    return None


def _botocores(function: Any) -> bool:
    # botocore's (or aiobotocore's) own function, its own decorators included; not a
    # wrapper put in its place (wrapt's, or a plain function from elsewhere).
    import os
    import types

    if type(function) is not types.FunctionType:
        return False
    filename = function.__code__.co_filename
    for name in ("botocore", "aiobotocore"):
        package = sys.modules.get(name)
        where = getattr(package, "__file__", None)
        if where and filename.startswith(os.path.dirname(where) + os.sep):
            return True
    return False


#: The events of a botocore call this path does not emit, by name for an operation
#: (``before-send`` and ``before-parse`` it emits itself).
_SKIPPED_EVENTS = (
    "provide-client-params.s3.{}", "before-parameter-build.s3.{}", "before-endpoint-resolution.s3",
    "before-call.s3.{}", "request-created.s3.{}", "choose-signer.s3.{}", "before-sign.s3.{}",
    "response-received.s3.{}", "needs-retry.s3.{}", "after-call.s3.{}", "after-call-error.s3.{}")
#: botocore's own test double: its handlers answer calls, so botocore must make them.
_DOUBLES = ("botocore.stub",)
#: Handlers from elsewhere that neither trace nor answer a call: Powertools registers one on
#: ``request-created`` for every client once it is imported (it adds its feature to the
#: User-Agent), so counting it would send every call of a function using Powertools through botocore.
_HARMLESS = ("aws_lambda_powertools.shared.user_agent",)


def _own_handler(handler: Any) -> bool:
    # botocore's, boto3's and lambda_fanout's handlers change nothing a tracer or a double would see.
    while isinstance(handler, functools.partial):
        handler = handler.func
    module = getattr(handler, "__module__", None) or getattr(type(handler), "__module__", "")
    return isinstance(module, str) and (
        (module.split(".")[0] in ("botocore", "boto3", "lambda_fanout") and module not in _DOUBLES)
        or module in _HARMLESS)


class _Raw:
    """What botocore's streaming checksum check reads of an HTTP response."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw


def _connection_errors() -> tuple:
    from botocore.exceptions import ConnectionError, HTTPClientError

    return (ConnectionError, HTTPClientError)  # what botocore's sender raises, SSLError included


# -- drivers: the same steps, blocking or awaited ---------------------------------------------

def _advance(steps: Generator, value: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Hand the steps the last step's value or error: (True, their result) once they return, else (False, next step)."""
    try:
        return False, (steps.send(value) if error is None else steps.throw(error))
    except StopIteration as stop:
        return True, stop.value


def run(steps: Generator) -> Any:
    """Drive a call's steps in this thread, blocking on each awscrt future and backoff."""
    done, step = _advance(steps, None, None)
    while not done:
        value = error = None
        try:
            if type(step) is float:
                time.sleep(step)
            elif type(step) is _Await:
                while True:
                    try:
                        value = step.future.result(timeout=step.remaining())
                        break
                    except TimeoutError:
                        if step.remaining() <= 0:
                            raise
            else:
                value = step.result()
        except BaseException as exc:  # handed to the steps, which close the connection
            error = exc
        done, step = _advance(steps, value, error)
    return step


async def arun(steps: Generator) -> Any:
    """Drive a call's steps on the running loop, awaiting each awscrt future and backoff."""
    import asyncio

    done, step = _advance(steps, None, None)
    while not done:
        value = error = None
        try:
            if type(step) is float:
                await asyncio.sleep(step)
            elif type(step) is _Await:
                waiting = _bridge(step.future)
                # One timer per response, re-armed while data keeps arriving (cheaper than asyncio.wait).
                step.timer = asyncio.get_running_loop().call_later(step.idle, _expire, step, waiting)
                try:
                    value = await waiting
                finally:
                    step.timer.cancel()
            elif step.done():
                value = step.result()
            else:
                value = await _bridge(step)
        except BaseException as exc:  # cancellation included: the steps close the connection
            error = exc
        done, step = _advance(steps, value, error)
    return step


def _expire(step: _Await, waiting: Any) -> None:
    """On the loop: fail ``waiting`` with TimeoutError once its response has been idle ``step.idle`` seconds."""
    if waiting.done():
        return
    left = step.remaining()
    if left > 0:
        step.timer = waiting.get_loop().call_later(left, _expire, step, waiting)
    else:
        waiting.set_exception(TimeoutError())


def _bridge(future: Any) -> Any:
    """An asyncio future settled from an awscrt (concurrent.futures) future, on this loop.

    Not ``asyncio.wrap_future``: cancelling its result cancels the awscrt future, which
    awscrt then completes anyway, raising InvalidStateError on its event-loop thread.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    waiting = loop.create_future()

    def settle(source: Any) -> None:
        if waiting.done():  # cancelled, or already failed by its read timeout
            return
        error = source.exception()
        if error is not None:
            waiting.set_exception(error)
        else:
            waiting.set_result(source.result())

    def done(source: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, source)
        except RuntimeError:
            pass  # the loop closed meanwhile: nobody is waiting

    future.add_done_callback(done)
    return waiting
