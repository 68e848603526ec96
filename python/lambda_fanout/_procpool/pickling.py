"""What crosses between the caller and a worker by pickling: the task, the items, and failures.

What belongs here: pickling the task (and refusing one that cannot load back by
reference), the items one by one when a whole request cannot be pickled, and an
exception from a worker carried back with the worker's traceback; the two errors a
request itself can end with (:class:`WorkerError`, :class:`Killed`). How the bytes
are laid out on the pipe and in shared memory is the wire format's (``wire``).
"""

from __future__ import annotations

import pickle
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from .._errors import ConfigError
from .._failures import ForeignTraceback, traceback_lines

PROTOCOL = pickle.HIGHEST_PROTOCOL


def pickled_task(fn: Callable[[Any], Any], strategy: str) -> bytes:
    """``fn`` pickled for the workers, checked to load back by reference.

    Raises:
        ConfigError: ``fn`` cannot be pickled (a lambda, a function defined inside
            another, a bound method of an object that cannot be pickled), saying what to do.
    """
    try:
        data = pickle.dumps(fn, PROTOCOL)
        pickle.loads(data)
    except Exception as exc:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise ConfigError(
            f"strategy {strategy!r} sends the task to worker processes by pickling it, but task "
            f"{name!r} cannot be pickled ({type(exc).__name__}: {exc}). Define the task as a "
            "function at module level (a lambda or a function nested in another is pickled by "
            "name and cannot be found), pass fixed arguments with functools.partial of such a "
            "function, or use FANOUT_STRATEGY=threads. Nothing was run."
        ) from exc
    return data


class _RemoteTraceback(ForeignTraceback):
    """A worker's traceback, in the caller: ``(its text as Python printed it there, its lines without messages)``."""

    def __str__(self) -> str:
        return self.args[0]

    def lines(self, *, with_message: bool) -> list[str]:
        if not with_message:
            return list(self.args[1])
        text = self.args[0]
        if text.startswith(_OPEN) and text.endswith(_CLOSE):
            text = text[len(_OPEN):-len(_CLOSE)]
        return text.strip("\n").split("\n")


#: The worker's traceback text is quoted, set apart from the caller's own.
_OPEN, _CLOSE = '\n"""\n', '"""'


def _with_traceback(exc: BaseException, tb: str, type_only: list[str]) -> BaseException:
    exc.__cause__ = _RemoteTraceback(tb, type_only)
    return exc


def text_of(exc: BaseException) -> str:
    # str() of a task's exception runs the task's code: it may raise too, even a
    # BaseException, and a failure's report must still go.
    try:
        return f"{type(exc).__qualname__}: {exc}"
    except BaseException as inner:
        return f"{type(exc).__qualname__} (whose str() raised {type(inner).__name__})"


class _Portable:
    """An exception from a worker, with the worker's traceback as its ``__cause__`` in the caller."""

    __slots__ = ("exc", "tb", "type_only")

    def __init__(self, exc: BaseException, raised: BaseException | None = None) -> None:
        # The failure log's traceback lines (trimmed to the most recent exceptions and
        # frames, formatted frames cached by where they were raised), so a batch whose
        # every item fails deep down costs what it costs in one process. They are those
        # of ``raised``, the task's exception, where ``exc`` stands in for it.
        self.exc = exc
        raised = exc if raised is None else raised
        try:
            self.tb = _OPEN + "\n".join(traceback_lines(raised, with_message=True)) + "\n" + _CLOSE
        except BaseException:  # a str() in the chain raised (see text_of)
            self.tb = f"\n(the worker's traceback could not be formatted: {text_of(raised)})"
        try:  # the frames and types a failure line logs without messages (FANOUT_LOG_FAILURES=type-only)
            self.type_only = traceback_lines(raised, with_message=False)
        except BaseException:
            self.type_only = [type(raised).__qualname__]

    def __reduce__(self):
        return _with_traceback, (self.exc, self.tb, self.type_only)


class WorkerError(RuntimeError):
    """A worker could not run a request: it exited mid-request, or could not load it.

    Attributes:
        started: how many items of the request the worker had begun.
        results: ``(ok, value)`` of the items it finished before, in order.
        exited: True when the process exited; False when it is alive but could not
            load the task (every item of the request would fail the same way).
    """

    def __init__(self, message: str, started: int = 0, results: list | None = None, *, exited: bool = True) -> None:
        super().__init__(message)
        self.started = started
        self.results = [] if results is None else results
        self.exited = exited


