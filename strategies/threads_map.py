"""``threads-map``: ThreadPoolExecutor.map, fed in bounded windows."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FuturesTimeout
from itertools import islice

from .._run import Run
from .base import WINDOW_PER_WORKER, CallPool, Strategy


class ThreadsMapStrategy(Strategy):
    """``executor.map`` over consecutive windows, the next window queued while one drains.

    executor.map submits everything it is given at once, so it is handed one window
    at a time; keeping the following window already submitted means workers never
    idle at a window's edge. It yields in input order, so one hung item holds back the
    refill until the deadline: what was not started by then is reported as such.
    """

    name = "threads-map"

    def _drive(self, run: Run) -> None:
        size = self.max_workers * WINDOW_PER_WORKER
        execute = run.execute
        jobs = run.jobs
        with CallPool(run, self.max_workers, "fanout") as pool:
            current = pool.executor.map(execute, list(islice(jobs, size)), timeout=run.wait_timeout())
            while True:
                window = list(islice(jobs, size))
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
