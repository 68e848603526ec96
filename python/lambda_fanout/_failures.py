"""One ERROR log line per failed record: where it was and why, never the record itself.

Written after the call by ``process_batch`` and the zero-code handler (every source)
and by ``map(..., errors="collect")``. ``map(..., errors="raise")`` logs nothing: it
raises :class:`~lambda_fanout.TaskError`, whose traceback the caller (or Lambda) logs.

A line holds the source, the record's index, its identifier where the source has one
that is metadata (an SQS ``messageId``, a Kinesis or DynamoDB sequence number, an SNS
``MessageId``, an EventBridge ``id``; never an S3 object key, which is data), the
exception's type, an AWS error code and operation when the exception carries them, and
the traceback: file, line, function and source line of each frame, never local values.
The exception's own message, which often repeats the payload (``KeyError:
'alice@example.com'``), is included only with ``FANOUT_LOG_FAILURES=on``; the messages of
the ledger's own reports (a record not run, cut or skipped: ``_errors.is_own_report``)
are its own words and always included, while a task's exception of the same class is
the task's. Under ``AWS_LAMBDA_LOG_FORMAT=JSON`` the fields go out as the log record's
extra keys, which Lambda's JSON formatter writes as top-level JSON keys; the exception is
never passed as ``exc_info``, since that formatter would write its message.
"""

from __future__ import annotations

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

    from ._config import Settings

from ._errors import is_own_report, safe_attr, safe_str

LOGGER_NAME = "lambda_fanout"

_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


def log_failures(settings: Settings, source: str, failures: Iterable[tuple[int, Any, BaseException]]) -> None:
    """Log one ERROR line per failed record, as ``settings.log_failures`` says.

    Args:
        settings: the call's settings (``log_failures``, ``log_json``).
        source: "map", or the batch source ("sqs", "kinesis", ...).
        failures: (index, identifier or None, exception) per failed record, in order.
    """
    if settings.log_failures == "off":
        return
    import logging

    logger = logging.getLogger(LOGGER_NAME)
    if not logger.isEnabledFor(logging.ERROR):
        return
    with_message = settings.log_failures == "on"
    for index, identifier, error in failures:
        fields = describe(source, index, identifier, error, with_message=with_message)
        logger.error(_text(fields, traceback=not settings.log_json), extra=fields)


def describe(source: str, index: int, identifier: Any, error: BaseException, *, with_message: bool) -> dict:
    """The fields of one failure line (the JSON keys under Lambda's JSON log format)."""
    own_words = is_own_report(error)
    fields: dict[str, Any] = {"source": source, "index": index}
    if identifier is not None:
        fields["recordId"] = identifier
    fields["exceptionType"] = _type_name(error)
    if with_message or own_words:
        fields["exceptionMessage"] = safe_str(error)
    code, operation = _aws_error(error)
    if code is not None:
        fields["awsErrorCode"] = code
    if operation is not None:
        fields["awsOperation"] = operation
    fields["traceback"] = _traceback_lines(error, with_message=with_message)
    return fields


def _text(fields: dict, *, traceback: bool) -> str:
    where = f" ({fields['recordId']})" if "recordId" in fields else ""
    what = fields["exceptionType"]
    if "awsErrorCode" in fields:
        what += f" ({fields['awsErrorCode']}" + (f" in {fields['awsOperation']})" if "awsOperation" in fields else ")")
    if "exceptionMessage" in fields:
        what += f": {fields['exceptionMessage']}"
    else:
        what += " (message not logged; FANOUT_LOG_FAILURES=on logs it)"
    noun = "item" if fields["source"] == "map" else "record"
    line = f"lambda_fanout: {fields['source']} {noun} #{fields['index']}{where} failed: {what}"
    if traceback and fields["traceback"]:
        line += "\n" + "\n".join(fields["traceback"])
    return line


def _type_name(error: BaseException) -> str:
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _aws_error(error: BaseException) -> tuple[str | None, str | None]:
    # botocore's ClientError: the service's error code and the operation are AWS's own
    # words, not the request's data, and say most of what an operator needs.
    response = safe_attr(error, "response")
    detail = response.get("Error") if isinstance(response, dict) else None
    code = detail.get("Code") if isinstance(detail, dict) else None
    operation = safe_attr(error, "operation_name")
    ok = lambda v: isinstance(v, str) and 0 < len(v) <= 128  # noqa: E731
    return (code if ok(code) else None), (operation if ok(operation) and ok(code) else None)


def _traceback_lines(error: BaseException, *, with_message: bool) -> list[str]:
    if error.__traceback__ is None and error.__cause__ is None and error.__context__ is None:
        return []  # never raised (a record cut by the deadline): the type and message say it all
    # The chain as Python prints it (innermost first): each exception's frames, then its
    # type, then (only with the message on) its message and notes, either of which may
    # carry the record's data.
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    exc: BaseException | None = error
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc.__cause__, ForeignTraceback):
            chain.append((exc, None))  # the rest of its chain was formatted where it was raised
            exc = None
        elif exc.__cause__ is not None:
            chain.append((exc, _CAUSE))
            exc = exc.__cause__
        elif exc.__context__ is not None and not exc.__suppress_context__:
            chain.append((exc, _CONTEXT))
            exc = exc.__context__
        else:
            chain.append((exc, None))
            exc = None
    lines: list[str] = []
    for exc, link in reversed(chain):
        if lines and link:
            lines += ["", link, ""]
        if isinstance(exc.__cause__, ForeignTraceback):
            lines += exc.__cause__.lines(with_message=with_message)
            continue
        lines += _frames(exc.__traceback__)
        if with_message:
            import traceback

            lines += "".join(traceback.format_exception_only(exc)).rstrip("\n").split("\n")
        else:
            lines.append(_type_name(exc) + (f": {exc}" if is_own_report(exc) else ""))
    return lines


#: Formatted frames by where they were raised: a batch's failures mostly share one
#: traceback, and formatting one (source lines, and in 3.11+ a parse of each line for
#: its carets) costs far more than logging it.
_FRAMES: dict[tuple, list[str]] = {}
_FRAMES_KEPT = 256


def _frames(tb: Any) -> list[str]:
    if tb is None:
        return []
    key = []
    walk = tb
    while walk is not None:
        # The code object and the instruction fix the file, line, function and carets.
        key.append((walk.tb_frame.f_code, walk.tb_lasti))
        walk = walk.tb_next
    frozen = tuple(key)
    lines = _FRAMES.get(frozen)
    if lines is None:
        import traceback

        lines = ["Traceback (most recent call last):"]
        lines += "".join(traceback.format_tb(tb)).rstrip("\n").split("\n")
        if len(_FRAMES) >= _FRAMES_KEPT:
            _FRAMES.clear()
        _FRAMES[frozen] = lines
    return lines


def traceback_lines(error: BaseException, *, with_message: bool) -> list[str]:
    """The traceback lines a failure line holds for ``error``: frames and types, messages only ``with_message``."""
    return _traceback_lines(error, with_message=with_message)


class ForeignTraceback(Exception):
    """The cause given to an exception raised in another process, holding that process's traceback.

    An exception that crossed from a worker process carries one as its ``__cause__``.
    Its failure line shows the frames where it was raised, as :meth:`lines` gives
    them, in place of the exception's own (it was never raised here).
    """

    def lines(self, *, with_message: bool) -> list[str]:
        """The traceback lines of the exception where it was raised (see :func:`traceback_lines`)."""
        raise NotImplementedError
