"""EMF metrics: one line per map / process_batch call, following the EMF specification."""

from __future__ import annotations

import json
import threading

import pytest

import batches
import lambda_fanout
from lambda_fanout import _metrics

CLOUDWATCH_UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
                    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
                    "Bytes/Second", "Count/Second", "None"}


def emf_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def check_emf(doc: dict) -> None:
    """The structure the EMF specification requires of a document."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for d in directives:
        assert isinstance(d["Namespace"], str) and 0 < len(d["Namespace"]) <= 255
        for dimension_set in d["Dimensions"]:
            assert 0 < len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str), f"dimension {name} must be a top-level string"
        assert 0 < len(d["Metrics"]) <= 100
        for metric in d["Metrics"]:
            assert isinstance(doc[metric["Name"]], (int, float)), f"metric {metric['Name']} must be a top-level number"
            assert metric.get("Unit", "None") in CLOUDWATCH_UNITS


@pytest.fixture
def metrics_on(monkeypatch):
    monkeypatch.setenv("FANOUT_METRICS", "on")


def test_one_line_per_map_call(strategy_name, metrics_on, capsys):
    lambda_fanout.map(lambda_fanout.Task(_maybe_fail, _amaybe_fail), range(10), strategy=strategy_name,
                      max_workers=3, errors="collect")
    docs = emf_lines(capsys.readouterr().out)
    assert len(docs) == 1
    doc = docs[0]
    check_emf(doc)
    assert doc["Strategy"] == strategy_name
    assert (doc["Items"], doc["Succeeded"], doc["Failed"], doc["Unprocessed"]) == (10, 6, 4, 0)
    assert doc["Workers"] == (1 if strategy_name == "sequential" else 3)
    assert doc["DurationMs"] >= 0
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LambdaFanout"


def _maybe_fail(i):
    if i % 3 == 0:
        raise ValueError(i)
    return i


async def _amaybe_fail(i):
    return _maybe_fail(i)


def test_one_line_per_batch_not_two(strategy_name, metrics_on, monkeypatch, capsys):
    monkeypatch.setenv("FANOUT_METRICS_NAMESPACE", "MyApp/Fanout")
    event = batches.sqs(5)
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(_fail_first, _afail_first), strategy=strategy_name)
    assert len(out["batchItemFailures"]) == 1
    text = capsys.readouterr().out
    docs = emf_lines(text)
    assert len(docs) == 1
    check_emf(docs[0])
    assert (docs[0]["Items"], docs[0]["Succeeded"], docs[0]["Failed"]) == (5, 4, 1)
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MyApp/Fanout"
    for record in event["Records"]:  # never identifiers or payloads
        assert record["messageId"] not in text and record["body"] not in text


def _fail_first(record):
    if record["messageId"].endswith("00000"):
        raise RuntimeError("first fails")


async def _afail_first(record):
    return _fail_first(record)


def test_deadline_counts_as_unprocessed(metrics_on, capsys, fake_context, monkeypatch):
    # Items 0-1 finish, 2-5 hang on the four workers; the window of 8 and the two refills
    # after 0 and 1 read 10 items: 2 succeeded, 8 cut by the deadline (4 running, 4 never started).
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    release = threading.Event()

    def task(i):
        if i >= 2:
            release.wait(5)
        return i

    try:
        lambda_fanout.map(task, range(100), strategy="threads", max_workers=4, errors="collect",
                          context=fake_context(300))
    finally:
        release.set()
    doc = emf_lines(capsys.readouterr().out)[0]
    assert (doc["Items"], doc["Succeeded"], doc["Failed"], doc["Unprocessed"]) == (10, 2, 0, 8)


def test_off_by_default_inside_lambda_and_out(strategy_name, monkeypatch, capsys):
    # Custom metrics cost money: nobody gets them without turning them on.
    lambda_fanout.map(SAFE, [1], strategy=strategy_name)
    assert emf_lines(capsys.readouterr().out) == []
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")
    lambda_fanout.map(SAFE, [1], strategy=strategy_name)
    lambda_fanout.process_batch(batches.sqs(2), lambda_fanout.Task(_fail_none, _afail_none), strategy=strategy_name)
    assert emf_lines(capsys.readouterr().out) == []
    monkeypatch.setenv("FANOUT_METRICS", "on")
    lambda_fanout.map(SAFE, [1], strategy=strategy_name)
    assert len(emf_lines(capsys.readouterr().out)) == 1
    monkeypatch.setenv("FANOUT_METRICS", "off")
    lambda_fanout.map(SAFE, [1], strategy=strategy_name)
    assert emf_lines(capsys.readouterr().out) == []


def _fail_none(record):
    return record["messageId"]


async def _afail_none(record):
    return _fail_none(record)


SAFE = lambda_fanout.Task(_maybe_fail, _amaybe_fail)  # never fails on 1 or 2


def test_each_function_has_its_own_series(strategy_name, metrics_on, monkeypatch, capsys):
    """In Lambda every line carries the function's name beside the strategy, as one dimension set."""
    for name in ("orders-fn", "billing-fn"):
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", name)
        lambda_fanout.map(SAFE, [1, 2], strategy=strategy_name)
        lambda_fanout.process_batch(batches.sqs(2), lambda_fanout.Task(_fail_none, _afail_none),
                                    strategy=strategy_name)
        docs = emf_lines(capsys.readouterr().out)
        assert len(docs) == 2
        for doc in docs:
            check_emf(doc)
            assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["FunctionName", "Strategy"]]
            assert (doc["FunctionName"], doc["Strategy"]) == (name, strategy_name)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")  # outside Lambda: no function, the strategy alone
    lambda_fanout.map(SAFE, [1], strategy=strategy_name)
    (doc,) = emf_lines(capsys.readouterr().out)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Strategy"]] and "FunctionName" not in doc


