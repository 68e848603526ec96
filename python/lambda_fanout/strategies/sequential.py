"""``sequential``: a plain loop, the reference every other strategy is checked against."""

from __future__ import annotations

from .._run import Run, run_sync
from .base import Strategy


class SequentialStrategy(Strategy):
    """One item at a time, in order. ``max_workers`` is always 1."""

    name = "sequential"

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)  # still validates the setting
        self.max_workers = 1

    def _drive(self, run: Run) -> None:
        for job in run.jobs:
            run_sync(run, job)
