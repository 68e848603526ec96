"""The event loop the asyncio strategy shares across calls, threads and warm invocations.

Lambda keeps the process between invocations, so a loop made per call would throw
away every connection pool bound to it; a loop kept per calling thread would leak one
loop (and its sockets) for every short-lived thread that ever called ``map``. One loop
runs instead, in its own daemon thread, started on first use; ``map`` from any thread
submits its coroutine there and waits. Resources bound to the loop register an async
closer that runs before the loop closes (at process exit, or when :func:`reset_loop`
replaces it).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Coroutine

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_closers: dict[int, list[Callable[[], Awaitable[None]]]] = {}
_atexit_registered = False


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared event loop, running in its own thread; started on first use."""
    global _loop, _thread, _atexit_registered
    loop = current()
    if loop is not None:
        return loop
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(target=_serve, args=(loop, started), name="fanout-asyncio", daemon=True)
            thread.start()
            started.wait()
            _loop, _thread = loop, thread
            if not _atexit_registered:
                atexit.register(close_all)
                _atexit_registered = True
        return _loop


def current() -> asyncio.AbstractEventLoop | None:
    """The shared loop if it is running now, without starting one (None: not started, or gone)."""
    loop, thread = _loop, _thread
    if loop is not None and thread is not None and thread.is_alive() and not loop.is_closed():
        return loop
    return None


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()


def submit(coro: Coroutine[Any, Any, Any]) -> Any:
    """Schedule ``coro`` on the shared loop from any other thread; returns a concurrent Future."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run(coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
    """Run ``coro`` on the shared loop from any other thread and wait for its result.

    Raises:
        TimeoutError: ``timeout`` seconds passed first (the coroutine is then cancelled,
            as soon as the loop is free to do it).
    """
    future = submit(coro)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


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


async def _wind_down(loop: asyncio.AbstractEventLoop) -> None:
    await run_closers(loop)
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks(loop) if t is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def reset_loop(timeout: float | None = None) -> None:
    """Close the shared loop (and what is bound to it); the next use starts a new one.

    Args:
        timeout: seconds to wait for the loop to wind down; if a blocking call holds the
            loop longer, it is left running (as a daemon thread) and not closed.
    """
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or loop.is_closed():
        return
    if thread is not None and thread.is_alive():
        if thread is threading.current_thread():
            raise RuntimeError("reset_loop() cannot be called from a coroutine on the loop it closes")
        try:
            asyncio.run_coroutine_threadsafe(_wind_down(loop), loop).result(timeout)
        except TimeoutError:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            return
    loop.close()


def close_all() -> None:
    """Close the shared loop at process exit (registered with atexit)."""
    reset_loop(timeout=10.0)


def _after_fork_in_child() -> None:
    # A forked child has the parent's loop object but not its thread: start afresh.
    global _lock, _loop, _thread
    _lock = threading.Lock()
    _loop = _thread = None
    _closers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
