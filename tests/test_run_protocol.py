"""The ledger's start protocol, as a strategy that ships records elsewhere uses it.

Such a strategy (processes) marks each record started with ``Run.begin`` as it sends
it, reports it later with ``settle``/``fail``/``fatal_error``, and takes the mark back
with ``unbegin`` for a record never reached where it was sent. What ``finish`` reports
for each record follows from those calls alone.
"""

from __future__ import annotations

import time

import pytest

from lambda_fanout import DeadlineExceeded, TaskError
from lambda_fanout._run import Run

MARGIN_MS = 100


def ledger(items, *, deadline=None, check=None, collect=True):
    run = Run(lambda item: item, items, collect=collect, deadline=deadline, margin_ms=MARGIN_MS, check=check)
    return run, list(run.jobs)  # every record read, none started


def test_a_fatal_error_reported_later_stops_every_start_and_is_raised():
    run, jobs = ledger(["a", "b", "c"])
    assert run.begin(0) and [run.pending[0]] == ["a"]
    run.fatal_error(KeyboardInterrupt())
    assert run.begin(1) is False and run.begin(2) is False
    with pytest.raises(KeyboardInterrupt):
        run.finish()


def test_finish_tells_not_started_from_not_finished():
    run, jobs = ledger(["a", "b", "c", "d"])
    for index in jobs:
        assert run.begin(index)
    run.settle(0, "A")
    run.fail(1, ValueError("b failed"))
    run.unbegin(2)
    got = run.finish()
    assert got[0].value == "A"
    assert isinstance(got[1].error, ValueError)
    assert isinstance(got[2].error, DeadlineExceeded) and got[2].error.started is False
    assert isinstance(got[3].error, DeadlineExceeded) and got[3].error.started is True
    assert got[3].error.margin_ms == MARGIN_MS
    run.unbegin(3)  # after the call returned: nothing changes
    assert got[3].error.started is True and run.counts() == (4, 1, 1, 2)


def test_begin_refuses_after_a_stop_and_past_the_deadline():
    run, jobs = ledger(["a", "b"])
    run.stop()
    assert run.begin(0) is False
    late, late_jobs = ledger(["a"], deadline=time.monotonic() - 1)
    assert late_jobs == []  # the reading stops at the deadline too
    run2, jobs2 = ledger(["a", "b"], deadline=time.monotonic() + 60)
    assert run2.begin(0) is True
    run2.deadline = time.monotonic() - 1  # the margin passes between the two sends
    assert run2.begin(1) is False
    run2.settle(0, "A")
    got = run2.finish()
    assert got[0].value == "A"
    assert isinstance(got[1].error, DeadlineExceeded) and got[1].error.started is False
    got = run.finish()
    assert all(isinstance(o.error, DeadlineExceeded) and not o.error.started for o in got)


def test_settle_runs_the_check_and_a_failed_check_fails_the_record():
    def check(value):
        if value < 0:
            raise ValueError(f"negative: {value}")

    run, jobs = ledger([1, 2], check=check, collect=False)
    assert run.begin(0) and run.begin(1)
    assert run.settle(0, 10) is True
    assert run.settle(1, -5) is False
    with pytest.raises(TaskError) as info:
        run.finish()
    assert info.value.index == 1 and "negative: -5" in str(info.value.__cause__)


def test_a_stop_calls_each_stop_hook_and_no_state_goes_back():
    run, jobs = ledger(["a", "b"])
    stopped = []
    run.add_stop_hook(lambda: stopped.append("workers"))
    run.add_stop_hook(lambda: stopped.append("remote"))
    assert run.begin(0)
    run.stop()
    assert stopped == ["workers", "remote"] and run.begin(1) is False
    got = run.finish()
    run.stop()  # after the call returned: it stays closed, so a late report is still written nowhere
    run.wind_down()
    run.settle(0, "late")
    assert got[0].error.started is True and run.counts() == (2, 0, 0, 2)
