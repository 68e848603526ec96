"""Lambda SnapStart: the library's own hooks around a snapshot, registered where the runtime runs them.

With SnapStart, Lambda runs a function's init once, snapshots the execution environment
and resumes that snapshot in many environments. The runtime calls the functions given to
``snapshot_restore_py``'s ``register_before_snapshot`` before the snapshot is taken and
those given to ``register_after_restore`` in each restored environment, before its first
event. Whatever the library keeps across invocations is in the snapshot, so each piece of
that state registers its own reset here, through :func:`register`, when the state is
first created: a function that never makes it pays nothing.

What belongs here: the registration itself, and resets of state that no module of the
library owns (``random``'s, which botocore's retry jitter draws). Each reset of the
library's own state lives next to that state: the ``aws`` client pairs' connection pools,
``auto``'s latency floors (``_limiter``), the ``processes`` workers (``_procpool``).

Hooks are registered only in an environment Lambda initialises for a snapshot
(``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``, the variable the runtime itself reads)
where ``snapshot_restore_py`` imports (it ships in Lambda's managed Python runtimes):
anywhere else :func:`register` costs one environment lookup and does nothing. The first
registration also registers :func:`reseed_random`, first of the after-restore hooks.
``import lambda_fanout`` does not load this module.
"""

from __future__ import annotations

import os
import threading

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

#: The variable Lambda's runtime reads to run the snapshot path, and its value there.
ENV_INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
SNAP_START = "snap-start"

#: What :func:`register` found out about the runtime (looked up on its first call).
UNKNOWN, SUPPORTED, UNSUPPORTED = "unknown", "supported", "unsupported"

_lock = threading.Lock()
_state = UNKNOWN
_runtime: Any = None  # the snapshot_restore_py module, once SUPPORTED
_registered: set[tuple] = set()


def _hooks() -> Any:
    """snapshot_restore_py in a snap-start environment, else None (looked up once, under ``_lock``)."""
    global _state, _runtime
    if _state == UNKNOWN:
        runtime = None
        if os.environ.get(ENV_INITIALIZATION_TYPE) == SNAP_START:
            try:
                import snapshot_restore_py as runtime
            except ImportError:
                runtime = None
        if runtime is None:
            _state = UNSUPPORTED
        else:
            _runtime, _state = runtime, SUPPORTED
            runtime.register_after_restore(reseed_random)
    return _runtime


def register(*, before: Callable[[], None] | None = None, after: Callable[[], None] | None = None) -> bool:
    """Have the runtime call ``before()`` before the snapshot and ``after()`` after each restore.

    Registering the same pair again does nothing, so a caller may register each time its
    state is first made (after a reset, say). The runtime calls the before-snapshot hooks
    newest first and the after-restore hooks oldest first; an exception from one fails
    the snapshot, or the restore (``Runtime.AfterRestoreError``).

    Returns:
        True where the hooks were registered (or already were); False outside a snap-start
        environment or where ``snapshot_restore_py`` cannot be imported.
    """
    key = (before, after)
    if _state == UNSUPPORTED:
        return False
    with _lock:
        runtime = _hooks()
        if runtime is None:
            return False
        if key not in _registered:
            _registered.add(key)
            if before is not None:
                runtime.register_before_snapshot(before)
            if after is not None:
                runtime.register_after_restore(after)
    return True


def reseed_random() -> None:
    """Reseed ``random`` from ``os.urandom``: every restored copy starts with the snapshot's state.

    botocore's retry jitter draws ``random.random``; copies with the same state would
    retry in lock-step.
    """
    import random

    random.seed(os.urandom(32))
