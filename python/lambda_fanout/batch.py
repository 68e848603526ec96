"""Process a Lambda batch event concurrently, with the partial-failure response Lambda expects.

Sources and what comes back:

=====================  ===========================  ==================================
source                 identifier                   on failure
=====================  ===========================  ==================================
SQS (standard, FIFO)   ``messageId``                ``{"batchItemFailures": [...]}``
Kinesis                ``kinesis.sequenceNumber``   ``{"batchItemFailures": [...]}``
DynamoDB Streams       ``dynamodb.SequenceNumber``  ``{"batchItemFailures": [...]}``
S3 notifications       ``s3.object.key``            BatchError (Lambda retries)
SNS                    ``Sns.MessageId``            BatchError
EventBridge            ``id``                       BatchError
Distributed Map batch  item index                   BatchError; else results in order
=====================  ===========================  ==================================

Ordering: records of one SQS FIFO message group, one Kinesis partition key, or one
DynamoDB item key run one at a time in order; after one fails, the later records of
its group are not started and are reported failed, so the retry keeps the order.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from ._errors import SkippedAfterFailure

PARTIAL = "partial"
RAISE = "raise"
RESULTS = "results"

SUPPORTED_SHAPES = (
    'SQS ({"Records": [{"eventSource": "aws:sqs", "messageId": ...}]})',
    'Kinesis ({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": ...}}]})',
    'DynamoDB Streams ({"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {"SequenceNumber": ...}}]})',
    'S3 ({"Records": [{"eventSource": "aws:s3", "s3": {...}}]})',
    'SNS ({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": ...}}]})',
    'EventBridge ({"detail-type": ..., "source": ..., "detail": {...}})',
    'Distributed Map ItemBatcher ({"Items": [...], "BatchInput": {...}})',
)


class BatchFailure(NamedTuple):
    """One record that failed: its index in the batch, its identifier, and the exception."""

    index: int
    identifier: Any
    error: BaseException


class BatchError(Exception):
    """Records of a batch without partial responses failed; Lambda should retry the batch.

    Attributes:
        failures: every failure, as BatchFailure(index, identifier, error), in record order.
        source: the event source ("s3", "sns", "eventbridge", "distributed-map").

    The message gives counts, indexes and exception types only, never payloads or identifiers.
    """

    def __init__(self, source: str, total: int, failures: list[BatchFailure]) -> None:
        shown = ", ".join(f"#{f.index} {type(f.error).__name__}" for f in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        super().__init__(f"{len(failures)} of {total} {source} records failed: {shown}{more}")
        self.source = source
        self.failures = failures


# -- recognising the event ---------------------------------------------------------------

class _Shape(NamedTuple):
    source: str
    records: list
    reply: str  # PARTIAL, RAISE or RESULTS
    identifier: Callable[[dict], Any] | None
    group: Callable[[dict], Any] | None


def _dig(record: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _ddb_key(record: dict) -> str:
    import json

    keys = _dig(record, "dynamodb", "Keys")
    return json.dumps(keys, sort_keys=True) if keys is not None else None


_RECORD_SOURCES: dict[str, tuple] = {
    # eventSource -> (name, reply, identifier path, group function or None)
    "aws:sqs": ("sqs", PARTIAL, ("messageId",), lambda r: _dig(r, "attributes", "MessageGroupId")),
    "aws:kinesis": ("kinesis", PARTIAL, ("kinesis", "sequenceNumber"), lambda r: _dig(r, "kinesis", "partitionKey")),
    "aws:dynamodb": ("dynamodb", PARTIAL, ("dynamodb", "SequenceNumber"), _ddb_key),
    "aws:s3": ("s3", RAISE, ("s3", "object", "key"), None),
    "aws:sns": ("sns", RAISE, ("Sns", "MessageId"), None),
}


def _unknown(what: str) -> ValueError:
    return ValueError(
        f"lambda_fanout.process_batch: {what}. Supported event shapes: " + "; ".join(SUPPORTED_SHAPES) + "."
    )


def detect(event: Any) -> _Shape:
    """Recognise the event's source and check every record before any is processed.

    Raises:
        ValueError: an unknown shape, an empty or mixed batch, a record that is not an
            object, or a record without the identifier its source needs.
    """
    if not isinstance(event, dict):
        raise _unknown(f"the event is a {type(event).__name__}, not a JSON object")
    if "Items" in event and "Records" not in event:
        items = event["Items"]
        if not isinstance(items, list):
            raise _unknown(f"'Items' is a {type(items).__name__}, expected a list")
        return _Shape("distributed-map", items, RESULTS, None, None)
    if "Records" not in event:
        if "detail-type" in event and "source" in event:
            return _Shape("eventbridge", [event], RAISE, lambda r: r.get("id"), None)
        raise _unknown(f"the event has no 'Records' or 'Items' (keys: {sorted(map(str, event))[:8]})")
    records = event["Records"]
    if not isinstance(records, list):
        raise _unknown(f"'Records' is a {type(records).__name__}, expected a list")
    if not records:
        raise _unknown("'Records' is empty; Lambda never delivers an empty batch, so nothing was processed")
    sources = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _unknown(f"record #{index} is a {type(record).__name__}, not a JSON object")
        sources.append(record.get("eventSource") or record.get("EventSource"))
    kinds = sorted(set(map(str, sources)))
    if len(kinds) > 1:
        raise _unknown(f"the batch mixes event sources {kinds}; a batch comes from one source")
    source = sources[0]
    if source not in _RECORD_SOURCES:
        raise _unknown(f"unknown eventSource {source!r}")
    name, reply, path, group = _RECORD_SOURCES[source]
    identifier = lambda r, _p=path: _dig(r, *_p)  # noqa: E731
    for index, record in enumerate(records):
        value = identifier(record)
        if value in (None, ""):
            raise ValueError(
                f"lambda_fanout.process_batch: {name} record #{index} has no {'.'.join(path)}, which "
                f"identifies it in the response; nothing was processed. Check the event comes from {name} "
                "as Lambda delivers it."
            )
    return _Shape(name, records, reply, identifier, group)


# -- running the records ---------------------------------------------------------------------

def _json_serialisable(value: Any) -> None:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the record handler returned a {type(value).__name__}, which the Distributed Map "
            f"output cannot hold (it must be JSON-serialisable): {exc}"
        ) from None


def _groups(shape: _Shape) -> list[list[int]]:
    """The batch's jobs: one per ordering group (in order of first record), else one per record."""
    if shape.group is None:
        return [[i] for i in range(len(shape.records))]
    order: dict[Any, list[int]] = {}
    singles: list[list[int]] = []
    for index, record in enumerate(shape.records):
        key = shape.group(record)
        if key is None:
            singles.append([index])  # standard SQS: no ordering promise
        else:
            order.setdefault(key, []).append(index)
    groups = singles + list(order.values())
    groups.sort(key=lambda g: g[0])
    return groups


