"""lambda_fanout.powertools: Powertools' batch processors, with only the import changed.

The same events go through Powertools' processor and ours (hypothesis), for every event
type and both FIFO modes, and the replies, the handler calls and the processor's
bookkeeping are compared. Where ours must differ (README, "Coming from Powertools") the
test says what ours does instead, exactly: a stream's failure also reports the later
records of its ordering group, which never ran; stop-the-batch FIFO depends on the
order the message groups ran. Then Powertools' entry points, models, handler overrides,
``lambda_context``, whole-batch failure, concurrency and the deadline, under every
strategy that can run the handler.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import threading
import time
from unittest.mock import MagicMock

import pytest
from aws_lambda_powertools.utilities import batch as powertools
from aws_lambda_powertools.utilities.batch.exceptions import (
    SQSFifoCircuitBreakerError,
    SQSFifoMessageGroupCircuitBreakerError,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamRecordModel,
    KafkaRecordModel,
    KinesisDataStreamRecord,
    SqsRecordModel,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Json

import batches
import lambda_fanout
import xproc
from lambda_fanout import powertools as ours
from lambda_fanout.powertools import (
    BatchProcessingError,
    EventType,
    async_batch_processor,
    async_process_partial_response,
    batch_processor,
    process_partial_response,
)

#: kind -> (event builder (n records, each one's ordering key), event type, the processor's class name)
KINDS = {
    "sqs": (lambda n, keys: batches.sqs(n), EventType.SQS, "BatchProcessor"),
    "sqs-fair": (lambda n, keys: batches.sqs(n, keys, fair=True), EventType.SQS, "BatchProcessor"),
    "sqs-fifo-queue": (lambda n, keys: batches.sqs(n, keys), EventType.SQS, "BatchProcessor"),
    "fifo-group": (lambda n, keys: batches.sqs(n, keys), EventType.SQS, "SqsFifoPartialProcessor"),
    "fifo-batch": (lambda n, keys: batches.sqs(n, keys), EventType.SQS, "SqsFifoPartialProcessor"),
    "kinesis": (batches.kinesis, EventType.KinesisDataStreams, "BatchProcessor"),
    "dynamodb": (batches.dynamodb, EventType.DynamoDBStreams, "BatchProcessor"),
    "kafka": (batches.kafka, EventType.Kafka, "BatchProcessor"),
    "sqs-async": (lambda n, keys: batches.sqs(n), EventType.SQS, "AsyncBatchProcessor"),
}
#: Kinds whose records run in order per key (message group, partition key, item key, Kafka partition).
ORDERED = {"sqs-fifo-queue", "fifo-group", "fifo-batch", "kinesis", "dynamodb", "kafka"}
#: Kinds whose reply ours gives exactly as Powertools: Powertools skips a failed group's later records too.
SAME_AS_POWERTOOLS = {"sqs", "sqs-fair", "fifo-group", "sqs-async"}


def processor(module, kind: str, raise_on_entire_batch_failure: bool = True):
    _, event_type, name = KINDS[kind]
    cls = getattr(module, name)
    if name == "SqsFifoPartialProcessor":
        return cls(skip_group_on_error=kind == "fifo-group")
    return cls(event_type, raise_on_entire_batch_failure=raise_on_entire_batch_failure)


def recording_handler(bad: set, calls: list, is_async: bool):
    """A handler as Powertools calls it (``record=<data class>``): notes (position, data class), fails ``bad``."""

    def handle(record):
        position = batches.position_of(record.raw_event)
        calls.append((position, type(record).__name__))
        if position in bad:
            raise RuntimeError(f"record {position} fails")
        return position

    async def ahandle(record):
        return handle(record)

    return ahandle if is_async else handle


def run(module, kind: str, event: dict, bad: set, raise_flag: bool) -> dict:
    """Everything a Powertools user can observe of one batch through ``module``'s processor."""
    calls: list = []
    proc = processor(module, kind, raise_flag)
    is_async = kind == "sqs-async"
    entry = (module.async_process_partial_response if is_async else module.process_partial_response)
    try:
        reply = entry(copy.deepcopy(event), recording_handler(bad, calls, is_async), proc)
    except BatchProcessingError as error:
        reply = ("BatchProcessingError", len(error.child_exceptions))
    return {
        "reply": reply,
        "calls": sorted(calls),
        "success": [batches.position_of(r) for r in proc.success_messages],
        "fail": [batches.position_of(r.raw_event) for r in proc.fail_messages],
        "exceptions": [(t.__name__, str(v)) for t, v, _ in proc.exceptions],
    }


