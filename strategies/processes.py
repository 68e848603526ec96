"""``processes``: CPU-bound items on persistent worker processes, one per vCPU, joined by pipes."""

from __future__ import annotations

import queue
import threading
import time
from itertools import islice

from .._procpool.cpus import vcpus
from .._procpool.pickling import Killed, WorkerError, pickled_task
from .._procpool.pool import ChunkSizer, Lease, get_pool
from .._procpool.worker import serving
from .._errors import ConfigError, DeadlineExceeded
from .._run import Run
from .._task import sync_form
from .base import WINDOW_PER_WORKER, CallPool, Strategy, drive_window, thread_pool

_current = threading.local()  # the Lease of the call a driver thread works for

#: After killing the busy workers at the deadline (or after a fatal error), how long
#: at most to wait, in all, for them to be gone and for their driver threads to tell
#: the ledger which records had begun: the kernel ends a killed process and closes its
#: pipes at once, so this is milliseconds. Never more than half the deadline margin,
#: so the call still returns inside it on a busy machine.
_SETTLE_S = 0.25
#: Of that, how long at most to wait for the killed workers to be gone, so that which
#: records each had begun is final (SIGKILL takes microseconds; a forkserver child's end
#: is seen once the forkserver reaps it).
_KILLED_S = 0.05


class Remote:
    """A task as ``processes`` runs it: each call runs one item in a worker process.

    Called from a driver thread, it uses the worker that thread holds for the call;
    called anywhere else, it borrows one for the item. Returns the task's value or
    raises its exception (with the worker's traceback as ``__cause__``); a worker
    killed at the deadline raises ``DeadlineExceeded.did_not_finish``, one that did
    not start the item (the call stopped, or its deadline passed)
    ``DeadlineExceeded.not_started``.
    """

    __slots__ = ("data", "name", "margin_ms")

    def __init__(self, data: bytes, name: str, margin_ms: int) -> None:
        self.data = data
        self.name = name
        self.margin_ms = margin_ms

    def __call__(self, item):
        lease = getattr(_current, "lease", None)
        if lease is None:
            lease = Lease(get_pool(), 1, lambda: None)
            try:
                return self._in(lease, item)
            finally:
                lease.close()
        return self._in(lease, item)

    def _in(self, lease, item):
        reply = lease.run(self.data, [item])
        if isinstance(reply.error, Killed):
            raise DeadlineExceeded.did_not_finish(self.margin_ms)
        if reply.error is not None:
            raise reply.error
        if not reply.results:  # the call stopped or its deadline passed before the item began
            raise DeadlineExceeded.not_started(self.margin_ms)
        (ok, value), = reply.results
        if ok:
            return value
        raise value

    def __repr__(self) -> str:
        return f"Remote({self.name!r})"


