"""``sequential``: a plain loop, the reference every other strategy is checked against."""

from __future__ import annotations

from .._run import Run
from .base import CallPool, Strategy, thread_pool


class SequentialStrategy(Strategy):
    """One item at a time, in order. ``max_workers`` is always 1.

    Without a deadline it is a plain loop. With one, each job runs on a single helper
    thread so that a hung item cannot hold the invocation past the deadline: the loop
    stops waiting at the margin, and the ledger reports the item.
    """

    concurrent = False

    def __init__(self, settings=None) -> None:
        super().__init__(settings)  # still validates the settings
        self.max_workers = 1

    def _drive(self, run: Run) -> None:
        execute = run.execute
        if run.deadline is None:
            for job in run.jobs:
                execute(job)
            return
        from concurrent.futures import TimeoutError as FuturesTimeout

        with CallPool(run, thread_pool(1, "fanout-sequential")) as pool:
            for job in run.jobs:
                try:
                    pool.executor.submit(execute, job).result(timeout=run.wait_timeout())
                except FuturesTimeout:
                    return
