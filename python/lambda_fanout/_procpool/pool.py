"""The caller's side of the worker processes: each worker's end, the pool that keeps them, a call's lease.

What belongs here: starting a worker and exchanging one request with it
(:class:`Worker`), keeping idle workers across calls and reaping the dead
(:class:`ProcessPool`), and what one call holds (:class:`Lease`): a worker per
driver thread, the call's stop byte, and :meth:`Lease.run`, whose :class:`Reply`
says which of a request's items finished, which one was running when its worker
ended, and which never started. Which records of a call started is the ledger's
(``_run``); a worker's count of the items it began is the wire's fact, read here.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from .. import _snapstart
from .pickling import PROTOCOL, Killed, WorkerError, one_by_one, text_of
from .wire import (
    _BAD_ITEMS, _BAD_TASK, _ELAPSED, _END, _FIRST, _FRAMES, _HEAD, _STARTED, _WRITTEN, ARENA_SIZE, BOARD_SLOTS, Fd,
    read_frames, shared_memory,
)
from .worker import serve

#: Measured in tests/benchmarks/test_processes_bench.py and explained in the README:
#: fork is by far the cheapest but copies locks held by the caller's other threads
#: into the child; forkserver and spawn are both safe and cost about the same (the
#: worker importing the task's module dominates), forkserver sparing an interpreter
#: start per worker and per replacement.
START_METHOD = "forkserver"
START_METHODS = ("forkserver", "spawn", "fork")

#: A chunk of items aims at this much work in the worker: long enough that the
#: ~0.1 ms round trip (pickling, two pipe writes, a thread wake-up) is a few percent
#: of it, short enough that the last chunks still spread over every worker.
CHUNK_TARGET_S = 0.005
MAX_CHUNK = 256

#: After killing a worker, how long at most to wait for its pipe to close: SIGKILL
#: ends a process in microseconds, so this is only a bound for a stuck kernel.
_DEATH_S = 0.5
#: After a worker's pipe closed by itself, how long at most to wait for its exit
#: status (the pipe closes as the process exits, so this is only a bound for a busy
#: machine); one still running then has become another program.
_EXIT_S = 1.0
#: A worker asked of a forkserver that is ending (killed, or chosen by the OOM killer)
#: fails to start; the next try starts a new forkserver once the old one is gone,
#: which takes the kernel milliseconds. Tries, and the pause between two.
_START_TRIES, _START_PAUSE_S = 20, 0.005


def _start(process: Any) -> None:
    # Process.start(), tried again while the forkserver it asks is ending: it refuses the
    # connection, or closes it before it answers, until multiprocessing sees it gone.
    for tries_left in range(_START_TRIES - 1, -1, -1):
        try:
            process.start()
            return
        except (OSError, EOFError):
            if not tries_left:
                raise
            time.sleep(_START_PAUSE_S)


class Worker:
    """One worker process, the caller's end of its pipe and its arena; used by one thread at a time."""

    __slots__ = ("process", "conn", "arena", "words", "task", "ready", "started", "startup_ms", "interrupted",
                 "busy", "loading", "env", "sent")

    def __init__(self, ctx: Any, board_fd: int) -> None:
        self.started = time.perf_counter()
        here, there = ctx.Pipe(duplex=True)
        arena_fd, self.arena = shared_memory(ARENA_SIZE)
        self.words = memoryview(self.arena)[:_HEAD].cast("q")
        self.process = ctx.Process(target=serve, args=(there, Fd(board_fd), Fd(arena_fd)), name="fanout-worker",
                                   daemon=True)
        try:
            _start(self.process)
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
        self.conn.send_bytes(pickle.dumps(((task, env, 0, None, False, False), []), PROTOCOL))
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
                request = pickle.dumps((head + (False,), items), PROTOCOL)
            except BaseException:  # an item's own code may raise anything: it fails alone, below
                request = None
            result = None if request is None else self._exchange(request, until)
            if result is None:  # some item could not be pickled here, or loaded there
                result = self._exchange(pickle.dumps((head + (True,), one_by_one(items)), PROTOCOL), until)
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
                    except BaseException:  # a result that does not load here: each frame on its own
                        self._collect(results)
                else:
                    self._collect(results)
                return results, _ELAPSED.unpack_from(reply, 1)[0]
            if kind == _FRAMES:
                read_frames(reply, 1, len(results), results)
            elif kind == _BAD_ITEMS:
                return None
            else:
                self.task = None
                try:
                    error = pickle.loads(memoryview(reply)[1:])
                except BaseException as exc:
                    error = WorkerError(text_of(exc), exited=False)
                raise WorkerError(
                    f"the worker process could not load the task ({text_of(error)}); check that the task's "
                    "module imports in a fresh interpreter", exited=False) from error

    def _collect(self, results: list) -> None:
        # The frames the arena holds, once the worker replied or is gone.
        words = self.words
        written = words[_WRITTEN]
        if written > _HEAD:
            read_frames(self.arena[:written], _HEAD, words[_FIRST], results)

    def _gone(self, started: int, results: list) -> None:
        # The pipe closed: the worker was killed or exited. What it finished stands.
        self._collect(results)
        started = max(started, len(results))
        if self.interrupted:
            raise Killed(started, results)
        process = self.process
        process.join(_EXIT_S)
        how = f"exited (code {process.exitcode})"
        if process.exitcode is None:
            # Its pipe closed and it runs on: the task replaced the worker with another
            # program (os.exec*). It is no worker any more: it is killed, not waited for.
            self.interrupt()
            process.join(_DEATH_S)
            how = "exited (replaced by another program, which was killed)"
        raise WorkerError(
            f"the worker process {how} while running the task; it is replaced for the next items", started, results)

    def _receive(self, until: float | None) -> bytes | None:
        # The next reply; None once the worker is gone (past `until` it is killed first).
        # A worker is gone when its process is, even while a child it forked still holds
        # its pipe open (no EOF would come): what it finished is in the arena.
        from multiprocessing.connection import wait

        conn, sentinel = self.conn, self.process.sentinel
        try:
            if not self.interrupted:
                left = None if until is None else max(until - time.monotonic(), 0.0)
                ready = wait([conn, sentinel], left)
                if ready and not conn.poll(0):
                    if not self._running():
                        return None  # it ended, and has nothing more to say
                    # The sentinel is the forkserver's pipe: its end, not the worker's, made it
                    # ready. The worker runs on, and only its own pipe tells now.
                    ready = conn.poll(None if until is None else max(until - time.monotonic(), 0.0))
                if not ready:
                    self.interrupt()
            if self.interrupted and not conn.poll(0) and conn not in wait([conn, sentinel], _DEATH_S):
                return None
            return conn.recv_bytes()
        except (EOFError, OSError, ValueError):
            return None

    def _running(self) -> bool:
        # Its process still exists (a worker the forkserver reaped does not).
        try:
            os.kill(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

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
        """Kill the process now (any thread), with the processes its task started in its
        group (see :func:`~lambda_fanout._procpool.worker.serve`): a blocked :meth:`call` raises Killed."""
        self.interrupted = True
        try:
            if self.process.exitcode is None:  # never a pid reused after the worker's end
                os.killpg(self.process.pid, signal.SIGKILL)
        except (ValueError, OSError, AttributeError, TypeError):
            pass  # no group of its own (yet): the worker alone, below
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
        self._starting: list[threading.Thread] = []  # start_later's threads still running
        #: how many shutdowns so far: a call's replacement workers are kept only in its own
        self.generation = 0
        self._lock = threading.Lock()
        self.pid = os.getpid()
        self.started = 0
        #: start-up of each worker so far, from Process.start() to its first reply, in ms
        self.startup_ms: list[float] = []
        #: one byte per call in progress: set, it stops that call's workers before their next item
        self._board_fd, self.board = shared_memory(BOARD_SLOTS)
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

    def release(self, worker: Worker, keep: int, *, later: list | None = None) -> None:
        """Take ``worker`` back, or discard it if ``keep`` workers are idle already.

        A dead or killed worker is discarded. Given ``later``, its replacement's task is
        added there for :meth:`start_later`, so that the next call finds a worker ready.
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
            if later is not None and not healthy and len(self._idle) < keep:
                self.started += 1
                later.append((worker.task, worker.env))

    def start_now(self, tasks: list, generation: int) -> None:
        """Start an idle worker for each ``(task, env)`` of ``tasks`` (from :meth:`release`),
        importing its task in the background. ``generation`` is the pool's at the start of
        the call they replace for: after a :meth:`shutdown` since, none is kept."""
        for task, env in tasks:
            fresh = Worker(self._ctx, self._board_fd)
            if task is not None:
                fresh.preload(task, env)
            with self._lock:
                if generation == self.generation:
                    self._idle.append(fresh)
                else:
                    self._dying.append(fresh.discard())

    def start_later(self, tasks: list, generation: int) -> None:
        """:meth:`start_now` on a thread of its own: starting a process takes milliseconds,
        and the caller may be returning at its deadline."""
        if not tasks:
            return

        def start() -> None:
            try:
                self.start_now(tasks, generation)
            except Exception:  # noqa: BLE001 - no one to tell here: the next call that needs one starts it
                pass

        thread = threading.Thread(target=start, name="fanout-replace", daemon=True)
        with self._lock:  # started under the lock: shutdown never finds it unstarted
            self._starting = [t for t in self._starting if t.is_alive()] + [thread]
            thread.start()

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
            self.generation += 1  # a replacement for a call begun before is never kept
            starting, self._starting = self._starting, []
        for thread in starting:  # nor one on its way in
            thread.join(10.0)
        with self._lock:
            idle, self._idle = self._idle, []
            dying, self._dying = self._dying, []
        for worker in idle:
            worker.close()
        for process in dying:
            process.join(5.0)
            process.close()


class Reply:
    """What became of one request's items, by the caller's names for them (see :meth:`Lease.run`).

    The worker's count of the items it began (in its arena) is the one source: the
    items before it finished or were running, the rest never started.

    Attributes:
        names: the caller's names for the request's items, in order.
        results: ``(ok, value)`` of each item finished, in order (see :meth:`Worker.call`).
        started: how many items the worker began (finished ones included).
        error: why the request ended early: :class:`Killed` (the deadline margin
            passed), :class:`WorkerError` (the worker exited, or could not load the
            task; ``error.exited`` tells which), or None.
        elapsed: seconds the worker spent on the request (0.0 when it ended early).
    """

    __slots__ = ("names", "results", "started", "error", "elapsed")

    def __init__(self, names: list, results: list, started: int, error: Killed | WorkerError | None = None,
                 elapsed: float = 0.0) -> None:
        self.names = names
        self.results = results
        self.started = started
        self.error = error
        self.elapsed = elapsed

    @property
    def finished(self) -> Any:
        """``(name, (ok, value))`` of each item finished, in order."""
        return zip(self.names, self.results)

    @property
    def running(self) -> Any:
        """The name of the item the worker was running when it ended early, or None."""
        return self.names[len(self.results)] if self.started > len(self.results) else None

    @property
    def unstarted(self) -> list:
        """The names of the items the worker never began."""
        return self.names[self.started:]

    @property
    def unfinished(self) -> list:
        """The names of the items that did not finish, started or not."""
        return self.names[len(self.results):]


class Lease:
    """The workers one call holds: one per thread that asks, all given back when the call ends.

    Args:
        pool: where workers come from and go back to.
        keep: how many idle workers the pool may keep after this call.
        timeout: seconds a worker may still take (the run's deadline), or None.
        stop_on_failure: no item of the call starts after a failure (see :meth:`Worker.call`).
    """

    def __init__(self, pool: ProcessPool, keep: int, timeout: Callable[[], float | None], *,
                 stop_on_failure: bool = False) -> None:
        self.pool = pool
        self.keep = keep
        self.timeout = timeout
        self.stop_on_failure = stop_on_failure
        self.held: list[Worker] = []
        self._mine = threading.local()
        self._lock = threading.Lock()
        #: the caller's environment for this call, which the workers run in
        self.env = dict(os.environ)
        #: this call's board slot: every request of the call watches it
        self.slot = pool.take_slot()
        #: the pool's generation at the call's start (see :meth:`ProcessPool.start_later`)
        self.generation = pool.generation
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

    def run(self, task: bytes, items: list, names: list | None = None) -> Reply:
        """Run ``task`` on ``items`` in this thread's worker for the call; what became of each, in one :class:`Reply`.

        A worker that exits before it begins the first item (killed while idle, say)
        is replaced and the request sent once more. A worker that dies or is killed
        later is given up; :meth:`renew` replaces it.

        Args:
            names: the caller's name for each item (the ledger's record indexes), which
                :meth:`interrupt` also returns; None for items the caller names no
                other way (the reply then names them by position, and :meth:`interrupt`
                never returns them).
        """
        reply = self._request(task, items, names)
        error = reply.error
        if isinstance(error, WorkerError) and error.exited and error.started == 0:
            self.renew()  # it died before it began the first item (killed while idle, say): once more
            reply = self._request(task, items, names)
        return reply

    def _request(self, task: bytes, items: list, names: list | None) -> Reply:
        try:
            results, elapsed = self.worker().call(task, items, self.timeout(), stop_on_failure=self.stop_on_failure,
                                                  env=self.env, slot=self.slot, sent=names)
        except (Killed, WorkerError) as exc:
            # Without its traceback, whose frames hold the worker (and this frame, which holds
            # the error: a cycle): a killed worker's arena is freed now, not at the next GC.
            results, started, error, elapsed = exc.results, exc.started, exc.with_traceback(None), 0.0
        else:
            started, error = len(results), None
        return Reply(list(range(len(items))) if names is None else names, results, started, error, elapsed)

    def replace(self, worker: Worker, *, start: bool = True) -> None:
        """Give up this thread's killed or dead worker; with ``start``, a replacement starts now
        (on this thread: a driver thread, which needs it next)."""
        with self._lock:
            if worker not in self.held:
                return
            self.held.remove(worker)
        if getattr(self._mine, "worker", None) is worker:
            self._mine.worker = None
        if not start:
            self.pool.release(worker, self.keep)
            return
        later: list = []
        self.pool.release(worker, self.keep, later=later)
        self.pool.start_now(later, self.generation)  # here, on the driver thread that needs it next

    def renew(self) -> None:
        """Replace this thread's worker now if it died or was killed (a replacement starts at once)."""
        worker = getattr(self._mine, "worker", None)
        if worker is not None and not worker.healthy:
            self.replace(worker)

    def stop(self) -> None:
        """Start no further item in any worker of this call (each checks before its next item)."""
        if not self._closed:  # the slot may serve another call by then
            self.pool.board[self.slot] = 1

    @property
    def stopped(self) -> bool:
        """True once the call's board slot is set: by :meth:`stop`, or by a worker of the call
        at a failure that stops it, before that worker has sent the failure back."""
        return not self._closed and bool(self.pool.board[self.slot])

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
        """Give every worker back to the pool, a killed one replaced; never waits for a process,
        nor starts one on the caller's thread (see :meth:`ProcessPool.start_later`)."""
        with self._lock:
            held, self.held = self.held, []
            self._closed = True
        later: list = []
        for worker in held:
            self.pool.release(worker, self.keep, later=later)
        self.pool.free_slot(self.slot)
        self.pool.start_later(later, self.generation)


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