def reply_of(kind: str, event: dict, positions: list) -> dict:
    source = {"kinesis": "kinesis", "dynamodb": "dynamodb", "kafka": "kafka"}.get(kind, "sqs")
    by_position = {batches.position_of(r): r for r in batches.records(source, event)}
    return {"batchItemFailures": [{"itemIdentifier": batches.identifier(source, by_position[p])} for p in positions]}


def record_order(kind: str, event: dict) -> list:
    """Positions in the order Powertools' entry points hand the records over (Kafka: partition by partition)."""
    source = "kafka" if kind == "kafka" else "sqs"
    return [batches.position_of(r) for r in batches.records(source, event)]


def skipped_after(order: list, keys: list, failing: set) -> set:
    """Records later in their ordering group than a failing one: never run, reported failed."""
    skipped, failed_keys = set(), set()
    for position in order:
        if keys[position] in failed_keys:
            skipped.add(position)
        elif position in failing:
            failed_keys.add(keys[position])
    return skipped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(set(KINDS) - {"fifo-batch"})), data=st.data())
def test_replies_and_handler_calls_match_powertools(kind, data):
    """Same events through Powertools' processor and ours: the same reply, calls and bookkeeping, or the stated difference."""
    n = data.draw(st.integers(1, 12), label="records")
    keys = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n), label="keys")
    bad = data.draw(st.sets(st.integers(0, n - 1)), label="failing")
    raise_flag = data.draw(st.booleans(), label="raise_on_entire_batch_failure")
    event = KINDS[kind][0](n, keys)
    theirs = run(powertools, kind, event, bad, raise_flag)
    mine = run(ours, kind, event, bad, raise_flag)
    handler_type = {EventType.SQS: "SQSRecord", EventType.KinesisDataStreams: "KinesisStreamRecord",
                    EventType.DynamoDBStreams: "DynamoDBRecord", EventType.Kafka: "KafkaEventRecord"}[KINDS[kind][1]]
    assert {name for _, name in mine["calls"]} <= {handler_type}
    if kind in SAME_AS_POWERTOOLS:
        assert mine == theirs
        return
    # Powertools runs every record; ours skips the later records of a failed ordering group.
    order = record_order(kind, event)
    assert theirs["calls"] == sorted((p, handler_type) for p in order)
    skipped = skipped_after(order, keys, bad) if kind in ORDERED else set()
    reported = [p for p in order if p in bad or p in skipped]
    assert mine["calls"] == sorted((p, handler_type) for p in order if p not in skipped)
    assert mine["fail"] == reported and mine["success"] == [p for p in order if p not in reported]
    theirs_exceptions = dict(zip(theirs["fail"], theirs["exceptions"]))
    assert [e for p, e in zip(reported, mine["exceptions"]) if p not in skipped] == [
        theirs_exceptions[p] for p in reported if p not in skipped]
    assert [name for p, (name, _) in zip(reported, mine["exceptions"]) if p in skipped] == [
        "SkippedAfterFailure"] * len(skipped)
    if raise_flag and len(reported) == n:
        assert mine["reply"] == ("BatchProcessingError", n)
        return
    assert mine["reply"] == reply_of(kind, event, reported)
    if kind in ("kinesis", "dynamodb", "kafka") and theirs["reply"] != ("BatchProcessingError", n):
        # Lambda restarts a stream at the lowest identifier reported, per Kafka partition: the same in both.
        assert checkpoints(kind, mine["reply"]) == checkpoints(kind, theirs["reply"])


