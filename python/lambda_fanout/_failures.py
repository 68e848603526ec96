"""One ERROR log line per failed record: where it was and why, never the record itself.

Written after the call by ``process_batch`` and the zero-code handler (every source)
and by ``map(..., errors="collect")``; ``map(..., errors="raise")`` writes the same line
for the one failure its :class:`~lambda_fanout.TaskError` reports, before raising it.
Bounded, since it is written inside the deadline margin: at most :data:`MAX_LINES`
lines a call, one summary line for the failures beyond them, one for the records the
deadline cut, and tracebacks trimmed to the most recent exceptions and frames.

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

from ._errors import DeadlineExceeded, aws_error, is_own_report, safe_str

LOGGER_NAME = "lambda_fanout"

_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


#: The most failures one call logs a line each for; the rest are counted in one summary
#: line. The log is written after the records ran, inside the deadline margin: bounded,
#: a batch whose every record fails still returns in time.
MAX_LINES = 50
#: The most exceptions of a chain, and frames of each, a line's traceback shows (the
#: most recent ones, as the end of a traceback is where it failed).
MAX_CHAIN = 8
MAX_FRAMES = 40
#: The most index ranges a summary line lists.
MAX_RANGES = 10


def tracebacks_logged(settings: Settings) -> int:
    """How many failures of a call, at most, get a line with their traceback: the first ones by index."""
    return 0 if settings.log_failures == "off" else MAX_LINES


def log_failures(settings: Settings, source: str, failures: Iterable[tuple[int, Any, BaseException]]) -> None:
    """Log one ERROR line per failed record, as ``settings.log_failures`` says, within bounds.

    The first :data:`MAX_LINES` failures get a line each; the others one summary line
    (their count per type and their indexes). The records the ledger reports as cut by
    the deadline get one summary line together, whatever their number.

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
    traceback = not settings.log_json
    written = 0
    cut: dict[bool, list[int]] = {False: [], True: []}  # started -> indexes
    margin_ms = None
    unlogged: dict[type, list[int]] = {}
    # The ledger's deadline reports are shared by the records they report: the one last
    # seen is recognised by identity, so thousands of cut records cost a comparison each.
    last_cut: BaseException | None = None
    last_indexes: list[int] = []
    for index, identifier, error in failures:
        if error is last_cut:
            last_indexes.append(index)
        elif isinstance(error, DeadlineExceeded) and is_own_report(error):  # the ledger's deadline report
            last_cut, last_indexes = error, cut[error.started]
            last_indexes.append(index)
            margin_ms = error.margin_ms
        elif written < MAX_LINES:
            fields = describe(source, index, identifier, error, with_message=with_message)
            logger.error(_text(fields, traceback=traceback), extra=fields)
            written += 1
        else:
            group = unlogged.get(type(error))
            if group is None:
                group = unlogged[type(error)] = []
            group.append(index)
    if unlogged:
        fields = _unlogged_summary(source, unlogged)
        logger.error(fields.pop("text"), extra=fields)
    if cut[False] or cut[True]:
        fields = _deadline_summary(source, cut, margin_ms)
        logger.error(fields.pop("text"), extra=fields)


def _unlogged_summary(source: str, unlogged: dict[type, list[int]]) -> dict:
    indexes = sorted(i for group in unlogged.values() for i in group)
    types = {_type_name_of(cls): len(group) for cls, group in unlogged.items()}
    noun = "items" if source == "map" else "records"
    kinds = ", ".join(f"{count} {name}" for name, count in types.items())
    text = (f"lambda_fanout: {source}: {len(indexes)} more {noun} failed, not logged one by one "
            f"(at most {MAX_LINES} lines a call): {kinds}; {_ranges(indexes)}")
    return {"text": text, "source": source, "count": len(indexes), "exceptionTypes": types,
            "indexes": _ranges(indexes)}


