"""process_batch: partial batch responses, ordering, deadlines, other sources, bad events."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batches
from batches import failing_handler, position_of
import lambda_fanout
from lambda_fanout import batch as batch_module
from lambda_fanout._errors import kind
from lambda_fanout.batch import BatchError, SkippedAfterFailure
import xproc


@pytest.fixture
def log():
    """What the record handlers record, from whichever process runs them (processes too)."""
    entries = xproc.Log()
    yield entries
    entries.remove()


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def expected_failures(groups: list, bad: set) -> tuple[list[int], set[int]]:
    """Reference model: (reported, never run): a failing record, and every later record of its group."""
    failed_groups: set = set()
    out, skipped = [], set()
    for i, g in enumerate(groups):
        if g is not None and g in failed_groups:
            out.append(i)
            skipped.add(i)
        elif i in bad:
            out.append(i)
            if g is not None:
                failed_groups.add(g)
    return out, skipped


@SETTINGS
@given(
    source=st.sampled_from(["sqs", "sqs-fair", "kinesis", "dynamodb", "kafka"]),
    data=st.data(),
)
def test_exact_batch_item_failures(strategy_name, log, source, data):
    n = data.draw(st.integers(1, 40), label="records")
    if source.startswith("sqs"):
        groups = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n), label="groups")
        event = batches.sqs(n, groups, fair=source == "sqs-fair")
        if source == "sqs-fair":
            groups, source = [None] * n, "sqs"  # a standard queue: MessageGroupId orders nothing
    else:
        groups = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="keys")
        event = batches.BUILDERS[source](n, groups)
    bad = data.draw(st.sets(st.integers(0, n - 1)), label="failing")
    log.clear()  # hypothesis runs this body many times with one fixture
    out = lambda_fanout.process_batch(event, failing_handler(bad, log), strategy=strategy_name, max_workers=4)
    reported, skipped = expected_failures(groups, bad)
    # In the order the batch lays its records out (Kafka: partition by partition).
    want = [batches.identifier(source, r) for r in batches.records(source, event) if position_of(r) in reported]
    got = [f["itemIdentifier"] for f in out["batchItemFailures"]]
    assert got == want
    # Skipped records never ran; every other record ran exactly once.
    assert sorted(log) == [i for i in range(n) if i not in skipped]


@pytest.mark.parametrize("source", ["sqs", "kinesis", "dynamodb", "kafka"])
@pytest.mark.parametrize("workers", [8, "auto:8"])
def test_order_within_a_group_under_concurrency(strategy_name, source, workers, log):
    n, n_groups = 48, 4
    groups = [i % n_groups for i in range(n)]
    event = batches.sqs(n, groups) if source == "sqs" else batches.BUILDERS[source](n, groups)
    timed = xproc.EnterLeave(log)
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(timed.sync_fn, timed.async_fn),
                                      strategy=strategy_name, max_workers=workers)
    assert out == {"batchItemFailures": []}
    entered, peak = xproc.replay(log)
    order: dict = {}
    for position in entered:
        order.setdefault(groups[position], []).append(position)
    active = {"peak": peak}
    for g, seen in order.items():
        assert seen == sorted(seen) == [i for i in range(n) if groups[i] == g]
    assert active["peak"] <= n_groups
    if strategy_name != "sequential":
        assert active["peak"] > 1, "groups should run concurrently"


@pytest.mark.parametrize("memory_mb,records,runs", [("128", 10_000, False), ("128", 10, True),
                                                    ("1769", 10_000, True)])
def test_a_batch_keeps_time_for_its_reply_beyond_the_margin(monkeypatch, fake_context, memory_mb, records, runs):
    """A large batch at a small CPU share keeps time for the runtime to post its reply:
    with 700 ms left and a 100 ms margin, 10,000 records at 128 MB (830 ms kept) start
    none and report every one; 10 records there, or 10,000 at a whole vCPU (60 ms kept), start."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb)
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    assert lambda_fanout.get_strategy("sequential").settings.memory_mb == int(memory_mb)
    assert batch_module.reply_reserve_ms(records, int(memory_mb)) == {("128", 10_000): 830, ("128", 10): 1,
                                                      ("1769", 10_000): 60}[memory_mb, records]
    out = lambda_fanout.process_batch(batches.sqs(records), lambda record: None, fake_context(700),
                                      strategy="sequential")
    failed = len(out["batchItemFailures"])
    assert failed < records if runs else failed == records


