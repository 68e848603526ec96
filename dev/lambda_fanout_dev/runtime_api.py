"""A local AWS Lambda Runtime API (version 2018-06-01) for one function process, on 127.0.0.1.

The runtime interface client (``python -m awslambdaric``) started with
``AWS_LAMBDA_RUNTIME_API=api.address`` asks this server for its next event, exactly as
it asks Lambda's:

    with RuntimeApi() as api:
        proc = subprocess.Popen([...], env={..., "AWS_LAMBDA_RUNTIME_API": api.address})
        result = api.invoke({"Records": [...]}, timeout_s=30, alive=lambda: proc.poll() is None)
        result.status, result.response, result.duration_ms

Endpoints served: ``GET /runtime/invocation/next`` (blocks until an event is queued; the
headers carry the request id, ``Lambda-Runtime-Deadline-Ms`` and the function ARN),
``POST /runtime/invocation/{id}/response``, ``POST /runtime/invocation/{id}/error`` and
``POST /runtime/init/error``. The server records when the function first asked for an
event (the end of its init) and, per invocation, when the event was handed over and when
its answer came back.

SnapStart (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``, see :mod:`.snapstart`):
``GET /runtime/restore/next`` marks the snapshot (init and the before-snapshot hooks are
over) and is answered once :meth:`RuntimeApi.resume` is called; ``POST
/runtime/restore/error`` records a failed restore as the runtime reports it
(``Runtime.AfterRestoreError``). Three paths outside Lambda's API serve the local model
of a restore (:mod:`.snapstart`'s driver, in the function's process): ``GET
/runtime/local/restore`` hands the snapshot the next restore to make, ``POST
/runtime/local/restored`` says which process it became, ``POST /runtime/local/hooks``
reports how long a phase of hooks took.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

LOOPBACK = "127.0.0.1"
PREFIX = "/2018-06-01/runtime"
#: How often a waiting invoke() checks that the function process is still alive.
POLL_S = 0.05


@dataclass
class Invocation:
    """One event handed to the function, and what came back.

    Attributes:
        request_id: the ``Lambda-Runtime-Aws-Request-Id`` sent with the event.
        deadline_ms: the ``Lambda-Runtime-Deadline-Ms`` sent (epoch milliseconds).
        status: ``"ok"`` (a response), ``"error"`` (the function raised), ``"timeout"``
            (no answer by the deadline), ``"init-error"`` or ``"exited"`` (the process ended first).
        response: the parsed response (``"ok"``) or error document (``"error"``).
        started, finished: ``time.monotonic()`` when the event was handed over and answered.
        answered_epoch_ms: wall-clock time of the answer, to compare with ``deadline_ms``.
    """

    request_id: str
    payload: bytes
    timeout_s: float
    deadline_ms: int = 0
    status: str = "pending"
    response: Any = None
    error_type: str | None = None
    started: float | None = None
    finished: float | None = None
    answered_epoch_ms: int | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def duration_ms(self) -> float | None:
        """From the event handed over to the answer received, in ms; None if unanswered."""
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started) * 1000.0

    def _answer(self, status: str, body: bytes, error_type: str | None = None) -> None:
        self.finished = time.monotonic()
        self.answered_epoch_ms = int(time.time() * 1000)
        self.status = status
        self.error_type = error_type
        try:
            self.response = json.loads(body) if body else None
        except ValueError:
            self.response = body.decode("utf-8", "replace")
        self.done.set()


class RuntimeApi:
    """The Runtime API for one function process (one execution environment).

    Args:
        function_name: used in the ARN sent with each event.
        region: likewise.
    """

    def __init__(self, *, function_name: str = "local-function", region: str = "us-east-1") -> None:
        self.function_arn = f"arn:aws:lambda:{region}:000000000000:function:{function_name}"
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._by_id: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.init_error: dict | None = None
        self.init_error_type: str | None = None
        #: time.monotonic() of the function's first request for an event (its init is over).
        self.ready_at: float | None = None
        self._init_event = threading.Event()
        #: Requests for an event now waiting here: the function is idle between invocations.
        self._parked = 0
        self._parked_changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # -- SnapStart
        #: time.monotonic() when the runtime asked /runtime/restore/next (the snapshot point).
        self.snapshot_at: float | None = None
        self._resumed = threading.Event()
        #: What the runtime posted to /runtime/restore/error, and its error type.
        self.restore_error: dict | None = None
        self.restore_error_type: str | None = None
        #: Milliseconds each phase of hooks took ("before-snapshot", "after-restore").
        self.hook_ms: dict[str, float] = {}
        self._restores: queue.Queue[str | None] = queue.Queue()
        self._restored: queue.Queue[int] = queue.Queue()

    # -- lifecycle ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_LAMBDA_RUNTIME_API`` for the function."""
        if self._server is None:
            raise RuntimeError("the Runtime API server is not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "RuntimeApi":
        api = self

        class Handler(_Handler):
            owner = api

        self._server = _Server((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._pending.put(None)  # releases a /next waiting for an event
        self._restores.put(None)  # and the snapshot waiting for a restore
        self._resumed.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> "RuntimeApi":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- driving the function ---------------------------------------------------------

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """Wait until the function asks for its first event, or for a snap-start init its
        snapshot (True), or reports an init or restore error, exits, or the time runs out (False)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self._init_event.wait(POLL_S):
                return self.init_error is None and self.restore_error is None
            if not alive():
                return False
        return False

    def resume(self) -> None:
        """Answer the runtime's ``/runtime/restore/next``: the snapshot is taken, restores may follow."""
        self._resumed.set()

    def order_restore(self, address: str, timeout_s: float) -> int | None:
        """Have the snapshot (parked after ``/restore/next``) restore into the environment at ``address``.

        Returns:
            The restored copy's process id, or None if the snapshot did not answer in time.
        """
        self._restores.put(address)
        try:
            return self._restored.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def wait_parked(self, timeout_s: float) -> bool:
        """Wait until the function is asking for its next event (idle between invocations)."""
        with self._parked_changed:
            return self._parked_changed.wait_for(lambda: self._parked > 0, timeout_s)

    def invoke(self, event: Any, timeout_s: float, *, alive: Callable[[], bool] = lambda: True) -> Invocation:
        """Hand ``event`` to the function and wait for its answer, at most ``timeout_s`` after
        the function picks the event up (Lambda's timeout, sent as the deadline header).

        Args:
            event: a JSON-serialisable event, or the raw bytes of one.
            timeout_s: the function's timeout in seconds.
            alive: returns False once the function's process has ended, so a crash ends
                the wait at once instead of at the timeout.

        Returns:
            The :class:`Invocation`; its ``status`` says how it ended.
        """
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        inv = Invocation(request_id=str(uuid.uuid4()), payload=payload, timeout_s=timeout_s)
        with self._lock:
            self._by_id[inv.request_id] = inv
        self._pending.put(inv)
        while not inv.done.wait(POLL_S):
            if self.init_error is not None:
                inv.status = "init-error"
                inv.response = self.init_error
                break
            if self.restore_error is not None:
                inv.status = "restore-error"
                inv.response = self.restore_error
                break
            if not alive():
                inv.status = "exited"
                break
            if inv.started is not None and time.monotonic() > inv.started + timeout_s:
                inv.status = "timeout"
                break
        with self._lock:
            self._by_id.pop(inv.request_id, None)
        return inv

    # -- called by the request handler ------------------------------------------------------

    def _next(self) -> Invocation | None:
        if self.ready_at is None:
            self.ready_at = time.monotonic()
            self._init_event.set()
        with self._parked_changed:
            self._parked += 1
            self._parked_changed.notify_all()
        try:
            inv = self._pending.get()
        finally:
            with self._parked_changed:
                self._parked -= 1
        if inv is None:
            return None
        inv.started = time.monotonic()
        inv.deadline_ms = int(time.time() * 1000 + inv.timeout_s * 1000)
        return inv

    def _answer(self, request_id: str, status: str, body: bytes, error_type: str | None) -> bool:
        with self._lock:
            inv = self._by_id.get(request_id)
        if inv is None or inv.done.is_set():
            return False
        inv._answer(status, body, error_type)
        return True

    def _init_failed(self, body: bytes, error_type: str | None) -> None:
        self.init_error = _error_document(body)
        self.init_error_type = error_type
        self._init_event.set()

    def _snapshot(self) -> None:
        # The runtime asked /restore/next: its init and before-snapshot hooks are over.
        self.snapshot_at = time.monotonic()
        self._init_event.set()
        self._resumed.wait()

    def _restore_failed(self, body: bytes, error_type: str | None) -> None:
        self.restore_error = _error_document(body)
        self.restore_error_type = error_type
        self._init_event.set()

    def _next_restore(self) -> str | None:
        return self._restores.get()

    def _was_restored(self, pid: int) -> None:
        self._restored.put(pid)

    def _hooks_took(self, phase: str, ms: float) -> None:
        self.hook_ms[phase] = ms


def _error_document(body: bytes) -> dict:
    try:
        return json.loads(body)
    except ValueError:
        return {"errorMessage": body.decode("utf-8", "replace")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the function's process was stopped mid-request: nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: RuntimeApi
    # The runtime client keeps its connection open across requests (HTTP/1.1); without
    # TCP_NODELAY a reply's body waits on the client's delayed ACK (~40 ms a request).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the function's own logs are what the caller shows

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == f"{PREFIX}/restore/next":
            self.owner._snapshot()
            self._reply(HTTPStatus.OK, b"")
            return
        if self.path == f"{PREFIX}/local/restore":
            address = self.owner._next_restore()
            if address is None:
                self._reply(HTTPStatus.GONE, b'{"errorMessage":"the local runtime is stopping"}')
            else:
                self._reply(HTTPStatus.OK, json.dumps({"address": address}).encode())
            return
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND, b'{"errorMessage":"unknown path"}')
            return
        inv = self.owner._next()
        if inv is None:  # the server is stopping
            self._reply(HTTPStatus.GONE, b'{"errorMessage":"the local runtime is stopping"}')
            return
        self._reply(HTTPStatus.OK, inv.payload, {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.owner.function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
        })

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._body()
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        parts = self.path[len(PREFIX):].strip("/").split("/") if self.path.startswith(PREFIX) else []
        if parts == ["init", "error"]:
            self.owner._init_failed(body, error_type)
            self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
        elif parts == ["restore", "error"]:
            self.owner._restore_failed(body, error_type)
            self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
        elif parts == ["local", "restored"]:
            self.owner._was_restored(int(json.loads(body)["pid"]))
            self._reply(HTTPStatus.OK, b'{"status":"OK"}')
        elif parts == ["local", "hooks"]:
            report = json.loads(body)
            self.owner._hooks_took(str(report["phase"]), float(report["ms"]))
            self._reply(HTTPStatus.OK, b'{"status":"OK"}')
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            status = "ok" if parts[2] == "response" else "error"
            if self.owner._answer(parts[1], status, body, error_type):
                self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
            else:
                self._reply(HTTPStatus.BAD_REQUEST,
                            b'{"errorMessage":"unknown or already answered request id"}')
        else:
            self._reply(HTTPStatus.NOT_FOUND, b'{"errorMessage":"unknown path"}')