def _deadline_summary(source: str, cut: dict[bool, list[int]], margin_ms: Any) -> dict:
    noun = "items" if source == "map" else "records"
    parts = []
    if cut[True]:
        parts.append(f"{len(cut[True])} started and did not finish, may have had side effects "
                     f"({_ranges(cut[True])})")
    if cut[False]:
        parts.append(f"{len(cut[False])} not started, no effect and safe to redeliver ({_ranges(cut[False])})")
    count = len(cut[True]) + len(cut[False])
    text = (f"lambda_fanout: {source}: {count} {noun} cut by the Lambda deadline margin of {margin_ms} ms "
            f"(FANOUT_DEADLINE_MARGIN_MS): " + "; ".join(parts))
    return {"text": text, "source": source, "count": count, "exceptionType": _type_name_of(DeadlineExceeded),
            "didNotFinish": len(cut[True]), "notStarted": len(cut[False]),
            "indexes": _ranges(sorted(cut[True] + cut[False]))}


def _ranges(indexes: list[int]) -> str:
    """Sorted, distinct indexes as ranges, at most MAX_RANGES of them: "#3, #5-#9, ...".

    Each range's end is found by bisection (along a range ``index - position`` stays the
    same, and it only grows), so thousands of contiguous cut records cost a few steps.
    """
    from bisect import bisect_right

    ranges: list[str] = []
    count = len(indexes)
    start = 0
    while start < count:
        if len(ranges) == MAX_RANGES:
            return ", ".join(ranges) + ", ..."
        first = indexes[start]
        end = bisect_right(range(count), first - start, lo=start, key=lambda position: indexes[position] - position)
        last = indexes[end - 1]
        ranges.append(f"#{first}" if first == last else f"#{first}-#{last}")
        start = end
    return ", ".join(ranges)


def describe(source: str, index: int, identifier: Any, error: BaseException, *, with_message: bool) -> dict:
    """The fields of one failure line (the JSON keys under Lambda's JSON log format)."""
    own_words = is_own_report(error)
    fields: dict[str, Any] = {"source": source, "index": index}
    if identifier is not None:
        fields["recordId"] = identifier
    fields["exceptionType"] = _type_name(error)
    if with_message or own_words:
        fields["exceptionMessage"] = safe_str(error)
    code, _, operation = aws_error(error)
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
    return _type_name_of(type(error))


def _type_name_of(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


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
    if len(chain) > MAX_CHAIN:
        lines.append(f"[{len(chain) - MAX_CHAIN} earlier exceptions of the chain not shown]")
        del chain[MAX_CHAIN:]
    for exc, link in reversed(chain):
        if lines and link:
            lines += ["", link, ""]
        if isinstance(exc.__cause__, ForeignTraceback):
            lines += exc.__cause__.lines(with_message=with_message)
            continue
        lines += _frames(exc.__traceback__)
        if with_message:
            lines += _message_lines(exc)
        else:
            lines.append(_type_name(exc) + (f": {exc}" if is_own_report(exc) else ""))
    return lines


def _message_lines(exc: BaseException) -> list[str]:
    # What traceback.format_exception_only prints for it (the type, the message, the
    # notes), without the frames of the whole chain that it extracts first.
    if isinstance(exc, SyntaxError):
        import traceback

        return "".join(traceback.format_exception_only(exc)).rstrip("\n").split("\n")
    text = safe_str(exc)
    lines = (f"{_type_name(exc)}: {text}" if text else _type_name(exc)).split("\n")
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, (list, tuple)):
        for note in notes:
            lines += safe_str(note).split("\n")
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
        frames = traceback.extract_tb(tb)
        if len(frames) > MAX_FRAMES:
            lines.append(f"  [{len(frames) - MAX_FRAMES} outer frames not shown]")
            frames = traceback.StackSummary.from_list(frames[-MAX_FRAMES:])
        lines += "".join(frames.format()).rstrip("\n").split("\n")
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
