"""lambda_fanout: run a Lambda function's fan-out work with a strategy chosen by environment.

    import lambda_fanout
    bodies = lambda_fanout.map(read_object, keys)          # FANOUT_STRATEGY picks how

Importing this package loads no asyncio, boto3 or botocore: each loads when the
strategy or helper that needs it is first used.
"""

from __future__ import annotations

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Coroutine, Iterable, Literal, TypeVar, overload

    from ._limiter import register_throttle_error
    from .batch import BatchError, process_batch
    from .strategies.base import Strategy

    _Item = TypeVar("_Item")
    _Result = TypeVar("_Result")
    #: The strategy names (STRATEGIES) for type checkers; a test keeps the two equal.
    StrategyName = Literal["sequential", "threads", "threads-map", "asyncio", "processes"]
    #: ``max_workers``: a count, ``"auto"`` or ``"auto:N"``.
    Workers = int | str
else:
    def overload(fn):
        """typing.overload for type checkers; at run time the last definition stands."""
        return fn

from ._config import (
    Settings,
    DEFAULT_DEADLINE_MARGIN_MS,
    DEFAULT_MAX_WORKERS,
    DEFAULT_STRATEGY,
    ENV_DEADLINE_MARGIN_MS,
    ENV_MAX_WORKERS,
    ENV_METRICS,
    ENV_METRICS_NAMESPACE,
    ENV_RECORD_HANDLER,
    ENV_LOG_FAILURES,
    ENV_STRATEGY,
)
from ._errors import ConfigError, DeadlineExceeded, SkippedAfterFailure, TaskError
from ._task import Outcome, Results, Task
from .strategies import STRATEGIES, build as _build

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES", "map", "amap", "get_strategy", "Task", "Outcome", "Results", "TaskError",
    "DeadlineExceeded", "SkippedAfterFailure", "ConfigError", "Settings", "process_batch", "BatchError",
    "register_throttle_error",
    "ENV_STRATEGY", "ENV_MAX_WORKERS", "ENV_DEADLINE_MARGIN_MS", "ENV_RECORD_HANDLER",
    "ENV_METRICS", "ENV_METRICS_NAMESPACE", "ENV_LOG_FAILURES",
    "DEFAULT_STRATEGY", "DEFAULT_MAX_WORKERS", "DEFAULT_DEADLINE_MARGIN_MS",
]


def get_strategy(name: StrategyName | None = None, *, max_workers: Workers | None = None) -> Strategy:
    """Build a strategy object from settings resolved now.

    Args:
        name: one of STRATEGIES; None reads FANOUT_STRATEGY, else "threads".
        max_workers: concurrency, or "auto" / "auto:N" (an adaptive limit up to N,
            default 256); None reads FANOUT_MAX_WORKERS, else "auto" ("processes": its vCPUs).

    Returns:
        A strategy with ``.name``, ``.settings``, ``.max_workers``, ``.adapt(task)``,
        ``.map(...)`` and ``await .amap(...)``.

    Raises:
        ConfigError: an unknown name or a bad setting, from the arguments or the
            environment; every bad one is listed in the one error.
    """
    return _build(Settings.resolve(strategy=name, max_workers=max_workers))


@overload
def map(task: Callable[[_Item], Coroutine[Any, Any, _Result]], items: Iterable[_Item], *,  # noqa: A001
        strategy: StrategyName | None = None, max_workers: Workers | None = None,
        errors: Literal["raise"] = "raise", context: Any = None) -> Results[_Result]: ...
@overload
def map(task: Task[_Item, _Result] | Callable[[_Item], _Result], items: Iterable[_Item], *,  # noqa: A001
        strategy: StrategyName | None = None, max_workers: Workers | None = None,
        errors: Literal["raise"] = "raise", context: Any = None) -> Results[_Result]: ...
@overload
def map(task: Callable[[_Item], Coroutine[Any, Any, _Result]], items: Iterable[_Item], *,  # noqa: A001
        strategy: StrategyName | None = None, max_workers: Workers | None = None,
        errors: Literal["collect"], context: Any = None) -> Results[Outcome[_Result]]: ...
@overload
def map(task: Task[_Item, _Result] | Callable[[_Item], _Result], items: Iterable[_Item], *,  # noqa: A001
        strategy: StrategyName | None = None, max_workers: Workers | None = None,
        errors: Literal["collect"], context: Any = None) -> Results[Outcome[_Result]]: ...