def checkpoints(kind: str, reply: dict) -> dict:
    ids = [f["itemIdentifier"] for f in reply["batchItemFailures"]]
    if kind == "kafka":
        points: dict = {}
        for i in ids:
            points[i["partition"]] = min(points.get(i["partition"], i["offset"]), i["offset"])
        return points
    return {"shard": min(map(int, ids))} if ids else {}  # Kinesis, DynamoDB: one shard per batch


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stop_the_batch_fifo_matches_powertools_when_groups_run_in_record_order(data, monkeypatch):
    """One worker and each message group's records together: groups run in record order, as Powertools runs."""
    monkeypatch.setenv(lambda_fanout.ENV_MAX_WORKERS, "1")
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4), label="group sizes")
    keys = [f"g{g}" for g, size in enumerate(sizes) for _ in range(size)]
    bad = data.draw(st.sets(st.integers(0, len(keys) - 1)), label="failing")
    event = batches.sqs(len(keys), keys)
    theirs = run(powertools, "fifo-batch", event, bad, True)
    mine = run(ours, "fifo-batch", event, bad, True)
    assert mine == theirs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stop_the_batch_fifo_under_concurrency_keeps_every_group_in_order(data):
    """Groups run concurrently: each group's reported records are a suffix of it, each failed or never run."""
    n = data.draw(st.integers(1, 12), label="records")
    keys = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n), label="keys")
    bad = data.draw(st.sets(st.integers(0, n - 1)), label="failing")
    event = batches.sqs(n, keys)
    theirs = run(powertools, "fifo-batch", event, bad, True)
    mine = run(ours, "fifo-batch", event, bad, True)
    called = [p for p, _ in mine["calls"]]
    assert len(called) == len(set(called)), "a record ran twice"
    reported = set(mine["fail"])
    for key in set(keys):
        group = [p for p in range(n) if keys[p] == key]
        cut = next((i for i, p in enumerate(group) if p in reported), len(group))
        assert set(group[cut:]) <= reported and not set(group[:cut]) & reported, f"group {key} out of order"
        assert set(group[:cut]) <= set(called) and not set(group[cut + 1:]) & set(called)
    assert reported & set(called) <= bad, "a record that ran and succeeded was reported"
    assert not bad & set(called) - reported, "a record that ran and failed was not reported"
    assert bool(reported) == bool(bad & set(called)) == bool(theirs["fail"])
    names = {name for name, _ in mine["exceptions"]}
    assert names <= {"RuntimeError", "SQSFifoCircuitBreakerError"}
    if len(reported) == n:
        assert mine["reply"] == ("BatchProcessingError", n)
    else:
        assert mine["reply"] == reply_of("fifo-batch", event, sorted(reported))


# -- the one-line switch --------------------------------------------------------------------

def test_every_name_of_powertools_batch_utility_imports_from_ours():
    for name in powertools.__all__:
        assert hasattr(ours, name), name
    assert ours.process_partial_response is powertools.process_partial_response
    assert ours.EventType is powertools.EventType
    for name in ("BatchProcessor", "AsyncBatchProcessor", "SqsFifoPartialProcessor"):
        mine, theirs = getattr(ours, name), getattr(powertools, name)
        assert mine is not theirs and issubclass(mine, theirs)
        assert inspect.signature(mine) == inspect.signature(theirs)
    assert issubclass(ours.SqsFifoPartialProcessor, ours.BatchProcessor)


def sqs_event(n: int = 8, groups: list | None = None) -> dict:
    return batches.sqs(n, groups)


def failed_ids(reply: dict) -> list:
    return [f["itemIdentifier"] for f in reply["batchItemFailures"]]


@pytest.fixture
def use_strategy(monkeypatch):
    def use(name: str) -> None:
        monkeypatch.setenv(lambda_fanout.ENV_STRATEGY, name)
    return use


ENTRIES = ["process_partial_response", "decorator", "context manager"]


def through(entry: str, proc, event: dict, handler) -> tuple[dict, list | None]:
    """The reply to ``event`` through one of Powertools' entry points (the async ones for an async
    processor), and the entries ``process()`` returned where the caller sees them."""
    is_async = isinstance(proc, ours.AsyncBatchProcessor)
    if entry == "process_partial_response":
        function = async_process_partial_response if is_async else process_partial_response
        return function(event, handler, proc, context=None), None
    if entry == "decorator":
        @(async_batch_processor if is_async else batch_processor)(record_handler=handler, processor=proc)
        def lambda_handler(event, context):
            return proc.response()

        with pytest.warns(DeprecationWarning):
            return lambda_handler(event, {}), None
    with proc(event["Records"], handler, lambda_context=None) as batch:
        entries = batch.async_process() if is_async else batch.process()
    return batch.response(), entries


@pytest.mark.parametrize("entry", ENTRIES)
def test_sync_entry_points_under_every_strategy(sync_strategy, use_strategy, entry, tmp_path):
    use_strategy(sync_strategy)
    log = xproc.Log(str(tmp_path / "log"))
    event = sqs_event()
    reply, entries = through(entry, ours.BatchProcessor(EventType.SQS), event, xproc.PowertoolsHandler({2, 5}, log))
    if entries is not None:
        assert [e[0] for e in entries] == ["success", "success", "fail", "success", "success", "fail", "success",
                                           "success"]
        assert entries[0] == ("success", 0, event["Records"][0])
    assert failed_ids(reply) == ["msg-00002", "msg-00005"]
    assert sorted(p for p in log.entries() if p % 2 == 0) == [2 * p for p in range(8)], "each record runs once"