@pytest.mark.parametrize("workers", [4, "auto"])
def test_deadline_reports_unstarted_records_and_loses_none(strategy_name, fake_context, monkeypatch, workers):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    n = 300
    event = batches.sqs(n, [i % 5 if i % 2 else None for i in range(n)])

    # When each record finished: one still running at the margin is reported failed
    # (started, did not finish) and may finish later, even before the call returns.
    done = xproc.TimedLog()
    context = fake_context(350)
    # The batch's margin: the 100 ms set, and the time it keeps for its reply; 2 ms earlier
    # still, as the remaining time the context gives is whole milliseconds, rounded down.
    reserve_ms = batch_module.reply_reserve_ms(n, lambda_fanout.get_strategy(strategy_name).settings.memory_mb)
    margin_at = context.deadline - (100 + reserve_ms + 2) / 1000
    out = lambda_fanout.process_batch(event, failing_handler(set(), done, delay=0.01),
                                      context=context, strategy=strategy_name, max_workers=workers)
    failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
    finished = done.entries()
    done.remove()
    succeeded = {f"msg-{i:05d}" for i, at in finished if at < margin_at}
    late = {f"msg-{i:05d}" for i, at in finished if at >= margin_at}
    every = {r["messageId"] for r in event["Records"]}
    assert failed and succeeded
    assert not failed & succeeded, "a record both succeeded and was reported failed"
    assert failed | succeeded | late == every, "a record was neither processed nor reported"


def test_a_fifo_record_cut_by_the_deadline_leaves_the_rest_of_its_group_not_started(concurrent_strategy, fake_context,
                                                                                   monkeypatch, caplog):
    # A deadline cut is not a failure: the records after the cut one in its group are
    # reported as not started by the deadline (safe to redeliver), never as skipped
    # after a failure, under every strategy alike.
    import logging

    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    caplog.set_level(logging.ERROR)
    release = xproc.Flag()
    hold = xproc.HoldAt(1, release, 5.0)
    try:
        out = lambda_fanout.process_batch(batches.sqs(4, ["g"] * 4), lambda_fanout.Task(hold.sync_fn, hold.async_fn),
                                          fake_context(600), strategy=concurrent_strategy, max_workers=2)
    finally:
        release.set()
    assert out == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in (1, 2, 3)]}
    lines = [r for r in caplog.records if r.name == "lambda_fanout"]
    assert [r.exceptionType for r in lines] == ["lambda_fanout.DeadlineExceeded"]
    (cut,) = lines
    assert cut.indexes == "#1-#3" and cut.didNotFinish == 1 and cut.notStarted == 2


@pytest.mark.parametrize("name,source", [("s3", "s3"), ("sns", "sns"), ("eventbridge", "eventbridge")])
def test_sources_without_partial_responses(strategy_name, name, source):
    event = batches.sample(name)
    assert lambda_fanout.process_batch(event, lambda_fanout.Task(_one_sync, _one), strategy=strategy_name) == {
        "batchSize": 1, "succeeded": 1}

    async def aboom(record):
        raise KeyError("missing")

    with pytest.raises(lambda_fanout.BatchError) as info:
        lambda_fanout.process_batch(event, lambda_fanout.Task(_boom, aboom), strategy=strategy_name)
    err = info.value
    assert err.source == source and len(err.failures) == 1
    assert err.failures[0].index == 0 and isinstance(err.failures[0].error, KeyError)
    assert isinstance(err.__cause__, KeyError)


# Tasks at module level, so that the processes strategy can pickle them.
def _one_sync(record):
    return 1


async def _one(record):
    return 1


def _boom(record):
    raise KeyError("missing")