class Killed(Exception):
    """The worker was killed (the deadline margin passed) while running a request.

    Attributes:
        started: how many items of the request it had begun; the rest never started.
        results: ``(ok, value)`` of the items it finished before, in order.
    """

    def __init__(self, started: int, results: list | None = None) -> None:
        super().__init__("the worker process was still running at the deadline margin and was killed")
        self.started = started
        self.results = [] if results is None else results


# Named by the package, as the failure log and pickles have always named them.
WorkerError.__module__ = Killed.__module__ = "lambda_fanout._procpool"


def _portable(exc: BaseException) -> _Portable:
    # An exception that does not survive a round trip (a required argument its
    # __init__ does not pass to super(), a __reduce__ that raises) would fail its frame
    # in the caller, or end the worker; a stand-in goes instead.
    try:
        pickle.loads(pickle.dumps(exc, PROTOCOL))
    except BaseException:
        return _Portable(_stand_in(exc, "the exception could not be pickled"), exc)
    return _Portable(exc)


#: The modules whose exception classes a stand-in may be of: every worker and caller has them.
_STANDARD = frozenset({"builtins", "asyncio.exceptions"})


def _stand_in(exc: BaseException, why: str) -> BaseException:
    """What is sent for a task's exception that cannot be: one of the same kind, with its text.

    The caller then handles it as it would the task's own. An Exception becomes a
    :class:`WorkerError` (the record fails); any other BaseException becomes its
    nearest class of the standard library (SystemExit with its exit code, KeyboardInterrupt,
    asyncio.CancelledError, else BaseException), its text as a note: it still ends the
    call, and reaches the caller.
    """
    text = f"{text_of(exc)} ({why})"
    if isinstance(exc, Exception):
        return WorkerError(text, exited=False)
    substitute = _standard_like(exc)
    substitute.add_note(f"lambda_fanout: raised in a worker process as {text}")
    return substitute


def _standard_like(exc: BaseException) -> BaseException:
    if isinstance(exc, SystemExit):
        try:
            code = exc.code
            if code is None or isinstance(code, int):  # bool and IntEnum codes too: the same exit status
                return SystemExit(code if code is None else int.__int__(code))
            return SystemExit(str(code))  # printed at exit, as the task's own would be; status 1
        except BaseException:  # a code that raises as it is read: the status of a failure
            return SystemExit(1)
    for cls in type(exc).__mro__:
        if cls.__module__ in _STANDARD:
            try:
                return cls()
            except Exception:  # BaseExceptionGroup takes arguments
                continue
    return BaseException()


class Unsendable:
    """Stands in a request for an item that could not be pickled: the worker fails it alone."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def one_by_one(items: list) -> list:
    # Each item pickled on its own, so that one that cannot be pickled here, or loaded
    # there, fails alone.
    packed = []
    for item in items:
        try:
            packed.append(pickle.dumps(item, PROTOCOL))
        except BaseException as exc:  # the item's own code may raise anything
            packed.append(Unsendable(
                f"the item (a {type(item).__name__}) cannot be pickled to send to a worker process "
                f"({text_of(exc)}); pass plain data as items"))
    return packed


def unpack(item: Any) -> Any:
    if isinstance(item, Unsendable):
        raise WorkerError(item.message, exited=False)
    try:
        return pickle.loads(item)
    except BaseException as exc:  # the item's own code may raise anything
        raise WorkerError(
            f"the item could not be unpickled in the worker process ({text_of(exc)}); pass plain data as items",
            exited=False) from None


def failure(exc: BaseException) -> tuple[tuple, bytes]:
    # (the failure as the caller gets it, its exception pickled). Whatever the task's
    # exception does when pickled or printed, the item's report goes.
    error: Any = _portable(exc)
    try:
        return (False, error), pickle.dumps(error, PROTOCOL)
    except BaseException as again:  # the traceback or the text itself: never lose the item
        error = _stand_in(exc, f"it could not be sent back from the worker process: {text_of(again)}")
        return (False, error), pickle.dumps(error, PROTOCOL)
