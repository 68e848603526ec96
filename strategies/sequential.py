"""``sequential``: a plain loop, the reference every other strategy is checked against."""

from __future__ import annotations

from .._run import Run, run_sync
from .base import CallPool, Strategy


class SequentialStrategy(Strategy):
    """One item at a time, in order. ``max_workers`` is always 1.

    Without a Lambda context it is a plain loop. With one, each item runs on a single
    helper thread so that a hung item cannot hold the invocation past the deadline:
    the loop stops waiting at the margin, reports the item, and returns.
    """

    name = "sequential"
    concurrent = False

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)  # still validates the setting
        self.max_workers = 1

    def _drive(self, run: Run) -> None:
        if run.context is None:
            for job in run.jobs:
                run_sync(run, job)
            return
        from concurrent.futures import TimeoutError as FuturesTimeout

        with CallPool(1, "fanout-sequential") as pool:
            for job in run.jobs:
                try:
                    pool.executor.submit(run_sync, run, job).result(timeout=run.wait_timeout())
                except FuturesTimeout:
                    pool.hung = True
                    return
