"""``threads``: ThreadPoolExecutor, submit, results handled in completion order, placed by index."""

from __future__ import annotations

from functools import partial

from .._run import Run
from .base import WINDOW_PER_WORKER, CallPool, Strategy, drive_window


class ThreadsStrategy(Strategy):
    """Submit a bounded window of jobs; as each completes, submit the next.

    This is the submit + as_completed pattern with a sliding window
    (:func:`~lambda_fanout.strategies.base.drive_window`): completions are handled
    in the order as_completed would yield them, without one slow item stalling
    every refill. Under auto the window follows the run's meter.

    The executor lives for one call, so no thread outlives it (unless a task hangs
    past the deadline: that thread is left to finish on its own and its result is
    ignored).
    """

    def _drive(self, run: Run) -> None:
        with CallPool(run, self.max_workers, "fanout") as pool:
            drive_window(run, run.jobs, partial(pool.executor.submit, run.execute),
                         self.max_workers * WINDOW_PER_WORKER, meter=run.meter)
