"""Worker processes joined by pipes, started on first use and kept across warm invocations.

Lambda has no ``/dev/shm``, so ``multiprocessing.Pool``, ``Queue``, ``Manager`` and
every lock or semaphore fail there with ``OSError``. This module uses ``Process`` and
``Pipe``, and files mapped from ``memfd_create``: each worker owns one duplex pipe and
serves one request (a chunk of items) at a time. It writes each item's result to its
arena (a mapped file of its own) as the item finishes, with a count of the items it
has begun, and checks its call's byte on the pool's board before each item: so a
request can be stopped between items (a failure elsewhere, a cancel), and a worker
that dies or is killed mid-request leaves what it finished and says which items
never started.

Workers are started with ``forkserver`` (see ``START_METHOD``): a single-threaded
server, started once as a fresh interpreter, forks each worker. A fork of the
caller itself would copy whatever locks its other threads held at that moment
(a boto3 client's, the asyncio loop thread's, logging's) into a child that can
never release them; the server has no such threads.
"""

from __future__ import annotations

import marshal
import os
import pickle
import struct
import sys
import threading
import time
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from . import _snapstart
from ._errors import ConfigError

#: Measured in tests/benchmarks/test_processes_bench.py and explained in the README:
#: fork is by far the cheapest but copies locks held by the caller's other threads
#: into the child; forkserver and spawn are both safe and cost about the same (the
#: worker importing the task's module dominates), forkserver sparing an interpreter
#: start per worker and per replacement.
START_METHOD = "forkserver"
START_METHODS = ("forkserver", "spawn", "fork")

#: Lambda's CPU share: one vCPU per 1,769 MB of memory.
MB_PER_VCPU = 1769

#: A chunk of items aims at this much work in the worker: long enough that the
#: ~0.1 ms round trip (pickling, two pipe writes, a thread wake-up) is a few percent
#: of it, short enough that the last chunks still spread over every worker.
CHUNK_TARGET_S = 0.005
MAX_CHUNK = 256

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_READY = b"ready"


# -- how many CPUs ----------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_paths() -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process, from /proc/self/cgroup."""
    v2 = v1 = None
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(path: str):
    # The effective quota is the smallest one on the way up to the root.
    parts = path.strip("/").split("/") if path.strip("/") else []
    for depth in range(len(parts), -1, -1):
        yield "/".join(parts[:depth])


def cgroup_cpus(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, v1 cfs quota); None if unlimited."""
    v2, v1 = _cgroup_paths()
    limits = []
    if v2 is not None:
        for base in (root, os.path.join(root, "unified")):
            for rel in _ancestors(v2):
                text = _read(os.path.join(base, rel, "cpu.max"))
                if text and not text.startswith("max"):
                    quota, period = text.split()[:2]
                    limits.append(int(quota) / int(period))
    if v1 is not None:
        for base in (os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct")):
            for rel in _ancestors(v1):
                quota = _read(os.path.join(base, rel, "cpu.cfs_quota_us"))
                period = _read(os.path.join(base, rel, "cpu.cfs_period_us"))
                if quota and period and int(quota) > 0:
                    limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def vcpus(memory_mb: int | None = None, *, cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this function can really use, as a whole number of workers (at least 1).

    The cgroup CPU quota where one is set (a fraction rounds up: 1.7 CPUs keeps two
    workers busy), else the CPUs this process may run on (``os.sched_getaffinity``).
    Inside Lambda the affinity mask shows the host's CPUs, not the function's share,
    so ``memory_mb`` (AWS_LAMBDA_FUNCTION_MEMORY_SIZE) caps it at memory / 1,769 rounded up.

    Args:
        memory_mb: the function's memory size, or None outside Lambda.
        cgroup_root: where the cgroup filesystems are mounted.
    """
    import math

    quota = cgroup_cpus(cgroup_root)
    count = math.ceil(quota) if quota is not None else len(os.sched_getaffinity(0))
    if memory_mb:
        count = min(count, math.ceil(memory_mb / MB_PER_VCPU))
    return max(1, count)


# -- what can cross a pipe ----------------------------------------------------------------

