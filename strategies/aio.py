"""``asyncio``: a fixed pool of worker coroutines on the shared event loop."""

from __future__ import annotations

import asyncio

from .. import _loop
from .._run import Run
from .._task import async_form
from .base import Strategy

#: How long past the deadline ``map`` waits for the loop before it stops waiting: only a
#: blocking call inside a coroutine, which holds the whole loop, can take that long.
_LOOP_GRACE_S = 0.05


class AsyncioStrategy(Strategy):
    """``max_workers`` coroutines, each pulling the next job from the shared input
    (under auto, as many as the limiter's limit, spawned and retired as it moves).

    A fixed pool keeps memory flat whatever the input size, where gather over a
    semaphore would make one task per item. ``map`` runs on the loop shared by every
    thread and warm invocation (:mod:`lambda_fanout._loop`); ``amap`` runs on the
    caller's running loop.
    """

    needs_async_form = True

    def adapt(self, task):
        """The coroutine function this strategy awaits for ``task`` (a sync-only task runs inline)."""
        return async_form(task)

    def _drive(self, run: Run) -> None:
        future = _loop.submit(self._adrive(run))
        while True:
            timeout = run.wait_timeout()
            try:
                future.result(None if timeout is None else timeout + _LOOP_GRACE_S)
                return
            except TimeoutError:
                if run.reading:
                    continue  # a read of the caller's iterator finishes first, as under every strategy
                # A blocking call holds the loop: stop waiting; the ledger reports what did not finish.
                future.cancel()
                return

    async def _adrive(self, run: Run) -> None:
        jobs = run.jobs
        aexecute = run.aexecute
        meter = run.meter
        loop = asyncio.get_running_loop()
        context = run.context
        workers: list[asyncio.Task] = []
        alive = [0]
        drained = [False]  # a worker found no job left: one spawned now would find none either

        def spawn() -> None:
            # Each worker starts from its own copy of the caller's context (under auto it
            # holds the run's limiter too, for botocore's hook), wherever it is spawned:
            # one spawned by a running worker never sees what that worker's items set.
            alive[0] += 1
            workers.append(loop.create_task(worker(), context=context.copy()))

        async def worker() -> None:
            try:
                if meter is None:
                    # Pulling from the generator never awaits, so workers never race on it.
                    for job in jobs:
                        await aexecute(job)
                    return
                # Under auto the jobs the meter picks by stride are timed here, and then the
                # pool follows the limit: a worker retires above it and spawns others below it.
                untimed = 0
                for job in jobs:
                    if untimed:
                        untimed -= 1
                        await aexecute(job)
                        continue
                    started, untimed = meter.start()
                    ok = await aexecute(job)
                    meter.done(started, alive[0] - 1, ok is not False)
                    if alive[0] > meter.limit:
                        return
                    while alive[0] < meter.limit and not drained[0]:
                        spawn()
                drained[0] = True
            finally:
                alive[0] -= 1

        for _ in range(self.max_workers if meter is None else meter.limit):
            spawn()
        try:
            while True:
                # Under auto the set of workers changes as they spawn and retire.
                for task in workers:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # the ledger records task errors: only a bug gets here
                workers[:] = [task for task in workers if not task.done()]
                if not workers:
                    return
                await asyncio.wait(workers, timeout=run.wait_timeout(), return_when=asyncio.FIRST_COMPLETED)
                if run.must_return() or (run.expired() and not all(task.done() for task in workers)):
                    return  # finish() raises the fatal error, or reports what is still running
        finally:
            # Whatever ends the call (done, deadline, fatal error, the caller's cancel), no
            # job starts after it; then the workers are cancelled, and waited for only
            # briefly: a task that delays its cancellation does not hold the caller.
            run.wind_down()
            for task in workers:
                task.cancel()
            if workers:
                _, stragglers = await asyncio.wait(workers, timeout=_LOOP_GRACE_S)
                for task in stragglers:
                    task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task) -> None:
    # A straggler's outcome belongs to a call that has returned: retrieve it so asyncio
    # does not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
