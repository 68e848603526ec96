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

import sys


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


def aws_error(error: BaseException) -> tuple[str | None, int | None, str | None]:
    """The AWS error code, HTTP status and operation of a botocore ``ClientError``, else Nones.

    They are AWS's own words, never the request's data, and say most of what an
    operator needs (``NoSuchKey``, 404, ``GetObject``). The one reading of them: the
    failure log and :class:`TaskError` both use it. The operation is given only with a
    code (a bare ``operation_name`` is no AWS error); a value of the wrong type or
    implausibly long is left out. Only an instance of botocore's ``ClientError`` counts
    (looked up where botocore is loaded, never imported here): another exception shaped
    like one may carry anything as its "code".
    """
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None or not isinstance(error, exceptions.ClientError):
        return None, None, None
    response = safe_attr(error, "response")
    detail = response.get("Error") if isinstance(response, dict) else None
    code = detail.get("Code") if isinstance(detail, dict) else None
    if not (isinstance(code, str) and 0 < len(code) <= 128):
        return None, None, None
    meta = response.get("ResponseMetadata")
    status = meta.get("HTTPStatusCode") if isinstance(meta, dict) else None
    operation = safe_attr(error, "operation_name")
    return (code, status if type(status) is int else None,
            operation if isinstance(operation, str) and 0 < len(operation) <= 128 else None)


#: Where libraries live in Lambda (layers, the runtime, its Python), beside site-packages.
_LIBRARY_DIRS = ("/opt/", "/var/runtime/", "/var/lang/")


def user_frame(error: BaseException) -> str | None:
    """``file:line in function`` of the innermost frame of ``error``'s traceback in the user's code.

    The user's code is every frame outside the standard library, installed packages
    (site-packages, dist-packages, Lambda's layers and runtime) and lambda_fanout itself:
    for a ClientError, the line that called the client. None when the exception was never
    raised here (a worker process's, whose traceback is its ``__cause__``) or no frame is
    the user's.
    """
    import sys

    found = None
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename
        module = tb.tb_frame.f_globals.get("__name__")
        top = module.partition(".")[0] if isinstance(module, str) else ""
        if not (top == "lambda_fanout" or top in sys.stdlib_module_names or filename.startswith(("<",) + _LIBRARY_DIRS)
                or "/site-packages/" in filename or "/dist-packages/" in filename):
            found = f"{filename}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    return found


def drop_tracebacks(error: BaseException) -> None:
    """Let go of the traceback of ``error`` and of every exception of its chain (cause, context).

    The exception keeps its type, message and chain; its frames, and the frames above
    them that a finished frame keeps alive, are freed.
    """
    seen: set[int] = set()
    todo = [error]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        todo += (exc.__cause__, exc.__context__)


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

    The original exception is chained as ``__cause__``. The message names the index,
    the exception type, a botocore ClientError's code, HTTP status and operation, and
    the innermost frame of the user's own code (file, line, function); never the item
    or the exception's message, so that a record's payload does not reach the logs:
    ``task failed on item #2: ClientError NoSuchKey 404 in GetObject, at /var/task/app.py:14 in load``.
    """

    def __init__(self, index: int, item: object, cause: BaseException) -> None:
        # str(cause) is often the payload (KeyError: 'alice@example.com'): only its
        # type goes in the message; the exception itself stays on __cause__.
        # Where, in AWS's words and the user's code: the exception type, a ClientError's
        # code, status and operation, and the innermost frame of the user's own code.
        name = type(cause).__name__
        detail = ""
        if isinstance(cause, DeadlineExceeded) and is_own_report(cause):
            detail = ": started, did not finish by the deadline margin" if cause.started else (
                ": not started before the deadline margin")
        else:
            code, status, operation = aws_error(cause)
            if code is not None:
                # botocore makes a ClientError class per modeled code (NoSuchKey): the code says it.
                name = "ClientError"
                detail = " " + " ".join(str(part) for part in (code, status) if part is not None)
                detail += f" in {operation}" if operation is not None else ""
            where = user_frame(cause)
            if where is not None:
                detail += f", at {where}"
        super().__init__(f"task failed on item #{index}: {name}{detail}")
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
