"""``asyncio``: a fixed pool of worker coroutines on an event loop reused across invocations."""

from __future__ import annotations

import asyncio

from .._loop import get_loop
from .._run import Run, run_async
from .._task import async_form
from .base import Strategy


class AsyncioStrategy(Strategy):
    """``max_workers`` coroutines, each pulling the next job from the shared input.

    A fixed pool keeps memory flat whatever the input size, where gather over a
    semaphore would make one task per item. ``map`` runs on this thread's reused
    loop; ``amap`` runs on the caller's running loop.
    """

    name = "asyncio"
    form = "async"

    def _form(self, task):
        return async_form(task)

    def _drive(self, run: Run) -> None:
        get_loop().run_until_complete(self._adrive(run))

    async def _adrive(self, run: Run) -> None:
        jobs = run.jobs

        async def worker() -> None:
            # Pulling from the generator never awaits, so workers never race on it.
            for job in jobs:
                await run_async(run, job)

        loop = asyncio.get_running_loop()
        workers = [loop.create_task(worker()) for _ in range(self.max_workers)]
        try:
            pending = set(workers)
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=run.wait_timeout(), return_when=asyncio.FIRST_EXCEPTION
                )
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()
                if pending and run.expired():
                    return  # finish() reports what is still in flight
        finally:
            # Nothing is left pending on the reused loop after a call.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
