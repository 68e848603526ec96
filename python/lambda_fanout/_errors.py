"""Exceptions raised by lambda_fanout, and what the rest of the package asks of an exception.

A new public exception goes here (and in ``lambda_fanout.__init__``'s exports). Each
public class says it lives in ``lambda_fanout`` (``__module__``), so a traceback reads
``lambda_fanout.ConfigError``: the name a user imports and catches.

The ledger's own reports (a record not started or not finished by the deadline, one
skipped after an earlier failure) are built only by the factory methods here, which mark
what they build: :func:`is_own_report` tells such a report from a task's own exception of
the same class, whatever that exception carries, and the mark survives pickling (a
worker process's report comes back as one).
"""

from __future__ import annotations


def public(cls: type) -> type:
    """Give ``cls`` the module it is exported from, for tracebacks and reprs."""
    cls.__module__ = "lambda_fanout"
    return cls


def safe_attr(obj: object, name: str) -> object:
    """``getattr(obj, name, None)``, and None too when reading it raises.

    A task's exception is arbitrary code: one whose property raises is still only that
    item's failure, never the call's.
    """
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder naming the type when that raises."""
    try:
        return str(obj)
    except Exception:
        return f"<{type(obj).__name__}: str() failed>"


def kind(value: object) -> str:
    """``value``'s type with its article, for messages: "an int", "a str", "None"."""
    if value is None:
        return "None"
    name = type(value).__name__
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


#: The attribute the factory methods set on the reports they build (in the instance's
#: ``__dict__``, so pickling through ``__reduce__`` carries it explicitly).
_OWN = "_lambda_fanout_report"


def _own(error):
    error.__dict__[_OWN] = True
    return error


def is_own_report(error: object) -> bool:
    """True when lambda_fanout's ledger built ``error`` (a record not run, cut or skipped).

    Decided by who built the exception, never by its class or attributes: a task that
    raises ``DeadlineExceeded`` or ``SkippedAfterFailure`` itself (its message may hold
    the record's data) is a task's failure like any other.
    """
    return isinstance(error, (DeadlineExceeded, SkippedAfterFailure)) and error.__dict__.get(_OWN) is True


@public
class ConfigError(ValueError):
    """A strategy name, worker count or other setting is not valid.

    Raised for a bad argument or a bad ``FANOUT_*`` environment variable; the
    message names the setting, repeats the bad value and lists what is valid.

    Attributes:
        problems: one line per bad setting (a single one for most errors); the message
            is that line, or a count followed by the lines as a list.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = [message] if problems is None else list(problems)

    @classmethod
    def of(cls, problems: list[str]) -> "ConfigError":
        """One error for every problem: the problem itself, or a count and one ``- `` line each."""
        if len(problems) == 1:
            return cls(problems[0])
        return cls(f"{len(problems)} settings are not valid:\n" + "\n".join(f"- {p}" for p in problems),
                   problems=problems)


@public
class DeadlineExceeded(TimeoutError):
    """An item did not run, or did not finish, before the Lambda deadline margin.

    Attributes:
        started: False when the item never started (safe to redeliver: it had no
            effect); True when it started and was still running at the margin (it may
            have had side effects, and may still finish after the call returned).
        margin_ms: the deadline margin in force.

    Built in one place (:meth:`not_started` / :meth:`did_not_finish`), so every
    strategy and every batch source reports the two cases with the same words.
    """

    def __init__(self, message: str, *, started: bool = False, margin_ms: int | None = None) -> None:
        super().__init__(message)
        self.started = started
        self.margin_ms = margin_ms

    @classmethod
    def not_started(cls, margin_ms: int) -> "DeadlineExceeded":
        return _own(cls(
            f"not started: the Lambda deadline was within the {margin_ms} ms margin "
            "(FANOUT_DEADLINE_MARGIN_MS); it had no effect and is safe to redeliver",
            started=False, margin_ms=margin_ms,
        ))

    @classmethod
    def did_not_finish(cls, margin_ms: int) -> "DeadlineExceeded":
        return _own(cls(
            f"started but did not finish before the Lambda deadline margin of {margin_ms} ms "
            "(FANOUT_DEADLINE_MARGIN_MS); it may have had side effects",
            started=True, margin_ms=margin_ms,
        ))

    def __reduce__(self):
        return (_rebuild_deadline, (self.args, self.started, self.margin_ms, type(self), is_own_report(self)))


def _rebuild_deadline(args, started, margin_ms, cls=DeadlineExceeded, own=False):
    # A subclass (a task's own timeout type) comes back as itself, e.g. from a worker process.
    error = cls.__new__(cls)
    DeadlineExceeded.__init__(error, *args, started=started, margin_ms=margin_ms)
    return _own(error) if own else error


@public
class SkippedAfterFailure(Exception):
    """Not started because an earlier record failed first (of its group, or of the batch).

    Attributes:
        after: the index of the record whose failure stopped this one.
    """

    def __init__(self, message: str, *, after: int | None = None) -> None:
        super().__init__(message)
        self.after = after

    @classmethod
    def in_group(cls, after: int) -> "SkippedAfterFailure":
        """A record not started because record ``after``, earlier in its ordering group, failed."""
        return _own(cls(f"not started: record #{after} of the same group failed first", after=after))

    @classmethod
    def in_batch(cls, after: int) -> "SkippedAfterFailure":
        """A record not started because record ``after`` failed and the batch stops at the first failure."""
        return _own(cls(f"not started: record #{after} failed first and the batch stops at the first failure",
                        after=after))

    def __reduce__(self):
        return (_rebuild_skipped, (self.args, self.after, is_own_report(self)))


def _rebuild_skipped(args, after, own=False):
    error = SkippedAfterFailure(*args, after=after)
    return _own(error) if own else error


@public
class TaskError(Exception):
    """A task failed on one item while ``errors="raise"``.

    Attributes:
        index: position of the failing item in the input.
        item: the failing item.

    The original exception is chained as ``__cause__``. The message names the
    index and the exception type only, never the item, so that a record's
    payload does not reach the logs.
    """

    def __init__(self, index: int, item: object, cause: BaseException) -> None:
        # str(cause) is often the payload (KeyError: 'alice@example.com'): only its
        # type goes in the message; the exception itself stays on __cause__.
        detail = ""
        if isinstance(cause, DeadlineExceeded) and is_own_report(cause):
            detail = ": started, did not finish by the deadline margin" if cause.started else (
                ": not started before the deadline margin")
        super().__init__(f"task failed on item #{index}: {type(cause).__name__}{detail}")
        self.index = index
        self.item = item

    def __reduce__(self):
        return (_rebuild_task_error, (self.args, self.index, self.item))


def _rebuild_task_error(args, index, item):
    err = TaskError.__new__(TaskError)
    Exception.__init__(err, *args)
    err.index = index
    err.item = item
    return err
