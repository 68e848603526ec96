"""The strategy contract: one required method (``_drive``), everything else built on it.

What every strategy shares goes here: argument checks and opening the ledger
(:meth:`Strategy.start`), the per-strategy rules with their defaults (class attributes
and methods a subclass overrides: ``needs_async_form``, ``concurrent``,
``runs_in_processes``, ``has_form_for``, ``default_workers``, ``auto_workers``, ``adapt``), and the
drivers more than one strategy uses (:func:`thread_pool`, :class:`CallPool`, :func:`drive_window`). What
one strategy alone does goes in its own module; selection is in
``lambda_fanout.strategies``; every guarantee about records is the ledger's
(``lambda_fanout._run``); ``auto`` is reached only through the run's meter
(``lambda_fanout._limiter.Meter``).
"""

from __future__ import annotations

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future
    from typing import Any, Callable, Iterable, Iterator

    from .._config import Settings
    from .._limiter import Meter

import queue
import sys
from time import monotonic

from .. import _config, _metrics
from . import CLASSES
from .._run import CallEnd, Run, deadline_of
from .._errors import TaskError, kind
from .._task import Results, has_async_form, has_sync_form, sync_form

#: How many items a strategy keeps in flight per worker: enough to keep every
#: worker busy while the driver hands out the next job, small enough that a huge
#: generator is never read far ahead.
WINDOW_PER_WORKER = 2


def thread_pool(workers: int, name: str) -> Any:
    """A ThreadPoolExecutor of ``workers`` threads named ``name``, for a :class:`CallPool`."""
    from concurrent.futures import ThreadPoolExecutor  # on first use: no cost at import (cold start)

    return ThreadPoolExecutor(workers, thread_name_prefix=name)


class CallPool:
    """The threads of one call of ``run``, shut down when the call ends.

    On exit, jobs queued but not started are cancelled (the run would refuse to start
    them anyway), and the pool waits for the running ones only until the run's deadline,
    or not at all once a fatal error was recorded: a hung task keeps its thread, and
    its late result is written nowhere.

    ``executor`` is a :func:`thread_pool`, or a strategy's own pool with
    ThreadPoolExecutor's ``shutdown`` that keeps its threads, as ThreadPoolExecutor
    does, in ``_threads``. Each job runs in a copy of the run's context
    (``Run.execute``), which under auto also holds the run's limiter (the meter entered
    it there), so botocore's retry hook reports throttled attempts to it: the threads
    themselves need no setup.
    """

    def __init__(self, run: Run, executor: Any) -> None:
        self.run = run
        self.executor = executor

    def __enter__(self) -> "CallPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        executor = self.executor
        executor.shutdown(wait=False, cancel_futures=True)
        if self.run.must_return():
            return
        # shutdown(wait=True) has no timeout, so the workers are joined here against the
        # deadline. ThreadPoolExecutor keeps them in _threads (stable since Python 3.2).
        timeout = self.run.wait_timeout()
        end = None if timeout is None else monotonic() + timeout
        for thread in list(getattr(executor, "_threads", ())):
            thread.join(None if end is None else max(end - monotonic(), 0.0))


