"""Compatibility with Powertools for AWS Lambda's batch utility, scenario by scenario.

The scenarios are those a user of ``BatchProcessor`` / ``SqsFifoPartialProcessor`` /
``process_partial_response`` relies on: success, one failure, every record failing, a
failure in the middle of an ordering group, a malformed payload and a malformed record;
for every source (SQS standard, fair and FIFO queues, Kinesis, DynamoDB Streams, Amazon
MSK and self-managed Kafka) and every mode (FIFO per group or stop-the-batch; whole-batch
failure as a reply or as BatchError), under every strategy.

Each batch has six records, i = 0..5. The grouped sources put them in two ordering
groups, ``a`` = records 0, 2, 4 and ``b`` = records 1, 3, 5 (a FIFO message group, a
partition key, an item key, a Kafka partition). The tables give the exact records
reported, and what Powertools reports for the same batch where it differs:

- Powertools runs records one by one in record order; we run groups concurrently, so
  in stop-the-batch mode the records not started when the first failure is recorded
  depend on the order the groups ran (here one worker: group ``a`` first).
- For streams Powertools reports only the records that failed; we also report the later
  records of the failed group, which were never run. Lambda restarts a stream from the
  lowest identifier reported (per partition for Kafka), and that lowest one is the same
  in both, so Lambda redelivers the same records.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batches
import lambda_fanout
import xproc
from lambda_fanout import SkippedAfterFailure
from lambda_fanout.batch import BatchError

A_B = ["a", "b", "a", "b", "a", "b"]
ALL = [0, 1, 2, 3, 4, 5]

#: source mode -> (event builder, process_batch keyword arguments, grouped, stream)
SOURCES = {
    "sqs": (lambda: batches.sqs(6), {}, False, False),
    "sqs-fair": (lambda: batches.sqs(6, ["t1", "t1", "t2", "t1", "t2", "t2"], fair=True), {}, False, False),
    "sqs-fifo-group": (lambda: batches.sqs(6, A_B), {"fifo_on_failure": "group"}, True, False),
    # One worker: the records a stop leaves unstarted are then the same every run.
    "sqs-fifo-batch": (lambda: batches.sqs(6, A_B), {"fifo_on_failure": "batch", "max_workers": 1}, True, False),
    "kinesis": (lambda: batches.kinesis(6, A_B), {}, True, True),
    "dynamodb": (lambda: batches.dynamodb(6, [1, 2, 1, 2, 1, 2]), {}, True, True),
    "kafka-msk": (lambda: batches.kafka(6, [0, 1, 0, 1, 0, 1]), {}, True, True),
    "kafka-self-managed": (lambda: batches.kafka(6, [0, 1, 0, 1, 0, 1], self_managed=True), {}, True, True),
}

#: scenario -> (failing records, malformed payloads)
SCENARIOS = {
    "success": (set(), set()),
    "one-failure": ({3}, set()),
    "all-failing": (set(ALL), set()),
    "failure-mid-group": ({2}, set()),
    "malformed-payload": (set(), {4}),
}

#: (scenario, kind) -> the records reported; kind is "ungrouped", "grouped" or "fifo-batch".
EXPECTED = {
    ("success", "ungrouped"): [], ("success", "grouped"): [], ("success", "fifo-batch"): [],
    ("one-failure", "ungrouped"): [3],
    ("one-failure", "grouped"): [3, 5],  # 5 is later in 3's group: never run
    ("one-failure", "fifo-batch"): [3, 5],  # group a ran first and succeeded
    ("all-failing", "ungrouped"): ALL, ("all-failing", "grouped"): ALL, ("all-failing", "fifo-batch"): ALL,
    ("failure-mid-group", "ungrouped"): [2],
    ("failure-mid-group", "grouped"): [2, 4],
    ("failure-mid-group", "fifo-batch"): [1, 2, 3, 4, 5],  # group b never started
    ("malformed-payload", "ungrouped"): [4],
    ("malformed-payload", "grouped"): [4],
    ("malformed-payload", "fifo-batch"): [1, 3, 4, 5],
}

#: What Powertools returns where it differs (BatchProcessor; SqsFifoPartialProcessor's default).
POWERTOOLS = {
    ("one-failure", "stream"): [3], ("failure-mid-group", "stream"): [2],
    ("one-failure", "fifo-batch"): [3, 4, 5], ("failure-mid-group", "fifo-batch"): [2, 3, 4, 5],
    ("malformed-payload", "fifo-batch"): [4, 5],
}


def kind(source: str) -> str:
    if source == "sqs-fifo-batch":
        return "fifo-batch"
    return "grouped" if SOURCES[source][2] else "ungrouped"


decode = xproc.decode


def break_payload(record: dict) -> None:
    if "body" in record:
        record["body"] = "{not json"
    elif "kinesis" in record:
        record["kinesis"]["data"] = "*** not base64 ***"
    elif "dynamodb" in record:
        del record["dynamodb"]["NewImage"]
    else:
        record["value"] = "*** not base64 ***"


def handler(bad: set, log):
    """A Task that decodes each record, then fails for the positions in ``bad``.

    ``log`` (an ``xproc.Log`` under processes) gets each position run.
    """
    work = xproc.Decoding(bad, log)
    return lambda_fanout.Task(work, work.aio)


def build(source: str, malformed: set = frozenset()) -> dict:
    event = SOURCES[source][0]()
    for record in batches.records(source.split("-")[0], event):
        if batches.position_of(record) in malformed:
            break_payload(record)
    return event


def reported(source: str, event: dict, positions: list) -> list:
    """The identifiers of ``positions``, in the order the reply lists them (the batch's layout)."""
    base = source.split("-")[0]
    return [batches.identifier(base, r) for r in batches.records(base, event)
            if batches.position_of(r) in positions]


def run(source: str, scenario: str, strategy_name: str, raise_on_all_failed: bool, log: list):
    bad, malformed = SCENARIOS[scenario]
    event = build(source, malformed)
    options = {"max_workers": 4, **SOURCES[source][1]}
    out = lambda_fanout.process_batch(event, handler(bad, log), strategy=strategy_name,
                                      raise_on_all_failed=raise_on_all_failed, **options)
    return event, out


@pytest.mark.parametrize("raise_on_all_failed", [False, True], ids=["reply", "raise-on-all-failed"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("source", list(SOURCES))
def test_exact_batch_item_failures(strategy_name, source, scenario, raise_on_all_failed, tmp_path):
    log = xproc.Log(str(tmp_path / "log"))
    want = EXPECTED[(scenario, kind(source))]
    if raise_on_all_failed and want == ALL:
        with pytest.raises(BatchError) as info:
            run(source, scenario, strategy_name, raise_on_all_failed, log)
        assert info.value.source == source.split("-")[0]
        assert [f.index for f in info.value.failures] == list(range(6))
        assert isinstance(info.value.__cause__, RuntimeError)
        return
    event, out = run(source, scenario, strategy_name, raise_on_all_failed, log)
    assert out == {"batchItemFailures": [{"itemIdentifier": i} for i in reported(source, event, want)]}
    # No record ran twice; each one not reported ran; a reported one ran only if it failed itself.
    bad, malformed = SCENARIOS[scenario]
    log = log.entries()
    assert len(log) == len(set(log))
    assert set(ALL) - set(want) <= set(log)
    assert set(log) & set(want) <= bad | malformed


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("source", [s for s in SOURCES if SOURCES[s][3]])
def test_streams_restart_where_powertools_restarts(source, scenario):
    """Lambda restarts a stream at the lowest identifier reported (per partition for Kafka)."""
    event, out = run(source, scenario, "threads", False, [])
    ours = [f["itemIdentifier"] for f in out["batchItemFailures"]]
    theirs = reported(source, event, POWERTOOLS.get((scenario, "stream"), EXPECTED[(scenario, "grouped")]))
    assert checkpoints(source, ours) == checkpoints(source, theirs)


def checkpoints(source: str, identifiers: list) -> dict:
    """Lambda's restart point: the lowest identifier reported, per Kafka partition or per shard."""
    if source.startswith("kafka"):
        points: dict = {}
        for i in identifiers:
            points[i["partition"]] = min(points.get(i["partition"], i["offset"]), i["offset"])
        return points
    return {"shard": min(map(int, identifiers))} if identifiers else {}


@pytest.mark.parametrize("source", ["sqs", "sqs-fair", "sqs-fifo-group"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sqs_reports_what_powertools_reports(strategy_name, source, scenario):
    """Standard queues match BatchProcessor, FIFO per group matches skip_group_on_error=True, exactly."""
    event, out = run(source, scenario, strategy_name, False, [])
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == reported(
        source, event, EXPECTED[(scenario, kind(source))])


@pytest.mark.parametrize("source", [s for s in SOURCES if s != "sqs-fifo-batch"])
def test_malformed_record_runs_nothing(strategy_name, source):
    """A record without the identifier its reply needs refuses the batch before any record runs."""
    event = build(source)
    record = batches.records(source.split("-")[0], event)[2]
    field = {"sqs": ("messageId",), "kinesis": ("kinesis", "sequenceNumber"),
             "dynamodb": ("dynamodb", "SequenceNumber"), "kafka": ("offset",)}[source.split("-")[0]]
    for key in field[:-1]:
        record = record[key]
    del record[field[-1]]
    log = xproc.Log()
    with pytest.raises(ValueError, match=r"nothing was processed"):
        lambda_fanout.process_batch(event, handler(set(), log), strategy=strategy_name)
    assert log.entries() == []
    log.remove()


@pytest.mark.parametrize("report", ["at-once", "late"])
def test_stop_the_batch_under_concurrency(concurrent_strategy, report):
    """FIFO "batch" mode with several workers: nothing starts once the failure is raised.

    Records already running finish and are reported as they end; every other record is
    reported SkippedAfterFailure. Only the records in flight when the failure was raised
    (at most one per other worker) may start after it. A late report: the failure takes
    0.5 s to reach the caller from a worker process, and the other groups wait for nothing.
    """
    n, workers = 40, 4
    groups = [i % 4 for i in range(n)]
    failing = 9
    raised = xproc.Flag()
    log = xproc.Log()  # 2p + 1 when record p started after the failure was raised, else 2p
    work = xproc.StartsAfter(log, raised, failing, xproc.SlowToSend if report == "late" else RuntimeError)

    def starts() -> dict:
        return {entry // 2: bool(entry % 2) for entry in log}

    event = batches.sqs(n, groups)
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(work, work.aio), strategy=concurrent_strategy,
                                      max_workers=workers, fifo_on_failure="batch")
    failed = {int(f["itemIdentifier"].split("-")[1]) for f in out["batchItemFailures"]}
    succeeded = set(starts()) - {failing}
    assert failing in failed
    assert not failed & succeeded, "a record that ran and succeeded was reported"
    assert failed | succeeded == set(range(n)), "a record was neither run nor reported"
    assert sum(starts().values()) <= workers - 1, "records started after the failure was recorded"
    # The control: the failure came early enough to leave records never started (how many
    # start before it is raised depends on how the workers were scheduled).
    assert failed - set(starts()), "every record started before the failure: nothing was left to skip"

    # The same batch per group: the other groups run to the end.
    log.clear()
    raised.clear()
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(work, work.aio), strategy=concurrent_strategy,
                                      max_workers=workers, fifo_on_failure="group")
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == [
        f"msg-{i:05d}" for i in range(n) if groups[i] == groups[failing] and i >= failing]


def test_stop_the_batch_says_why(strategy_name):
    event = batches.sqs(6, A_B)
    strategy = lambda_fanout.get_strategy(strategy_name, max_workers=1)
    run_ = strategy.start(handler({2}, []), event["Records"], errors="collect",
                          groups=[[0, 2, 4], [1, 3, 5]], stop_on_failure=True)
    outcomes = strategy.run(run_)
    assert [type(o.error).__name__ if o.error else None for o in outcomes] == [
        None, "SkippedAfterFailure", "RuntimeError", "SkippedAfterFailure", "SkippedAfterFailure",
        "SkippedAfterFailure"]
    assert all(o.error.after == 2 for o in outcomes if isinstance(o.error, SkippedAfterFailure))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(["kinesis", "dynamodb", "kafka"]), data=st.data())
def test_checkpoint_is_the_first_record_not_processed(strategy_name, source, data):
    """Lambda's rule for streams: the lowest identifier reported is the first record not yet processed.

    Per shard (Kinesis, DynamoDB: one shard per batch) or per Kafka partition, the
    records below it all succeeded, and it did not.
    """
    n = data.draw(st.integers(1, 30), label="records")
    keys = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n), label="keys")
    bad = data.draw(st.sets(st.integers(0, n - 1)), label="failing")
    event = batches.BUILDERS[source](n, keys)
    done = xproc.Log()
    out = lambda_fanout.process_batch(event, succeeding_into(done, bad), strategy=strategy_name, max_workers=4)
    check_checkpoints(source, event, out, set(done), exact=True)
    done.remove()


@pytest.mark.parametrize("source", ["kinesis", "kafka"])
def test_checkpoint_rule_holds_at_the_deadline(strategy_name, source, fake_context, monkeypatch):
    """Cut by the deadline, the restart point still loses no record."""
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    n = 80
    event = batches.BUILDERS[source](n, [i % 3 for i in range(n)])
    done = xproc.Log()
    out = lambda_fanout.process_batch(event, succeeding_into(done, {7}, delay=0.01), context=fake_context(300),
                                      strategy=strategy_name, max_workers=4)
    finished = set(done)
    done.remove()  # a record still running at the cut may add itself later: that is a redelivery
    assert len(out["batchItemFailures"]) > 3, "the deadline should have cut the batch"
    check_checkpoints(source, event, out, finished, exact=False)


def succeeding_into(done, bad: set, delay: float = 0.0):
    """A Task that fails for ``bad`` positions and appends the others to ``done`` once they succeeded."""
    work = xproc.Succeeding(done, bad, delay)
    return lambda_fanout.Task(work, work.aio)


def check_checkpoints(source: str, event: dict, out: dict, succeeded: set, *, exact: bool) -> None:
    reported = {json.dumps(f["itemIdentifier"], sort_keys=True) for f in out["batchItemFailures"]}
    shards: dict = {}  # shard or Kafka partition -> [(position, reported)] in sequence order
    for record in batches.records(source, event):
        shard = f"{record['topic']}-{record['partition']}" if source == "kafka" else "shard"
        identifier = json.dumps(batches.identifier(source, record), sort_keys=True)
        shards.setdefault(shard, []).append((batches.position_of(record), identifier in reported))
    for shard, rows in shards.items():
        restart = next((p for p, was_reported in rows if was_reported), None)
        first_unprocessed = next((p for p, _ in rows if p not in succeeded), None)
        if exact:
            assert restart == first_unprocessed, shard
        elif first_unprocessed is not None:
            # Positions grow with the sequence number within a shard or partition.
            assert restart is not None and restart <= first_unprocessed, f"{shard}: a record would be lost"