@pytest.mark.parametrize("entry", ENTRIES)
def test_async_entry_points_run_under_asyncio_by_default(entry, tmp_path):
    log = xproc.Log(str(tmp_path / "log"))
    handler = xproc.AsyncPowertoolsHandler({1}, log, hold=0.05)
    reply, _ = through(entry, ours.AsyncBatchProcessor(EventType.SQS), sqs_event(), handler)
    assert failed_ids(reply) == ["msg-00001"]
    entered, peak = xproc.replay(log)
    assert sorted(entered) == list(range(8)) and peak > 1, "the records did not overlap"


def test_async_processor_under_a_strategy_that_cannot_await_says_so(use_strategy):
    use_strategy("threads")
    proc = ours.AsyncBatchProcessor(EventType.SQS)
    with pytest.raises(lambda_fanout.ConfigError, match="only an async form"):
        async_process_partial_response(sqs_event(), xproc.AsyncPowertoolsHandler(set(), xproc.Log()), proc)


def test_records_overlap_in_time_under_every_concurrent_strategy(concurrent_strategy, use_strategy, tmp_path):
    use_strategy(concurrent_strategy)
    log = xproc.Log(str(tmp_path / "log"))
    event = sqs_event(6)
    if concurrent_strategy == "asyncio":
        reply = async_process_partial_response(event, xproc.AsyncPowertoolsHandler(set(), log, hold=0.1),
                                               ours.AsyncBatchProcessor(EventType.SQS))
    else:
        reply = process_partial_response(event, xproc.PowertoolsHandler(set(), log, hold=0.1),
                                         ours.BatchProcessor(EventType.SQS))
    assert reply == {"batchItemFailures": []}
    entered, peak = xproc.replay(log)
    assert sorted(entered) == list(range(6))
    assert peak > 1, "the records ran one at a time"


def test_powertools_runs_them_one_at_a_time(tmp_path):
    """The reference: Powertools' BatchProcessor, on the same handler, never overlaps two records."""
    log = xproc.Log(str(tmp_path / "log"))
    process_partial_response(sqs_event(4), xproc.PowertoolsHandler(set(), log, hold=0.01),
                             powertools.BatchProcessor(EventType.SQS))
    assert xproc.replay(log) == ([0, 1, 2, 3], 1)


