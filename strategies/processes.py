"""``processes``: CPU-bound items on persistent worker processes, one per vCPU, joined by pipes."""

from __future__ import annotations

import queue
import threading
from itertools import islice

from .. import _config, _procpool
from .._errors import DeadlineExceeded
from .._run import Run, run_sync
from .._task import sync_form
from .base import WINDOW_PER_WORKER, CallPool, Strategy

_current = threading.local()  # the Lease of the call a driver thread works for


class Remote:
    """A task as ``processes`` runs it: each call runs one item in a worker process.

    Called from a driver thread, it uses the worker that thread holds for the call;
    called anywhere else, it borrows one for the item. Returns the task's value or
    raises its exception (with the worker's traceback as ``__cause__``).
    """

    __slots__ = ("data", "name")

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name

    def __call__(self, item):
        lease = getattr(_current, "lease", None)
        if lease is None:
            lease = _procpool.Lease(_procpool.get_pool(), 1, lambda: None)
            try:
                return self._in(lease.worker(), item, None)
            finally:
                lease.close()
        return self._in(lease.worker(), item, lease.timeout())

    def _in(self, worker, item, timeout):
        (ok, value), = worker.call(self.data, [item], timeout)[0]
        if ok:
            return value
        raise value

    def __repr__(self) -> str:
        return f"Remote({self.name!r})"


class ProcessesStrategy(Strategy):
    """Items sent to worker processes that live across warm invocations.

    ``max_workers`` driver threads each hold one worker for the call. Plain items go
    in chunks: a driver thread sends a chunk down its worker's pipe and reports every
    item of the reply; the chunk grows while items are cheap, so pickling and the
    round trip are amortised, and at most ``max_workers x 2`` chunks are read ahead.
    A job that runs in the caller (a batch's record group, walked in order) calls the
    adapted task, which runs each record in that thread's worker.

    At the deadline margin every worker still running an item is killed (and
    replaced on the next use): nothing of this call keeps running, in this
    invocation or the next, and no driver thread outlives the call.

    ``max_workers`` defaults to the vCPUs the function really has (see
    :func:`lambda_fanout._procpool.vcpus`), not FANOUT_MAX_WORKERS's default.
    """

    name = "processes"

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)  # validates the settings shared with every strategy
        self.max_workers = _config.max_workers(
            max_workers, default=_procpool.vcpus(_config.lambda_memory_mb())
        )

    def adapt(self, task) -> Remote:
        """The callable that runs ``task`` in a worker process, one item per call.

        Raises:
            ConfigError: the task has no sync form, or cannot be pickled (a lambda, a
                closure), saying what to do; raised before any item is read.
        """
        if isinstance(task, Remote):
            return task
        fn = sync_form(task, self.name)
        return Remote(_procpool.pickled_task(fn, self.name), getattr(fn, "__qualname__", repr(fn)))

    def _form(self, task):
        if getattr(getattr(task, "sync_fn", task), "runs_in_caller", False):
            return sync_form(task, self.name)  # its records reach the workers through adapt()
        return self.adapt(task)

    def _drive(self, run: Run) -> None:
        lease = _procpool.Lease(_procpool.get_pool(), self.max_workers, run.wait_timeout)
        sizer = _procpool.ChunkSizer() if isinstance(run.fn, Remote) else None
        work = self._send if sizer is not None else self._run_in_caller
        chunk_size = sizer.size if sizer is not None else (lambda: 1)
        completed: queue.SimpleQueue = queue.SimpleQueue()
        jobs = run.jobs
        try:
            with CallPool(self.max_workers, "fanout-processes") as threads:
                submit = threads.executor.submit
                inflight = 0
                for _ in range(self.max_workers * WINDOW_PER_WORKER):
                    chunk = list(islice(jobs, chunk_size()))
                    if not chunk:
                        break
                    submit(work, lease, run, chunk, sizer).add_done_callback(completed.put)
                    inflight += 1
                while inflight:
                    try:
                        future = completed.get(timeout=run.wait_timeout())
                    except queue.Empty:
                        if run.expired():
                            # Each driver thread returns as soon as its worker is gone.
                            lease.interrupt()
                            return
                        continue
                    inflight -= 1
                    future.result()  # a BaseException from a task, re-raised here
                    chunk = list(islice(jobs, chunk_size()))
                    if chunk:
                        submit(work, lease, run, chunk, sizer).add_done_callback(completed.put)
                        inflight += 1
        finally:
            lease.close()

    @staticmethod
    def _send(lease, run: Run, chunk: list, sizer) -> None:
        try:
            results, elapsed = lease.worker().call(run.fn.data, [item for _, item in chunk], lease.timeout())
        except DeadlineExceeded:
            return  # still in flight: finish() reports the chunk as not finished
        except _procpool.WorkerError as exc:
            for index, _ in chunk:
                run.failed(index, exc)
            return
        sizer.observe(len(results), elapsed)
        for (index, _), (ok, value) in zip(chunk, results):
            if ok:
                run.succeeded(index, value)
            elif isinstance(value, Exception):
                run.failed(index, value)
            else:
                raise value  # KeyboardInterrupt, SystemExit: as from any strategy

    @staticmethod
    def _run_in_caller(lease, run: Run, chunk: list, sizer) -> None:
        _current.lease = lease
        try:
            for job in chunk:
                run_sync(run, job)
        finally:
            _current.lease = None