def test_distributed_map_batch(strategy_name):
    event = batches.sample("distributed_map")
    event["Items"] = [{"key": f"k{i}", "size": i} for i in range(30)]
    got = lambda_fanout.process_batch(event, lambda_fanout.Task(_double_size_sync, _double_size),
                                      strategy=strategy_name, max_workers=5)
    assert got == [i * 2 for i in range(30)]

    async def aunserialisable(item):
        return _unserialisable(item)

    with pytest.raises(lambda_fanout.BatchError) as info:
        lambda_fanout.process_batch(event, lambda_fanout.Task(_unserialisable, aunserialisable), strategy=strategy_name)
    assert [f.index for f in info.value.failures] == [7]
    assert "JSON-serialisable" in str(info.value.failures[0].error)


def _double_size_sync(item):
    return item["size"] * 2


async def _double_size(item):
    return item["size"] * 2


def _unserialisable(item):
    return {1, 2} if item["size"] == 7 else item["size"]


@pytest.mark.parametrize("event,fragment,unknown", [
    ({"foo": 1}, "no 'Records' or 'Items'", True),
    ([], "the event is a list, not a JSON object", True),
    ({"Records": [{"eventSource": "aws:ses"}]}, "unknown eventSource 'aws:ses'", True),
    ({"Records": []}, "'Records' is empty", False),
    ({"Records": ["x"]}, "record #0 is a str, not a JSON object", False),
    ({"Records": [1]}, "record #0 is an int, not a JSON object", False),
    ({"Records": {"a": 1}}, "'Records' is a dict, expected a list", False),
    ({"Items": "x"}, "'Items' is a str, expected a list", False),
    ({"Items": None}, "'Items' is None, expected a list", False),
    ({"Records": [{"eventSource": "aws:sqs", "messageId": "1"}, {"eventSource": "aws:kinesis"}]}, "mixes event sources", False),
])
def test_malformed_events_say_what_is_wrong(event, fragment, unknown):
    # The list of supported shapes helps only when the shape is unknown; a specific
    # cause is said alone.
    ran = []
    with pytest.raises(ValueError) as info:
        lambda_fanout.process_batch(event, ran.append)
    msg = str(info.value)
    assert fragment in msg, msg
    assert ("Supported event shapes" in msg) == unknown, msg
    if unknown:
        for shape in batch_module.SUPPORTED_SHAPES:
            assert shape in msg
    else:
        assert len(msg) < 200, msg
    assert ran == []