@pytest.mark.parametrize("value", ["", "2", "maybe", "enabled", "o n"])
def test_bad_metrics_flag(monkeypatch, value):
    monkeypatch.setenv("FANOUT_METRICS", value)
    with pytest.raises(lambda_fanout.ConfigError, match=r"FANOUT_METRICS.*'on', 'off'"):
        lambda_fanout.map(abs, [1])


@pytest.mark.parametrize("value,on", [("on", True), ("ON", True), ("true", True), ("True", True), ("1", True),
                                      ("yes", True), ("off", False), ("false", False), ("0", False),
                                      ("No", False)])
def test_metrics_flag_spellings(monkeypatch, capsys, value, on):
    monkeypatch.setenv("FANOUT_METRICS", value)
    lambda_fanout.map(abs, [1], strategy="sequential")
    assert len(emf_lines(capsys.readouterr().out)) == (1 if on else 0)


def test_bad_namespace(monkeypatch):
    monkeypatch.setenv("FANOUT_METRICS", "on")
    monkeypatch.setenv("FANOUT_METRICS_NAMESPACE", " ")
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_METRICS_NAMESPACE"):
        lambda_fanout.map(abs, [1])


@pytest.mark.parametrize("value,wrong", [
    ("AWS/Lambda", "'AWS/' is kept for AWS's own services"),
    ("AWS/", "'AWS/' is kept for AWS's own services"),
    (":Fanout", "it starts with ':'"),
    ("Fan\u00f6ut", "not printable ASCII"),
    ("\u0424anout", "not printable ASCII"),
    ("My\x07App", "not printable ASCII"),
    ("My\nApp", "not printable ASCII"),
    ("MyApp\t", "not printable ASCII"),
    ("MyApp\x7f", "not printable ASCII"),
    ("N" * 256, "it has 256 characters"),
    ("", "it is blank"),
])
def test_a_namespace_cloudwatch_refuses_is_refused(strategy_name, monkeypatch, capsys, value, wrong):
    # CloudWatch's rule (PutMetricData's Namespace): 1 to 255 ASCII characters, no control
    # character, no leading ':'; 'AWS/' is reserved. Such a line's metrics would be lost silently.
    monkeypatch.setenv("FANOUT_METRICS", "on")
    monkeypatch.setenv("FANOUT_METRICS_NAMESPACE", value)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.map(abs, [1], strategy=strategy_name)
    msg = str(info.value)
    assert "FANOUT_METRICS_NAMESPACE must be a CloudWatch namespace" in msg and repr(value) in msg, msg
    assert wrong in msg, msg
    assert emf_lines(capsys.readouterr().out) == []


@pytest.mark.parametrize("value", ["MyApp/Fanout", "aws-team/fanout", "A:B", "my app (prod)", "N" * 255, "x"])
def test_a_namespace_cloudwatch_takes_is_used(monkeypatch, capsys, value):
    monkeypatch.setenv("FANOUT_METRICS", "on")
    monkeypatch.setenv("FANOUT_METRICS_NAMESPACE", value)
    lambda_fanout.map(abs, [1], strategy="sequential")
    (doc,) = emf_lines(capsys.readouterr().out)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == value
