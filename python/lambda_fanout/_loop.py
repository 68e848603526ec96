"""The event loop the asyncio strategy reuses across warm invocations.

Lambda keeps the process between invocations, so a loop made per call would throw
away every connection pool bound to it. One loop per thread is kept open instead;
resources bound to it register an async closer that runs before the loop closes
(at process exit, or when :func:`reset_loop` replaces it).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Awaitable, Callable

_local = threading.local()
_loops: list[asyncio.AbstractEventLoop] = []
_closers: dict[int, list[Callable[[], Awaitable[None]]]] = {}
_lock = threading.Lock()


def get_loop() -> asyncio.AbstractEventLoop:
    """This thread's reusable event loop, created on first use."""
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
        with _lock:
            if not _loops:
                atexit.register(close_all)
            _loops.append(loop)
    return loop


def on_close(loop: asyncio.AbstractEventLoop, closer: Callable[[], Awaitable[None]]) -> None:
    """Run ``await closer()`` on ``loop`` before it is closed."""
    with _lock:
        _closers.setdefault(id(loop), []).append(closer)


async def run_closers(loop: asyncio.AbstractEventLoop) -> None:
    """Await every closer registered for ``loop`` (from a coroutine running on it), newest first."""
    with _lock:
        closers = _closers.pop(id(loop), [])
    for closer in reversed(closers):
        await closer()


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop's closers, cancel what is left on it, and close it."""
    if loop.is_closed():
        return
    with _lock:
        if loop in _loops:
            _loops.remove(loop)
    if loop.is_running():
        return  # cannot be closed from inside itself; left to process exit
    loop.run_until_complete(run_closers(loop))
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def reset_loop() -> None:
    """Close this thread's loop (and what is bound to it); the next use makes a new one."""
    loop = getattr(_local, "loop", None)
    _local.loop = None
    if loop is not None:
        close_loop(loop)


def close_all() -> None:
    """Close every loop this module made (registered with atexit)."""
    for loop in list(_loops):
        close_loop(loop)
