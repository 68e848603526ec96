"""The strategy base: one required method, everything else built on it."""

from __future__ import annotations

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from .. import _config
from .._run import Run
from .._task import sync_form

#: How many items a strategy keeps in flight per worker: enough to keep every
#: worker busy while the driver hands out the next job, small enough that a huge
#: generator is never read far ahead.
WINDOW_PER_WORKER = 2


class CallPool:
    """A thread pool for one call, shut down when the call ends.

    ``with CallPool(n) as pool:`` waits for the workers on exit, unless the call set
    ``pool.hung`` because a task ran past the deadline: then the pool is left to that
    thread (its result is ignored) and jobs not yet started are cancelled.
    """

    def __init__(self, workers: int, name: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self.hung = False

    def __enter__(self) -> "CallPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.executor.shutdown(wait=not self.hung, cancel_futures=True)


class Strategy:
    """Runs one task over many items with a given concurrency mechanism.

    Subclasses implement :meth:`_drive` only: pull jobs from ``run.jobs`` and run
    each with ``run_sync(run, job)`` (or its async twin), at most ``max_workers``
    at a time. Ordering, raise/collect, deadlines and reporting live in :class:`Run`.

    Strategies are context managers; :meth:`close` releases anything kept between
    calls (nothing, by default).
    """

    name: str = ""
    #: "sync" strategies run a task's blocking form, "async" its coroutine form.
    form: str = "sync"

    def __init__(self, max_workers: int | None = None) -> None:
        """Build the strategy.

        Args:
            max_workers: concurrency; None reads FANOUT_MAX_WORKERS, else the default.

        Raises:
            ConfigError: the worker count is not a whole number from 1 to 1024.
        """
        self.max_workers = _config.max_workers(max_workers)
        self._margin_ms = _config.deadline_margin_ms()

    # -- the one required method ------------------------------------------------------

    def _drive(self, run: Run) -> None:
        """Run every job of ``run`` to completion (or until ``run`` stops handing them out)."""
        raise NotImplementedError

    # -- built on it ------------------------------------------------------------------

    def _form(self, task: Any) -> Callable[[Any], Any]:
        return sync_form(task, self.name)

    def adapt(self, task: Any) -> Any:
        """``task`` as this strategy runs one item of it; unchanged except for ``processes``."""
        return task

    def _start(self, task: Any, items: Iterable[Any], errors: str, context: Any) -> Run:
        collect = _config.error_mode(errors) == "collect"
        if isinstance(items, (str, bytes)):
            raise TypeError(
                f"items must be an iterable of items but got a {type(items).__name__}; "
                "wrap a single item in a list."
            )
        iter(items)  # TypeError for a non-iterable, before any work starts
        return Run(self._form(task), items, collect=collect, context=context, margin_ms=self._margin_ms)

    def map(self, task: Any, items: Iterable[Any], *, errors: str = "raise", context: Any = None) -> list[Any]:
        """Run ``task`` on every item; results in input order.

        Args:
            task: a plain function, a coroutine function or a :class:`~lambda_fanout.Task`.
            items: any iterable, consumed lazily.
            errors: "raise" (default) or "collect".
            context: the Lambda context, or None.

        Returns:
            The values in input order ("raise"), or one Outcome per item ("collect").

        Raises:
            TaskError: errors="raise" and a task failed, or the deadline cut the run.
            ConfigError: a bad ``errors`` value, or a task without the form this strategy runs.
        """
        _refuse_running_loop()
        run = self._start(task, items, errors, context)
        from .. import _metrics

        with _metrics.measure(self, run):
            self._drive(run)
            return run.finish()

    async def amap(self, task: Any, items: Iterable[Any], *, errors: str = "raise", context: Any = None) -> list[Any]:
        """Awaitable :meth:`map` for callers already inside an event loop."""
        run = self._start(task, items, errors, context)
        from .. import _metrics

        with _metrics.measure(self, run):
            await self._adrive(run)
            return run.finish()

    async def _adrive(self, run: Run) -> None:
        # A sync strategy keeps the caller's loop free by driving from a thread.
        import asyncio

        await asyncio.to_thread(self._drive, run)

    def close(self) -> None:
        """Release anything held between calls. The base holds nothing."""

    def __enter__(self) -> "Strategy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} max_workers={self.max_workers}>"


def _refuse_running_loop() -> None:
    import sys

    aio = sys.modules.get("asyncio")
    if aio is None:
        return  # no loop can be running if asyncio was never imported
    try:
        aio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "lambda_fanout.map() was called from inside a running event loop, where it would block "
        "the loop. Use `await lambda_fanout.amap(...)` there instead."
    )
