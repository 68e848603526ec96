"""process_batch: partial batch responses, ordering, deadlines, other sources, bad events."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batches
import lambda_fanout
import xproc
from lambda_fanout.batch import BatchError, SkippedAfterFailure

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def failing_handler(bad: set, log: xproc.Log | None = None, delay: float = 0.0):
    """A Task failing for records whose position (from the identifier order) is in ``bad``."""
    handler = xproc.Failing(bad, log, delay)
    return lambda_fanout.Task(handler.sync_fn, handler.async_fn)


@pytest.fixture
def log():
    """What the record handlers record, from whichever process runs them."""
    entries = xproc.Log()
    yield entries
    entries.remove()


position_of = xproc.position_of


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
    source=st.sampled_from(["sqs", "kinesis", "dynamodb"]),
    data=st.data(),
)
def test_exact_batch_item_failures(strategy_name, log, source, data):
    n = data.draw(st.integers(1, 40), label="records")
    if source == "sqs":
        groups = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n), label="groups")
        if all(g is None for g in groups):
            event = batches.sqs(n)
        else:
            event = batches.sqs(n, groups)
    else:
        groups = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="keys")
        event = batches.BUILDERS[source](n, groups)
    bad = data.draw(st.sets(st.integers(0, n - 1)), label="failing")
    open(log.path, "w").close()  # hypothesis runs this body many times with one fixture
    out = lambda_fanout.process_batch(event, failing_handler(bad, log), strategy=strategy_name, max_workers=4)
    reported, skipped = expected_failures(groups, bad)
    want = [batches.identifier(source, event["Records"][i]) for i in reported]
    got = [f["itemIdentifier"] for f in out["batchItemFailures"]]
    assert got == want
    # Skipped records never ran; every other record ran exactly once.
    assert sorted(log) == [i for i in range(n) if i not in skipped]


@pytest.mark.parametrize("source", ["sqs", "kinesis", "dynamodb"])
def test_order_within_a_group_under_concurrency(strategy_name, source, log):
    n, n_groups = 48, 4
    groups = [i % n_groups for i in range(n)]
    event = batches.sqs(n, groups) if source == "sqs" else batches.BUILDERS[source](n, groups)
    timed = xproc.EnterLeave(log)
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(timed.sync_fn, timed.async_fn),
                                      strategy=strategy_name, max_workers=8)
    assert out == {"batchItemFailures": []}
    # Replay the log: 2p when record p entered, 2p + 1 when it left.
    order: dict = {}
    active = {"now": 0, "peak": 0}
    for entry in log:
        position, left = divmod(entry, 2)
        if left:
            active["now"] -= 1
            continue
        order.setdefault(groups[position], []).append(position)
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
    for g, seen in order.items():
        assert seen == sorted(seen) == [i for i in range(n) if groups[i] == g]
    assert active["peak"] <= n_groups
    if strategy_name != "sequential":
        assert active["peak"] > 1, "groups should run concurrently"


def test_deadline_reports_unstarted_records_and_loses_none(strategy_name, fake_context, monkeypatch, log):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    n = 300
    event = batches.sqs(n, [i % 5 if i % 2 else None for i in range(n)])
    done = log
    out = lambda_fanout.process_batch(event, failing_handler(set(), done, delay=0.01),
                                      context=fake_context(350), strategy=strategy_name, max_workers=4)
    finished = done.entries()  # at once: a thread still running past the deadline may log later
    failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
    succeeded = {f"msg-{i:05d}" for i in finished}
    every = {r["messageId"] for r in event["Records"]}
    assert failed and succeeded
    assert not failed & succeeded, "a record both succeeded and was reported failed"
    assert failed | succeeded == every, "a record was neither processed nor reported"


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


@pytest.mark.parametrize("event,fragment", [
    ({"foo": 1}, "no 'Records' or 'Items'"),
    ([], "is a list"),
    ({"Records": []}, "'Records' is empty"),
    ({"Records": ["x"]}, "record #0 is a str"),
    ({"Records": {"a": 1}}, "'Records' is a dict"),
    ({"Items": "x"}, "'Items' is a str"),
    ({"Records": [{"eventSource": "aws:sqs", "messageId": "1"}, {"eventSource": "aws:kinesis"}]}, "mixes event sources"),
    ({"Records": [{"eventSource": "aws:ses"}]}, "unknown eventSource 'aws:ses'"),
])
def test_malformed_events_name_the_supported_shapes(event, fragment):
    ran = []
    with pytest.raises(ValueError) as info:
        lambda_fanout.process_batch(event, ran.append)
    assert fragment in str(info.value)
    if "Supported event shapes" not in str(info.value):
        pytest.fail(f"message does not list the shapes: {info.value}")
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
