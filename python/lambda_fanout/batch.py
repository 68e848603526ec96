"""Process a Lambda batch event concurrently, with the partial-failure response Lambda expects.

Sources and what comes back:

=====================  ================================  ==================================
source                 identifier                        on failure
=====================  ================================  ==================================
SQS (standard, FIFO)   ``messageId``                     ``{"batchItemFailures": [...]}``
Kinesis                ``kinesis.sequenceNumber``        ``{"batchItemFailures": [...]}``
DynamoDB Streams       ``dynamodb.SequenceNumber``       ``{"batchItemFailures": [...]}``
Kafka (MSK and         ``{"partition": "<topic>-<n>",    ``{"batchItemFailures": [...]}``
self-managed)          "offset": <offset>}``
S3 notifications       ``s3.object.key``                 BatchError (Lambda retries)
SNS                    ``Sns.MessageId``                 BatchError
EventBridge            ``id``                            BatchError
Distributed Map batch  item index                        BatchError; else results in order
=====================  ================================  ==================================

Ordering: records of one SQS FIFO message group, one Kinesis partition key, one
DynamoDB item key or one Kafka topic-partition run one at a time in order; after one
fails, the later records of its group are not started and are reported failed, so the
retry keeps the order. A standard SQS queue is never grouped, even when its messages
carry a ``MessageGroupId`` (fair queues). With ``fifo_on_failure="batch"`` no record of
a FIFO batch starts after the first failure. With ``raise_on_all_failed`` a batch whose
every record failed raises BatchError instead of replying.
"""

from __future__ import annotations

import math
from operator import itemgetter

from ._config import Settings
from ._procpool.cpus import cpu_share
from ._errors import SkippedAfterFailure, kind, public
from .strategies import build

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Literal

    from . import StrategyName, Workers
    from ._task import Task

PARTIAL = "partial"
RAISE = "raise"
RESULTS = "results"

SUPPORTED_SHAPES = (
    'SQS ({"Records": [{"eventSource": "aws:sqs", "messageId": ...}]})',
    'Kinesis ({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": ...}}]})',
    'DynamoDB Streams ({"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {"SequenceNumber": ...}}]})',
    'Kafka ({"eventSource": "aws:kafka" or "SelfManagedKafka", "records": {"<topic>-<partition>": [{"offset": ...}]}})',
    'S3 ({"Records": [{"eventSource": "aws:s3", "s3": {...}}]})',
    'SNS ({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": ...}}]})',
    'EventBridge ({"detail-type": ..., "source": ..., "detail": {...}})',
    'Distributed Map ItemBatcher ({"Items": [...], "BatchInput": {...}})',
)


class BatchFailure(tuple):
    """One record that failed: its index in the batch, its identifier, and the exception.

    A tuple ``(index, identifier, error)`` with those names, as a NamedTuple would be
    (written out: typing's NamedTuple would import typing at every cold start).
    """

    __slots__ = ()
    _fields = ("index", "identifier", "error")

    def __new__(cls, index: int, identifier: Any, error: BaseException) -> "BatchFailure":
        return tuple.__new__(cls, (index, identifier, error))

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    def __repr__(self) -> str:
        return f"BatchFailure(index={self[0]!r}, identifier={self[1]!r}, error={self[2]!r})"

    index = property(itemgetter(0), doc="The record's index in the batch.")
    identifier = property(itemgetter(1), doc="The record's identifier (its index where the event has none).")
    error = property(itemgetter(2), doc="The exception the record failed with.")


