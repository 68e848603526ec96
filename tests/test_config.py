"""Bad configuration gets a clear error naming the setting, the value and the valid choices."""

from __future__ import annotations

import pytest

import batches
import lambda_fanout


@pytest.mark.parametrize("value", ["", "thread", "THREADS", "Threads", "gevent", " threads", "asyncio "])
def test_bad_strategy_env(monkeypatch, value):
    monkeypatch.setenv("FANOUT_STRATEGY", value)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.get_strategy()
    msg = str(info.value)
    assert "FANOUT_STRATEGY" in msg and repr(value) in msg
    for name in lambda_fanout.STRATEGIES:
        assert repr(name) in msg


def test_close_match_hint(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "thread")
    with pytest.raises(lambda_fanout.ConfigError, match="Did you mean 'threads'"):
        lambda_fanout.map(abs, [1])


def test_bad_strategy_argument():
    with pytest.raises(lambda_fanout.ConfigError, match=r"argument strategy= must be one of .* but got 'fast'"):
        lambda_fanout.get_strategy("fast")
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        lambda_fanout.map(abs, [1], strategy="fast")


@pytest.mark.parametrize("value", ["", "0", "-4", "abc", "1.5", "1e3", "2000", "ten", " "])
def test_bad_max_workers_env(monkeypatch, value):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", value)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.get_strategy("threads")
    msg = str(info.value)
    assert "FANOUT_MAX_WORKERS" in msg and repr(value) in msg and "1 to 1024" in msg


@pytest.mark.parametrize("value", [0, -1, 1.5, "8", True, 5000])
def test_bad_max_workers_argument(value):
    with pytest.raises(lambda_fanout.ConfigError, match="max_workers"):
        lambda_fanout.get_strategy("threads", max_workers=value)


@pytest.mark.parametrize("value", ["", "-1", "soon", "1e3"])
def test_bad_margin_env(monkeypatch, value):
    monkeypatch.setenv("FANOUT_DEADLINE_MARGIN_MS", value)
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_DEADLINE_MARGIN_MS"):
        lambda_fanout.get_strategy("sequential")


def test_bad_errors_argument(strategy_name):
    with pytest.raises(lambda_fanout.ConfigError, match=r"errors= must be one of 'raise', 'collect' but got 'ignore'"):
        lambda_fanout.map(abs, [1], strategy=strategy_name, errors="ignore")


def test_env_is_read_at_construction_and_arguments_win(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "threads-map")
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "7")
    s = lambda_fanout.get_strategy()
    assert (s.name, s.max_workers) == ("threads-map", 7)
    s = lambda_fanout.get_strategy("asyncio", max_workers=3)
    assert (s.name, s.max_workers) == ("asyncio", 3)
    monkeypatch.delenv("FANOUT_STRATEGY")
    monkeypatch.delenv("FANOUT_MAX_WORKERS")
    s = lambda_fanout.get_strategy()
    assert (s.name, s.max_workers) == ("threads", 16)  # the defaults the README documents


def test_strategies_contract():
    assert lambda_fanout.STRATEGIES[:4] == ("sequential", "threads", "threads-map", "asyncio")


def test_task_needs_a_form():
    with pytest.raises(lambda_fanout.ConfigError, match="at least one form"):
        lambda_fanout.Task(None, None)
    with pytest.raises(lambda_fanout.ConfigError, match="callable"):
        lambda_fanout.Task(42)


@pytest.mark.parametrize("var,value,fragment", [
    ("FANOUT_FIFO_ON_FAILURE", "stop", "'group', 'batch'"),
    ("FANOUT_FIFO_ON_FAILURE", "", "empty"),
    ("FANOUT_FIFO_ON_FAILURE", "Batch", "Did you mean 'batch'"),
    ("FANOUT_RAISE_ON_ALL_FAILED", "yes", "'on', 'off'"),
    ("FANOUT_RAISE_ON_ALL_FAILED", "1", "'on', 'off'"),
])
def test_bad_batch_settings_env(monkeypatch, var, value, fragment):
    monkeypatch.setenv(var, value)
    ran = []
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.process_batch(batches.sqs(2), ran.append)
    assert var in str(info.value) and repr(value) in str(info.value) and fragment in str(info.value)
    assert ran == []


def test_batch_settings_are_listed_with_the_others(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "thread")
    monkeypatch.setenv("FANOUT_FIFO_ON_FAILURE", "all")
    monkeypatch.setenv("FANOUT_RAISE_ON_ALL_FAILED", "true")
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve()
    lines = str(info.value).splitlines()
    assert lines[0] == "3 settings are not valid:"
    assert [v for v in ("FANOUT_STRATEGY", "FANOUT_FIFO_ON_FAILURE", "FANOUT_RAISE_ON_ALL_FAILED")
            if any(v in line for line in lines[1:])] == ["FANOUT_STRATEGY", "FANOUT_FIFO_ON_FAILURE",
                                                         "FANOUT_RAISE_ON_ALL_FAILED"]


def test_batch_settings_defaults_env_and_arguments():
    resolve = lambda_fanout.Settings.resolve
    assert (resolve(environ={}).fifo_on_failure, resolve(environ={}).raise_on_all_failed) == ("group", False)
    env = {"FANOUT_FIFO_ON_FAILURE": "batch", "FANOUT_RAISE_ON_ALL_FAILED": "on"}
    assert (resolve(environ=env).fifo_on_failure, resolve(environ=env).raise_on_all_failed) == ("batch", True)
    explicit = resolve(fifo_on_failure="group", raise_on_all_failed=False, environ=env)
    assert (explicit.fifo_on_failure, explicit.raise_on_all_failed) == ("group", False)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"fifo_on_failure": "stop"}, "argument fifo_on_failure= must be one of 'group', 'batch' but got 'stop'"),
    ({"raise_on_all_failed": "on"}, "argument raise_on_all_failed= must be True or False but got 'on'"),
    ({"raise_on_all_failed": 1}, "must be True or False"),
])
def test_bad_batch_settings_arguments(kwargs, fragment):
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.process_batch(batches.sqs(2), abs, **kwargs)
    assert fragment in str(info.value)