def process_batch(
    event: Any,
    record_handler: Any,
    context: Any = None,
    *,
    strategy: str | None = None,
    max_workers: int | None = None,
) -> Any:
    """Run ``record_handler`` on every record of a Lambda batch event, concurrently.

    Settings are resolved once, here: explicit arguments, else ``FANOUT_*`` variables.

    Args:
        event: the event as Lambda delivered it (SQS, Kinesis, DynamoDB Streams, S3,
            SNS, EventBridge, or a Distributed Map ItemBatcher batch).
        record_handler: ``record -> result``: a plain function, a coroutine function, or a Task.
        context: the Lambda context, or None locally. Records not started before the
            deadline margin are reported as failures, never lost.
        strategy: one of STRATEGIES; None reads FANOUT_STRATEGY.
        max_workers: concurrency; None reads FANOUT_MAX_WORKERS.

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": ...}, ...]}`` for SQS, Kinesis and
        DynamoDB Streams; the results in order for a Distributed Map batch; a summary
        ``{"batchSize": n, "succeeded": n}`` for S3, SNS and EventBridge.

    Raises:
        BatchError: a record failed in a batch without partial responses.
        ValueError: the event has no known shape or a record is malformed (nothing ran).
        ConfigError: a bad setting, or a record handler without the form the strategy runs.
    """
    from . import get_strategy

    shape = detect(event)
    return run_batch(shape, record_handler, context, get_strategy(strategy, max_workers=max_workers))


def run_batch(shape: _Shape, record_handler: Any, context: Any, strategy: Any) -> Any:
    """Run a detected batch through ``strategy``'s ledger and build Lambda's reply.

    Each ordering group is one job of the ledger, each record keeps its own slot: a
    record is reported as succeeded, failed, skipped after an earlier failure in its
    group, not started before the deadline, or started and not finished by it.
    """
    check = _json_serialisable if shape.reply == RESULTS else None
    run = strategy.start(record_handler, shape.records, errors="collect", context=context,
                         groups=_groups(shape), check=check)
    outcomes = strategy.run(run)
    failures = [
        BatchFailure(o.index, shape.identifier(o.item) if shape.identifier else o.index, o.error)
        for o in outcomes if o.error is not None
    ]
    if shape.reply == PARTIAL:
        return {"batchItemFailures": [{"itemIdentifier": f.identifier} for f in failures]}
    if failures:
        raise BatchError(shape.source, len(shape.records), failures) from failures[0].error
    if shape.reply == RESULTS:
        return [o.value for o in outcomes]
    return {"batchSize": len(shape.records), "succeeded": len(shape.records)}