class ProcessesStrategy(Strategy):
    """Items sent to worker processes that live across warm invocations.

    ``max_workers`` driver threads each hold one worker for the call. Plain items go
    in chunks: a driver thread marks a chunk's records started in the ledger, sends
    them down its worker's pipe and settles each from the reply; the chunk grows
    while items are cheap, so pickling and the round trip are amortised, and at most
    ``max_workers x 2`` chunks are read ahead. A batch's group is walked by the
    ledger in its driver thread, each record running in that thread's worker through
    the adapted task.

    A stop of the call (a failure that stops it, a cancelled amap) reaches every
    worker before its next item. A worker that dies mid-chunk fails the record it was
    running; what it finished stands, and what it never reached runs on a replacement.

    At the deadline margin every worker still running an item is killed (and
    replaced at once): nothing of this call keeps running, in this invocation or the
    next; a driver thread ends moments after the call, once it has started its killed
    worker's replacement (never kept after a shutdown of the pool since the call
    began). What the worker finished stands,
    the record it was running is reported as not finished, the rest as not started.

    ``max_workers`` defaults to the vCPUs the function really has (see
    :func:`lambda_fanout._procpool.vcpus`), not FANOUT_MAX_WORKERS's default; ``auto``
    means that count too (at most its cap): the adaptive limit follows a service's
    throttling, and these items are bound by CPU.
    """

    runs_in_processes = True

    @classmethod
    def default_workers(cls, memory_mb: int | None) -> int:
        """The vCPUs the function really has (:func:`~lambda_fanout._procpool.vcpus`) at ``memory_mb``."""
        return vcpus(memory_mb)

    @classmethod
    def auto_workers(cls, workers, default: int) -> int:
        """The vCPUs too, within auto's cap: the adaptive limit follows a service's throttling, these items are CPU-bound."""
        return min(workers.cap, default)

    def adapt(self, task) -> Remote:
        """The callable that runs ``task`` in a worker process, one item per call.

        Raises:
            ConfigError: the task has no sync form, or cannot be pickled (a lambda, a
                closure), or this is itself a worker process (a task under ``processes``
                calling it again), saying what to do; raised before any item is read.
        """
        if serving():
            raise ConfigError(
                "strategy 'processes' was asked to run inside a task that itself runs under 'processes': "
                "a worker process cannot start worker processes of its own. Inside the task, pass "
                "strategy='threads' or strategy='sequential' (FANOUT_STRATEGY reaches the workers too)."
            )
        if isinstance(task, Remote):
            return task
        fn = sync_form(task, self.name)
        return Remote(pickled_task(fn, self.name), getattr(fn, "__qualname__", repr(fn)),
                      self.settings.deadline_margin_ms)

    def _drive(self, run: Run) -> None:
        lease = Lease(get_pool(), self.max_workers, run.wait_timeout, stop_on_failure=run.stop_on_failure)
        run.add_stop_hook(lease.stop)  # a cancelled amap: the workers stop before their next item
        if run.groups is None:
            sizer = ChunkSizer()
            size, work = sizer.size, self._send
        else:
            sizer, size, work = None, (lambda: 1), self._walk
        jobs = run.jobs
        # The unit sent to a driver thread is a chunk of jobs, sized as it is made.
        chunks = iter(lambda: list(islice(jobs, size())), [])
        settled: queue.SimpleQueue = queue.SimpleQueue()  # one token per chunk, once the ledger knows
        submitted = 0
        try:
            with CallPool(run, thread_pool(self.max_workers, "fanout-processes")) as threads:
                executor_submit = threads.executor.submit

                def submit(chunk):
                    nonlocal submitted
                    submitted += 1
                    return executor_submit(work, lease, run, chunk, sizer, settled)

                def kill_stuck():
                    # Deadline or fatal error: kill what still runs, so each driver thread
                    # returns now and the ledger learns which records had begun; the
                    # records a killed worker never began are known here already.
                    # With a margin of 0 there is no time to keep: the kill's wait is then
                    # spent on knowing which records began.
                    budget = min(_SETTLE_S, run.margin_ms / 2000)
                    end = time.monotonic() + budget
                    for index in lease.interrupt(min(_KILLED_S, budget) if budget else _KILLED_S):
                        run.unbegin(index)
                    for _ in range(submitted):
                        try:
                            settled.get(timeout=max(end - time.monotonic(), 0.0))
                        except queue.Empty:
                            break

                drive_window(run, chunks, submit, self.max_workers * WINDOW_PER_WORKER, on_stuck=kill_stuck)
        finally:
            lease.close()

    @staticmethod
    def _send(lease, run: Run, chunk: list[int], sizer, settled) -> None:
        try:
            _settle_chunk(lease, run, chunk, sizer)
        finally:
            settled.put(None)
        lease.renew()  # after the ledger is told (the call may return meanwhile): a dead or killed worker is replaced

    @staticmethod
    def _walk(lease, run: Run, chunk: list, sizer, settled) -> None:
        _current.lease = lease
        try:
            for job in chunk:
                run.execute(job)
            _share_stop(lease, run)
        finally:
            _current.lease = None
            settled.put(None)
        lease.renew()  # after the ledger is told: a worker killed at the deadline is replaced now


def _settle_chunk(lease, run: Run, chunk: list[int], sizer) -> None:
    # Each record of the chunk that may still start is begun in the ledger, sent, and
    # reported from the lease's reply. The worker is had first: one still being made
    # (the first call starts the forkserver) cannot be killed at the deadline, so records
    # begun while waiting for it would be reported as started.
    lease.worker()
    begun = [index for index in chunk if run.begin(index)]
    while begun:
        reply = lease.run(run.fn.data, [run.pending[index] for index in begun], begun)
        _report(run, reply.finished)
        error = reply.error
        if isinstance(error, WorkerError):
            if not error.exited or reply.running is None:
                # The task cannot load, or kills every worker before it runs: each record fails.
                for index in reply.unfinished:
                    run.fail(index, error)
                break
            run.fail(reply.running, error)  # the record it was running when it exited
            # The records it never reached run on a replacement.
            for index in reply.unstarted:
                run.unbegin(index)
            lease.renew()
            begun = [index for index in reply.unstarted if run.begin(index)]
            continue
        if error is None:
            sizer.observe(len(reply.results), reply.elapsed)
        # Killed at the deadline: the record it was running stays started (reported as
        # not finished). Killed or not, the worker stopped (a failure, a cancel, the
        # deadline) before the rest.
        for index in reply.unstarted:
            run.unbegin(index)
        break
    _share_stop(lease, run)


def _share_stop(lease, run: Run) -> None:
    # The call's stop, known on one side first, is made known on the other. A failure
    # recorded here stops the other workers of the call. A worker that stopped the call
    # sets the board before it builds its failure's report, and the other workers then
    # return their items unstarted: the ledger stops too, so that while the report is on
    # its way no further job starts and the input is read no further (each unstarted
    # chunk would otherwise free room in the window for another).
    if lease.stopped:
        run.stop()
    elif run.stopped:
        lease.stop()


def _report(run: Run, finished) -> None:
    # The outcome of each record a worker finished, in order.
    for index, (ok, value) in finished:
        if ok:
            run.settle(index, value)
        elif isinstance(value, Exception):
            run.fail(index, value)
        else:
            run.fatal_error(value)  # KeyboardInterrupt, SystemExit: finish() raises it
