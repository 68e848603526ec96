"""``processes``: CPU-bound items on persistent worker processes, one per vCPU, joined by pipes."""

from __future__ import annotations

import queue
from itertools import islice

from .. import _config, _procpool
from .._errors import DeadlineExceeded
from .._run import Run
from .base import WINDOW_PER_WORKER, CallPool, Strategy


class ProcessesStrategy(Strategy):
    """Chunks of items sent to worker processes that live across warm invocations.

    Each of ``max_workers`` driver threads borrows a worker from the process-wide
    pool for one chunk, sends it down the worker's pipe and reports every item of
    the reply to the run. The chunk size grows while items are cheap, so pickling
    and the round trip are amortised; at most ``max_workers x 2`` chunks are
    taken from the input at a time.

    At the deadline margin every worker still busy is killed (and replaced on the
    next use): no item of this call keeps running, in this invocation or the next.

    ``max_workers`` defaults to the vCPUs the function really has (see
    :func:`lambda_fanout._procpool.vcpus`), not FANOUT_MAX_WORKERS's default.
    """

    name = "processes"

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)  # validates the settings shared with every strategy
        self.max_workers = _config.max_workers(
            max_workers, default=_procpool.vcpus(_config.lambda_memory_mb())
        )
        self._task: bytes | None = None

    def _form(self, task):
        fn = super()._form(task)
        # Refused here, before any item is read or run.
        self._task = _procpool.pickled_task(fn, self.name)
        return fn

    def _drive(self, run: Run) -> None:
        pool = _procpool.get_pool()
        sizer = _procpool.ChunkSizer()
        busy: set = set()
        completed: queue.SimpleQueue = queue.SimpleQueue()
        task, keep = self._task, self.max_workers

        def send(chunk: list) -> None:
            worker = pool.acquire()
            busy.add(worker)
            try:
                results, elapsed = worker.call(task, [item for _, item in chunk], run.wait_timeout())
            except DeadlineExceeded:
                return  # still in flight: finish() reports the chunk as not finished
            except _procpool.WorkerError as exc:
                for index, _ in chunk:
                    run.failed(index, exc)
                return
            finally:
                busy.discard(worker)
                pool.release(worker, keep)
            sizer.observe(len(results), elapsed)
            for (index, _), (ok, value) in zip(chunk, results):
                if ok:
                    run.succeeded(index, value)
                elif isinstance(value, Exception):
                    run.failed(index, value)
                else:
                    raise value  # KeyboardInterrupt, SystemExit: as from any strategy

        jobs = run.jobs
        with CallPool(self.max_workers, "fanout-processes") as threads:
            submit = threads.executor.submit
            inflight = 0
            for _ in range(self.max_workers * WINDOW_PER_WORKER):
                chunk = list(islice(jobs, sizer.size()))
                if not chunk:
                    break
                submit(send, chunk).add_done_callback(completed.put)
                inflight += 1
            while inflight:
                try:
                    future = completed.get(timeout=run.wait_timeout())
                except queue.Empty:
                    if run.expired():
                        # The driver threads return as soon as their worker is gone.
                        for worker in list(busy):
                            worker.interrupt()
                        return
                    continue
                inflight -= 1
                future.result()
                chunk = list(islice(jobs, sizer.size()))
                if chunk:
                    submit(send, chunk).add_done_callback(completed.put)
                    inflight += 1