def test_fifo_processor_keeps_each_message_group_in_order(sync_strategy, use_strategy, tmp_path):
    use_strategy(sync_strategy)
    log = xproc.Log(str(tmp_path / "log"))
    groups = ["a", "b", "a", "b", "a", "b", "a", "b"]
    # Powertools' own FIFO test events: a standard queue's ARN, the processor says FIFO.
    event = sqs_event(8, groups)
    for record in event["Records"]:
        record["eventSourceARN"] = "arn:aws:sqs:us-east-2:123456789012:my-queue"
    proc = ours.SqsFifoPartialProcessor(skip_group_on_error=True)
    reply = process_partial_response(event, xproc.PowertoolsHandler({2}, log, hold=0.01), proc)
    assert failed_ids(reply) == ["msg-00002", "msg-00004", "msg-00006"]
    entered = [p for p in log.entries() if p % 2 == 0]
    assert [p // 2 for p in entered if groups[p // 2] == "b"] == [1, 3, 5, 7]
    assert [p // 2 for p in entered if groups[p // 2] == "a"] == [0, 2]
    assert [t for t, _, _ in proc.exceptions] == [RuntimeError, SQSFifoMessageGroupCircuitBreakerError,
                                                 SQSFifoMessageGroupCircuitBreakerError]


def test_stop_the_batch_fifo_reports_powertools_circuit_breaker(use_strategy):
    use_strategy("sequential")
    event = sqs_event(4, ["a", "a", "a", "a"])
    proc = ours.SqsFifoPartialProcessor()
    reply = process_partial_response(event, xproc.PowertoolsHandler({1}, xproc.Log()), proc)
    assert failed_ids(reply) == ["msg-00001", "msg-00002", "msg-00003"]
    assert proc.exceptions[1:] == [powertools.SqsFifoPartialProcessor.circuit_breaker_exc] * 2
    assert proc.exceptions[1][0] is SQSFifoCircuitBreakerError


# -- Powertools' contract -------------------------------------------------------------------

class Order(SqsRecordModel):
    body: Json[dict]


def order_handler(record: Order):
    assert isinstance(record, Order)
    if record.body["n"] == 3:
        raise ValueError("order 3 is refused")
    return record.body["n"]


@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map"])
def test_model_parsing_and_poison_pills_as_powertools(strategy, use_strategy):
    """The model is this module's: under processes it must be importable by the workers, as the handler."""
    use_strategy(strategy)
    event = sqs_event(6)
    event["Records"][4]["body"] = "{not json"  # a poison pill: it fails the model
    replies = []
    for module in (powertools, ours):
        proc = module.BatchProcessor(EventType.SQS, model=Order)
        reply = process_partial_response(copy.deepcopy(event), order_handler, proc)
        replies.append((reply, [type(r).__name__ for r in proc.fail_messages],
                        [t.__name__ for t, _, _ in proc.exceptions], proc.success_messages))
    assert replies[0] == replies[1]
    assert failed_ids(replies[1][0]) == ["msg-00003", "msg-00004"]
    assert replies[1][1] == ["Order", "SQSRecord"]  # the pill is reported as its data class


#: kind -> Powertools' parser model of its record
MODELS = {"sqs": SqsRecordModel, "kinesis": KinesisDataStreamRecord, "dynamodb": DynamoDBStreamRecordModel,
          "kafka": KafkaRecordModel}


def model_handler(record):
    """Fails records 1 and 4, read from the model's identifier."""
    if isinstance(record, SqsRecordModel):
        position = int(record.messageId.split("-")[1])
    elif isinstance(record, KinesisDataStreamRecord):
        position = int(record.kinesis.sequenceNumber) - batches.KINESIS_SEQUENCE
    elif isinstance(record, DynamoDBStreamRecordModel):
        position = int(record.dynamodb.SequenceNumber) - 111
    else:
        position = record.offset - batches.KAFKA_OFFSET
    if position in (1, 4):
        raise RuntimeError(f"record {position} fails")
    return position


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_source_parses_into_its_powertools_model(kind):
    event = KINDS[kind][0](6, list(range(6)))  # one ordering key per record: nothing is skipped
    seen = []
    for module in (powertools, ours):
        proc = module.BatchProcessor(KINDS[kind][1], model=MODELS[kind])
        reply = process_partial_response(copy.deepcopy(event), model_handler, proc)
        seen.append((reply, [type(r) for r in proc.fail_messages], proc.success_messages))
    assert seen[0] == seen[1]
    assert len(seen[1][0]["batchItemFailures"]) == 2 and seen[1][1] == [MODELS[kind]] * 2


class Recorded:
    """success_handler / failure_handler overrides that note each call (as Powertools' docs extend them)."""

    def success_handler(self, record, result):
        self.noted.append(("success", record["messageId"], result))
        return super().success_handler(record, result)

    def failure_handler(self, record, exception):
        self.noted.append(("fail", record.message_id, exception[0].__name__))
        return super().failure_handler(record, exception)


def recorded(module):
    cls = type("Recorded" + module.__name__.split(".")[-1], (Recorded, module.BatchProcessor), {})
    proc = cls(EventType.SQS)
    proc.noted = []
    return proc


def test_success_and_failure_handler_overrides_are_called_as_powertools_calls_them(use_strategy):
    use_strategy("threads")
    noted = []
    for module in (powertools, ours):
        proc = recorded(module)
        process_partial_response(sqs_event(6), xproc.PowertoolsHandler({1, 4}, xproc.Log()), proc)
        noted.append(proc.noted)
    assert noted[0] == noted[1]
    assert [n[0] for n in noted[1]] == ["success", "fail", "success", "success", "fail", "success"]


def test_a_success_handler_that_raises_fails_the_record_as_in_powertools():
    class Picky:
        def success_handler(self, record, result):
            if result == 2:
                raise LookupError("not this one")
            return super().success_handler(record, result)

    replies = []
    for module in (powertools, ours):
        proc = type("Picky", (Picky, module.BatchProcessor), {})(EventType.SQS)
        replies.append((process_partial_response(sqs_event(4), xproc.PowertoolsHandler(set(), xproc.Log()), proc),
                        [t for t, _, _ in proc.exceptions]))
    assert replies[0] == replies[1] == ({"batchItemFailures": [{"itemIdentifier": "msg-00002"}]}, [LookupError])


class Parsed:
    """What a ``_to_batch_type`` override makes of a record (a subclass's own parsing)."""

    def __init__(self, record: dict) -> None:
        self.message_id = record["messageId"]


class ParsingProcessor(ours.BatchProcessor):
    """Module level: under processes it travels to the workers with the handler."""

    def _to_batch_type(self, record, event_type, model=None):
        return Parsed(record)


def parsed_handler(record):
    if not isinstance(record, Parsed):
        raise TypeError(f"the handler got {type(record).__name__}")
    return record.message_id


@pytest.mark.parametrize("strategy", ["threads", "processes"])
def test_a_to_batch_type_override_builds_what_the_handler_receives(strategy, use_strategy):
    use_strategy(strategy)
    results = []
    for base in (powertools.BatchProcessor, ParsingProcessor):
        proc = type("Parsing", (base,), {"_to_batch_type": ParsingProcessor._to_batch_type})(EventType.SQS) \
            if base is powertools.BatchProcessor else ParsingProcessor(EventType.SQS)
        with proc(sqs_event(3)["Records"], parsed_handler) as batch:
            results.append([e[:2] for e in batch.process()])
    assert results[0] == results[1] == [("success", f"msg-0000{i}") for i in range(3)]


@pytest.mark.parametrize("hook", ["_process_record", "_async_process_record"])
@pytest.mark.parametrize("name", ["BatchProcessor", "AsyncBatchProcessor", "SqsFifoPartialProcessor"])
def test_an_override_of_a_per_record_hook_is_refused_where_the_class_is_defined(name, hook):
    """Ours never calls Powertools' per-record hooks: an override would be dropped silently, so it is refused."""
    def override(self, record):
        raise AssertionError("never called")

    type("Mine", (getattr(powertools, name),), {hook: override})  # Powertools' own takes it
    with pytest.raises(TypeError, match=f"Mine overrides {hook}.*record handler.*success_handler"):
        type("Mine", (getattr(ours, name),), {hook: override})


def test_a_handler_raising_the_models_validation_error_is_a_poison_pill_as_in_powertools():
    """Powertools reports a record whose handler raised the model's ValidationError as its data class."""
    def handler(record: Order):
        if record.body["n"] == 1:
            Order.model_validate({"body": "{not json"})  # raises a ValidationError titled "Order"
        return record.body["n"]

    seen = []
    for module in (powertools, ours):
        proc = module.BatchProcessor(EventType.SQS, model=Order)
        reply = process_partial_response(sqs_event(3), handler, proc)
        seen.append((reply, [type(r).__name__ for r in proc.fail_messages]))
    assert seen[0] == seen[1] == ({"batchItemFailures": [{"itemIdentifier": "msg-00001"}]}, ["SQSRecord"])


def test_lambda_context_reaches_a_handler_that_takes_it(sync_strategy, use_strategy, fake_context, tmp_path):
    use_strategy(sync_strategy)
    log = xproc.Log(str(tmp_path / "log"))
    reply = process_partial_response(sqs_event(3), xproc.ContextHandler(log), ours.BatchProcessor(EventType.SQS),
                                     context=fake_context(60_000))
    assert reply == {"batchItemFailures": []}
    assert log.entries() == ["fanout-test"] * 3


def test_lambda_context_reaches_an_async_handler_that_takes_it(fake_context):
    seen = []

    async def handler(record, lambda_context):
        seen.append(lambda_context)

    context = fake_context(60_000)
    async_process_partial_response(sqs_event(3), handler, ours.AsyncBatchProcessor(EventType.SQS), context=context)
    assert seen == [context] * 3


def test_a_handler_without_lambda_context_is_called_without_it():
    def handler(record):  # no lambda_context parameter: Powertools passes none
        return record.message_id

    proc = ours.BatchProcessor(EventType.SQS)
    with proc(sqs_event(2)["Records"], handler, lambda_context=object()) as batch:
        assert [e[1] for e in batch.process()] == ["msg-00000", "msg-00001"]


@pytest.mark.parametrize("raise_flag", [True, False])
def test_whole_batch_failure(strategy_name, use_strategy, raise_flag):
    use_strategy(strategy_name)
    if strategy_name == "asyncio":
        proc, entry = ours.AsyncBatchProcessor(EventType.SQS, raise_on_entire_batch_failure=raise_flag), \
            async_process_partial_response
        handler = xproc.AsyncPowertoolsHandler(set(range(3)), xproc.Log())
    else:
        proc, entry = ours.BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=raise_flag), \
            process_partial_response
        handler = xproc.PowertoolsHandler(set(range(3)), xproc.Log())
    if raise_flag:
        with pytest.raises(BatchProcessingError, match="All records failed processing") as info:
            entry(sqs_event(3), handler, proc)
        assert [type(e[1]) for e in info.value.child_exceptions] == [RuntimeError] * 3
        assert info.type is powertools.base.BatchProcessingError
    else:
        assert failed_ids(entry(sqs_event(3), handler, proc)) == ["msg-00000", "msg-00001", "msg-00002"]


def test_processes_need_a_handler_that_pickles(use_strategy):
    use_strategy("processes")
    with pytest.raises(lambda_fanout.ConfigError, match="cannot be pickled"):
        process_partial_response(sqs_event(2), lambda record: None, ours.BatchProcessor(EventType.SQS))


def test_a_handler_that_does_not_pickle_is_named_in_the_error(use_strategy):
    use_strategy("processes")

    def nested_handler(record):
        return None

    with pytest.raises(lambda_fanout.ConfigError) as info:
        process_partial_response(sqs_event(2), nested_handler, ours.BatchProcessor(EventType.SQS))
    message = str(info.value)
    assert "nested_handler" in message and "cannot be pickled" in message
    assert "_RecordCall" not in message and " at 0x" not in message


@pytest.mark.parametrize("handler", ["async def", "def"])
def test_an_async_processor_under_a_strategy_that_cannot_await_says_what_to_change(handler, use_strategy):
    use_strategy("threads")

    async def async_handler(record):
        return None

    def sync_handler(record):
        return None

    with pytest.raises(lambda_fanout.ConfigError) as info:
        async_process_partial_response(sqs_event(2), async_handler if handler == "async def" else sync_handler,
                                       ours.AsyncBatchProcessor(EventType.SQS))
    message = str(info.value)
    assert "_handler'" in message and "Unset FANOUT_STRATEGY" in message and "BatchProcessor" in message
    assert "Task(" not in message and "sync_fn" not in message


def test_a_processor_reused_across_invocations_starts_clean():
    proc = ours.BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
    first = process_partial_response(sqs_event(3), xproc.PowertoolsHandler({0}, xproc.Log()), proc)
    second = process_partial_response(sqs_event(3), xproc.PowertoolsHandler(set(), xproc.Log()), proc)
    assert failed_ids(first) == ["msg-00000"] and second == {"batchItemFailures": []}
    assert len(proc.success_messages) == 3 and proc.fail_messages == [] and proc.exceptions == []


def test_a_malformed_record_runs_nothing():
    event = sqs_event(3)
    del event["Records"][1]["messageId"]
    log = xproc.Log()
    with pytest.raises(ValueError, match="nothing was processed"):
        process_partial_response(event, xproc.PowertoolsHandler(set(), log), ours.BatchProcessor(EventType.SQS))
    assert log.entries() == []


# -- the deadline -----------------------------------------------------------------------------

def test_records_not_started_by_the_deadline_are_reported(strategy_name, use_strategy, fake_context, monkeypatch,
                                                          tmp_path):
    """Powertools would run on into Lambda's timeout; ours reports what it could not start, and returns in time."""
    use_strategy(strategy_name)
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "150")
    monkeypatch.setenv(lambda_fanout.ENV_MAX_WORKERS, "2")
    log = xproc.Log(str(tmp_path / "log"))
    n = 60  # 50 ms each on 2 workers: 1.5 s of work for 0.85 s before the margin
    if strategy_name == "asyncio":
        handler, proc, entry = xproc.AsyncPowertoolsHandler(set(), log, hold=0.05), \
            ours.AsyncBatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False), async_process_partial_response
    else:
        handler, proc, entry = xproc.PowertoolsHandler(set(), log, hold=0.05), \
            ours.BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False), process_partial_response
    start = time.monotonic()
    reply = entry(sqs_event(n), handler, proc, context=fake_context(1000))
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, "the call ran past the Lambda deadline"
    reported = {int(i.split("-")[1]) for i in failed_ids(reply)}
    finished = {e // 2 for e in log.entries() if e % 2}
    assert reported, "the deadline should have cut the batch"
    assert finished | reported == set(range(n)), "a record was neither run nor reported"
    assert len(finished & reported) <= 2, "only a record running at the cut may finish and be reported"
    assert {type(e[1]).__name__ for e in proc.exceptions} == {"DeadlineExceeded"}
    assert len(proc.success_messages) + len(proc.fail_messages) == n


# -- the event loop of AsyncBatchProcessor ----------------------------------------------------

def loop_recorder(seen: list):
    async def handler(record):
        await asyncio.sleep(0)
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
    return handler


def test_in_lambda_async_records_run_on_the_loop_powertools_uses(monkeypatch):
    """In Lambda, Powertools runs the records on the thread's own loop: what init made there works in the handler."""
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        made_at_init = loop.run_until_complete(asyncio.sleep(0, result=asyncio.Queue()))  # bound to `loop` on use
        for module in (powertools, ours):
            seen = []
            handler = loop_recorder(seen)

            async def with_init_resource(record, handler=handler):
                await made_at_init.put(record.message_id)
                return await handler(record)

            for _ in range(2):  # a warm invocation uses the same loop
                reply = async_process_partial_response(sqs_event(3), with_init_resource,
                                                       module.AsyncBatchProcessor(EventType.SQS))
                assert reply == {"batchItemFailures": []}
            assert seen == [(loop, threading.main_thread())] * 6, module.__name__
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_outside_lambda_async_records_run_on_the_calling_thread(monkeypatch, fake_context):
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    seen = []
    async_process_partial_response(sqs_event(3), loop_recorder(seen), ours.AsyncBatchProcessor(EventType.SQS),
                                   context=fake_context(60_000))
    assert [thread for _, thread in seen] == [threading.current_thread()] * 3


@pytest.mark.parametrize("in_lambda", [True, False])
def test_an_async_records_failure_carries_only_its_own_exception(monkeypatch, caplog, in_lambda):
    """A failed record's exception has no context the processor added (the loop lookup's
    RuntimeError), so its log line shows the handler's error alone."""
    import logging

    if in_lambda:
        monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
        asyncio.set_event_loop(None)  # no loop yet on this thread: the processor makes one
    else:
        monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)

    async def handler(record):
        await asyncio.sleep(0)
        raise ValueError("record failed")

    caplog.set_level(logging.ERROR)
    proc = ours.AsyncBatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        reply = async_process_partial_response(sqs_event(2), handler, proc)
    finally:
        if in_lambda:
            asyncio.get_event_loop().close()
            asyncio.set_event_loop(None)
    assert len(reply["batchItemFailures"]) == 2
    errors = [info[1] for info in proc.exceptions]
    assert [type(e) for e in errors] == [ValueError, ValueError]
    assert all(e.__context__ is None and e.__cause__ is None for e in errors), [e.__context__ for e in errors]
    logged = "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records)
    assert "RuntimeError" not in logged


