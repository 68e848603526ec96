"""``threads``: ThreadPoolExecutor with submit and as_completed, results placed by index."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from itertools import islice

from .._run import Run, run_sync
from .base import WINDOW_PER_WORKER, Strategy


class ThreadsStrategy(Strategy):
    """Submit a bounded window of jobs; as each completes, submit the next.

    The executor lives for one call, so no thread outlives it (unless a task hangs
    past the deadline: that thread is left to finish on its own and its result is
    ignored).
    """

    name = "threads"

    def _drive(self, run: Run) -> None:
        window = self.max_workers * WINDOW_PER_WORKER
        pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="fanout")
        hung = False
        try:
            submit = pool.submit
            jobs = run.jobs
            inflight = {submit(run_sync, run, job) for job in islice(jobs, window)}
            while inflight:
                # as_completed watches the set as it is now; refilled futures join the next round.
                try:
                    for future in as_completed(set(inflight), timeout=run.wait_timeout()):
                        inflight.discard(future)
                        future.result()  # re-raises a BaseException from the task
                        for job in jobs:
                            inflight.add(submit(run_sync, run, job))
                            break
                except FuturesTimeout:
                    if run.expired():
                        hung = True
                        return
        finally:
            pool.shutdown(wait=not hung, cancel_futures=True)
