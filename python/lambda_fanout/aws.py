"""boto3 and aiobotocore clients tuned for fan-out, and ready-made dual tasks.

    s3 = lambda_fanout.aws.clients("s3")          # nothing is created yet
    bodies = lambda_fanout.map(lambda_fanout.aws.s3_get_object("my-bucket"), keys)

``clients(...)`` returns one object per process and arguments, so clients are made
once and reused across warm invocations. ``.sync`` is a boto3 client, made on first
use; ``.aio`` makes calls through an aiobotocore client bound to the running loop
(the asyncio strategy's reused loop, or the caller's), made on first use there and
closed before that loop closes. boto3, aiobotocore and aiohttp load only when their
form is first used.

Settings applied unless the caller passes their own ``config=``:
- ``max_pool_connections`` at least the worker count, and never below 64
  (botocore's default of 10 silently caps concurrency);
- retries in botocore's ``standard`` mode, unless ``AWS_RETRY_MODE`` or
  ``AWS_MAX_ATTEMPTS`` is set;
- ``connect_timeout`` 3 s and ``read_timeout`` 10 s (botocore's are 60 s each), so
  one stalled connection cannot hold an invocation until the Lambda timeout.
  Override with ``FANOUT_AWS_CONNECT_TIMEOUT_S`` / ``FANOUT_AWS_READ_TIMEOUT_S`` or
  by passing ``config=botocore.config.Config(...)``.

Every client is made on a session of its own, which gets two cheaper parts with the
same results: the User-Agent header built once per client and per set of request
features (botocore rebuilds the same string twice per call), and a timestamp parser
that reads AWS's RFC 7231 and ISO 8601 forms directly and hands anything else to
botocore's (dateutil) parser. Sessions and clients made elsewhere are unaffected.

``FANOUT_AWS_CLIENT`` (or ``clients(..., profile=...)``) picks one of
:data:`CLIENT_PROFILES`: ``default``; ``lean``, which also turns off client-side
parameter validation and computes or checks checksums only where the service
requires them (see :data:`LEAN_SETTINGS`); or ``crt``, under which the S3 helpers'
GetObject, PutObject and HeadObject go through awscrt (see :data:`NATIVE` and
``lambda_fanout._crt``; awscrt loads when such a call is first made).
The endpoint comes from the standard ``AWS_ENDPOINT_URL`` (and per-service
``AWS_ENDPOINT_URL_<SERVICE>``); region and credentials from the usual chain.
"""

from __future__ import annotations

import os
import threading
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from . import _config, _limiter, _shadowing, _snapstart
from ._procpool import on_new_environment
from ._task import Task

ENV_CONNECT_TIMEOUT_S = _config.ENV_AWS_CONNECT_TIMEOUT_S
ENV_READ_TIMEOUT_S = _config.ENV_AWS_READ_TIMEOUT_S
DEFAULT_CONNECT_TIMEOUT_S = _config.DEFAULT_AWS_CONNECT_TIMEOUT_S
DEFAULT_READ_TIMEOUT_S = _config.DEFAULT_AWS_READ_TIMEOUT_S
_RETRY_ENV = ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")
#: The client settings one can pick with FANOUT_AWS_CLIENT or ``clients(profile=...)``:
#: ``default`` (results exactly as botocore's), ``lean`` (less client-side checking) and
#: ``crt`` (S3 GetObject, PutObject and HeadObject through awscrt, see :data:`NATIVE`).
CLIENT_PROFILES = _config.AWS_CLIENTS
DEFAULT_PROFILE = _config.DEFAULT_AWS_CLIENT
#: What ``lean`` adds to the botocore Config, and gives up:
#: - no client-side parameter validation: a wrong or missing parameter is no longer a
#:   ParamValidationError before sending; the service rejects it after a round trip, or it
#:   addresses something else (an empty S3 key reads the bucket listing);
#: - request checksums (CRC32 on PutObject and other uploads) only where the operation
#:   requires one, and response checksums checked only where required: corruption in
#:   transit is left to TLS and TCP.
LEAN_SETTINGS = {
    "parameter_validation": False,
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}
#: The calls a profile serves without botocore's per-call machinery, by service: under
#: ``crt``, the S3 helpers' GetObject, PutObject and HeadObject go through awscrt's HTTP
#: client and SigV4 signer (lambda_fanout._crt); every other call uses botocore with the
#: default settings. Where awscrt cannot be imported, botocore serves them too, after
#: one RuntimeWarning.
NATIVE = {"crt": {"s3": ("get_object", "put_object", "head_object")}}
#: Pools never go below this, so a map(max_workers=N) argument above FANOUT_MAX_WORKERS
#: still gets a connection per worker (aiohttp's limit is a hard cap). Idle slots cost nothing.
POOL_FLOOR = 64
#: How long :func:`renew_pools` waits for the shared loop to renew one aiobotocore client.
RENEW_TIMEOUT_S = 2.0

