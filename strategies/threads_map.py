"""``threads-map``: ThreadPoolExecutor.map, fed in bounded windows."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FuturesTimeout
from functools import partial
from itertools import islice

from .._run import Run, run_sync
from .base import WINDOW_PER_WORKER, CallPool, Strategy


class ThreadsMapStrategy(Strategy):
    """``executor.map`` over consecutive windows, the next window queued while one drains.

    executor.map submits everything it is given at once, so it is handed one window
    at a time; keeping the following window already submitted means workers never
    idle at a window's edge.
    """

    name = "threads-map"

    def _drive(self, run: Run) -> None:
        fixed = self.max_workers * WINDOW_PER_WORKER
        limiter = run.limiter
        # Under auto two windows are in flight at once, each half the limit, sized as each is queued.
        size = (lambda: fixed) if limiter is None else (lambda: (limiter.limit + 1) // 2)
        work = partial(run_sync, run)
        jobs = run.jobs
        with CallPool(self.max_workers, "fanout") as pool:
            current = pool.executor.map(work, list(islice(jobs, size())), timeout=run.wait_timeout())
            while True:
                window = list(islice(jobs, size()))
                following = pool.executor.map(work, window, timeout=run.wait_timeout()) if window else None
                try:
                    for _ in current:
                        pass
                except FuturesTimeout:
                    # The deadline margin passed with jobs still running; finish()
                    # reports them and everything not started.
                    pool.hung = True
                    return
                if following is None:
                    return
                current = following
