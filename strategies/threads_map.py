"""``threads-map``: ThreadPoolExecutor.map, fed in bounded windows."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FuturesTimeout
from functools import partial
from itertools import islice

from .. import _limiter
from .._run import Run, run_sync
from .base import WINDOW_PER_WORKER, CallPool, Strategy


MIN_AUTO_WINDOW = 16


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
        # Under auto each window is the limit, sized as it is queued, but at least
        # MIN_AUTO_WINDOW: executor.map's cost per window would swamp small ones. So
        # up to twice the limit (and never more than the pool, auto's cap) may run.
        size = (lambda: fixed) if limiter is None else (lambda: max(limiter.limit, MIN_AUTO_WINDOW))
        if limiter is not None:
            # Jobs complete inside executor.map, on the pool's threads: each is timed there.
            run.fn = _limiter.metered(run.fn, limiter)
        work = partial(run_sync, run)
        jobs = run.jobs
        with CallPool(self.max_workers, "fanout", limiter) as pool:
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