_lock = threading.Lock()
_registry: dict[tuple, "Clients"] = {}


def client_profile(profile: str | None = None) -> str:
    """The client profile: an explicit ``profile``, else FANOUT_AWS_CLIENT, else ``default``.

    Raises:
        ConfigError: a value not in :data:`CLIENT_PROFILES`.
    """
    return _config.resolve_choice(profile, argument="profile", env=_config.ENV_AWS_CLIENT,
                                  default=DEFAULT_PROFILE, choices=CLIENT_PROFILES)


def client_settings(max_workers: int, profile: str | None = None) -> dict[str, Any]:
    """The botocore Config settings applied to both client forms.

    Args:
        max_workers: the concurrency the connection pools are sized for.
        profile: one of :data:`CLIENT_PROFILES`; None reads FANOUT_AWS_CLIENT.

    Raises:
        ConfigError: a bad profile or timeout setting.
    """
    profile = client_profile(profile)
    settings: dict[str, Any] = {
        "max_pool_connections": max(max_workers, POOL_FLOOR),
        "connect_timeout": _config.resolve_seconds(ENV_CONNECT_TIMEOUT_S, default=DEFAULT_CONNECT_TIMEOUT_S),
        "read_timeout": _config.resolve_seconds(ENV_READ_TIMEOUT_S, default=DEFAULT_READ_TIMEOUT_S),
    }
    if not any(os.environ.get(name) for name in _RETRY_ENV):
        settings["retries"] = {"mode": "standard"}
    if profile == "lean":
        settings.update(LEAN_SETTINGS)
    return settings


class _AioCalls:
    """``clients.aio``: each attribute is an awaitable call on this loop's aiobotocore client."""

    __slots__ = ("_owner",)

    def __init__(self, owner: "Clients") -> None:
        self._owner = owner

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        owner = self._owner

        async def call(*args: Any, **kwargs: Any) -> Any:
            client = await owner.aio_client()
            return await getattr(client, operation)(*args, **kwargs)

        call.__name__ = operation
        return call


