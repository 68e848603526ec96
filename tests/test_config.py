"""Bad configuration gets a clear error naming the setting, the value and the valid choices."""

from __future__ import annotations

import pytest

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
    assert lambda_fanout.STRATEGIES == ("sequential", "threads", "threads-map", "asyncio", "processes")


def test_task_needs_a_form():
    with pytest.raises(lambda_fanout.ConfigError, match="at least one form"):
        lambda_fanout.Task(None, None)
    with pytest.raises(lambda_fanout.ConfigError, match="callable"):
        lambda_fanout.Task(42)