def drive_window(
    run: Run,
    jobs: Iterator[Any],
    submit: Callable[[Any], Future],
    window: int,
    *,
    meter: Meter | None = None,
    on_stuck: Callable[[], None] | None = None,
) -> None:
    """Keep up to ``window`` jobs in flight: as each completes, submit the next.

    This is the submit + as_completed pattern with a sliding window. as_completed
    itself watches a fixed set of futures, so one slow job would stall every refill
    until it finished; completions are taken instead from a queue fed by each
    future's done-callback, in the order as_completed would yield them. It returns
    once every job submitted has completed and ``jobs`` is exhausted, at the deadline
    margin, or at once after a fatal error.

    Args:
        run: the ledger of the call: its deadline and its fatal errors end the wait.
        jobs: what to submit, pulled only as room opens (``run.jobs``, or chunks of it).
        submit: starts one job elsewhere (a pool thread) and returns its Future, whose
            result is ``run.execute``'s (False: the record failed or did not start).
        window: the most jobs in flight at a time.
        meter: under ``max_workers="auto"``, the run's meter: the window is then its
            own (``Meter.window``), read at each completion, and ``submit`` must run no
            more than its limit at a time and time the jobs where they run (as the
            ``threads`` strategy's pool does).
        on_stuck: called when the driver stops with jobs still running (deadline or
            fatal error), before it returns: how a strategy ends what still runs.
    """
    completed: queue.SimpleQueue = queue.SimpleQueue()
    on_done = completed.put
    inflight = 0
    room = window if meter is None else meter.window()
    while True:
        if room > 0:
            for job in jobs:
                submit(job).add_done_callback(on_done)
                inflight += 1
                room -= 1
                if not room:
                    break
        if not inflight:
            return
        try:
            future = completed.get(timeout=run.wait_timeout())
        except queue.Empty:
            if not run.expired():
                continue
            break
        inflight -= 1
        future.result()  # the ledger records every task error: this raises only on a bug
        if run.must_return():
            break
        room = (window if meter is None else meter.window()) - inflight
    if inflight and on_stuck is not None:
        on_stuck()