class Clients:
    """A boto3 client and an aiobotocore client for one service, created on first use.

    Attributes:
        sync: the boto3 client (thread-safe; one client shared by every thread, so its
            connection pool, credentials and endpoint cache are too).
        aio: awaitable calls, e.g. ``await clients.aio.get_object(Bucket=..., Key=...)``.
    """

    def __init__(self, service_name: str, max_workers: int, client_kwargs: dict[str, Any],
                 profile: str = DEFAULT_PROFILE) -> None:
        self.service_name = service_name
        self.max_workers = max_workers
        self.profile = profile
        self.client_kwargs = client_kwargs
        self._sync: Any = None
        self.session: Any = None  # the botocore session of the sync client
        self._native: Any = None  # the crt path: None until tried, False where it does not apply
        self._native_lock = threading.Lock()
        self._aio: dict[int, tuple[Any, Any]] = {}  # id(loop) -> (loop, client)
        self._aio_locks: dict[int, tuple[Any, Any]] = {}  # id(loop) -> (loop, asyncio.Lock)
        self.aio = _AioCalls(self)

    def _config(self, config_cls: Any) -> Any:
        ours = config_cls(**client_settings(self.max_workers, self.profile))
        theirs = self.client_kwargs.get("config")
        return ours.merge(theirs) if theirs is not None else ours

    def _kwargs(self, config_cls: Any) -> dict[str, Any]:
        kwargs = dict(self.client_kwargs)
        kwargs["config"] = self._config(config_cls)
        return kwargs

    @property
    def sync(self) -> Any:
        if self._sync is None:
            with _lock:
                if self._sync is None:
                    _shadowing.check("sync")
                    import boto3.session
                    import botocore.session
                    from botocore.config import Config

                    from ._botocore import tune_session

                    # A session of its own: boto3's default session is not thread-safe to
                    # create, and the tuning must not reach the user's own clients.
                    core = botocore.session.get_session()
                    tune_session(core)
                    session = boto3.session.Session(botocore_session=core)
                    self.session = core
                    self._sync = _limiter.watch_client(session.client(self.service_name, **self._kwargs(Config)))
        return self._sync

    def credentials(self) -> Any:
        """The credentials the sync client signs with: the ``aws_*`` arguments, else the session's chain."""
        given = self.client_kwargs
        if given.get("aws_access_key_id"):
            from botocore.credentials import Credentials

            return Credentials(given["aws_access_key_id"], given.get("aws_secret_access_key"),
                               given.get("aws_session_token"))
        self.sync  # noqa: B018 (makes the session)
        return self.session.get_credentials()

    def native(self) -> Any:
        """The crt path (``lambda_fanout._crt.S3Native``) of this pair, or None where botocore serves every call.

        Made on first use; awscrt is imported then.

        Raises:
            botocore.exceptions.NoCredentialsError: the credential chain found nothing.
        """
        if self._native is None:
            with self._native_lock:
                if self._native is None:
                    if self.service_name not in NATIVE.get(self.profile, {}):
                        self._native = False
                    else:
                        from . import _crt

                        self._native = _crt.S3Native(self) if _crt.available() else False
        return self._native or None

    async def anative(self) -> Any:
        """:meth:`native`, made off the running loop the first time (it builds the boto3 client)."""
        if self._native is None:
            import asyncio

            await asyncio.to_thread(self.native)
        return self._native or None

    def close_native(self) -> None:
        """Close the crt path's idle connections (the next call opens new ones)."""
        native = self._native
        if native:
            native.close()

    def renew_pools(self, timeout: float | None = RENEW_TIMEOUT_S) -> None:
        """Close every pooled connection of this pair; its clients stay, and open new ones when next used.

        The boto3 client and the crt path close their idle connections. An aiobotocore
        client bound to the shared asyncio loop closes its aiohttp session on that loop and
        opens an empty one; one bound to any other loop (a caller's own) is forgotten, and
        the next call on that loop makes a new client (the old one is still closed with
        its loop, see :func:`aclose`).

        Args:
            timeout: seconds to wait for the shared loop to renew each aiobotocore client.
        """
        sync = self._sync
        if sync is not None:
            sync.close()  # botocore empties its urllib3 pools; the client itself stays usable
        self.close_native()
        if self._aio:
            from . import _loop

            shared = _loop.current()
            for key, (loop, client) in list(self._aio.items()):
                if loop is shared:
                    _loop.run(_reopen(client), timeout)
                else:
                    self._aio.pop(key, None)
                    self._aio_locks.pop(key, None)

    async def aio_client(self) -> Any:
        """This loop's aiobotocore client, created (and registered for closing) on first use."""
        import asyncio

        loop = asyncio.get_running_loop()
        key = id(loop)
        # Entries hold their loop, so a closed loop's id cannot be reused while listed here.
        found = self._aio.get(key)
        if found is not None and found[0] is loop:
            return found[1]
        lock = self._aio_locks.setdefault(key, (loop, asyncio.Lock()))[1]
        async with lock:
            found = self._aio.get(key)
            client = found[1] if found is not None and found[0] is loop else None
            if client is None:
                _shadowing.check("async")  # a bundled botocore would break aiobotocore at import
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                from ._botocore import tune_session
                from ._loop import on_close

                session = get_session()
                tune_session(session)
                context = session.create_client(self.service_name, **self._kwargs(AioConfig))
                client = _limiter.watch_client(await context.__aenter__())
                self._aio[key] = (loop, client)

                async def close(context=context, key=key) -> None:
                    self._aio.pop(key, None)
                    self._aio_locks.pop(key, None)
                    await context.__aexit__(None, None, None)

                on_close(loop, close)
        return client


