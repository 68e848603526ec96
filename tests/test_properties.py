"""Every strategy returns exactly what the sequential reference returns (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hstrategies
import lambda_fanout
import xproc
from xproc import TaskBoom, make_task
import pytest

# The strategy fixture is a plain parameter, so sharing it across examples is safe.
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(values=hstrategies.items, workers=hstrategies.workers, delays=hstrategies.delays, failing=hstrategies.failing)
def test_collect_matches_sequential(strategy_name, values, workers, delays, failing):
    items = list(enumerate(values))
    task = make_task(delays, failing)
    expected = lambda_fanout.map(task, items, strategy="sequential", errors="collect")
    got = lambda_fanout.map(task, items, strategy=strategy_name, max_workers=workers, errors="collect")
    assert got == expected
    assert [o.index for o in got] == list(range(len(items)))
    assert [o.ok for o in got] == [i not in failing for i in range(len(items))]


@PROPERTY_SETTINGS
@given(values=hstrategies.items, workers=hstrategies.workers, delays=hstrategies.delays, failing=hstrategies.failing)
def test_raise_mode(strategy_name, values, workers, delays, failing):
    items = list(enumerate(values))
    task = make_task(delays, failing)
    failing_here = failing & set(range(len(items)))
    if not failing_here:
        got = lambda_fanout.map(task, items, strategy=strategy_name, max_workers=workers)
        assert got == [v * 2 + 1 for v in values]
        return
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(task, items, strategy=strategy_name, max_workers=workers)
    err = info.value
    assert err.index in failing_here
    assert err.item == items[err.index]
    assert isinstance(err.__cause__, TaskBoom)


@PROPERTY_SETTINGS
@given(records=hstrategies.frequencies, workers=hstrategies.workers)
def test_high_frequency_count(strategy_name, records, workers):
    """The blog post's example, done right: count items whose frequency is above 10."""
    flags = lambda_fanout.map(
        lambda_fanout.Task(xproc.is_frequent, _async_is_frequent),
        records,
        strategy=strategy_name,
        max_workers=workers,
    )
    assert sum(flags) == sum(1 for r in records if r["frequency"] > 10)


async def _async_is_frequent(record):
    return record["frequency"] > 10


@PROPERTY_SETTINGS
@given(values=st.lists(st.integers(), max_size=300), workers=hstrategies.workers)
def test_generators_give_the_same_results(strategy_name, values, workers):
    got = lambda_fanout.map(
        lambda_fanout.Task(xproc.negate, _async_negate), (v for v in values), strategy=strategy_name, max_workers=workers
    )
    assert got == [-v for v in values]


async def _async_negate(v):
    return -v