def map(  # noqa: A001 - the package's verb
    task: Task[Any, Any] | Callable[[Any], Any],
    items: Iterable[Any],
    *,
    strategy: StrategyName | None = None,
    max_workers: Workers | None = None,
    errors: Literal["raise", "collect"] = "raise",
    context: Any = None,
) -> Results[Any]:
    """Run ``task`` on every item concurrently; results in input order.

    Settings are resolved once, here: explicit arguments, else ``FANOUT_*`` variables.

    Args:
        task: a plain function, a coroutine function, or a Task with both forms.
        items: any iterable (a generator of millions is fine: it is read lazily,
            a bounded number of items ahead of the finished ones).
        strategy: one of STRATEGIES; None reads FANOUT_STRATEGY, else "asyncio" for a
            task with only an async form (an ``async def``) and "threads" for any other.
        max_workers: concurrency, or "auto" / "auto:N" (an adaptive limit up to N,
            default 256); None reads FANOUT_MAX_WORKERS, else "auto" ("processes": its vCPUs).
        errors: "raise" stops at the first failure, logs one ERROR line for it and
            raises TaskError; "collect" returns one Outcome per item read and logs one
            ERROR line per failed item (both as FANOUT_LOG_FAILURES says; "off": none).
        context: the Lambda context. Once the remaining time falls under
            FANOUT_DEADLINE_MARGIN_MS (default 500 ms) no item starts and no further
            input is read; the call returns by then.

    Returns:
        A :class:`Results` list: the task's values ("raise") or Outcomes ("collect"), in
        input order. ``.unread`` is True when the deadline stopped the call before the
        input ran out (its length is where the input stopped).

    Raises:
        TaskError: a task failed (or the deadline cut the run) with errors="raise";
            ``.index`` and ``.item`` say where, ``__cause__`` is the original error.
        ConfigError: a bad strategy, worker count, errors value, or a task without
            the form the strategy runs.
        RuntimeError: called inside a running event loop; use ``await amap(...)``.
        BaseException: a KeyboardInterrupt, SystemExit or CancelledError raised by a task,
            or any exception raised by the input iterator, propagates unchanged once
            the call has stopped starting items.
    """
    return _build(Settings.resolve(strategy=strategy, max_workers=max_workers, task=task)).map(
        task, items, errors=errors, context=context)


@overload
async def amap(task: Callable[[_Item], Coroutine[Any, Any, _Result]], items: Iterable[_Item], *,
               strategy: StrategyName | None = None, max_workers: Workers | None = None,
               errors: Literal["raise"] = "raise", context: Any = None) -> Results[_Result]: ...
@overload
async def amap(task: Task[_Item, _Result] | Callable[[_Item], _Result], items: Iterable[_Item], *,
               strategy: StrategyName | None = None, max_workers: Workers | None = None,
               errors: Literal["raise"] = "raise", context: Any = None) -> Results[_Result]: ...
@overload
async def amap(task: Callable[[_Item], Coroutine[Any, Any, _Result]], items: Iterable[_Item], *,
               strategy: StrategyName | None = None, max_workers: Workers | None = None,
               errors: Literal["collect"], context: Any = None) -> Results[Outcome[_Result]]: ...
@overload
async def amap(task: Task[_Item, _Result] | Callable[[_Item], _Result], items: Iterable[_Item], *,
               strategy: StrategyName | None = None, max_workers: Workers | None = None,
               errors: Literal["collect"], context: Any = None) -> Results[Outcome[_Result]]: ...
async def amap(
    task: Task[Any, Any] | Callable[[Any], Any],
    items: Iterable[Any],
    *,
    strategy: StrategyName | None = None,
    max_workers: Workers | None = None,
    errors: Literal["raise", "collect"] = "raise",
    context: Any = None,
) -> Results[Any]:
    """Awaitable :func:`map` for callers already inside an event loop (async handlers).

    The asyncio strategy runs on the caller's loop; sync strategies run from a
    worker thread so the loop stays free. Cancelling the awaiting task (``wait_for``,
    ``task.cancel()``) starts no further item and raises CancelledError at once.
    Arguments, return value and errors as in :func:`map`.
    """
    return await _build(Settings.resolve(strategy=strategy, max_workers=max_workers, task=task)).amap(
        task, items, errors=errors, context=context)


def __getattr__(name: str) -> Any:
    if name == "StrategyName":  # for annotations evaluated at run time; typing loads only then
        from typing import Literal

        return Literal[STRATEGIES]
    # The batch layer loads on first use, keeping `import lambda_fanout` small.
    if name in ("process_batch", "BatchError"):
        from . import batch

        return getattr(batch, name)
    if name == "register_throttle_error":
        from ._limiter import register_throttle_error

        return register_throttle_error
    raise AttributeError(f"module 'lambda_fanout' has no attribute {name!r}")