async def _reopen(client: Any) -> None:
    # aiobotocore's client is an async context manager: leaving it closes its aiohttp
    # sessions (and their connections); entering it again starts an empty one.
    await client.close()
    await client.__aenter__()


def clients(service_name: str, *, max_workers: int | str | None = None, profile: str | None = None,
            **client_kwargs: Any) -> Clients:
    """The process-wide pair of clients for a service.

    Args:
        service_name: "s3", "dynamodb", ...
        max_workers: the concurrency to size connection pools for; None reads
            FANOUT_MAX_WORKERS, else the default. Under ``auto`` the pool follows the cap.
        profile: one of :data:`CLIENT_PROFILES`; None reads FANOUT_AWS_CLIENT, else
            ``default``.
        **client_kwargs: passed to ``boto3 client()`` and aiobotocore's ``create_client()``
            (``region_name``, ``endpoint_url``, ``config`` ...).

    Returns:
        A :class:`Clients` with ``.sync`` and ``.aio``; the same object for the same arguments.

    Raises:
        ConfigError: a bad worker count, profile or timeout setting.
    """
    workers = _config.pool_size(_config.resolve_workers(max_workers))
    chosen = client_profile(profile)
    key = (service_name, workers, chosen, _freeze(client_kwargs))
    with _lock:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = Clients(service_name, workers, client_kwargs, chosen)
    return found


def _freeze(kwargs: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v if isinstance(v, (str, int, float, bool, type(None))) else id(v)) for k, v in kwargs.items()))


async def aclose() -> None:
    """Close every aiobotocore client bound to the running loop.

    Needed only on a loop this toolkit did not make (``asyncio.run`` in an async
    handler calling ``amap``): the asyncio strategy's own loop closes its clients
    at process exit.
    """
    import asyncio

    from ._loop import run_closers

    await run_closers(asyncio.get_running_loop())


def renew_pools() -> None:
    """Close every pooled connection of every client pair (:meth:`Clients.renew_pools`).

    Registered for SnapStart (``lambda_fanout._snapstart``): before the snapshot, so no
    socket is frozen into it, and after each restore, so none is shared by two copies.
    """
    with _lock:
        pairs = list(_registry.values())
    for pair in pairs:
        pair.renew_pools()


_snapstart.register(before=renew_pools, after=renew_pools)


def reset_clients() -> None:
    """Forget every cached client pair (the next ``clients()`` call makes new ones)."""
    with _lock:
        pairs = list(_registry.values())
        _registry.clear()
    for pair in pairs:
        pair.close_native()


# A processes worker installs each call's environment (credentials, region, endpoint):
# the clients built from the one before go.
on_new_environment(reset_clients)


# -- ready-made dual tasks ----------------------------------------------------------------

def _strip(response: dict) -> dict:
    response = dict(response)
    response.pop("ResponseMetadata", None)
    return response


