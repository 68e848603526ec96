"""``threads``: ThreadPoolExecutor, submit, results handled in completion order, placed by index."""

from __future__ import annotations

import queue
import time
from itertools import islice

from .._run import Run
from .base import WINDOW_PER_WORKER, CallPool, Strategy


class ThreadsStrategy(Strategy):
    """Submit a bounded window of jobs; as each completes, submit the next.

    This is the submit + as_completed pattern with a sliding window. as_completed
    itself watches a fixed set of futures, so one slow item would stall every refill
    until it finished; completions are taken instead from a queue fed by each
    future's done-callback, in the order as_completed would yield them.

    The executor lives for one call, so no thread outlives it (unless a task hangs
    past the deadline: that thread is left to finish on its own and its result is
    ignored).
    """

    name = "threads"

    def _drive(self, run: Run) -> None:
        window = self.max_workers * WINDOW_PER_WORKER
        # Under auto the window is the limiter's limit, read at each completion, and one
        # job in limiter.stride is timed from submission to completion, on this thread.
        limiter = run.limiter
        clock = time.perf_counter
        skip = 0
        completed: queue.SimpleQueue = queue.SimpleQueue()
        with CallPool(run, self.max_workers, "fanout") as pool:
            executor_submit = pool.executor.submit
            execute = run.execute
            on_done = completed.put

            def submit(job):
                nonlocal skip
                future = executor_submit(execute, job)
                if limiter is not None:
                    if skip:
                        skip -= 1
                    else:
                        skip = limiter.stride - 1
                        future.started = clock()
                future.add_done_callback(on_done)

            jobs = run.jobs
            inflight = 0
            for job in islice(jobs, window if limiter is None else limiter.limit):
                submit(job)
                inflight += 1
            while inflight:
                try:
                    future = completed.get(timeout=run.wait_timeout())
                except queue.Empty:
                    if run.expired():
                        return
                    continue
                inflight -= 1
                ok = future.result()  # the ledger records every task error: this raises only on a bug
                if run.must_return():
                    return
                if limiter is None:
                    room = window - inflight
                else:
                    started = getattr(future, "started", None)
                    if started is not None:
                        # False: failed or not started; None: a group (its records report themselves).
                        limiter.sample(started, clock(), inflight, ok is not False)
                    room = limiter.limit - inflight
                if room > 0:
                    for job in jobs:
                        submit(job)
                        inflight += 1
                        room -= 1
                        if not room:
                            break
