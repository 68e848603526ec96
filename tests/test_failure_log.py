"""One ERROR log line per failed record: source, identifier, type, traceback; never the payload."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

import batches
import lambda_fanout
import xproc

SECRET = "card-4111111111111111-alice@example.com"


def failing(record):
    body = record["body"] if isinstance(record, dict) and "body" in record else record
    raise RuntimeError(f"downstream 403 AccessDenied for {body}")


async def afailing(record):
    failing(record)


TASK = lambda_fanout.Task(failing, afailing)


def fanout_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "lambda_fanout"]


def sqs_with_secrets(n: int) -> dict:
    event = batches.sqs(n)
    for record in event["Records"]:
        record["body"] = json.dumps({"card": SECRET})
    return event


def _some_fail(record):
    if json.loads(record["body"]) and record["messageId"] in ("msg-00001", "msg-00003"):
        failing(record)


def test_each_failed_sqs_record_logs_one_line_without_its_message(strategy_name, caplog):
    caplog.set_level(logging.DEBUG)
    event = sqs_with_secrets(4)

    async def asome_fail(record):
        _some_fail(record)

    out = lambda_fanout.process_batch(event, lambda_fanout.Task(_some_fail, asome_fail), strategy=strategy_name)
    assert out == {"batchItemFailures": [{"itemIdentifier": "msg-00001"}, {"itemIdentifier": "msg-00003"}]}
    lines = fanout_records(caplog)
    assert [(r.levelname, r.source, r.index, r.recordId) for r in lines] == [
        ("ERROR", "sqs", 1, "msg-00001"), ("ERROR", "sqs", 3, "msg-00003")]
    for r in lines:
        text = r.getMessage()
        assert r.exceptionType == "RuntimeError" and not hasattr(r, "exceptionMessage")
        assert text.startswith(f"lambda_fanout: sqs record #{r.index} ({r.recordId}) failed: RuntimeError")
        assert "FANOUT_LOG_FAILURES=on" in text  # says how to see the message
        assert "Traceback (most recent call last):" in text
        assert "in failing" in text  # processes: the frames of the worker it failed in
        assert "_RemoteTraceback" not in text
        assert r.traceback[-1] == "RuntimeError"
        assert r.exc_info is None  # a formatter would print the message from it
    # The traceback shows the raising line of code; the message it built is not logged.
    assert SECRET not in caplog.text and 'AccessDenied for {"card"' not in caplog.text


def test_on_logs_the_message_and_off_logs_nothing(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FANOUT_LOG_FAILURES", "on")
    lambda_fanout.process_batch(batches.sqs(2), failing, strategy="sequential")
    lines = fanout_records(caplog)
    assert len(lines) == 2
    assert lines[0].exceptionMessage == 'downstream 403 AccessDenied for {"n": 0}'
    assert 'RuntimeError: downstream 403 AccessDenied for {"n": 0}' in lines[0].getMessage()
    caplog.clear()
    monkeypatch.setenv("FANOUT_LOG_FAILURES", "off")
    lambda_fanout.process_batch(batches.sqs(2), failing, strategy="sequential")
    assert fanout_records(caplog) == []


@pytest.mark.parametrize("value,level", [("ON", "on"), ("true", "on"), ("1", "on"), ("no", "off"),
                                         ("False", "off"), ("Type-Only", "type-only")])
def test_log_failures_spellings(monkeypatch, value, level):
    monkeypatch.setenv("FANOUT_LOG_FAILURES", value)
    assert lambda_fanout.Settings.resolve().log_failures == level


def test_bad_log_failures_value_lists_the_choices(monkeypatch):
    monkeypatch.setenv("FANOUT_LOG_FAILURES", "verbose")
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.map(abs, [1])
    msg = str(info.value)
    assert "FANOUT_LOG_FAILURES" in msg and "'verbose'" in msg
    assert "'on', 'type-only', 'off'" in msg


@pytest.mark.parametrize("source,build,field", [
    ("kinesis", batches.kinesis, lambda r: r["kinesis"]["sequenceNumber"]),
    ("dynamodb", batches.dynamodb, lambda r: r["dynamodb"]["SequenceNumber"]),
])
def test_stream_records_log_their_sequence_number(caplog, source, build, field):
    caplog.set_level(logging.ERROR)
    event = build(3)
    lambda_fanout.process_batch(event, failing, strategy="threads")
    lines = fanout_records(caplog)
    # One key per record, so each is its own group: all three fail and are logged.
    assert [(r.source, r.index, r.recordId) for r in lines] == [
        (source, i, field(rec)) for i, rec in enumerate(event["Records"])]


def test_s3_and_distributed_map_log_the_index_only(caplog):
    caplog.set_level(logging.ERROR)
    s3_event = batches.sample("s3")
    s3_event["Records"][0]["s3"]["object"]["key"] = SECRET  # an object key is data
    with pytest.raises(lambda_fanout.BatchError):
        lambda_fanout.process_batch(s3_event, failing, strategy="sequential")
    with pytest.raises(lambda_fanout.BatchError):
        lambda_fanout.process_batch({"Items": [{"Key": SECRET}, {"Key": "b"}], "BatchInput": {}}, failing,
                                    strategy="sequential")
    lines = fanout_records(caplog)
    assert [(r.source, r.index) for r in lines] == [("s3", 0), ("distributed-map", 0), ("distributed-map", 1)]
    assert not [r for r in lines if hasattr(r, "recordId")]
    assert SECRET not in caplog.text


def _half(i):
    if i % 2:
        raise KeyError(f"user-{i}@example.com")
    return i


def test_map_collect_logs_each_failure_and_raise_logs_the_one_it_raises(strategy_name, caplog):
    caplog.set_level(logging.DEBUG)

    async def ahalf(i):
        return _half(i)

    task = lambda_fanout.Task(_half, ahalf)
    out = lambda_fanout.map(task, range(6), errors="collect", strategy=strategy_name)
    assert [o.ok for o in out] == [True, False] * 3
    lines = fanout_records(caplog)
    assert [(r.source, r.index, r.exceptionType) for r in lines] == [("map", i, "KeyError") for i in (1, 3, 5)]
    assert "user-1@example.com" not in caplog.text and "map item #1 failed: KeyError" in caplog.text
    caplog.clear()
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(task, range(6), strategy=strategy_name)
    # The failure the TaskError reports, once; not the others it stopped or raced with.
    lines = fanout_records(caplog)
    assert [(r.source, r.index, r.exceptionType) for r in lines] == [("map", info.value.index, "KeyError")]
    assert "user-1@example.com" not in caplog.text


def test_deadline_and_skipped_records_are_logged_in_our_own_words(caplog, fake_context):
    import threading

    caplog.set_level(logging.ERROR)
    release = threading.Event()
    event = batches.kinesis(4, ["a", "a", "b", "c"])

    def handle(record):
        key = record["kinesis"]["partitionKey"]
        if key == "a":
            raise ValueError(SECRET)
        if key == "b":
            release.wait(5)

    try:
        out = lambda_fanout.process_batch(event, handle, fake_context(700), strategy="threads", max_workers=2)
    finally:
        release.set()
    assert len(out["batchItemFailures"]) >= 3
    lines = fanout_records(caplog)
    by_index = {r.index: r for r in lines if hasattr(r, "index")}
    assert by_index[0].exceptionType == "ValueError" and not hasattr(by_index[0], "exceptionMessage")
    assert by_index[1].exceptionType == "lambda_fanout.SkippedAfterFailure"
    assert by_index[1].exceptionMessage == "not started: record #0 of the same group failed first"
    # The records the deadline cut share one summary line, in our own words.
    (cut,) = [r for r in lines if not hasattr(r, "index")]
    assert cut.exceptionType == "lambda_fanout.DeadlineExceeded" and cut.didNotFinish == 1
    assert "#2" in cut.indexes and "did not finish" in cut.getMessage()
    assert SECRET not in caplog.text


def test_type_only_keeps_the_chain_and_drops_every_message_and_note(caplog):
    caplog.set_level(logging.ERROR)

    def chained(record):
        try:
            {}[SECRET]
        except KeyError as exc:
            error = ValueError(f"bad {SECRET}")
            error.add_note(f"note {SECRET}")
            raise error from exc

    lambda_fanout.process_batch(batches.sqs(1), chained, strategy="sequential")
    (line,) = fanout_records(caplog)
    tb = "\n".join(line.traceback)
    assert tb.index("KeyError") < tb.index("The above exception was the direct cause") < tb.index("ValueError")
    assert tb.count("Traceback (most recent call last):") == 2 and "in chained" in tb
    assert SECRET not in caplog.text and SECRET not in tb


def test_json_log_format_gives_one_json_document_per_failure(monkeypatch):
    # Lambda's own JSON formatter (awslambdaric, as the managed runtime installs it
    # under AWS_LAMBDA_LOG_FORMAT=JSON) writes the failure's fields as top-level keys.
    from awslambdaric.lambda_runtime_log_utils import JsonFormatter

    monkeypatch.setenv("AWS_LAMBDA_LOG_FORMAT", "JSON")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("lambda_fanout")
    logger.addHandler(handler)
    try:
        event = sqs_with_secrets(3)
        out = lambda_fanout.process_batch(event, failing, strategy="threads")
    finally:
        logger.removeHandler(handler)
    assert len(out["batchItemFailures"]) == 3
    docs = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    assert len(docs) == 3
    for i, doc in enumerate(sorted(docs, key=lambda d: d["index"])):
        assert doc["level"] == "ERROR" and doc["logger"] == "lambda_fanout"
        assert (doc["source"], doc["index"], doc["recordId"]) == ("sqs", i, f"msg-{i:05d}")
        assert doc["exceptionType"] == "RuntimeError"
        assert isinstance(doc["traceback"], list) and doc["traceback"][-1] == "RuntimeError"
        assert "\n" not in doc["message"] and "Traceback" not in doc["message"]
        assert "errorMessage" not in doc and "exceptionMessage" not in doc
    assert SECRET not in stream.getvalue()


def test_aws_error_code_and_operation_are_logged(aws_endpoint, s3_bucket, strategy_name, caplog):
    from lambda_fanout import aws

    caplog.set_level(logging.ERROR)
    out = lambda_fanout.map(aws.s3_get_object(s3_bucket), [f"missing-{SECRET}"], errors="collect",
                            strategy=strategy_name)
    assert not out[0].ok
    (line,) = fanout_records(caplog)
    assert (line.awsErrorCode, line.awsOperation) == ("NoSuchKey", "GetObject")
    assert "(NoSuchKey in GetObject)" in line.getMessage()
    assert SECRET not in caplog.text


class Rejected(Exception):
    """A user's own exception shaped like botocore's ClientError, its "code" made of the item."""

    def __init__(self, item):
        super().__init__(item)
        self.response = {"Error": {"Code": f"bad-{item}"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        self.operation_name = "Validate"


def rejecting(item):
    raise Rejected(item)


async def arejecting(item):
    rejecting(item)


REJECTING = lambda_fanout.Task(rejecting, arejecting)


def test_only_botocores_client_error_is_logged_as_an_aws_error(strategy_name, caplog):
    caplog.set_level(logging.ERROR)
    with pytest.raises(lambda_fanout.TaskError) as raised:
        lambda_fanout.map(REJECTING, [SECRET], strategy=strategy_name)
    assert str(raised.value).startswith("task failed on item #0: Rejected")
    (line,) = fanout_records(caplog)
    assert line.exceptionType.endswith("Rejected")
    assert getattr(line, "awsErrorCode", None) is None and getattr(line, "awsOperation", None) is None
    assert SECRET not in caplog.text and SECRET not in str(raised.value)

def test_the_zero_code_handler_logs_failures_to_stderr(tmp_path):
    # A fresh interpreter with no logging configured: the line still reaches stderr
    # (Python's last-resort handler), the way a failure shows up without any setup.
    import subprocess
    import sys
    import textwrap

    import staging

    (tmp_path / "app.py").write_text(textwrap.dedent('''
        def process(record):
            raise PermissionError("downstream 403 AccessDenied " + record["body"])
    '''))
    code = textwrap.dedent('''
        import json, sys
        from lambda_fanout.handler import handler
        print("RESULT " + json.dumps(handler(json.loads(sys.stdin.read()), None)))
    ''')
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": staging.python_dir(), "LAMBDA_TASK_ROOT": str(tmp_path),
           "FANOUT_RECORD_HANDLER": "app.process"}
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(sqs_with_secrets(2)), env=env,
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.split("RESULT ", 1)[1])["batchItemFailures"] == [
        {"itemIdentifier": "msg-00000"}, {"itemIdentifier": "msg-00001"}]
    assert "lambda_fanout: sqs record #0 (msg-00000) failed: PermissionError" in proc.stderr
    assert "lambda_fanout: sqs record #1 (msg-00001) failed: PermissionError" in proc.stderr
    assert 'File "' in proc.stderr and "in process" in proc.stderr
    assert SECRET not in proc.stderr and 'AccessDenied {"card"' not in proc.stderr


def test_each_failure_gets_the_traceback_of_where_it_was_raised(caplog):
    # Tracebacks are formatted once per place they were raised: two places, two tracebacks.
    caplog.set_level(logging.ERROR)

    def two_places(record):
        if record["messageId"].endswith(("0", "2", "4")):
            raise KeyError("even")  # raised here: even
        raise LookupError("odd")  # raised here: odd

    lambda_fanout.process_batch(batches.sqs(5), two_places, strategy="sequential")
    lines = fanout_records(caplog)
    assert [r.exceptionType for r in lines] == ["KeyError", "LookupError", "KeyError", "LookupError", "KeyError"]
    for r in lines:
        text = "\n".join(r.traceback)
        here, there = ("even", "odd") if r.exceptionType == "KeyError" else ("odd", "even")
        assert f"# raised here: {here}" in text and f"# raised here: {there}" not in text


# -- bounded: the log is written inside the deadline margin -----------------------------------------

def _refuse(record):
    raise ValueError("refused " + record["messageId"])


def test_a_call_logs_at_most_max_lines_then_one_summary_line(caplog):
    from lambda_fanout._failures import MAX_LINES

    caplog.set_level(logging.ERROR)
    n = MAX_LINES + 150
    out = lambda_fanout.process_batch(batches.sqs(n), _refuse, strategy="threads")
    assert len(out["batchItemFailures"]) == n  # the reply still names every record
    lines = fanout_records(caplog)
    assert [r.index for r in lines[:MAX_LINES]] == list(range(MAX_LINES))
    (summary,) = lines[MAX_LINES:]
    assert summary.count == 150 and summary.exceptionTypes == {"ValueError": 150}
    assert summary.indexes == f"#{MAX_LINES}-#{n - 1}"
    assert summary.getMessage() == (
        f"lambda_fanout: sqs: 150 more records failed, not logged one by one (at most {MAX_LINES} lines a call): "
        f"150 ValueError; #{MAX_LINES}-#{n - 1}")
    assert "refused msg-" not in caplog.text


def test_at_or_under_max_lines_there_is_no_summary_line(caplog):
    from lambda_fanout._failures import MAX_LINES

    caplog.set_level(logging.ERROR)
    lambda_fanout.process_batch(batches.sqs(MAX_LINES), _refuse, strategy="threads")
    assert [r.index for r in fanout_records(caplog)] == list(range(MAX_LINES))


def test_map_collect_is_capped_too(strategy_name, caplog):
    from lambda_fanout._failures import MAX_LINES

    caplog.set_level(logging.ERROR)
    task = lambda_fanout.Task(xproc.lookup_empty, _alookup_empty)
    out = lambda_fanout.map(task, range(MAX_LINES + 5), errors="collect", strategy=strategy_name)
    assert not any(o.ok for o in out)
    lines = fanout_records(caplog)
    assert len(lines) == MAX_LINES + 1 and lines[-1].count == 5
    assert lines[-1].exceptionTypes == {"KeyError": 5}


async def _alookup_empty(key):
    return xproc.lookup_empty(key)


def test_a_deadline_cut_logs_one_summary_line_not_one_per_record(caplog, fake_context, concurrent_strategy):
    caplog.set_level(logging.ERROR)
    release = xproc.Flag()
    # Items 0 and 1 hang past the deadline; the rest never start.
    task = xproc.Hang(release, hang_on={0, 1}).task()
    try:
        out = lambda_fanout.map(task, range(400), errors="collect", strategy=concurrent_strategy,
                                max_workers=2, context=fake_context(700))
    finally:
        release.set()
        release.remove()
    cut = [o for o in out if not o.ok]
    assert cut and all(isinstance(o.error, lambda_fanout.DeadlineExceeded) for o in cut)
    (line,) = fanout_records(caplog)
    assert line.count == len(cut) and line.didNotFinish + line.notStarted == len(cut)
    assert line.didNotFinish == sum(o.error.started for o in cut) and line.didNotFinish >= 1
    assert line.getMessage().startswith(f"lambda_fanout: map: {len(cut)} items cut by the Lambda deadline margin")


def test_a_batch_cut_by_the_deadline_logs_one_line_for_its_cut_records(caplog, fake_context, strategy_name):
    # Every record fails 30 calls deep after 1 ms: the deadline cuts most of a 10,000-record
    # batch. The reply names every record; the log holds the first failures' lines, one
    # summary of the other failures, and one line for every record the deadline cut.
    from lambda_fanout._failures import MAX_LINES

    caplog.set_level(logging.ERROR)
    n = 10_000
    out = lambda_fanout.process_batch(batches.sqs(n), xproc.deep_failing_records(0.001), fake_context(800),
                                      strategy=strategy_name, max_workers=4)
    assert sorted(f["itemIdentifier"] for f in out["batchItemFailures"]) == [f"msg-{i:05d}" for i in range(n)]
    lines = fanout_records(caplog)
    one_by_one = [r for r in lines if hasattr(r, "index")]
    (cut,) = [r for r in lines if hasattr(r, "didNotFinish")]
    more = [r for r in lines if hasattr(r, "exceptionTypes")]
    assert len(one_by_one) <= MAX_LINES and len(more) <= 1 and len(lines) == len(one_by_one) + len(more) + 1
    failed = len(one_by_one) + sum(r.count for r in more)
    assert cut.count == cut.didNotFinish + cut.notStarted == n - failed and cut.notStarted > n // 2
    assert all(r.exceptionType == "ValueError" and "in fail_deep" in "\n".join(r.traceback) for r in one_by_one)


@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map", "asyncio"])
def test_a_partial_reply_keeps_the_tracebacks_of_the_lines_it_logs_only(strategy, caplog):
    # A failure's traceback holds its frames and every frame above them: about 11 KB a
    # record here, 100 MB for a 10,000-record batch, which a 128 MB function does not have.
    # A partial reply hands no exception back, so only the failures logged one by one
    # keep theirs. (Under processes the frames stay in the worker.)
    import tracemalloc

    from lambda_fanout._failures import MAX_LINES

    caplog.set_level(logging.ERROR)
    n = 2_000
    event = batches.sqs(n)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = lambda_fanout.process_batch(event, xproc.deep_failing_records(0), strategy=strategy)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert len(out["batchItemFailures"]) == n
    assert peak / n < 4096, f"{peak / n:.0f} bytes a record"
    lines = fanout_records(caplog)
    assert [r.index for r in lines[:MAX_LINES]] == list(range(MAX_LINES))
    assert all("in fail_deep" in "\n".join(r.traceback) for r in lines[:MAX_LINES])


def _deep(depth):
    if depth:
        return _deep(depth - 1)
    raise KeyError(SECRET)  # the innermost frame


def test_a_deep_chained_traceback_is_trimmed_to_its_most_recent_part(caplog):
    from lambda_fanout._failures import MAX_CHAIN, MAX_FRAMES

    caplog.set_level(logging.ERROR)

    def chained(record):
        error = None
        for link in range(MAX_CHAIN + 4):
            try:
                if error is None:
                    _deep(MAX_FRAMES + 25)
                raise ValueError(f"link {link}") from error
            except (KeyError, ValueError) as exc:
                error = exc
        raise error

    lambda_fanout.process_batch(batches.sqs(1), chained, strategy="sequential")
    (line,) = fanout_records(caplog)
    tb = line.traceback
    assert tb[0] == "[4 earlier exceptions of the chain not shown]"  # 12 in the chain
    assert tb.count("Traceback (most recent call last):") == MAX_CHAIN
    assert "KeyError" not in tb  # the root cause, deepest in the chain, is left out
    assert tb[-1] == "ValueError" and SECRET not in "\n".join(tb)


def test_a_deep_traceback_keeps_its_innermost_frames(caplog):
    from lambda_fanout._failures import MAX_FRAMES

    caplog.set_level(logging.ERROR)

    lambda_fanout.process_batch(batches.sqs(1), lambda record: _deep(MAX_FRAMES + 25), strategy="sequential")
    (line,) = fanout_records(caplog)
    tb = line.traceback
    # MAX_FRAMES + 26 calls of deep alone: at least 26 outer frames left out.
    assert tb[0] == "Traceback (most recent call last):"
    hidden = re.fullmatch(r"  \[(\d+) outer frames not shown\]", tb[1])
    assert hidden and int(hidden.group(1)) >= 26
    assert sum(1 for text in tb if text.startswith("  File ")) <= MAX_FRAMES
    assert any("# the innermost frame" in text for text in tb[-4:]) and tb[-1] == "KeyError"


# -- the ledger's own reports are told apart by who built them, never by their class ------

def raises_deadline_with_data(record):
    """A record handler that raises the public DeadlineExceeded itself, the record in its message."""
    raise lambda_fanout.DeadlineExceeded(f"lookup of {SECRET} timed out", started=True, margin_ms=500)


def raises_skipped_with_data(record):
    raise lambda_fanout.SkippedAfterFailure(f"skipped {SECRET}", after=0)


async def araises_deadline_with_data(record):
    raises_deadline_with_data(record)


async def araises_skipped_with_data(record):
    raises_skipped_with_data(record)


@pytest.mark.parametrize("raising", [
    lambda_fanout.Task(raises_deadline_with_data, araises_deadline_with_data),
    lambda_fanout.Task(raises_skipped_with_data, araises_skipped_with_data),
], ids=["DeadlineExceeded", "SkippedAfterFailure"])
def test_a_task_raising_our_exception_classes_is_logged_as_the_task_s(strategy_name, raising, caplog, capsys,
                                                                      monkeypatch):
    """Type-only logging drops the message of a task's DeadlineExceeded or SkippedAfterFailure,
    even one carrying margin_ms or after: only the ledger's own reports are its own words."""
    caplog.set_level(logging.ERROR)
    monkeypatch.setenv(lambda_fanout.ENV_METRICS, "on")
    out = lambda_fanout.process_batch(sqs_with_secrets(2), raising, strategy=strategy_name)
    assert out == {"batchItemFailures": [{"itemIdentifier": "msg-00000"}, {"itemIdentifier": "msg-00001"}]}
    lines = fanout_records(caplog)
    assert len(lines) == 2
    for line in lines:
        assert not hasattr(line, "exceptionMessage")
        assert "message not logged" in line.getMessage()
    assert SECRET not in caplog.text
    # Ran and failed: counted as failed, not as records the ledger never ran.
    (doc,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert (doc["Failed"], doc["Unprocessed"]) == (2, 0)
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(raising, ["x"], strategy=strategy_name)
    # The type, then where it was raised (tests/test_task_error.py); none of the ledger's words.
    assert str(info.value).partition(",")[0] == f"task failed on item #0: {type(info.value.__cause__).__name__}"
    assert SECRET not in str(info.value)


def test_the_ledger_s_own_reports_stay_its_own_across_pickling():
    import pickle

    from lambda_fanout._errors import is_own_report

    own = [lambda_fanout.DeadlineExceeded.not_started(500), lambda_fanout.DeadlineExceeded.did_not_finish(500),
           lambda_fanout.SkippedAfterFailure.in_group(0), lambda_fanout.SkippedAfterFailure.in_batch(0)]
    theirs = [lambda_fanout.DeadlineExceeded("x", started=True, margin_ms=500),
              lambda_fanout.SkippedAfterFailure("x", after=0), ValueError("x")]
    for error in own:
        copy = pickle.loads(pickle.dumps(error))
        assert is_own_report(error) and is_own_report(copy)
        assert (type(copy), copy.args) == (type(error), error.args)
    for error in theirs:
        assert not is_own_report(error) and not is_own_report(pickle.loads(pickle.dumps(error)))
