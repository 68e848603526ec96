"""Worker processes joined by pipes, started on first use and kept across warm invocations.

Lambda has no ``/dev/shm``, so ``multiprocessing.Pool``, ``Queue``, ``Manager`` and
every lock or semaphore fail there with ``OSError``. This module uses only
``Process`` and ``Pipe``: each worker owns one duplex pipe and serves one request at
a time, ``(task or None, environment or None, items, stop_on_failure) -> [(ok, value), ...]``,
and writes one byte to a second pipe as each item begins, so that a caller that
kills it knows which items started.

Workers are started with ``forkserver`` (see ``START_METHOD``): a single-threaded
server, started once as a fresh interpreter, forks each worker. A fork of the
caller itself would copy whatever locks its other threads held at that moment
(a boto3 client's, the asyncio loop thread's, logging's) into a child that can
never release them; the server has no such threads.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

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
_RESULTS = 0
_REQUEST_ERROR = 1


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


class _Portable:
    """An exception from a worker, with the worker's traceback as its ``__cause__`` in the caller."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException) -> None:
        import traceback

        self.exc = exc
        self.tb = '\n"""\n' + "".join(traceback.format_exception(exc)) + '"""'

    def __reduce__(self):
        return _with_traceback, (self.exc, self.tb)


class WorkerError(RuntimeError):
    """A worker could not run a request: it exited mid-request, or could not load it.

    Attributes:
        started: how many items of the request the worker had begun.
    """

    def __init__(self, message: str, started: int = 0) -> None:
        super().__init__(message)
        self.started = started


class Killed(Exception):
    """The worker was killed (the deadline margin passed) while running a request.

    Attributes:
        started: how many items of the request it had begun; the rest never started.
    """

    def __init__(self, started: int) -> None:
        super().__init__("the worker process was still running at the deadline margin and was killed")
        self.started = started


def _portable(exc: BaseException) -> _Portable:
    # An exception that does not survive a round trip (a required argument its
    # __init__ does not pass to super()) would break the whole reply; send its text.
    try:
        pickle.loads(pickle.dumps(exc, _PROTOCOL))
    except Exception:
        exc = WorkerError(f"{type(exc).__qualname__}: {exc} (the exception could not be pickled)")
    return _Portable(exc)


def _encode_reply(results: list, elapsed: float) -> bytes:
    try:
        return pickle.dumps((_RESULTS, results, elapsed), _PROTOCOL)
    except Exception:
        pass
    safe = []
    for ok, value in results:
        try:
            pickle.dumps(value, _PROTOCOL)
        except Exception as exc:
            ok, value = False, _portable(WorkerError(
                f"the task returned a {type(value).__name__}, which cannot be pickled back from the "
                f"worker process ({type(exc).__name__}: {exc}); return plain data"
            ))
        safe.append((ok, value))
    return pickle.dumps((_RESULTS, safe, elapsed), _PROTOCOL)


# -- the worker side ----------------------------------------------------------------------

def _serve(conn, progress) -> None:
    """A worker's life: load the task when it changes, run each request's items, reply.

    One byte goes down ``progress`` as each item begins (nobody waits on it), so a
    caller that kills the worker knows which items started and which never did.
    """
    import signal

    # Ctrl-C reaches the whole process group; the caller decides what it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send_bytes(_READY)
    fn = last = None
    loads = pickle.loads
    clock = time.perf_counter
    mark = os.write
    progress_fd = progress.fileno()
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the caller closed the pipe or exited
        try:
            task, env, items, stop_on_failure = loads(request)
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
            conn.send_bytes(pickle.dumps((_REQUEST_ERROR, _portable(exc), 0.0), _PROTOCOL))
            continue
        results = []
        started = clock()
        for item in items:
            mark(progress_fd, b".")
            try:
                results.append((True, fn(item)))
            except Exception as exc:
                results.append((False, _portable(exc)))
                if stop_on_failure:
                    break  # errors="raise": nothing starts after a failure
            except BaseException as exc:
                # It propagates in the caller; the rest of the chunk is not run.
                results.append((False, _portable(exc)))
                break
        conn.send_bytes(_encode_reply(results, clock() - started))


# -- the caller side ----------------------------------------------------------------------