class Strategy:
    """Runs one task over many items with a given concurrency mechanism.

    Subclasses implement :meth:`_drive` only: pull jobs from ``run.jobs`` and run each
    with ``run.execute(job)`` (or ``await run.aexecute(job)``), at most ``max_workers``
    at a time, returning early when ``run.expired()`` or ``run.must_return()``
    (:func:`drive_window` does this for a pool of threads). A strategy that ships records
    elsewhere (another process) starts and reports each itself instead, with the ledger's
    start protocol (``run.begin``, ``run.unbegin``, ``run.settle``, ``run.fail``).
    Ordering, raise/collect, deadlines and every report live in :class:`~lambda_fanout._run.Run`.

    Strategies are context managers; :meth:`close` releases anything kept between
    calls (nothing, by default).

    Args:
        settings: the resolved settings (``Settings.resolve()``); None resolves them now.
    """

    #: The strategy's name, as FANOUT_STRATEGY spells it: its key in
    #: ``lambda_fanout.strategies.CLASSES``, the one place names are declared (set below
    #: when the class is defined).
    name: str = ""
    #: False for a strategy that runs one item at a time (auto has nothing to adapt there).
    concurrent: bool = True
    #: True for a strategy that awaits a task's coroutine form: a record handler then
    #: needs one, and a botocore the function bundles must suit aiobotocore.
    needs_async_form: bool = False
    #: True for a strategy whose tasks run in other processes (they must pickle).
    runs_in_processes: bool = False

    @classmethod
    def has_form_for(cls, task: Any) -> bool:
        """Whether ``task`` has the form this strategy runs: its coroutine form when
        :attr:`needs_async_form`, else its blocking one (how an unset FANOUT_STRATEGY picks)."""
        return has_async_form(task) if cls.needs_async_form else has_sync_form(task)

    @classmethod
    def default_workers(cls, memory_mb: int | None) -> int | _config.Auto:
        """``max_workers`` when neither the argument nor FANOUT_MAX_WORKERS sets it: auto here.

        Args:
            memory_mb: the function's memory (``Settings.memory_mb``), None outside Lambda.
        """
        return _config.resolve_workers(_config.DEFAULT_MAX_WORKERS)

    @classmethod
    def auto_workers(cls, workers: _config.Auto, default: int) -> int | _config.Auto:
        """What ``max_workers="auto"`` means here: the adaptive limit (``workers``) unless overridden.

        Args:
            workers: the auto setting (its cap).
            default: :meth:`default_workers`' setting.
        """
        return workers

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, (module, class_name) in CLASSES.items():
            if (cls.__module__, cls.__qualname__) == (f"{__package__}.{module}", class_name):
                cls.name = name

    def __init__(self, settings: Settings | None = None) -> None:
        if settings is None:
            settings = _config.Settings.resolve(strategy=self.name)
        self.settings = settings
        #: The most threads, coroutines or connections a call may use: the count, or auto's cap.
        self.max_workers = _config.pool_size(settings.max_workers)

    # -- the one required method ------------------------------------------------------

    def _drive(self, run: Run) -> None:
        """Run the jobs of ``run`` until it hands out no more (or its deadline passes)."""
        raise NotImplementedError

    # -- built on it ------------------------------------------------------------------

    def adapt(self, task: Any) -> Callable[[Any], Any]:
        """The callable this strategy runs for ``task``: its blocking form here.

        Raises:
            ConfigError: the task has no form this strategy can run.
        """
        return sync_form(task, self.name)

    def start(
        self,
        task: Any,
        items: Iterable[Any],
        *,
        errors: str = "raise",
        context: Any = None,
        groups: list[list[int]] | None = None,
        check: Callable[[Any], Any] | None = None,
        stop_on_failure: bool = False,
        tracebacks: int | None = None,
        reserve_ms: int = 0,
    ) -> Run:
        """Check the arguments and open the ledger of one call (nothing runs yet).

        Args:
            task: as for :meth:`map`.
            items: the records.
            errors: "raise" or "collect".
            context: the Lambda context, or None.
            groups, check, stop_on_failure, tracebacks: see :class:`~lambda_fanout._run.Run`.
            reserve_ms: time kept beyond the deadline margin for what follows the call (a
                batch's reply), added to it.

        Raises:
            ConfigError: a bad ``errors`` value, a task without the form this strategy runs,
                or a context whose remaining time is not a number.
            TypeError: ``items`` is not an iterable of items.
        """
        collect = _config.error_mode(errors) == "collect"
        if isinstance(items, (str, bytes)):
            raise TypeError(
                f"items must be an iterable of items but got {kind(items)}; "
                "wrap a single item in a list."
            )
        try:
            iter(items)  # a non-iterable is refused before any work starts
        except TypeError:
            raise TypeError(
                f"items must be an iterable of items (a list, a generator...) but got {kind(items)}; "
                "pass the records as a list, or wrap a single item in a list."
            ) from None
        fn = self.adapt(task)
        margin = self.settings.deadline_margin_ms + reserve_ms
        workers = self.settings.max_workers
        meter = None
        if isinstance(workers, _config.Auto) and self.concurrent:
            from .._limiter import Meter, limiter_for  # loaded only under auto: cold starts stay short

            # What it learned persists across warm calls, per task and strategy; new settings reset it.
            meter = Meter(limiter_for(task, self.name, workers, self.settings))
        return Run(fn, items, collect=collect, deadline=deadline_of(context, margin), margin_ms=margin,
                   groups=groups, check=check, stop_on_failure=stop_on_failure, meter=meter,
                   tracebacks=tracebacks)

    def run(self, run: Run, then: Callable[[Results], Any] | None = None) -> Any:
        """Drive ``run`` to its end on this thread and return :meth:`Run.finish`'s results.

        With ``then``, return ``then(results)`` instead: the caller's reply, built as
        finish() runs, with the garbage collector paused (:class:`~lambda_fanout._run.CallEnd`),
        so the end of a call fits in the deadline margin.
        """
        _refuse_running_loop()
        with CallEnd(run) as end:
            with _metrics.measure(self, run):
                self._drive(run)
                end.finish()
            return end.reply(then)

    async def arun(self, run: Run, then: Callable[[Results], Any] | None = None) -> Any:
        """Drive ``run`` without blocking the running event loop; cancelling it starts no further job.

        ``then`` as for :meth:`run`.
        """
        with CallEnd(run) as end:
            with _metrics.measure(self, run):
                try:
                    await self._adrive(run)
                except BaseException:
                    run.stop()
                    raise
                end.finish()
            return end.reply(then)

    def map(self, task: Any, items: Iterable[Any], *, errors: str = "raise", context: Any = None) -> Results:
        """Run ``task`` on every item; results in input order.

        Args:
            task: a plain function, a coroutine function or a :class:`~lambda_fanout.Task`.
            items: any iterable, consumed lazily.
            errors: "raise" (default) or "collect".
            context: the Lambda context, or None.

        Returns:
            The values in input order ("raise"), or one Outcome per item read ("collect");
            ``.unread`` is True when the deadline left input unread.

        Raises:
            TaskError: errors="raise" and a task failed, or the deadline cut the run.
            ConfigError: a bad ``errors`` value, or a task without the form this strategy runs.
            RuntimeError: called inside a running event loop.
        """
        run = self.start(task, items, errors=errors, context=context)
        try:
            return self.run(run, lambda results: _logged(self.settings, run, results))
        except TaskError as error:
            _log_raised(self.settings, run, error)
            raise

    async def amap(self, task: Any, items: Iterable[Any], *, errors: str = "raise", context: Any = None) -> Results:
        """Awaitable :meth:`map` for callers already inside an event loop."""
        run = self.start(task, items, errors=errors, context=context)
        try:
            return await self.arun(run, lambda results: _logged(self.settings, run, results))
        except TaskError as error:
            _log_raised(self.settings, run, error)
            raise

    async def _adrive(self, run: Run) -> None:
        # A sync strategy keeps the caller's loop free by driving from a thread of its own
        # (not asyncio.to_thread: asyncio.run would wait at exit for a driver still waiting
        # on a hung task after the caller was cancelled).
        import asyncio
        import contextvars
        import threading
        from concurrent.futures import Future

        done: Future = Future()
        context = contextvars.copy_context()

        def drive() -> None:
            # A cancelled caller has cancelled `done` already: then nobody awaits the outcome.
            try:
                context.run(self._drive, run)
            except BaseException as exc:  # handed to the awaiting caller, whatever it is
                if done.set_running_or_notify_cancel():
                    done.set_exception(exc)
            else:
                if done.set_running_or_notify_cancel():
                    done.set_result(None)

        threading.Thread(target=drive, name=f"fanout-{self.name}-amap", daemon=True).start()
        await asyncio.wrap_future(done)

    def close(self) -> None:
        """Release anything held between calls. The base holds nothing."""

    def __enter__(self) -> "Strategy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} max_workers={self.max_workers}>"