class _Call:
    """One operation as a task: ``item -> result`` through either client form.

    A plain object rather than closures, so that the ``processes`` strategy can send it
    to its workers; each process then makes its own clients.
    """

    __slots__ = ("service", "operation", "fixed", "fields", "result", "aresult", "pair", "given", "native")

    def __init__(self, service: str, operation: str, fixed: dict, fields: str | tuple[str, ...],
                 result: Callable[[dict], Any], aresult: Callable[[dict], Any] | None,
                 pair: Clients | None) -> None:
        self.service = service
        self.operation = operation
        self.fixed = fixed
        self.fields = fields
        self.result = result
        self.aresult = aresult
        # The pair is looked up on the first call, not per item: clients() reads the
        # environment and takes a process-wide lock, which 32 threads would contend for.
        self.pair = pair
        self.given = pair is not None
        # The profiles whose native path serves this operation.
        self.native = frozenset(p for p, services in NATIVE.items() if operation in services.get(service, ()))

    def params(self, item: Any) -> dict:
        params = dict(self.fixed)
        if isinstance(self.fields, tuple):
            params.update(zip(self.fields, item))
        else:
            params[self.fields] = item
        return params

    def clients(self) -> Clients:
        if self.pair is None:
            self.pair = clients(self.service)
        return self.pair

    def __call__(self, item: Any) -> Any:
        pair, params = self.clients(), self.params(item)
        if pair.profile in self.native:
            native = pair.native()
            steps = native.prepare(self.operation, params) if native is not None else None
            if steps is not None:
                from . import _crt

                result = _crt.run(steps)
                if result is not _crt.DEFER:
                    return result
        return self.result(getattr(pair.sync, self.operation)(**params))

    async def aio(self, item: Any) -> Any:
        pair, params = self.clients(), self.params(item)
        if pair.profile in self.native:
            native = await pair.anative()
            steps = native.prepare(self.operation, params) if native is not None else None
            if steps is not None:
                from . import _crt

                result = await _crt.arun(steps)
                if result is not _crt.DEFER:
                    return result
        response = await getattr(pair.aio, self.operation)(**params)
        return await self.aresult(response) if self.aresult is not None else self.result(response)

    def __getstate__(self) -> tuple:
        # Clients looked up here stay in this process; clients passed in go along (and a
        # boto3 client cannot be pickled: the processes strategy then says so).
        return tuple(None if name == "pair" and not self.given else getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


def _dual(service: str, operation: str, fixed: dict, fields: str | tuple[str, ...], result: Callable[[dict], Any],
          aresult: Callable[[dict], Any] | None, pair: Clients | None, name: str) -> Task:
    """A Task calling ``operation`` with ``fixed`` plus the item as ``fields``, through either client form."""
    call = _Call(service, operation, fixed, fields, result, aresult, pair)
    return Task(call, call.aio, name=name)


def _body(response: dict) -> bytes:
    return response["Body"].read()


async def _read_body(response: dict) -> bytes:
    async with response["Body"] as stream:
        return await stream.read()


def _etag(response: dict) -> str:
    return response["ETag"]


def _nothing(response: dict) -> None:
    return None


def _item(response: dict) -> dict | None:
    return response.get("Item")


def _message_id(response: dict) -> str:
    return response["MessageId"]


def s3_get_object(bucket: str, *, clients: Clients | None = None) -> Task:
    """Task: key -> the object's body as bytes."""
    return _dual("s3", "get_object", {"Bucket": bucket}, "Key", _body, _read_body, clients, "s3_get_object")


def s3_put_object(bucket: str, *, clients: Clients | None = None) -> Task:
    """Task: (key, body) -> the new object's ETag."""
    return _dual("s3", "put_object", {"Bucket": bucket}, ("Key", "Body"), _etag, None, clients, "s3_put_object")


def s3_head_object(bucket: str, *, clients: Clients | None = None) -> Task:
    """Task: key -> the object's metadata (HeadObject response without ResponseMetadata)."""
    return _dual("s3", "head_object", {"Bucket": bucket}, "Key", _strip, None, clients, "s3_head_object")


def s3_delete_object(bucket: str, *, clients: Clients | None = None) -> Task:
    """Task: key -> None, once the object is deleted."""
    return _dual("s3", "delete_object", {"Bucket": bucket}, "Key", _nothing, None, clients, "s3_delete_object")


def dynamodb_get_item(table: str, *, consistent_read: bool = False, clients: Clients | None = None) -> Task:
    """Task: key (DynamoDB-typed, e.g. ``{"pk": {"S": "a"}}``) -> the item, or None if absent."""
    return _dual("dynamodb", "get_item", {"TableName": table, "ConsistentRead": consistent_read}, "Key",
                 _item, None, clients, "dynamodb_get_item")


def dynamodb_put_item(table: str, *, clients: Clients | None = None) -> Task:
    """Task: item (DynamoDB-typed) -> None, once written."""
    return _dual("dynamodb", "put_item", {"TableName": table}, "Item", _nothing, None, clients, "dynamodb_put_item")


def sqs_send_message(queue_url: str, *, clients: Clients | None = None) -> Task:
    """Task: message body (str) -> the MessageId."""
    return _dual("sqs", "send_message", {"QueueUrl": queue_url}, "MessageBody", _message_id, None, clients,
                 "sqs_send_message")