def test_an_async_processor_called_inside_a_running_loop_is_refused_as_in_powertools():
    """Powertools' async_process raises there too (its loop is running, or asyncio.run refuses)."""
    seen = []

    async def caller(module):
        return async_process_partial_response(sqs_event(3), loop_recorder(seen), module.AsyncBatchProcessor(EventType.SQS))

    with pytest.raises(RuntimeError, match="inside a running event loop"):
        asyncio.run(caller(ours))
    assert seen == []


@pytest.mark.parametrize("make_context", [dict, MagicMock], ids=["dict", "magicmock"])
def test_a_context_without_a_remaining_time_sets_no_deadline(make_context):
    """Powertools hands any lambda_context to the handler and never reads its time (its own
    tests pass {}, users' tests a MagicMock()): no deadline then, no error, Powertools' reply."""
    context = make_context()
    reply = process_partial_response(sqs_event(3), xproc.PowertoolsHandler({1}, xproc.Log()),
                                     ours.BatchProcessor(EventType.SQS), context=context)
    theirs = process_partial_response(sqs_event(3), xproc.PowertoolsHandler({1}, xproc.Log()),
                                      powertools.BatchProcessor(EventType.SQS), context=context)
    assert reply == theirs == {"batchItemFailures": [{"itemIdentifier": sqs_event(3)["Records"][1]["messageId"]}]}


def test_records_reach_the_handler_as_powertools_data_classes():
    seen = []
    process_partial_response(sqs_event(2), lambda record: seen.append(record), ours.BatchProcessor(EventType.SQS))
    assert all(isinstance(r, SQSRecord) for r in seen) and len(seen) == 2
    assert json.loads(seen[0].body) in ({"n": 0}, {"n": 1})
