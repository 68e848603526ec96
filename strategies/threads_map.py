"""``threads-map``: ThreadPoolExecutor.map, fed in bounded windows."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FuturesTimeout
from itertools import islice

from .._run import Run
from .base import WINDOW_PER_WORKER, CallPool, Strategy, thread_pool

#: Under auto, the smallest window handed to executor.map: its cost per window would
#: swamp smaller ones.
MIN_AUTO_WINDOW = 16


class ThreadsMapStrategy(Strategy):
    """``executor.map`` over consecutive windows, the next window queued while one drains.

    executor.map submits everything it is given at once, so it is handed one window
    at a time; keeping the following window already submitted means workers never
    idle at a window's edge. It yields in input order, so one hung item holds back the
    refill until the deadline: what was not started by then is reported as such.
    """

    def _drive(self, run: Run) -> None:
        fixed = self.max_workers * WINDOW_PER_WORKER
        meter = run.meter
        # Under auto each window is the limit (at least MIN_AUTO_WINDOW), sized as it is
        # queued; with two queued, up to twice the limit may run, never more than the
        # pool (auto's cap). Jobs complete on the pool's threads, so they are timed there.
        size = (lambda: fixed) if meter is None else (lambda: max(meter.limit, MIN_AUTO_WINDOW))
        execute = run.execute if meter is None else meter.timed(run.execute)
        jobs = run.jobs
        with CallPool(run, thread_pool(self.max_workers, "fanout")) as pool:
            current = pool.executor.map(execute, list(islice(jobs, size())), timeout=run.wait_timeout())
            while True:
                window = list(islice(jobs, size()))
                following = pool.executor.map(execute, window, timeout=run.wait_timeout()) if window else None
                try:
                    for _ in current:
                        if run.must_return():
                            return
                except FuturesTimeout:
                    return  # the deadline margin passed with jobs still running
                if following is None:
                    return
                current = following