@public
class BatchError(Exception):
    """Records of a batch without partial responses failed; Lambda should retry the batch.

    Attributes:
        failures: every failure, as BatchFailure(index, identifier, error), in record order.
        source: the event source ("s3", "sns", "eventbridge", "distributed-map"; or any
            source when every record failed and ``raise_on_all_failed`` is set).

    The message gives counts, indexes and exception types only, never payloads or identifiers.
    """

    def __init__(self, source: str, total: int, failures: list[BatchFailure]) -> None:
        shown = ", ".join(f"#{f.index} {type(f.error).__name__}" for f in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        super().__init__(f"{len(failures)} of {total} {source} records failed: {shown}{more}")
        self.source = source
        self.failures = failures


# -- recognising the event ---------------------------------------------------------------

class _Shape:
    """What :func:`detect` recognised in an event.

    Attributes:
        source: the event source's name ("sqs", "kafka", "distributed-map"...).
        records: the records, in order.
        reply: PARTIAL, RAISE or RESULTS.
        identifiers: one per record; None: the record's index identifies it.
        keys: ordering key per record (None: unordered); None: no record is ordered.
        fifo: an SQS FIFO batch: the one FANOUT_FIFO_ON_FAILURE applies to.
    """

    __slots__ = ("source", "records", "reply", "identifiers", "keys", "fifo")

    def __init__(self, source: str, records: list, reply: str, identifiers: list | None, keys: list | None,
                 fifo: bool) -> None:
        self.source = source
        self.records = records
        self.reply = reply
        self.identifiers = identifiers
        self.keys = keys
        self.fifo = fifo


def _dig(record: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _text(name: str, index: int, record: dict, *path: str) -> str | None:
    """The string at ``path`` in record #``index`` of a ``name`` batch, or None where it is absent.

    JSON holds a list or an object where AWS sends a string only in a malformed event;
    such a value is refused here, before any record runs, rather than failing later
    (a list cannot key an ordering group).
    """
    value = _dig(record, *path)
    if value is None or isinstance(value, str):
        return value
    raise _bad_record(name, index, f"has {kind(value)} as {'.'.join(path)}, expected a string")


def _ddb_key(index: int, record: dict) -> str | None:
    import json

    keys = _dig(record, "dynamodb", "Keys")
    return json.dumps(keys, sort_keys=True) if keys is not None else None


def _sqs_group(index: int, record: dict) -> str | None:
    # A standard queue may carry MessageGroupId as a tenant key (fair queues) with no
    # ordering promise: only a FIFO queue's ARN ends in ".fifo".
    if not (_text("sqs", index, record, "eventSourceARN") or "").endswith(".fifo"):
        return None
    return _message_group(index, record)


def _message_group(index: int, record: dict) -> str | None:
    return _text("sqs", index, record, "attributes", "MessageGroupId")


def _kinesis_key(index: int, record: dict) -> str | None:
    return _text("kinesis", index, record, "kinesis", "partitionKey")

#: Sources whose identifier is metadata, logged with a failed record; an S3 object key
#: is data (and a Distributed Map item has only its index), so those log the index only.
_LOGGED_IDENTIFIERS = frozenset({"sqs", "kinesis", "dynamodb", "kafka", "sns", "eventbridge"})

_RECORD_SOURCES: dict[str, tuple] = {
    # eventSource -> (name, reply, identifier path, group function (index, record) -> key, or None)
    "aws:sqs": ("sqs", PARTIAL, ("messageId",), _sqs_group),
    "aws:kinesis": ("kinesis", PARTIAL, ("kinesis", "sequenceNumber"), _kinesis_key),
    "aws:dynamodb": ("dynamodb", PARTIAL, ("dynamodb", "SequenceNumber"), _ddb_key),
    "aws:s3": ("s3", RAISE, ("s3", "object", "key"), None),
    "aws:sns": ("sns", RAISE, ("Sns", "MessageId"), None),
}

#: Amazon MSK, and self-managed Apache Kafka (both spellings seen in AWS's samples).
_KAFKA_SOURCES = ("aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka")


def _unknown(what: str) -> ValueError:
    # The shape is unrecognised: the list of shapes is the useful part of the message.
    return ValueError(
        f"lambda_fanout.process_batch: {what}. Supported event shapes: " + "; ".join(SUPPORTED_SHAPES) + "."
    )


def _malformed(what: str) -> ValueError:
    # The shape is known and one thing in it is wrong: say that thing only.
    return ValueError(f"lambda_fanout.process_batch: {what}; nothing was processed.")


def _bad_record(name: str, index: int, what: str) -> ValueError:
    # One record of a known source lacks what its source always sends.
    return ValueError(
        f"lambda_fanout.process_batch: {name} record #{index} {what}; nothing was processed. "
        f"Check the event comes from {name} as Lambda delivers it."
    )


def detect(event: Any) -> _Shape:
    """Recognise the event's source and check every record before any is processed.

    Raises:
        ValueError: an unknown shape, an empty or mixed batch, a record that is not an
            object, or a record without the identifier its source needs.
    """
    if not isinstance(event, dict):
        raise _unknown(f"the event is {kind(event)}, not a JSON object")
    if "Items" in event and "Records" not in event:
        items = event["Items"]
        if not isinstance(items, list):
            raise _malformed(f"'Items' is {kind(items)}, expected a list")
        if not items:
            raise _malformed("'Items' is empty (a Distributed Map ItemBatcher never sends an empty batch)")
        return _Shape("distributed-map", items, RESULTS, None, None, False)
    if "records" in event and "Records" not in event:
        return _kafka(event)
    if "Records" not in event:
        if "detail-type" in event and "source" in event:
            if event.get("id") is not None and not isinstance(event["id"], str):
                raise _malformed(f"the EventBridge event has {kind(event['id'])} as its 'id', expected a string")
            if event.get("id") in (None, ""):
                raise ValueError(
                    "lambda_fanout.process_batch: the EventBridge event has no 'id', which identifies it; "
                    "nothing was processed. Check the event comes from EventBridge as Lambda delivers it."
                )
            return _Shape("eventbridge", [event], RAISE, [event["id"]], None, False)
        raise _unknown(f"the event has no 'Records' or 'Items' (keys: {sorted(map(str, event))[:8]})")
    records = event["Records"]
    if not isinstance(records, list):
        raise _malformed(f"'Records' is {kind(records)}, expected a list")
    if not records:
        raise _malformed("'Records' is empty (Lambda never delivers an empty batch)")
    sources = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _malformed(f"record #{index} is {kind(record)}, not a JSON object")
        source = record.get("eventSource") or record.get("EventSource")
        if source is not None and not isinstance(source, str):
            raise _malformed(f"record #{index} has {kind(source)} as its eventSource, expected a string "
                             "such as 'aws:sqs'")
        sources.append(source)
    kinds = sorted(set(map(str, sources)))
    if len(kinds) > 1:
        raise _malformed(f"the batch mixes event sources {kinds}; a batch comes from one source")
    source = sources[0]
    if source not in _RECORD_SOURCES:
        raise _unknown(f"unknown eventSource {source!r}")
    return _listed(*_RECORD_SOURCES[source], records)


def _listed(name: str, reply: str, path: tuple, group: Callable | None, records: list, fifo: bool = False) -> _Shape:
    """The shape of ``records`` (objects, each from source ``name``), their identifiers and keys checked.

    ``fifo`` marks an SQS batch FIFO whatever its keys; else one with a message group is.
    """
    identifiers = [_text(name, index, record, *path) for index, record in enumerate(records)]
    for index, value in enumerate(identifiers):
        if not value:
            raise _bad_record(name, index, f"has no {'.'.join(path)}, which identifies it in the response")
    keys = [group(index, record) for index, record in enumerate(records)] if group is not None else None
    fifo = fifo or (name == "sqs" and any(key is not None for key in keys))
    return _Shape(name, records, reply, identifiers, keys, fifo)


def shape_of_records(source: str, records: list, *, fifo: bool = False) -> _Shape:
    """The shape of a batch handed over as its list of records, for a source named by the caller.

    What Powertools' processors take: the source is the processor's, never read from the
    records (which need no ``eventSource``), and the records stay in the order given.

    Args:
        source: "sqs", "kinesis", "dynamodb" or "kafka" (Kafka records flattened, each
            carrying its ``topic``, ``partition`` and ``offset``, as Lambda sends them).
        records: the batch's records, at least one.
        fifo: SQS only: order the records by ``MessageGroupId`` whatever the queue's ARN
            says, and treat the batch as FIFO (the one FANOUT_FIFO_ON_FAILURE applies to).

    Raises:
        ValueError: no records, a record that is not an object, or one without the
            identifier (or with a malformed key) its source needs; nothing was processed.
    """
    if not records:
        raise _malformed("the batch holds no record (Lambda never delivers an empty batch)")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _malformed(f"record #{index} is {kind(record)}, not a JSON object")
    if source == "kafka":
        return _kafka_listed(records)
    name, reply, path, group = next(entry for entry in _RECORD_SOURCES.values() if entry[0] == source)
    if fifo:
        return _listed(name, reply, path, _message_group, records, fifo=True)
    return _listed(name, reply, path, group, records)


def _kafka(event: dict) -> _Shape:
    """A Kafka batch: ``records`` maps "<topic>-<partition>" to that partition's records.

    The records are laid out partition by partition, each in offset order; the
    topic-partition is the ordering key and, with the offset, the identifier.
    """
    source = event.get("eventSource")
    if source not in _KAFKA_SOURCES:
        raise _unknown(f"the event has 'records' but eventSource {source!r} is not a Kafka source "
                       f"({', '.join(map(repr, _KAFKA_SOURCES))})")
    partitions = event["records"]
    if not isinstance(partitions, dict):
        raise _malformed(f"Kafka 'records' is {kind(partitions)}, expected an object mapping "
                       '"<topic>-<partition>" to a list of records')
    placed: list = []
    for partition, batch in partitions.items():
        if not isinstance(batch, list):
            raise _malformed(f"Kafka records[{partition!r}] is {kind(batch)}, expected a list of records")
        for position, record in enumerate(batch):
            where = f"kafka record records[{partition!r}][{position}]"
            if not isinstance(record, dict):
                raise _malformed(f"{where} is {kind(record)}, not a JSON object")
            _kafka_offset(where, record)
        # Lambda delivers each partition in offset order; sorting (stable) keeps that promise anyway.
        placed.extend((partition, record, record["offset"]) for record in sorted(batch, key=lambda r: r["offset"]))
    if not placed:
        raise _malformed("Kafka 'records' holds no record (Lambda never delivers an empty batch)")
    return _kafka_shape(placed)


def _kafka_listed(records: list) -> _Shape:
    """Kafka records as one flat list, each naming its topic and partition: the partition orders them."""
    placed: list = []
    for index, record in enumerate(records):
        where = f"kafka record #{index}"
        offset = _kafka_offset(where, record)
        topic, partition = record.get("topic"), record.get("partition")
        if not isinstance(topic, str) or isinstance(partition, bool) or not isinstance(partition, int):
            raise ValueError(
                f"lambda_fanout.process_batch: {where} has no string 'topic' and integer 'partition', which "
                "identify it in the response; nothing was processed. Check the event comes from Kafka as "
                "Lambda delivers it."
            )
        placed.append((f"{topic}-{partition}", record, offset))
    return _kafka_shape(placed)


def _kafka_shape(placed: list) -> _Shape:
    """Kafka records as ``(topic-partition, record, offset)`` in run order: the
    topic-partition is the ordering key and, with the offset, the identifier."""
    return _Shape("kafka", [record for _, record, _ in placed], PARTIAL,
                  [{"partition": key, "offset": offset} for key, _, offset in placed],
                  [key for key, _, _ in placed], False)


def _kafka_offset(where: str, record: dict) -> int:
    offset = record.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ValueError(
            f"lambda_fanout.process_batch: {where} has no integer 'offset' (got {type(offset).__name__}), "
            "which identifies it in the response; nothing was processed. Check the event comes from "
            "Kafka as Lambda delivers it."
        )
    return offset


# -- running the records ---------------------------------------------------------------------

def _json_serialisable(value: Any) -> None:
    import json

    try:
        json.dumps(value, allow_nan=False)  # NaN and Infinity are not JSON: Step Functions rejects them
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the record handler returned {kind(value)}, which the Distributed Map "
            f"output cannot hold (it must be JSON-serialisable): {exc}"
        ) from None


def _groups(shape: _Shape) -> list[list[int]]:
    """The batch's jobs: one per ordering group (in order of first record), else one per record."""
    if shape.keys is None:
        return [[i] for i in range(len(shape.records))]
    order: dict[Any, list[int]] = {}
    singles: list[list[int]] = []
    for index, key in enumerate(shape.keys):
        if key is None:
            singles.append([index])  # standard SQS: no ordering promise
        else:
            order.setdefault(key, []).append(index)
    groups = singles + list(order.values())
    groups.sort(key=lambda g: g[0])
    return groups


def process_batch(
    event: dict[str, Any],
    record_handler: Task[Any, Any] | Callable[[Any], Any],
    context: Any = None,
    *,
    strategy: StrategyName | None = None,
    max_workers: Workers | None = None,
    fifo_on_failure: Literal["group", "batch"] | None = None,
    raise_on_all_failed: bool | None = None,
) -> dict[str, Any] | list[Any]:
    """Run ``record_handler`` on every record of a Lambda batch event, concurrently.

    Settings are resolved once, here: explicit arguments, else ``FANOUT_*`` variables.
    Each failed record gets one ERROR line on the ``lambda_fanout`` logger (source,
    index, identifier, exception type, traceback; see FANOUT_LOG_FAILURES), never its body.

    Args:
        event: the event as Lambda delivered it (SQS, Kinesis, DynamoDB Streams, Kafka,
            S3, SNS, EventBridge, or a Distributed Map ItemBatcher batch).
        record_handler: ``record -> result``: a plain function, a coroutine function, or a Task.
        context: the Lambda context, or None locally. Records not started before the
            deadline margin are reported as failures, never lost.
        strategy: one of STRATEGIES; None reads FANOUT_STRATEGY, else "asyncio" for a record
            handler with only an async form and "threads" for any other.
        max_workers: concurrency, or "auto" / "auto:N"; None reads FANOUT_MAX_WORKERS.
        fifo_on_failure: SQS FIFO only: ``"group"`` (default) skips the later records of
            a failed message group and runs the other groups; ``"batch"`` starts no
            record after the first failure. None reads FANOUT_FIFO_ON_FAILURE.
        raise_on_all_failed: True raises BatchError, instead of replying, when every
            record of an SQS, Kinesis, DynamoDB or Kafka batch failed. None reads
            FANOUT_RAISE_ON_ALL_FAILED (on/off, default off).

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": ...}, ...]}`` for SQS, Kinesis,
        DynamoDB Streams and Kafka; the results in order for a Distributed Map batch; a
        summary ``{"batchSize": n, "succeeded": n}`` for S3, SNS and EventBridge.

    Raises:
        BatchError: a record failed in a batch without partial responses, or every
            record failed and ``raise_on_all_failed`` is on.
        ValueError: the event has no known shape or a record is malformed (nothing ran).
        ConfigError: a bad setting, or a record handler without the form the strategy runs.
    """
    shape = detect(event)
    settings = Settings.resolve(strategy=strategy, max_workers=max_workers, fifo_on_failure=fifo_on_failure,
                                raise_on_all_failed=raise_on_all_failed, task=record_handler)
    return run_batch(shape, record_handler, context, build(settings))


def run_batch(shape: _Shape, record_handler: Any, context: Any, strategy: Any) -> Any:
    """Run a detected batch through ``strategy``'s ledger and build Lambda's reply.

    Each ordering group is one job of the ledger, each record keeps its own slot: a
    record is reported as succeeded, failed, skipped after an earlier failure (in its
    group, or in the batch for a FIFO batch in "batch" mode), not started before the
    deadline, or started and not finished by it. ``strategy.settings`` decides the
    FIFO mode and whether a batch whose every record failed raises.
    """
    from ._failures import tracebacks_logged

    settings = strategy.settings
    # A partial reply hands no exception back: only the failures logged one by one need
    # their tracebacks (every failure's, when a batch that all failed raises BatchError).
    partial = shape.reply == PARTIAL and not settings.raise_on_all_failed
    return strategy.run(_start(shape, record_handler, context, strategy,
                               tracebacks_logged(settings) if partial else None),
                        lambda outcomes: _reply(shape, settings, outcomes))


def run_records(shape: _Shape, record_handler: Any, context: Any, strategy: Any) -> tuple[list, list[BatchFailure]]:
    """Run a detected batch's records through ``strategy``'s ledger; log each failure once.

    Returns:
        The Outcomes in record order, and the failures among them as BatchFailure.
    """
    return strategy.run(_start(shape, record_handler, context, strategy), _with_failures(shape, strategy.settings))


async def arun_records(shape: _Shape, record_handler: Any, context: Any,
                       strategy: Any) -> tuple[list, list[BatchFailure]]:
    """:func:`run_records` on the running event loop (``strategy.arun``): the ``asyncio``
    strategy awaits the records there, the others drive them from a thread of their own."""
    return await strategy.arun(_start(shape, record_handler, context, strategy),
                               _with_failures(shape, strategy.settings))


def _with_failures(shape: _Shape, settings: Settings) -> Callable[[list], tuple[list, list[BatchFailure]]]:
    """What :func:`run_records` returns, built from the outcomes as the run ends."""
    def with_failures(outcomes: list) -> tuple[list, list[BatchFailure]]:
        failed, identifiers = _logged(shape, settings, outcomes)
        return outcomes, [BatchFailure(o.index, identifier, o.error) for o, identifier in zip(failed, identifiers)]

    return with_failures


#: Full-vCPU time, in microseconds, that the end of a batch call takes per record beyond
#: what the deadline margin covers: the reply built and the failures logged here, then
#: the reply serialised and posted by the runtime (about 3 + 2.5 us, measured at 128 MB).
REPLY_US_PER_RECORD = 6


def reply_reserve_ms(records: int, memory_mb: int | None) -> int:
    """The time kept beyond the deadline margin for a batch's reply: it grows with the
    records and shrinks with the function's CPU share at ``memory_mb`` (10,000 records:
    60 ms at 1,769 MB, 830 ms at 128 MB), so a large failed batch still replies before
    Lambda's timeout."""
    return math.ceil(records * REPLY_US_PER_RECORD / cpu_share(memory_mb) / 1000)


def _start(shape: _Shape, record_handler: Any, context: Any, strategy: Any, tracebacks: int | None = None) -> Any:
    """The ledger of the batch's records, opened (nothing runs yet; see ``Strategy.start``)."""
    check = _json_serialisable if shape.reply == RESULTS else None
    return strategy.start(record_handler, shape.records, errors="collect", context=context,
                          groups=_groups(shape), check=check,
                          stop_on_failure=shape.fifo and strategy.settings.fifo_on_failure == "batch",
                          tracebacks=tracebacks,
                          reserve_ms=reply_reserve_ms(len(shape.records), strategy.settings.memory_mb))


def _logged(shape: _Shape, settings: Settings, outcomes: list) -> tuple[list, list]:
    """The failed outcomes and their identifiers, each failure logged once.

    It runs inside the deadline margin, for every record the deadline cut: a few plain
    passes over the failures, nothing built per record.
    """
    failed = [o for o in outcomes if o.error is not None]
    indexes = [o.index for o in failed]
    ids = shape.identifiers
    identifiers = indexes if ids is None else [ids[i] for i in indexes]
    if failed:
        from ._failures import log_failures

        log_failures(settings, shape.source,
                     zip(indexes, identifiers if shape.source in _LOGGED_IDENTIFIERS else [None] * len(indexes),
                         [o.error for o in failed]))
    return failed, identifiers


def _reply(shape: _Shape, settings: Settings, outcomes: list) -> Any:
    """Lambda's reply (or BatchError) from the outcomes, each failure logged once."""
    failed, identifiers = _logged(shape, settings, outcomes)
    if shape.reply == PARTIAL and not (settings.raise_on_all_failed and len(failed) == len(shape.records)):
        return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}
    if failed:
        failures = [BatchFailure(o.index, identifier, o.error) for o, identifier in zip(failed, identifiers)]
        raise BatchError(shape.source, len(shape.records), failures) from failures[0].error
    if shape.reply == RESULTS:
        return [o.value for o in outcomes]
    return {"batchSize": len(shape.records), "succeeded": len(shape.records)}
