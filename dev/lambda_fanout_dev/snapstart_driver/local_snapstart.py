"""Lambda's snap-start path under the local Runtime API, each restore a fork of the initialised process.

    AWS_LAMBDA_INITIALIZATION_TYPE=snap-start python -m local_snapstart HANDLER

Runs the runtime interface client as ``python -m awslambdaric HANDLER`` does, and its own
snap-start path: the init, the before-snapshot hooks, ``GET /runtime/restore/next``, the
after-restore hooks (an error posted to ``/runtime/restore/error`` as
``Runtime.AfterRestoreError``), then events. Only what Lambda does outside the process is
modelled here. Once ``/restore/next`` answers, this process is the snapshot: it waits for
restores (``GET /runtime/local/restore``, see :mod:`lambda_fanout_dev.runtime_api`),
and makes each by forking; the child goes on from ``/restore/next`` against the Runtime API
of its own environment, the address it was sent.

A fork is not quite a restore; the child undoes what a fork changes and a restore does not:

- ``random``'s state: Python reseeds it in a forked child, a restored copy keeps the snapshot's;
- multiprocessing's forkserver: a restored environment has its own copy of the server, a
  forked child would share the snapshot's (which it cannot wait for); it starts its own;
- the runtime client's native transport reads the Runtime API's address once, at import:
  the child's serves the same three calls (next event, response, error) over
  ``http.client`` at its own address (:class:`_Transport`).

Threads do not survive a fork (a restore keeps them): a thread the function started
during init is gone in the child, and must be started again where it is next needed.
The time each phase of hooks took is posted to ``/runtime/local/hooks``.

Standard library and the runtime client only: this file is on the function's path
after the runtime's packages, in a folder of its own, and only for a local run.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sys
import time

from awslambdaric import __main__ as runtime_main
from awslambdaric import lambda_runtime_client, lambda_runtime_hooks_runner

PREFIX = "/2018-06-01/runtime"
ENV_RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"


def _call(method: str, path: str, payload: dict | None = None) -> bytes:
    """One request to this environment's Runtime API; raises OSError unless it answers 200."""
    connection = http.client.HTTPConnection(os.environ[ENV_RUNTIME_API])
    try:
        body = None if payload is None else json.dumps(payload).encode()
        connection.request(method, PREFIX + path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise OSError(f"{method} {path}: HTTP {response.status}")
        return data
    finally:
        connection.close()


def _timed(phase: str, hooks):
    def run() -> None:
        start = time.perf_counter()
        try:
            hooks()
        finally:
            _call("POST", "/local/hooks", {"phase": phase, "ms": (time.perf_counter() - start) * 1000.0})

    return run


def _restores() -> str:
    """Wait for each restore and fork it; returns (in the child) the restored environment's address."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the restored copies are reaped as they end
    while True:
        try:
            address = json.loads(_call("GET", "/local/restore"))["address"]
        except OSError:  # the local runtime is stopping: so is the snapshot
            os._exit(0)
        state = random.getstate()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            random.setstate(state)
            _own_forkserver()
            return address
        _call("POST", "/local/restored", {"pid": pid})


def _own_forkserver() -> None:
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is not None:
        server = forkserver._forkserver
        server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None


class _Transport:
    """The runtime client's native calls (``runtime_client``), over http.client to this environment's API."""

    def _send(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
        connection = http.client.HTTPConnection(os.environ[ENV_RUNTIME_API])
        try:
            connection.request(method, PREFIX + path, body, headers or {})
            response = connection.getresponse()
            data = response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}")
            return data, dict(response.getheaders())
        finally:
            connection.close()

    def next(self) -> tuple[bytes, dict]:
        body, headers = self._send("GET", "/invocation/next")
        headers["Lambda-Runtime-Deadline-Ms"] = int(headers["Lambda-Runtime-Deadline-Ms"])  # as the native one
        return body, headers

    def post_invocation_result(self, invoke_id: str, result: bytes, content_type: str,
                               invocation_id: str | None = None) -> None:
        self._send("POST", f"/invocation/{invoke_id}/response", result, {"Content-Type": content_type})

    def post_error(self, invoke_id: str, error: str, xray_fault: str, invocation_id: str | None = None) -> None:
        kind = json.loads(error).get("errorType", "Unhandled")
        self._send("POST", f"/invocation/{invoke_id}/error", error.encode(),
                   {"Lambda-Runtime-Function-Error-Type": kind, "Content-Type": "application/json"})


def _restore_next(original):
    def restore_next(self) -> None:
        original(self)  # the snapshot: answered once the harness has broken what a freeze breaks
        address = _restores()
        os.environ[ENV_RUNTIME_API] = address
        self.lambda_runtime_address = address
        lambda_runtime_client.runtime_client = _Transport()

    return restore_next


def main() -> None:
    client = lambda_runtime_client.BaseLambdaRuntimeClient
    client.restore_next = _restore_next(client.restore_next)
    runner = lambda_runtime_hooks_runner
    runner.run_before_snapshot = _timed("before-snapshot", runner.run_before_snapshot)
    runner.run_after_restore = _timed("after-restore", runner.run_after_restore)
    runtime_main.main(sys.argv)


if __name__ == "__main__":
    main()
