"""Worker processes joined by pipes, started on first use and kept across warm invocations.

Lambda has no ``/dev/shm``, so ``multiprocessing.Pool``, ``Queue``, ``Manager`` and
every lock or semaphore fail there with ``OSError``. This package uses ``Process``
and ``Pipe``, and files mapped from ``memfd_create``: each worker owns one duplex
pipe and serves one request (a chunk of items) at a time. It writes each item's
result to its arena (a mapped file of its own) as the item finishes, with a count of
the items it has begun, and checks its call's byte on the pool's board before each
item: so a request can be stopped between items (a failure elsewhere, a cancel), and
a worker that dies or is killed mid-request leaves what it finished and says which
items never started.

Workers are started with ``forkserver`` (see ``START_METHOD``): a single-threaded
server, started once as a fresh interpreter, forks each worker. A fork of the
caller itself would copy whatever locks its other threads held at that moment (a
boto3 client's, the asyncio loop thread's, logging's) into a child that can never
release them; the server has no such threads.

One module per concern:

- ``cpus``: how many CPUs the function can use (cgroup quota, affinity, Lambda's
  memory share, ``MB_PER_VCPU``).
- ``pickling``: what crosses by pickling (the task, the items, a failure with the
  worker's traceback) and the errors a request ends with.
- ``wire``: the layout of the pipe's replies, the board and each worker's arena.
- ``worker``: the worker process's loop.
- ``pool``: the caller's end: :class:`Worker`, :class:`ProcessPool`, :class:`Lease`.

This module itself stays light: a module that only registers a hook (``aws``)
imports it without loading the others; the names below load their module on first use.
"""

from __future__ import annotations

from importlib import import_module

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

_environment_hooks: list[Callable[[], None]] = []


def on_new_environment(hook: Callable[[], None]) -> None:
    """Have every worker process call ``hook()`` after it installs a caller's environment.

    For a module that builds things from the environment and caches them (``aws``'s
    clients): it registers at its import, so in a worker that imported it (by loading
    a task that uses it) what was built from the old environment is dropped.
    """
    if hook not in _environment_hooks:
        _environment_hooks.append(hook)


def environment_hooks() -> tuple[Callable[[], None], ...]:
    """The hooks registered with :func:`on_new_environment`, in order."""
    return tuple(_environment_hooks)


#: name -> the module of this package that defines it, loaded on first use
_HOMES = {
    "MB_PER_VCPU": "cpus", "cgroup_cpus": "cpus", "vcpus": "cpus",
    "Killed": "pickling", "WorkerError": "pickling", "pickled_task": "pickling",
    "ARENA_SIZE": "wire", "BOARD_SLOTS": "wire",
    "CHUNK_TARGET_S": "pool", "MAX_CHUNK": "pool", "START_METHOD": "pool", "START_METHODS": "pool",
    "ChunkSizer": "pool", "Lease": "pool", "ProcessPool": "pool", "Reply": "pool", "Worker": "pool",
    "get_pool": "pool", "shutdown": "pool",
}

__all__ = ["environment_hooks", "on_new_environment", *_HOMES]


_MODULES = frozenset({"cpus", "pickling", "wire", "worker", "pool"})


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(import_module(f"{__name__}.{home}"), name)
    return value
