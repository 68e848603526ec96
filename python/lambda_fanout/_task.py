"""Tasks in their sync and async forms, and per-item outcomes."""

from __future__ import annotations

import sys
import warnings
from functools import partial, partialmethod
from types import GenericAlias
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Generic, TypeVar

    _Item = TypeVar("_Item")
    _Result = TypeVar("_Result")
    _Value = TypeVar("_Value")
else:
    class Generic:
        """typing.Generic for type checkers; at run time ``Task[Item, Result]`` only subscripts."""

        __slots__ = ()
        __class_getitem__ = classmethod(GenericAlias)

from ._errors import ConfigError


# inspect.CO_COROUTINE, without importing inspect at cold start.
_CO_COROUTINE = 0x0080


class Task(Generic["_Item", "_Result"]):
    """One piece of work in both forms: a blocking function and its coroutine twin.

    Sync strategies (``sequential``, ``threads``, ``threads-map``) call ``sync_fn``;
    ``asyncio`` awaits ``async_fn``. Calling the task directly runs ``sync_fn``.

    Args:
        sync_fn: ``item -> result``, or None when only the async form exists.
        async_fn: ``async item -> result``, or None when only the sync form exists.

    Raises:
        ConfigError: both forms are None, or a form is not callable.
    """

    __slots__ = ("sync_fn", "async_fn", "name")

    def __init__(
        self,
        sync_fn: Callable[[_Item], _Result] | None,
        async_fn: Callable[[_Item], Awaitable[_Result]] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if sync_fn is None and async_fn is None:
            raise ConfigError("Task(sync_fn, async_fn) needs at least one form but got None for both.")
        for label, fn in (("sync_fn", sync_fn), ("async_fn", async_fn)):
            if fn is not None and not callable(fn):
                raise ConfigError(f"Task {label} must be callable but got {fn!r}.")
        if sync_fn is not None and _is_coroutine_function(sync_fn):
            raise ConfigError(
                f"Task sync_fn must be a plain function but got coroutine function {sync_fn!r}; "
                "pass it as async_fn."
            )
        self.sync_fn = sync_fn
        self.async_fn = async_fn
        self.name = name or _name_of(sync_fn if sync_fn is not None else async_fn)

    def __call__(self, item: _Item) -> _Result:
        if self.sync_fn is None:
            raise ConfigError(f"Task {self.name!r} has no sync form; await it through the asyncio strategy.")
        return self.sync_fn(item)

    def __repr__(self) -> str:
        forms = [f for f, fn in (("sync", self.sync_fn), ("async", self.async_fn)) if fn is not None]
        return f"Task({self.name!r}, forms={'+'.join(forms)})"


class Outcome(Generic["_Result"]):
    """What happened to one item under ``errors="collect"``.

    Attributes:
        index: position of the item in the input.
        item: the item.
        value: the task's result, or None if it failed.
        error: the exception, or None if it succeeded. ``DeadlineExceeded`` marks an
            item that was not run (or did not finish) before the deadline margin.
        ok: True when the task succeeded.
    """

    __slots__ = ("index", "item", "value", "error")

    def __init__(self, index: int, item: Any, value: _Result | None = None, error: BaseException | None = None):
        self.index = index
        self.item = item
        self.value = value
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None

    def _key(self) -> tuple:
        err = self.error
        return (self.index, self.item, self.value, None if err is None else (type(err), err.args))

    def __eq__(self, other: object) -> bool:
        # Errors compare by type and args: two runs raise different exception objects.
        if not isinstance(other, Outcome):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.error is None:
            return f"Outcome(index={self.index}, ok=True, value={self.value!r})"
        return f"Outcome(index={self.index}, ok=False, error={self.error!r})"


class Results(list["_Value"]):
    """What ``map`` returns: a list, in input order, of values ("raise") or Outcomes ("collect").

    Attributes:
        unread: True when the Lambda deadline stopped the call before the input was
            exhausted. Every item that was read has its entry; the input was read up to
            index ``len(results)`` and no further, so an iterator you passed is left at
            the first unread item: pass it to a later call to go on from there. (An
            iterator cut right after its last item has not yet said it is exhausted, so
            it counts as unread; a list or other sized input read to its end never does.)
    """

    __slots__ = ("unread",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.unread = False

    def __reduce__(self):
        return (_rebuild_results, (list(self), self.unread))


def _rebuild_results(values, unread):
    results = Results(values)
    results.unread = unread
    return results


def _name_of(fn: Any) -> str:
    """A task's name for messages: its function's qualified name, never its repr.

    A partial's or a callable object's repr shows its bound arguments, which are often
    event data; and one name per function keeps the warned-once set bounded.
    """
    while isinstance(fn, partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    return f"{type(fn).__qualname__} instance"


def _is_coroutine_function(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine, whatever modules are imported.

    The same answer as ``inspect.iscoroutinefunction`` (partials and bound methods
    unwrapped, ``inspect.markcoroutinefunction`` honoured), extended to instances
    whose ``__call__`` is ``async def``; without importing inspect at cold start.
    """
    for _ in range(100):  # partials of partials; bounded against odd cycles
        if isinstance(fn, (partial, partialmethod)):
            fn = fn.func
        elif hasattr(fn, "__func__") and not isinstance(fn, type):
            fn = fn.__func__  # bound method, classmethod, staticmethod
        else:
            break
    inspect = sys.modules.get("inspect")  # nothing can be marked before inspect is imported
    mark = getattr(inspect, "_is_coroutine_mark", None)
    if mark is not None and getattr(fn, "_is_coroutine_marker", None) is mark:
        return True
    code = getattr(fn, "__code__", None)
    if code is None and not isinstance(fn, type):
        # A callable instance: what runs is its class's __call__.
        call = getattr(type(fn), "__call__", None)
        code = getattr(getattr(call, "__func__", call), "__code__", None)
    return bool(code is not None and code.co_flags & _CO_COROUTINE)


def sync_form(task: Any, strategy: str) -> Callable[[Any], Any]:
    """The blocking callable a sync strategy runs for ``task``.

    Raises:
        ConfigError: the task has only an async form.
    """
    if isinstance(task, Task):
        if task.sync_fn is None:
            raise ConfigError(
                f"strategy {strategy!r} runs the sync form of a task, but task {task.name!r} has "
                "only an async form. Give Task(...) a sync_fn, or use FANOUT_STRATEGY=asyncio."
            )
        return task.sync_fn
    if not callable(task):
        raise ConfigError(f"task must be a callable or a lambda_fanout.Task but got {task!r}.")
    if _is_coroutine_function(task):
        raise ConfigError(
            f"strategy {strategy!r} runs the sync form of a task, but {_name_of(task)!r} is a "
            "coroutine function. Wrap it as Task(sync_fn, async_fn), or use FANOUT_STRATEGY=asyncio."
        )
    return task


def has_sync_form(task: Any) -> bool:
    """Whether a sync strategy can call ``task``: a plain callable, or a Task with ``sync_fn``."""
    if isinstance(task, Task):
        return task.sync_fn is not None
    return callable(task) and not _is_coroutine_function(task)


def has_async_form(task: Any) -> bool:
    """Whether the asyncio strategy can await ``task``: a coroutine function, or a Task with ``async_fn``."""
    if isinstance(task, Task):
        return task.async_fn is not None
    return callable(task) and _is_coroutine_function(task)


def _caller_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside lambda_fanout, seen from the caller.

    The call path from the user's ``map()`` differs by entry point (map, amap, a strategy
    object, the handler), so a fixed stacklevel would blame lambda_fanout's own lines.
    A frame is lambda_fanout's own when its module is the package or one of its
    modules (``lambda_fanout.strategies`` included, wherever its files live).
    """
    frame, level = sys._getframe(2), 2  # level 1 is the function that warns
    while frame is not None and _is_own_module(frame.f_globals.get("__name__")):
        frame, level = frame.f_back, level + 1
    return level


def _is_own_module(name: object) -> bool:
    return isinstance(name, str) and (name == "lambda_fanout" or name.startswith("lambda_fanout."))


_warned_no_async: set[str] = set()


def async_form(task: Any) -> Callable[[Any], Awaitable[Any]]:
    """The coroutine function the asyncio strategy awaits for ``task``.

    A task with only a sync form runs inline on the loop (same results, no overlap),
    with a warning once per task name.
    """
    if isinstance(task, Task):
        if task.async_fn is not None:
            return task.async_fn
        fn = task.sync_fn
        name = task.name
    elif not callable(task):
        raise ConfigError(f"task must be a callable or a lambda_fanout.Task but got {task!r}.")
    elif _is_coroutine_function(task):
        return task
    else:
        fn = task
        name = _name_of(task)
    if name not in _warned_no_async:
        _warned_no_async.add(name)
        warnings.warn(
            f"task {name!r} has no async form, so the asyncio strategy runs it inline on the "
            "event loop, one item at a time. Give it an async form with "
            "lambda_fanout.Task(sync_fn, async_fn), or use FANOUT_STRATEGY=threads.",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )

    def inline(item: Any, _fn=fn) -> _Done:
        # Called, not a coroutine function: the call runs at once and what it raises is
        # raised as it is. Inside a coroutine a StopIteration would become RuntimeError.
        return _Done(_fn(item))

    return inline


class _Done:
    """An awaitable already finished: awaiting it gives ``value`` at once."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: unreachable - makes __await__ a generator, as the protocol asks
