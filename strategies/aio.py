"""``asyncio``: a fixed pool of worker coroutines on an event loop reused across invocations."""

from __future__ import annotations

import asyncio
import time

from .. import _limiter
from .._loop import get_loop
from .._run import Run, run_async
from .._task import async_form
from .base import Strategy


class AsyncioStrategy(Strategy):
    """``max_workers`` coroutines, each pulling the next job from the shared input
    (under auto, as many as the limiter's limit, spawned and retired as it moves).

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
        limiter = run.limiter
        loop = asyncio.get_running_loop()
        clock = time.perf_counter
        workers: list[asyncio.Task] = []
        alive = [0]

        def spawn() -> None:
            alive[0] += 1
            workers.append(loop.create_task(worker()))

        async def worker() -> None:
            try:
                if limiter is None:
                    # Pulling from the generator never awaits, so workers never race on it.
                    for job in jobs:
                        await run_async(run, job)
                    return
                # Under auto one job in limiter.stride is timed here, and then the pool
                # follows the limit: a worker retires above it and spawns others below it.
                _limiter.current.set(limiter)  # this worker's own context
                skip = 0
                for job in jobs:
                    if skip:
                        skip -= 1
                        await run_async(run, job)
                        continue
                    skip = limiter.stride - 1
                    started = clock()
                    ok = await run_async(run, job)
                    limiter.sample(started, clock(), alive[0] - 1, ok)
                    if alive[0] > limiter.limit:
                        return
                    while alive[0] < limiter.limit:
                        spawn()
            finally:
                alive[0] -= 1

        for _ in range(self.max_workers if limiter is None else limiter.limit):
            spawn()
        try:
            while True:
                for task in workers:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()
                workers[:] = [task for task in workers if not task.done()]
                if not workers:
                    return
                await asyncio.wait(workers, timeout=run.wait_timeout(), return_when=asyncio.FIRST_COMPLETED)
                if run.expired() and not all(task.done() for task in workers):
                    return  # finish() reports what is still in flight
        finally:
            # Nothing is left pending on the reused loop after a call.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