def _logged(settings: Settings, run: Run, results: Results) -> Results:
    # errors="collect" hands failures back as Outcomes: each gets its log line, as a
    # batch record does. errors="raise" raised TaskError before reaching here.
    if run.collect:
        failed = [(o.index, None, o.error) for o in results if o.error is not None]
        if failed:
            from .._failures import log_failures

            log_failures(settings, "map", failed)
    return results


def _log_raised(settings: Settings, run: Run, error: TaskError) -> None:
    # errors="raise": the failure the TaskError reports gets the line collect mode
    # would write for it, once (the input iterator's own exception is not a record's).
    if error is not run.input_error and settings.log_failures != "off":
        from .._failures import log_failures

        log_failures(settings, "map", [(error.index, None, error.__cause__)])


def _refuse_running_loop() -> None:
    aio = sys.modules.get("asyncio")
    if aio is None:
        return  # no loop can be running if asyncio was never imported
    try:
        aio.get_running_loop()
    except RuntimeError:
        return
    # Blocking there would stall the loop, and on the asyncio strategy's own loop thread (a
    # plain function it runs inline, nesting a call) wait forever for work queued behind it.
    raise RuntimeError(
        "lambda_fanout was asked to run a call to its end (map, process_batch, a batch processor) "
        "from inside a running event loop, where it would block the loop. Inside a coroutine use "
        "`await lambda_fanout.amap(...)`, or run the blocking call on a thread of its own "
        "(`await asyncio.to_thread(lambda_fanout.process_batch, event, handler, context)`); in a plain "
        "function that the asyncio strategy runs on its loop, give the function an async form, or use "
        "FANOUT_STRATEGY=threads."
    )