@pytest.mark.parametrize("event, says", [
    ([{"messageId": "1"}], "Supported event shapes"),
    ({"eventSource": "aws:kafka", "records": {"t-0": [{"offset": "7"}]}}, "integer 'offset'"),
    ({"eventSource": "aws:kafka", "records": [{"offset": 7}]}, "expected an object mapping"),
    ({"Records": [{"eventSource": "aws:sqs", "messageId": "a"}, {"eventSource": "aws:kinesis"}]}, "mixes"),
    ({"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]}, "kinesis.sequenceNumber"),
])
def test_batch_malformed_events_named(event, says):
    """README (batches): "An event of no known shape, an empty or mixed batch, a non-object record or a record
    without its identifier raises ValueError before any record runs, saying what is wrong"."""
    ran = []
    with pytest.raises(ValueError, match=says):
        lambda_fanout.process_batch(event, ran.append, strategy="threads")
    assert ran == []


def _with(event: dict, index: int, path: tuple, value) -> dict:
    record = event["Records"][index]
    for key in path[:-1]:
        record = record[key]
    record[path[-1]] = value
    return event


@pytest.mark.parametrize("value", [["a"], {"k": "v"}, 7])
@pytest.mark.parametrize("build,path,field", [
    (lambda: batches.kinesis(3, ["a", "b", "c"]), ("kinesis", "partitionKey"), "kinesis.partitionKey"),
    (lambda: batches.sqs(3, ["g", "g", "h"]), ("attributes", "MessageGroupId"), "attributes.MessageGroupId"),
    (lambda: batches.sqs(3), ("eventSourceARN",), "eventSourceARN"),
    (lambda: batches.sqs(3), ("messageId",), "messageId"),
    (lambda: batches.kinesis(3), ("kinesis", "sequenceNumber"), "kinesis.sequenceNumber"),
    (lambda: batches.dynamodb(3), ("dynamodb", "SequenceNumber"), "dynamodb.SequenceNumber"),
    (lambda: batches.sample("s3"), ("s3", "object", "key"), "s3.object.key"),
    (lambda: batches.sample("sns"), ("Sns", "MessageId"), "Sns.MessageId"),
])
def test_a_value_where_a_string_belongs_is_refused_before_any_record_runs(strategy_name, log, build, path, field,
                                                                          value):
    """A list or object where AWS sends a string is the documented ValueError, naming the record and field."""
    event = build()
    index = len(event["Records"]) - 1
    _with(event, index, path, value)
    with pytest.raises(ValueError) as info:
        lambda_fanout.process_batch(event, failing_handler(set(), log), strategy=strategy_name)
    assert list(log) == [], "nothing runs"
    msg = str(info.value)
    assert f"record #{index} has {kind(value)} as {field}, expected a string; nothing was processed" in msg, msg
    assert "Check the event comes from" in msg, msg


@pytest.mark.parametrize("value", [["aws:sqs"], {"source": "aws:sqs"}, 3])
def test_an_event_source_that_is_not_a_string_is_refused(strategy_name, value):
    event = batches.sqs(2)
    for record in event["Records"]:
        record["eventSource"] = value
    ran: list = []
    with pytest.raises(ValueError) as info:
        lambda_fanout.process_batch(event, ran.append, strategy=strategy_name)
    assert f"record #0 has {kind(value)} as its eventSource, expected a string such as 'aws:sqs'" in str(info.value)
    assert ran == []


@pytest.mark.parametrize("value", [["id-1"], {"id": "1"}])
def test_an_eventbridge_id_that_is_not_a_string_is_refused(value):
    event = batches.sample("eventbridge")
    event["id"] = value
    ran: list = []
    with pytest.raises(ValueError, match=f"has {kind(value)} as its 'id', expected a string; nothing was processed"):
        lambda_fanout.process_batch(event, ran.append)
    assert ran == []


def test_missing_identifier_runs_nothing():
    event = batches.sqs(3)
    del event["Records"][1]["messageId"]
    ran = []
    with pytest.raises(ValueError, match=r"sqs record #1 has no messageId"):
        lambda_fanout.process_batch(event, ran.append)
    assert ran == []


def test_skipped_records_carry_a_clear_reason():
    event = batches.kinesis(3, ["a", "a", "a"])
    bad = {0}
    out = lambda_fanout.process_batch(event, failing_handler(bad), strategy="threads")
    assert len(out["batchItemFailures"]) == 3
    # The same batch through the ledger directly: the later records say why they did not run.
    strategy = lambda_fanout.get_strategy("threads")
    run = strategy.start(failing_handler(bad), event["Records"], errors="collect", groups=[[0, 1, 2]])
    outcomes = strategy.run(run)
    assert [type(o.error) for o in outcomes] == [RuntimeError, SkippedAfterFailure, SkippedAfterFailure]
    assert [o.error.after for o in outcomes[1:]] == [0, 0]
    assert "record #0 of the same group failed first" in str(outcomes[1].error)


def test_batch_error_message_has_no_identifiers():
    event = batches.sample("sns")
    with pytest.raises(BatchError) as info:
        lambda_fanout.process_batch(event, _raise_value_error, strategy="sequential")
    assert event["Records"][0]["Sns"]["MessageId"] not in str(info.value)
    assert "1 of 1 sns records failed: #0 ValueError" in str(info.value)


def _raise_value_error(record):
    raise ValueError("nope")


def test_fair_queue_runs_one_tenant_concurrently(concurrent_strategy, log):
    """A standard queue's MessageGroupId is a tenant key, not an order: its messages run concurrently."""
    n = 24
    event = batches.sqs(n, ["tenant-1"] * n, fair=True)
    assert event["Records"][0]["eventSourceARN"].endswith(":my-queue")
    timed = xproc.EnterLeave(log, hold=0.005, fail_at=3)  # tenant message 3 fails
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(timed.sync_fn, timed.async_fn),
                                      strategy=concurrent_strategy, max_workers=8)
    ran, peak = xproc.replay(log)
    active = {"peak": peak}
    assert out == {"batchItemFailures": [{"itemIdentifier": "msg-00003"}]}, "only the failed message is reported"
    assert sorted(ran) == list(range(n))
    assert active["peak"] > 1, "a fair queue's tenant must not be serialised"


@pytest.mark.parametrize("event,fragment", [
    ({"eventSource": "aws:kafka", "records": []}, "Kafka 'records' is a list"),
    ({"eventSource": "aws:kafka", "records": {}}, "holds no record"),
    ({"eventSource": "aws:kafka", "records": {"t-0": {"offset": 1}}}, "records['t-0'] is a dict"),
    ({"eventSource": "aws:kafka", "records": {"t-0": ["x"]}}, "records['t-0'][0] is a str"),
    ({"eventSource": "aws:rabbitmq", "records": {"t-0": [{"offset": 1}]}}, "is not a Kafka source"),
])
def test_malformed_kafka_events(event, fragment):
    ran: list = []
    with pytest.raises(ValueError) as info:
        lambda_fanout.process_batch(event, ran.append)
    assert fragment in str(info.value)
    # The list of shapes only when the shape itself is unknown; otherwise the one wrong thing.
    assert ("Supported event shapes" in str(info.value)) == ("not a Kafka source" in fragment)
    assert ran == []


@pytest.mark.parametrize("offset", [None, "15", 1.5, True])
def test_kafka_record_without_an_integer_offset_runs_nothing(offset):
    event = batches.kafka(4, [0, 0, 1, 1])
    record = event["records"]["orders-1"][1]
    if offset is None:
        del record["offset"]
    else:
        record["offset"] = offset
    ran: list = []
    with pytest.raises(ValueError, match=r"kafka record records\['orders-1'\]\[1\] has no integer 'offset'"):
        lambda_fanout.process_batch(event, ran.append)
    assert ran == []


def test_kafka_partition_runs_in_offset_order(strategy_name, log):
    """Records of one partition run in offset order even if the list is not, and are reported in it."""
    event = batches.kafka(6, [0] * 6)
    event["records"]["orders-0"].reverse()
    out = lambda_fanout.process_batch(event, failing_handler({4}, log), strategy=strategy_name)
    assert log.entries() == [0, 1, 2, 3, 4]
    assert out == {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-0", "offset": 1000 + i}}
                                         for i in (4, 5)]}


