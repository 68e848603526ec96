"""SnapStart run locally: one snapshot of an initialised function, restored into many environments.

    api = RuntimeApi().start()
    proc = subprocess.Popen(command(python, "app.handler"), env=environ(env, api.address), ...)
    assert api.wait_ready(10, alive)          # init and the before-snapshot hooks are over
    endpoint.freeze()                         # what a snapshot's sockets meet after a restore
    api.resume()                              # the runtime's /restore/next answers
    first, second = restore(api), restore(api)
    first.invoke({...}), second.invoke({...})

The function runs under the runtime interface client's own snap-start path
(``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``), through the driver in
``snapstart_driver/local_snapstart.py``: each restore is a fork of the initialised process,
which then serves a Runtime API of its own (:class:`Restored`). Between the snapshot and
the restores, the caller breaks what a freeze breaks; with the embedded endpoint,
``LocalEndpoint.freeze()`` leaves every connection open at the snapshot looking alive and
resets it at its next request, as a server that has long forgotten it does.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from .runtime_api import Invocation, RuntimeApi

#: The folder holding the driver module, put last on the function's path for a snap-start run.
DRIVER_DIR = str(Path(__file__).resolve().parent / "snapstart_driver")
DRIVER_MODULE = "local_snapstart"
#: Lambda's limit on the after-restore hooks (and on init).
HOOKS_TIMEOUT_S = 10.0


def command(interpreter: str, handler: str, *flags: str) -> list[str]:
    """The function's command line for a snap-start run (in place of ``-m awslambdaric``)."""
    return [interpreter, *flags, "-m", DRIVER_MODULE, handler]


def environ(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a snap-start run: Lambda's initialisation type, and the driver on the path."""
    path = env.get("PYTHONPATH")
    return {**env, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
            "PYTHONPATH": os.pathsep.join(p for p in (path, DRIVER_DIR) if p)}


class Restored:
    """One environment restored from the snapshot: a forked copy of the function and its Runtime API.

    Attributes:
        api: this environment's Runtime API (its ``restore_error`` says if the restore failed).
        pid: the copy's process id.
        restore_ms: from the restore ordered to the copy's first request for an event
            (the fork and the after-restore hooks); None until it asks.
    """

    def __init__(self, api: RuntimeApi, pid: int, ordered_at: float) -> None:
        self.api = api
        self.pid = pid
        self.ordered_at = ordered_at

    def alive(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def wait_ready(self, timeout_s: float = HOOKS_TIMEOUT_S) -> bool:
        """True once the copy asks for its first event; False if its restore failed or it exited."""
        return self.api.wait_ready(timeout_s, self.alive)

    @property
    def restore_ms(self) -> float | None:
        if self.api.ready_at is None:
            return None
        return (self.api.ready_at - self.ordered_at) * 1000.0

    def invoke(self, event: Any, timeout_s: float = 30.0) -> Invocation:
        return self.api.invoke(event, timeout_s, alive=self.alive)

    def stop(self) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.api.stop()

    def __enter__(self) -> "Restored":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def restore(snapshot: RuntimeApi, *, function_name: str = "local-function",
            timeout_s: float = HOOKS_TIMEOUT_S) -> Restored:
    """Restore the snapshot parked on ``snapshot`` (after :meth:`RuntimeApi.resume`) into a new environment.

    Raises:
        RuntimeError: the snapshot did not make the copy within ``timeout_s``.
    """
    api = RuntimeApi(function_name=function_name).start()
    ordered_at = time.monotonic()
    pid = snapshot.order_restore(api.address, timeout_s)
    if pid is None:
        api.stop()
        raise RuntimeError(f"the snapshot did not restore within {timeout_s:g} s")
    return Restored(api, pid, ordered_at)