def pickled_task(fn: Callable[[Any], Any], strategy: str) -> bytes:
    """``fn`` pickled for the workers, checked to load back by reference.

    Raises:
        ConfigError: ``fn`` cannot be pickled (a lambda, a function defined inside
            another, a bound method of an object that cannot be pickled), saying what to do.
    """
    try:
        data = pickle.dumps(fn, _PROTOCOL)
        pickle.loads(data)
    except Exception as exc:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise ConfigError(
            f"strategy {strategy!r} sends the task to worker processes by pickling it, but task "
            f"{name!r} cannot be pickled ({type(exc).__name__}: {exc}). Define the task as a "
            "function at module level (a lambda or a function nested in another is pickled by "
            "name and cannot be found), pass fixed arguments with functools.partial of such a "
            "function, or use FANOUT_STRATEGY=threads. Nothing was run."
        ) from exc
    return data


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return self.args[0]


def _with_traceback(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = _RemoteTraceback(tb)
    return exc


def _text(exc: BaseException) -> str:
    # str() of a task's exception runs the task's code: it may raise too.
    try:
        return f"{type(exc).__qualname__}: {exc}"
    except Exception as inner:
        return f"{type(exc).__qualname__} (whose str() raised {type(inner).__name__})"


class _Portable:
    """An exception from a worker, with the worker's traceback as its ``__cause__`` in the caller."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException) -> None:
        import traceback

        self.exc = exc
        try:
            self.tb = '\n"""\n' + "".join(traceback.format_exception(exc)) + '"""'
        except Exception:
            self.tb = f"\n(the worker's traceback could not be formatted: {_text(exc)})"

    def __reduce__(self):
        return _with_traceback, (self.exc, self.tb)


class WorkerError(RuntimeError):
    """A worker could not run a request: it exited mid-request, or could not load it.

    Attributes:
        started: how many items of the request the worker had begun.
        results: ``(ok, value)`` of the items it finished before, in order.
        exited: True when the process exited; False when it is alive but could not
            load the task (every item of the request would fail the same way).
    """

    def __init__(self, message: str, started: int = 0, results: list | None = None, *, exited: bool = True) -> None:
        super().__init__(message)
        self.started = started
        self.results = [] if results is None else results
        self.exited = exited


class Killed(Exception):
    """The worker was killed (the deadline margin passed) while running a request.

    Attributes:
        started: how many items of the request it had begun; the rest never started.
        results: ``(ok, value)`` of the items it finished before, in order.
    """

    def __init__(self, started: int, results: list | None = None) -> None:
        super().__init__("the worker process was still running at the deadline margin and was killed")
        self.started = started
        self.results = [] if results is None else results


def _portable(exc: BaseException) -> _Portable:
    # An exception that does not survive a round trip (a required argument its
    # __init__ does not pass to super()) would fail its frame in the caller; send its text.
    try:
        pickle.loads(pickle.dumps(exc, _PROTOCOL))
    except Exception:
        exc = WorkerError(f"{_text(exc)} (the exception could not be pickled)", exited=False)
    return _Portable(exc)


class _Unsendable:
    """Stands in a request for an item that could not be pickled: the worker fails it alone."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _one_by_one(items: list) -> list:
    # Each item pickled on its own, so that one that cannot be pickled here, or loaded
    # there, fails alone.
    packed = []
    for item in items:
        try:
            packed.append(pickle.dumps(item, _PROTOCOL))
        except Exception as exc:
            packed.append(_Unsendable(
                f"the item (a {type(item).__name__}) cannot be pickled to send to a worker process "
                f"({type(exc).__name__}: {exc}); pass plain data as items"))
    return packed


def _unpack(item: Any) -> Any:
    if isinstance(item, _Unsendable):
        raise WorkerError(item.message, exited=False)
    try:
        return pickle.loads(item)
    except Exception as exc:
        raise WorkerError(
            f"the item could not be unpickled in the worker process ({_text(exc)}); pass plain data as items",
            exited=False) from None


# -- shared memory ------------------------------------------------------------------------
# Two small memory-mapped files, neither from /dev/shm (Lambda has none): a board of
# one byte per call, set to stop every worker of that call before its next item (the
# first failure under errors="raise", a cancelled amap), and per worker an arena where
# it writes each finished item's result as it finishes, with how many items it has
# begun. Results land there without a system call per item, and outlive the worker:
# a worker that dies or is killed mid-request leaves the results it had finished.

BOARD_SLOTS = 4096
ARENA_SIZE = 1 << 20
# Arena words (int64): items begun in this request, end of the frames written, and the
# request position of the arena's first frame (earlier frames went down the pipe).
_STARTED, _WRITTEN, _FIRST = 0, 1, 2
_HEAD = 32  # frames start here
# A frame: the body's length and kind, then the body: a value marshalled (plain data,
# about half the cost of pickling it), a value pickled, or a failure pickled.
_FRAME = struct.Struct("<IB")
_MARSHALLED, _PICKLED, _FAILED = 0, 1, 2
#: Up to this many bytes of results, the end-of-request reply repeats the arena's
#: results as one pickled list: the caller loads it in one call (about a tenth of the
#: time of loading each frame), reading the frames only if it fails to load.
_REPLY_LIST = 1 << 16
_ELAPSED = struct.Struct("<d")

# Replies, by first byte: frames spilled from a full arena, the end of a request, the
# task (or environment) not loadable, the items not loadable (sent again one by one).
_FRAMES, _END, _BAD_TASK, _BAD_ITEMS = b"F"[0], b"E"[0], b"T"[0], b"I"[0]


def _shared_memory(size: int) -> tuple[int, Any]:
    """(fd, writable shared mapping) of a new zeroed file of ``size`` bytes, in memory where possible."""
    import mmap

    try:
        fd = os.memfd_create("lambda-fanout", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (not Linux, an old kernel): an unlinked temporary file
        import tempfile

        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


class _Fd:
    """A file descriptor given to a worker process as it starts (duplicated into it)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction

        return _inherit_fd, (reduction.DupFd(self.fd),)


def _inherit_fd(dup: Any) -> _Fd:
    return _Fd(dup.detach())


def _failure(exc: BaseException) -> tuple[tuple, bytes]:
    # (the failure as the caller gets it, its exception pickled)
    error: Any = _portable(exc)
    try:
        return (False, error), pickle.dumps(error, _PROTOCOL)
    except Exception as again:  # the traceback or the text itself: never lose the item
        error = WorkerError(
            f"{_text(exc)}; it could not be sent back from the worker process ({_text(again)})", exited=False)
        return (False, error), pickle.dumps(error, _PROTOCOL)


# -- the worker side ----------------------------------------------------------------------

# The types marshal writes back as themselves. It also takes any buffer (a numpy array,
# array.array, bytearray, a bytes subclass) and reads it back as plain bytes, so a value
# is marshalled only when it and, one level down, its elements are exactly these types;
# anything else is pickled, which keeps the type.
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is list or kind is tuple:
        return all(type(v) in _SCALARS for v in value)
    if kind is dict:
        return all(type(k) in _SCALARS and type(v) in _SCALARS for k, v in value.items())
    return False


def _serve(conn, board_fd: _Fd, arena_fd: _Fd) -> None:
    """A worker's life: load the task when it changes, run each request's items, reply.

    A request is ``((task or None, environment or None, call slot, deadline, stop on
    failure, one by one), items)``. Before each item the worker checks the call's
    board slot and the deadline (a monotonic time: the clock is the caller's), counts
    the item begun in its arena, runs it and writes the result there.
    """
    import mmap
    import signal

    # Ctrl-C reaches the whole process group; the caller decides what it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    board = mmap.mmap(board_fd.fd, BOARD_SLOTS)
    arena = mmap.mmap(arena_fd.fd, ARENA_SIZE)
    os.close(board_fd.fd)
    os.close(arena_fd.fd)
    words = memoryview(arena)[:_HEAD].cast("q")
    try:
        conn.send_bytes(_READY)
    except OSError:
        return  # discarded before it was ready
    fn = last = None
    loads = pickle.loads
    dumps = pickle.dumps
    protocol = _PROTOCOL
    clock = time.perf_counter
    now = time.monotonic
    mdumps = marshal.dumps
    put_header = _FRAME.pack_into
    header = _FRAME.size
    limit = ARENA_SIZE - header
    begun_word, written_word, marshalled = _STARTED, _WRITTEN, _MARSHALLED  # locals: the per-item path
    nothing = _Unsendable  # a sentinel no task returns
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the caller closed the pipe or exited
        try:
            (task, env, slot, until, stop_on_failure, each), items = loads(request)
        except Exception as exc:
            conn.send_bytes(bytes((_BAD_ITEMS,)) + _failure(exc)[1])
            continue
        try:
            if env is not None:
                # The caller's environment at this call (a forkserver child starts with the
                # server's): AWS_* settings, the handler's own variables. What was built
                # from the old one goes: cached AWS clients, and the task (loaded afresh).
                os.environ.clear()
                os.environ.update(env)
                aws = sys.modules.get("lambda_fanout.aws")
                if aws is not None:
                    aws.reset_clients()
                task = task or last
            if task is not None:
                fn = None
                fn = loads(task)
                last = task
        except Exception as exc:
            conn.send_bytes(bytes((_BAD_TASK,)) + _failure(exc)[1])
            continue
        started = clock()
        begun = 0
        pos = _HEAD
        kept = []  # what the arena holds, sent again as one list at the end (see _REPLY_LIST)
        keep = kept.append
        for item in items:
            if board[slot] or (until is not None and now() >= until):
                break  # the call stopped (a failure, a cancel) or its deadline passed
            begun += 1
            words[begun_word] = begun
            value = nothing
            try:
                value = fn(_unpack(item) if each else item)
                if _plain(value):
                    body, kind = mdumps(value), marshalled
                else:
                    body, kind = dumps(value, protocol), _PICKLED
                record = (True, value)
            except BaseException as exc:
                # errors="raise": nothing starts after a failure; a BaseException propagates
                # in the caller. Either way no item of this call starts after it, in any
                # worker: the board is set first, before the report is built.
                halt = stop_on_failure or not isinstance(exc, Exception)
                if halt and slot:
                    board[slot] = 1
                if value is not nothing:  # the task returned, its value did not pickle
                    exc = WorkerError(
                        f"the task returned a {type(value).__name__}, which cannot be pickled back from the "
                        f"worker process ({_text(exc)}); return plain data", exited=False)
                record, body = _failure(exc)
                kind = _FAILED
            else:
                halt = False
            size = len(body)
            if pos + size <= limit:
                put_header(arena, pos, size, kind)
                pos += header
                arena[pos:pos + size] = body
                pos += size
                words[written_word] = pos
                keep(record)
            else:
                pos = _spill(conn, arena, words, pos, begun - 1, _FRAME.pack(size, kind) + body)
                kept = [record] if pos > _HEAD else []
                keep = kept.append
            if halt:
                break
        end = bytes((_END,)) + _ELAPSED.pack(clock() - started)
        if pos - _HEAD <= _REPLY_LIST:
            try:
                end += dumps(kept, protocol)
            except Exception:
                pass  # the caller reads the arena's frames instead
        conn.send_bytes(end)


def _spill(conn, arena, words, pos: int, position: int, frame: bytes) -> int:
    # The arena is full: what it holds goes down the pipe (the caller reads it before
    # the end of the request), then it starts over. A frame larger than the arena goes
    # down the pipe itself. The written mark drops before the first position moves: a
    # worker killed between the two leaves an empty arena, never frames misnumbered.
    if pos > _HEAD:
        conn.send_bytes(bytes((_FRAMES,)) + arena[_HEAD:pos])
        words[_WRITTEN] = pos = _HEAD
        words[_FIRST] = position
    end = pos + len(frame)
    if end > ARENA_SIZE:
        conn.send_bytes(bytes((_FRAMES,)) + frame)
        words[_FIRST] = position + 1
        return pos
    arena[pos:end] = frame
    words[_WRITTEN] = end
    return end


def _frames(data: bytes, start: int, first: int, results: list) -> None:
    """Append to ``results`` the frames of ``data`` from ``start`` on, numbered from ``first``."""
    view = memoryview(data)
    unpack = _FRAME.unpack_from
    pos, end = start, len(data)
    while pos < end:
        size, kind = unpack(view, pos)
        pos += _FRAME.size + size
        if first == len(results):  # frames already read from a spill are skipped
            body = view[pos - size:pos]
            try:
                results.append((True, marshal.loads(body)) if kind == _MARSHALLED else
                               (kind == _PICKLED, pickle.loads(body)))
            except Exception as exc:
                results.append((False, WorkerError(
                    f"the task's result could not be unpickled in the caller ({_text(exc)}); return plain data",
                    exited=False)))
        first += 1


# -- the caller side ----------------------------------------------------------------------

#: After killing a worker, how long at most to wait for its pipe to close: SIGKILL
#: ends a process in microseconds, so this is only a bound for a stuck kernel.
_DEATH_S = 0.5


class Worker:
    """One worker process, the caller's end of its pipe and its arena; used by one thread at a time."""

    __slots__ = ("process", "conn", "arena", "words", "task", "ready", "started", "startup_ms", "interrupted",
                 "busy", "loading", "env", "sent")

    def __init__(self, ctx: Any, board_fd: int) -> None:
        self.started = time.perf_counter()
        here, there = ctx.Pipe(duplex=True)
        arena_fd, self.arena = _shared_memory(ARENA_SIZE)
        self.words = memoryview(self.arena)[:_HEAD].cast("q")
        self.process = ctx.Process(target=_serve, args=(there, _Fd(board_fd), _Fd(arena_fd)), name="fanout-worker",
                                   daemon=True)
        try:
            self.process.start()
        finally:
            there.close()
            os.close(arena_fd)  # the mapping keeps the file
        self.conn = here
        self.task: bytes | None = None
        self.ready = False
        self.startup_ms: float | None = None
        self.interrupted = False
        self.busy = False
        self.loading = False
        self.env: dict | None = None
        #: what the caller sent with the latest request (see :meth:`unstarted`)
        self.sent: list | None = None

    def preload(self, task: bytes, env: dict | None) -> None:
        """Have the worker import ``task`` now, in the background; its reply is read by the next call."""
        self.conn.send_bytes(pickle.dumps(((task, env, 0, None, False, False), []), _PROTOCOL))
        self.task = task
        self.env = env
        self.loading = True

    def call(
        self, task: bytes, items: list, timeout: float | None = None, *, stop_on_failure: bool = False,
        env: dict | None = None, slot: int = 0, sent: list | None = None,
    ) -> tuple[list, float]:
        """Run ``task`` on ``items`` in this worker: ``([(ok, value), ...], seconds in the worker)``.

        A value with ``ok`` False is the exception the task raised, with the worker's
        traceback as its ``__cause__``, or a :class:`WorkerError` for an item or result
        that could not be pickled or unpickled. After a BaseException (or, with
        ``stop_on_failure``, any failure), once the call's board ``slot`` is set, or
        past the timeout, no further item starts and the rest of ``items`` gets no entry.

        Args:
            timeout: seconds for the whole call, None for none; past it no item starts
                in the worker, and a worker still running is killed.
            env: the environment to run in (sent only when it differs from the last one), or None.
            slot: the call's board slot (:meth:`ProcessPool.take_slot`); 0 for none.
            sent: kept while the call runs, for :meth:`unstarted` (the caller's names for ``items``).

        Raises:
            Killed: the timeout passed, or :meth:`interrupt` was called, while it ran.
            WorkerError: the worker exited mid-call, or could not load the task.
            Both carry the results of the items finished before.
        """
        self.busy = True
        # `sent` first: a kill between the two leaves the new request's first items
        # counted begun (the safe side), never an old request's items counted not begun.
        self.sent = sent
        self.words[_STARTED] = 0
        try:
            until = None if timeout is None else time.monotonic() + timeout
            if not self.ready:
                if self._receive(until) is None:
                    self._gone(0, [])
                self.ready = True
                self.startup_ms = (time.perf_counter() - self.started) * 1000
            if self.loading:
                self.loading = False
                reply = self._receive(until)
                if reply is None:
                    self._gone(0, [])
                if reply[0] == _BAD_TASK:
                    self.task = None  # sent again below, and its error reported then
            head = (None if task == self.task else task, env if env is not None and env != self.env else None,
                    slot, until, stop_on_failure)
            try:
                request = pickle.dumps((head + (False,), items), _PROTOCOL)
            except Exception:
                request = None
            result = None if request is None else self._exchange(request, until)
            if result is None:  # some item could not be pickled here, or loaded there
                result = self._exchange(pickle.dumps((head + (True,), _one_by_one(items)), _PROTOCOL), until)
            if head[1] is not None:
                self.env = env
            self.task = task
            return result
        finally:
            self.busy = False

    def _exchange(self, request: bytes, until: float | None) -> tuple[list, float] | None:
        # One request and its replies; None when the worker could not load the items.
        words = self.words
        words[_STARTED] = 0
        words[_WRITTEN] = _HEAD
        words[_FIRST] = 0
        results: list = []
        try:
            self.conn.send_bytes(request)
        except OSError:
            self._gone(0, results)
        while True:
            reply = self._receive(until)
            if reply is None:
                self._gone(words[_STARTED], results)
            kind = reply[0]
            if kind == _END:
                if len(reply) > 1 + _ELAPSED.size:
                    try:
                        results.extend(pickle.loads(memoryview(reply)[1 + _ELAPSED.size:]))
                    except Exception:  # a result that does not load here: each frame on its own
                        self._collect(results)
                else:
                    self._collect(results)
                return results, _ELAPSED.unpack_from(reply, 1)[0]
            if kind == _FRAMES:
                _frames(reply, 1, len(results), results)
            elif kind == _BAD_ITEMS:
                return None
            else:
                self.task = None
                try:
                    error = pickle.loads(memoryview(reply)[1:])
                except Exception as exc:
                    error = WorkerError(_text(exc), exited=False)
                raise WorkerError(
                    f"the worker process could not load the task ({_text(error)}); check that the task's "
                    "module imports in a fresh interpreter", exited=False) from error

    def _collect(self, results: list) -> None:
        # The frames the arena holds, once the worker replied or is gone.
        words = self.words
        written = words[_WRITTEN]
        if written > _HEAD:
            _frames(self.arena[:written], _HEAD, words[_FIRST], results)

    def _gone(self, started: int, results: list) -> None:
        # The pipe closed: the worker was killed or exited. What it finished stands.
        self._collect(results)
        started = max(started, len(results))
        if self.interrupted:
            raise Killed(started, results)
        self.process.join(1.0)
        raise WorkerError(
            f"the worker process exited (code {self.process.exitcode}) while running the task; "
            "it is replaced for the next items", started, results)

    def _receive(self, until: float | None) -> bytes | None:
        # The next reply; None once the worker is gone (past `until` it is killed first).
        conn = self.conn
        try:
            if until is not None and not self.interrupted and not conn.poll(max(until - time.monotonic(), 0.0)):
                self.interrupt()
            if self.interrupted and not conn.poll(_DEATH_S):
                return None
            return conn.recv_bytes()
        except (EOFError, OSError):
            return None

    def unstarted(self, sent: list | None, timeout: float) -> list:
        """After :meth:`interrupt`: the entries of ``sent`` the worker never began.

        ``sent`` is what :attr:`sent` was before the kill. Waits up to ``timeout`` for
        the process to end (only then is its count final); returns ``[]`` if it has
        not, or if a later request has replaced ``sent`` meanwhile.
        """
        from multiprocessing.connection import wait

        if sent is None:
            return []
        try:
            if not wait([self.process.sentinel], timeout):
                return []
        except (ValueError, OSError):
            return []
        return sent[self.words[_STARTED]:] if self.sent is sent else []

    @property
    def healthy(self) -> bool:
        return not self.interrupted and self.process.exitcode is None

    def interrupt(self) -> None:
        """Kill the process now (any thread): a blocked :meth:`call` raises Killed."""
        self.interrupted = True
        try:
            self.process.kill()
        except (ValueError, OSError, AttributeError):
            pass  # already closed or never started

    def discard(self) -> Any:
        """Stop the worker without waiting for it: returns its process, to reap later.

        An idle worker sees its pipe close and exits; one that was killed or is still
        running an item is killed. Our end of its pipe is closed now.
        """
        if self.busy or self.interrupted:
            self.interrupt()
        self.conn.close()  # a worker waiting for a request sees EOF and returns
        return self.process

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker and wait for it (tests and shutdown)."""
        process = self.discard()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
        process.close()


class ProcessPool:
    """Idle workers kept for the next call; a worker is lent to one thread at a time.

    Nothing here waits for a process to exit: a worker given up is discarded (its
    pipe closed, killed if it was running) and reaped by a later call.

    Args:
        method: the multiprocessing start method, one of ``START_METHODS``.
    """

    def __init__(self, method: str = START_METHOD) -> None:
        import multiprocessing

        self.method = method
        self._ctx = multiprocessing.get_context(method)
        self._idle: list[Worker] = []
        self._dying: list[Any] = []
        self._lock = threading.Lock()
        self.pid = os.getpid()
        self.started = 0
        #: start-up of each worker so far, from Process.start() to its first reply, in ms
        self.startup_ms: list[float] = []
        #: one byte per call in progress: set, it stops that call's workers before their next item
        self._board_fd, self.board = _shared_memory(BOARD_SLOTS)
        self._slots: set[int] = set()
        self._next_slot = 1  # slot 0 is never set: a request of no call watches it

    def take_slot(self) -> int:
        """A board slot for one call, cleared; slots go round, so a freed one is reused last."""
        with self._lock:
            for _ in range(BOARD_SLOTS):
                slot = self._next_slot
                self._next_slot = slot % (BOARD_SLOTS - 1) + 1
                if slot not in self._slots:
                    self._slots.add(slot)
                    self.board[slot] = 0
                    return slot
        raise RuntimeError(f"more than {BOARD_SLOTS - 1} calls at once hold worker processes of this pool")

    def free_slot(self, slot: int) -> None:
        with self._lock:
            self._slots.discard(slot)

    def acquire(self) -> Worker:
        """An idle worker, or a new one."""
        with self._lock:
            self._reap()
            while self._idle:
                worker = self._idle.pop()
                if worker.healthy:
                    return worker
                self._dying.append(worker.discard())
            self.started += 1
        return Worker(self._ctx, self._board_fd)

    def release(self, worker: Worker, keep: int, *, replace: bool = False) -> None:
        """Take ``worker`` back, or discard it if ``keep`` workers are idle already.

        A dead or killed worker is discarded; with ``replace`` a new one starts at
        once and imports the same task in the background, so the next call finds it ready.
        """
        if worker.startup_ms is not None and worker.started:
            self.startup_ms.append(worker.startup_ms)
            worker.started = 0.0
        healthy = worker.healthy
        with self._lock:
            self._reap()
            if healthy and len(self._idle) < keep:
                self._idle.append(worker)
                return
            self._dying.append(worker.discard())
            replace = replace and not healthy and len(self._idle) < keep
            if replace:
                self.started += 1
        if replace:
            fresh = Worker(self._ctx, self._board_fd)
            if worker.task is not None:
                fresh.preload(worker.task, worker.env)
            with self._lock:
                self._idle.append(fresh)

    def _reap(self) -> None:
        # Close the processes that have exited (their sentinels are fds); never blocks.
        alive = []
        for process in self._dying:
            if process.exitcode is None:
                alive.append(process)
            else:
                process.close()
        self._dying = alive

    def idle(self) -> int:
        return len(self._idle)

    def reap(self) -> int:
        """Close the discarded workers that have exited; returns how many have not yet."""
        with self._lock:
            self._reap()
            return len(self._dying)

    def shutdown(self) -> None:
        """Stop every idle worker and wait for them (tests; a Lambda never needs to)."""
        with self._lock:
            idle, self._idle = self._idle, []
            dying, self._dying = self._dying, []
        for worker in idle:
            worker.close()
        for process in dying:
            process.join(5.0)
            process.close()


class Lease:
    """The workers one call holds: one per thread that asks, all given back when the call ends.

    Args:
        pool: where workers come from and go back to.
        keep: how many idle workers the pool may keep after this call.
        timeout: seconds a worker may still take (the run's deadline), or None.
    """

    def __init__(self, pool: ProcessPool, keep: int, timeout: Callable[[], float | None]) -> None:
        self.pool = pool
        self.keep = keep
        self.timeout = timeout
        self.held: list[Worker] = []
        self._mine = threading.local()
        self._lock = threading.Lock()
        #: the caller's environment for this call, which the workers run in
        self.env = dict(os.environ)
        #: this call's board slot: every request of the call watches it
        self.slot = pool.take_slot()
        self._closed = False

    def worker(self) -> Worker:
        """This thread's worker for the call; a new one if it died or was killed."""
        worker = getattr(self._mine, "worker", None)
        if worker is not None and worker.healthy:
            return worker
        if worker is not None:
            self.replace(worker, start=False)
        worker = self._mine.worker = self.pool.acquire()
        with self._lock:
            self.held.append(worker)
        return worker

    def replace(self, worker: Worker, *, start: bool = True) -> None:
        """Give up this thread's killed or dead worker; with ``start``, a replacement starts now."""
        with self._lock:
            if worker not in self.held:
                return
            self.held.remove(worker)
        if getattr(self._mine, "worker", None) is worker:
            self._mine.worker = None
        self.pool.release(worker, self.keep, replace=start)

    def renew(self) -> None:
        """Replace this thread's worker now if it died or was killed (a replacement starts at once)."""
        worker = getattr(self._mine, "worker", None)
        if worker is not None and not worker.healthy:
            self.replace(worker)

    def stop(self) -> None:
        """Start no further item in any worker of this call (each checks before its next item)."""
        if not self._closed:  # the slot may serve another call by then
            self.pool.board[self.slot] = 1

    def interrupt(self, wait: float = 0.0) -> list:
        """Kill every worker of this call still running a request (the deadline margin passed).

        Returns the ``sent`` entries (see :meth:`Worker.call`) those workers never began,
        for the workers whose end is seen within ``wait`` seconds.
        """
        with self._lock:
            killed = [(worker, worker.sent) for worker in self.held if worker.busy]
        for worker, _ in killed:
            worker.interrupt()
        end = time.monotonic() + wait
        unstarted: list = []
        for worker, sent in killed:
            unstarted.extend(worker.unstarted(sent, max(end - time.monotonic(), 0.0)))
        return unstarted

    def close(self) -> None:
        """Give every worker back to the pool, a killed one replaced; never waits for a process."""
        with self._lock:
            held, self.held = self.held, []
            self._closed = True
        for worker in held:
            self.pool.release(worker, self.keep, replace=True)
        self.pool.free_slot(self.slot)


_pool: ProcessPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> ProcessPool:
    """The process-wide pool, made on first use (anew in a forked child)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = ProcessPool()
            # Idle workers would be frozen into a SnapStart snapshot with their own clients
            # and random state, shared by every restored copy: none is kept in it.
            _snapstart.register(before=shutdown)
        return _pool


def shutdown() -> None:
    """Stop the process-wide pool's idle workers (tests; a Lambda never needs to)."""
    with _pool_lock:
        pool = _pool
    if pool is not None:
        pool.shutdown()


class ChunkSizer:
    """How many items to send per request, from the time items have taken so far.

    Starts at one item (a slow task is spread at once) and grows towards
    ``CHUNK_TARGET_S`` of work per request as the measured cost per item falls.
    """

    __slots__ = ("per_item", "cap")

    def __init__(self, cap: int = MAX_CHUNK) -> None:
        self.per_item: float | None = None
        self.cap = cap

    def size(self) -> int:
        if self.per_item is None:
            return 1
        if self.per_item <= 0:
            return self.cap
        return max(1, min(self.cap, int(CHUNK_TARGET_S / self.per_item)))

    def observe(self, items: int, elapsed: float) -> None:
        if items:
            sample = elapsed / items
            self.per_item = sample if self.per_item is None else (self.per_item + sample) / 2