# -- with no strategy set, the record handler's own form picks it ----------------------------

def test_unset_strategy_awaits_a_coroutine_record_handler():
    import asyncio

    from lambda_fanout._loop import get_loop

    loops = []

    async def arecord(record):
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        if position_of(record) % 3 == 0:
            raise ValueError("multiples of three fail")

    event = batches.sqs(10)
    reply = lambda_fanout.process_batch(event, arecord)
    failed = [event["Records"][i] for i in (0, 3, 6, 9)]
    assert reply == {"batchItemFailures": [{"itemIdentifier": batches.identifier("sqs", r)} for r in failed]}
    assert loops == [get_loop()] * 10


def test_unset_strategy_runs_a_plain_record_handler_on_threads():
    import threading

    names = []

    def record(record):
        names.append(threading.current_thread().name)

    assert lambda_fanout.process_batch(batches.sqs(10), record) == {"batchItemFailures": []}
    assert len(names) == 10 and all(name.startswith("fanout") for name in names), names


def test_a_strategy_that_is_set_still_refuses_a_coroutine_record_handler(monkeypatch):
    async def arecord(record):
        return record

    monkeypatch.setenv(lambda_fanout.ENV_STRATEGY, "threads")
    with pytest.raises(lambda_fanout.ConfigError, match="coroutine function"):
        lambda_fanout.process_batch(batches.sqs(3), arecord)
    monkeypatch.delenv(lambda_fanout.ENV_STRATEGY)
    with pytest.raises(lambda_fanout.ConfigError, match="coroutine function"):
        lambda_fanout.process_batch(batches.sqs(3), arecord, strategy="threads")
