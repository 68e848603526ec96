"""``processes``: CPU-bound items on persistent worker processes, one per vCPU, joined by pipes."""

from __future__ import annotations

import queue
import threading
import time
from itertools import islice

from .. import _config, _procpool
from .._procpool import vcpus
from .._errors import DeadlineExceeded
from .._run import Run
from .._task import sync_form
from .base import WINDOW_PER_WORKER, CallPool, Strategy, drive_window

_current = threading.local()  # the Lease of the call a driver thread works for

#: After killing the busy workers at the deadline (or after a fatal error), how long
#: at most to wait for their driver threads to tell the ledger which records had begun:
#: the kernel closes a killed process's pipes at once, so this is milliseconds. Never
#: more than half the deadline margin.
_SETTLE_S = 0.25
#: After killing the busy workers, how long at most to wait for them to be gone, so
#: that which records each had begun is final (SIGKILL takes microseconds).
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
            lease = _procpool.Lease(_procpool.get_pool(), 1, lambda: None)
            try:
                return self._in(lease, item)
            finally:
                lease.close()
        return self._in(lease, item)

    def _in(self, lease, item):
        for last in (False, True):
            try:
                results, _ = lease.worker().call(self.data, [item], lease.timeout(), env=lease.env, slot=lease.slot)
                break
            except _procpool.Killed:
                raise DeadlineExceeded.did_not_finish(self.margin_ms) from None
            except _procpool.WorkerError as exc:
                if last or not (exc.exited and exc.started == 0):
                    raise
                # It died before it began the item (killed while idle, say): once more, on a replacement.
        if not results:  # the call stopped or its deadline passed before the item began
            raise DeadlineExceeded.not_started(self.margin_ms)
        (ok, value), = results
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
    next, and no driver thread outlives the call. What the worker finished stands,
    the record it was running is reported as not finished, the rest as not started.

    ``max_workers`` defaults to the vCPUs the function really has (see
    :func:`lambda_fanout._procpool.vcpus`), not FANOUT_MAX_WORKERS's default; ``auto``
    means that count too (at most its cap): the adaptive limit follows a service's
    throttling, and these items are bound by CPU.
    """

    runs_in_processes = True

    @classmethod
    def default_workers(cls, environ) -> int:
        """The vCPUs the function really has (:func:`~lambda_fanout._procpool.vcpus`), its memory read from ``environ``."""
        memory = _config.resolve_int(None, argument="memory_mb", env=_config.ENV_LAMBDA_MEMORY_SIZE, default=None,
                                     minimum=128, maximum=10240, environ=environ)
        return vcpus(memory)

    @classmethod
    def auto_workers(cls, workers, default: int) -> int:
        """The vCPUs too, within auto's cap: the adaptive limit follows a service's throttling, these items are CPU-bound."""
        return min(workers.cap, default)

    def adapt(self, task) -> Remote:
        """The callable that runs ``task`` in a worker process, one item per call.

        Raises:
            ConfigError: the task has no sync form, or cannot be pickled (a lambda, a
                closure), saying what to do; raised before any item is read.
        """
        if isinstance(task, Remote):
            return task
        fn = sync_form(task, self.name)
        return Remote(_procpool.pickled_task(fn, self.name), getattr(fn, "__qualname__", repr(fn)),
                      self.settings.deadline_margin_ms)

    def _drive(self, run: Run) -> None:
        lease = _procpool.Lease(_procpool.get_pool(), self.max_workers, run.wait_timeout)
        run.add_stop_hook(lease.stop)  # a cancelled amap: the workers stop before their next item
        if run.groups is None:
            sizer = _procpool.ChunkSizer()
            size, work = sizer.size, self._send
        else:
            sizer, size, work = None, (lambda: 1), self._walk
        jobs = run.jobs
        # The unit sent to a driver thread is a chunk of jobs, sized as it is made.
        chunks = iter(lambda: list(islice(jobs, size())), [])
        settled: queue.SimpleQueue = queue.SimpleQueue()  # one token per chunk, once the ledger knows
        submitted = 0
        try:
            with CallPool(run, self.max_workers, "fanout-processes") as threads:
                executor_submit = threads.executor.submit

                def submit(chunk):
                    nonlocal submitted
                    submitted += 1
                    return executor_submit(work, lease, run, chunk, sizer, settled)

                def kill_stuck():
                    # Deadline or fatal error: kill what still runs, so each driver thread
                    # returns now and the ledger learns which records had begun; the
                    # records a killed worker never began are known here already.
                    for index in lease.interrupt(_KILLED_S):
                        run.unbegin(index)
                    end = time.monotonic() + min(_SETTLE_S, run.margin_ms / 2000)
                    for _ in range(submitted):
                        try:
                            settled.get(timeout=max(end - time.monotonic(), 0.0))
                        except queue.Empty:
                            break

                drive_window(run, chunks, submit, self.max_workers * WINDOW_PER_WORKER, on_stuck=kill_stuck)
        finally:
            lease.close()

    @classmethod
    def _send(cls, lease, run: Run, chunk: list[int], sizer, settled) -> None:
        worker = None
        try:
            worker = cls._settle_chunk(lease, run, chunk, sizer)
        finally:
            settled.put(None)
        if worker is not None:
            lease.replace(worker)  # after the ledger is told: the call may return meanwhile

    @staticmethod
    def _settle_chunk(lease, run: Run, chunk: list[int], sizer):
        # Returns the worker if it was killed or died, for replacing.
        begun = [index for index in chunk if run.begin(index)]
        if not begun:
            return None
        worker = lease.worker()
        idle_death = False  # a worker that died before its first item is given one more chance
        while begun:
            items = [run.pending[index] for index in begun]
            try:
                results, elapsed = worker.call(run.fn.data, items, lease.timeout(), stop_on_failure=run.stop_on_failure,
                                               env=lease.env, slot=lease.slot, sent=begun)
            except _procpool.Killed as killed:
                # The first `started` records began (those unfinished are reported as not
                # finished), the rest never did.
                _report(run, begun, killed.results)
                for index in begun[killed.started:]:
                    run.unbegin(index)
                return worker
            except _procpool.WorkerError as exc:
                _report(run, begun, exc.results)
                done = len(exc.results)
                if not exc.exited or (exc.started == 0 and idle_death):
                    # The task cannot load, or kills every worker before it runs: each record fails.
                    for index in begun[done:]:
                        run.fail(index, exc)
                    return None if worker.healthy else worker
                for index in begun[done:exc.started]:
                    run.fail(index, exc)  # the record it was running when it exited
                # The records it never reached run on a replacement.
                idle_death = idle_death or exc.started == 0
                rest = begun[exc.started:]
                for index in rest:
                    run.unbegin(index)
                lease.replace(worker)
                worker = lease.worker()
                begun = [index for index in rest if run.begin(index)]
                continue
            sizer.observe(len(results), elapsed)
            _report(run, begun, results)
            for index in begun[len(results):]:
                run.unbegin(index)  # the worker stopped (a failure, a cancel, the deadline) before these
            break
        if run.stopped:
            lease.stop()  # a failure recorded here stops the other workers of the call too
        return None

    @staticmethod
    def _walk(lease, run: Run, chunk: list, sizer, settled) -> None:
        _current.lease = lease
        try:
            for job in chunk:
                run.execute(job)
        finally:
            _current.lease = None
            settled.put(None)
        lease.renew()  # after the ledger is told: a worker killed at the deadline is replaced now


def _report(run: Run, begun: list[int], results: list) -> None:
    # The outcome of each record a worker finished, in order.
    for index, (ok, value) in zip(begun, results):
        if ok:
            run.settle(index, value)
        elif isinstance(value, Exception):
            run.fail(index, value)
        else:
            run.fatal_error(value)  # KeyboardInterrupt, SystemExit: finish() raises it