class Worker:
    """One worker process and the caller's ends of its pipes; used by one thread at a time."""

    __slots__ = ("process", "conn", "progress", "task", "ready", "started", "startup_ms", "interrupted", "busy",
                 "loading", "env")

    def __init__(self, ctx: Any) -> None:
        self.started = time.perf_counter()
        here, there = ctx.Pipe(duplex=True)
        progress, marks = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_serve, args=(there, marks), name="fanout-worker", daemon=True)
        try:
            self.process.start()
        finally:
            there.close()
            marks.close()
        os.set_blocking(progress.fileno(), False)
        self.conn = here
        self.progress = progress
        self.task: bytes | None = None
        self.ready = False
        self.startup_ms: float | None = None
        self.interrupted = False
        self.busy = False
        self.loading = False
        self.env: dict | None = None

    def preload(self, task: bytes, env: dict | None) -> None:
        """Have the worker import ``task`` now, in the background; its reply is read by the next call."""
        self.conn.send_bytes(pickle.dumps((task, env, [], False), _PROTOCOL))
        self.task = task
        self.env = env
        self.loading = True

    def call(
        self, task: bytes, items: list, timeout: float | None = None, *, stop_on_failure: bool = False,
        env: dict | None = None,
    ) -> tuple[list, float]:
        """Run ``task`` on ``items`` in this worker: ``([(ok, value), ...], seconds in the worker)``.

        A value with ``ok`` False is the exception the task raised, with the worker's
        traceback as its ``__cause__``. After a BaseException (or, with
        ``stop_on_failure``, any exception) the rest of ``items`` is not run and gets
        no entry.

        Args:
            timeout: seconds for the whole call, None for none; past it the worker is killed.
            env: the environment to run in (sent only when it differs from the last one), or None.

        Raises:
            Killed: the timeout passed, or :meth:`interrupt` was called.
            WorkerError: the worker exited mid-call, or could not load the request.
        """
        self.busy = True
        try:
            until = None if timeout is None else time.monotonic() + timeout
            if not self.ready:
                self._receive(until)
                self.ready = True
                self.startup_ms = (time.perf_counter() - self.started) * 1000
            if self.loading:
                self.loading = False
                if pickle.loads(self._receive(until))[0] == _REQUEST_ERROR:
                    self.task = None  # sent again below, and its error reported then
            if env is not None and env != self.env:
                self.env = env
            else:
                env = None
            return self._call(task, env, items, until, stop_on_failure)
        finally:
            self.busy = False

    def _call(
        self, task: bytes, env: dict | None, items: list, until: float | None, stop_on_failure: bool
    ) -> tuple[list, float]:
        try:
            request = pickle.dumps((None if task == self.task else task, env, items, stop_on_failure), _PROTOCOL)
        except Exception:
            return self._call_each(task, env, items, until, stop_on_failure)
        self.conn.send_bytes(request)
        self.task = task
        kind, payload, elapsed = pickle.loads(self._receive(until))
        self._started()
        if kind == _REQUEST_ERROR:
            self.task = None
            raise WorkerError(
                f"the worker process could not load the task or its items ({type(payload).__name__}: "
                f"{payload}); check that the task's module imports in a fresh interpreter"
            ) from payload
        return payload, elapsed

    def _call_each(
        self, task: bytes, env: dict | None, items: list, until: float | None, stop: bool
    ) -> tuple[list, float]:
        # Some item cannot be pickled: send the others one by one and fail that one alone.
        results: list = []
        elapsed = 0.0
        for position, item in enumerate(items):
            try:
                pickle.dumps(item, _PROTOCOL)
            except Exception as exc:
                results.append((False, WorkerError(
                    f"the item (a {type(item).__name__}) cannot be pickled to send to a worker process "
                    f"({type(exc).__name__}: {exc}); pass plain data as items"
                )))
                if stop:
                    break
                continue
            try:
                one, took = self._call(task, env, [item], until, stop)
                env = None  # sent with the first
            except (Killed, WorkerError) as exc:
                exc.started += position
                raise
            results.extend(one)
            elapsed += took
            if one and not one[0][0] and (stop or not isinstance(one[0][1], Exception)):
                break  # a BaseException (or any failure, with stop): the rest is not run
        return results, elapsed

    def _started(self) -> int:
        # How many items began since the last request (the bytes the worker wrote).
        count = 0
        while True:
            try:
                chunk = os.read(self.progress.fileno(), 65536)
            except BlockingIOError:
                return count
            except OSError:
                return count  # closed
            if not chunk:
                return count
            count += len(chunk)

    def _receive(self, until: float | None) -> bytes:
        conn = self.conn
        try:
            if until is not None and not conn.poll(max(until - time.monotonic(), 0.0)):
                self.interrupt()
                raise Killed(self._started())
            return conn.recv_bytes()
        except (EOFError, OSError):
            if self.interrupted:
                raise Killed(self._started()) from None
            self.process.join(1.0)
            raise WorkerError(
                f"the worker process exited (code {self.process.exitcode}) while running the task; "
                "it is replaced for the next items", self._started()
            ) from None

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
        running an item is killed. Our ends of its pipes are closed now.
        """
        if self.busy or self.interrupted:
            self.interrupt()
        self.conn.close()  # a worker waiting for a request sees EOF and returns
        self.progress.close()
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
    pipes closed, killed if it was running) and reaped by a later call.

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
        return Worker(self._ctx)

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
            fresh = Worker(self._ctx)
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

    def interrupt(self) -> None:
        """Kill every worker of this call still running an item (the deadline margin passed)."""
        with self._lock:
            held = list(self.held)
        for worker in held:
            if worker.busy:
                worker.interrupt()

    def close(self) -> None:
        """Give every worker back to the pool; never waits for a process."""
        with self._lock:
            held, self.held = self.held, []
        for worker in held:
            self.pool.release(worker, self.keep)


_pool: ProcessPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> ProcessPool:
    """The process-wide pool, made on first use (anew in a forked child)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = ProcessPool()
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

