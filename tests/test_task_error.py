"""errors="raise": the TaskError says where the failure happened, never what the record held.

Its message carries the exception type, the innermost frame of the user's own code
(file, line, function) and, for botocore's ClientError, the error code, HTTP status and
operation; under FANOUT_LOG_FAILURES the failure also gets the one ERROR line collect
mode writes for it.
"""

from __future__ import annotations

import inspect
import logging

import pytest

import lambda_fanout
import xproc

IN_PROCESS = [s for s in lambda_fanout.STRATEGIES if s != "processes"]
SECRET = "alice@example.com"


def where(fn, text: str) -> str:
    """``file:line in function`` of the line of ``fn`` holding ``text``."""
    lines, first = inspect.getsourcelines(fn)
    (offset,) = [i for i, line in enumerate(lines) if text in line]
    return f"{inspect.getsourcefile(fn)}:{first + offset} in {fn.__name__}"


def dual(fn):
    async def afn(item):
        return fn(item)

    return lambda_fanout.Task(fn, afn)


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_the_message_names_the_type_and_the_users_frame(strategy):
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(dual(xproc.lookup_empty), [SECRET], strategy=strategy)
    frame = where(xproc.lookup_empty, "return {}[key]")
    assert str(info.value) == f"task failed on item #0: KeyError, at {frame}"


def test_under_processes_the_message_names_the_type():
    # The worker's frames come back as the __cause__'s text, not as a traceback here.
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(xproc.lookup_empty, [SECRET], strategy="processes")
    assert str(info.value).startswith("task failed on item #0: KeyError")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_a_failure_inside_a_library_names_the_users_line_that_called_it(strategy):
    payload = '{"card": "4111111111111111"'  # truncated JSON: the message would quote it
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(dual(xproc.parse_json), [payload], strategy=strategy)
    frame = where(xproc.parse_json, "return json.loads(text)")
    assert str(info.value) == f"task failed on item #0: JSONDecodeError, at {frame}"
    assert "4111" not in str(info.value)


def test_a_client_error_names_its_code_status_and_operation(aws_endpoint, s3_bucket, strategy_name):
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(xproc.S3_READ, [(s3_bucket, f"missing-{SECRET}")], strategy=strategy_name)
    message = str(info.value)
    assert message.startswith("task failed on item #0: ClientError NoSuchKey 404 in GetObject")
    if strategy_name != "processes":
        assert message.endswith(", at " + where(xproc.s3_read, "get_object(") if strategy_name != "asyncio"
                                else ", at " + where(xproc.as3_read, "get_object("))
    assert SECRET not in message and s3_bucket not in message


def test_a_ready_made_aws_task_names_the_client_error_without_a_frame(aws_endpoint, s3_bucket):
    # Every frame is lambda_fanout's or botocore's: no user frame to name.
    from lambda_fanout import aws

    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(aws.s3_get_object(s3_bucket), [f"missing-{SECRET}"], strategy="threads")
    assert str(info.value) == "task failed on item #0: ClientError NoSuchKey 404 in GetObject"


@pytest.mark.parametrize("level", ["type-only", "on"])
def test_the_raised_failure_is_logged_once_as_collect_mode_logs_it(strategy_name, level, monkeypatch, caplog):
    caplog.set_level(logging.ERROR)
    monkeypatch.setenv("FANOUT_LOG_FAILURES", level)
    task = dual(xproc.lookup_empty)
    collected = lambda_fanout.map(task, [SECRET], strategy=strategy_name, errors="collect")
    assert not collected[0].ok
    (collect_line,) = [r.getMessage() for r in caplog.records if r.name == "lambda_fanout"]
    caplog.clear()
    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(task, [SECRET], strategy=strategy_name)
    (raise_line,) = [r.getMessage() for r in caplog.records if r.name == "lambda_fanout"]
    assert raise_line == collect_line
    assert raise_line.startswith("lambda_fanout: map item #0 failed: KeyError")
    assert (SECRET in raise_line) == (level == "on")
    if strategy_name != "processes":
        assert "return {}[key]" in raise_line  # the traceback's source line


def test_nothing_is_logged_with_the_log_off(strategy_name, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FANOUT_LOG_FAILURES", "off")
    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(dual(xproc.lookup_empty), [SECRET], strategy=strategy_name)
    assert [r for r in caplog.records if r.name == "lambda_fanout"] == []
