"""One property for the whole contract of ``map`` (hypothesis), under every strategy.

A drawn program gives each item an action (return, raise, hang, a BaseException, a
CancelledError), the input iterator a fault, and the call a deadline, errors mode and
worker count. The outcome is checked against what the contract allows:
every item read reported exactly once, results in order, the return before the
Lambda deadline, nothing leaked, the next call clean.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings

import hstrategies
import lambda_fanout
import xproc

MARGIN_MS = 100
#: How long before the margin an item must begin for its BaseException to be certain to
#: reach the caller (see the property).
LATE_S = MARGIN_MS / 2000


Boom = xproc.Boom  # defined there: a worker then imports only that light module


class InputBroke(Exception):
    pass


BASE_ERRORS = {"interrupt": KeyboardInterrupt, "cancel": asyncio.CancelledError, "exit": SystemExit}


def program_task(actions, started, release):
    program = xproc.Program(actions, started, release, BASE_ERRORS, Boom)
    return lambda_fanout.Task(program.fn, program.afn)


def source(n, fault_at, reads):
    for i in range(n):
        if i == fault_at:
            raise InputBroke(i)
        reads.append(i)
        yield i


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=hstrategies.programs())
def test_every_program_keeps_the_contract(strategy_name, monkeypatch, fake_context, program):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, str(MARGIN_MS))
    actions, fault_at, remaining_ms, errors, workers = program
    log = xproc.TimedLog()
    reads: list[int] = []
    release = xproc.Flag()
    threads_before = threading.active_count()
    ctx = None if remaining_ms is None else fake_context(remaining_ms)
    raised: BaseException | None = None
    got = None
    try:
        got = lambda_fanout.map(program_task(actions, log, release), source(len(actions), fault_at, reads),
                                strategy=strategy_name, max_workers=workers, errors=errors, context=ctx)
    except BaseException as exc:  # noqa: BLE001 - the property classifies every exit
        raised = exc
    finally:
        returned_with_ms = None if ctx is None else ctx.get_remaining_time_in_millis()
        release.set()
        started_at = log.entries()
        log.remove()
    started = [i for i, _ in started_at]

    # The return time: before the Lambda deadline (the margin is what the call may use).
    if ctx is not None:
        assert returned_with_ms > 0, f"returned {-returned_with_ms} ms after the Lambda deadline"
    ran = set(started)
    assert len(started) == len(ran), "an item ran twice"
    assert ran <= set(reads), "an item ran that was never read"
    fatal_started = [i for i in ran if actions[i] in BASE_ERRORS]
    fatal_types = {BASE_ERRORS[actions[i]] for i in fatal_started}
    # An item that begins just before the margin may still be on its way out (a worker
    # process between its start and its reply) when the call is cut: it may then be
    # reported as started and not finished. One that began earlier has raised by then.
    cut_at = None if ctx is None else ctx.deadline - MARGIN_MS / 1000 - LATE_S
    fatal_in_time = [i for i, at in started_at if actions[i] in BASE_ERRORS and (cut_at is None or at < cut_at)]

    if fatal_in_time or (fatal_started and type(raised) in fatal_types):
        # A BaseException from a task propagates unchanged: never swallowed, never a deadline.
        assert type(raised) in fatal_types, repr(raised)
    elif isinstance(raised, InputBroke):
        assert len(reads) == fault_at, "the input error was raised before the input reached it"
    elif errors == "collect":
        assert raised is None, repr(raised)
        # Every item read has exactly one outcome, in order.
        assert [o.index for o in got] == reads
        end = len(actions) if fault_at is None else fault_at
        # Never "complete" with input left; an iterator cut right after its last item has
        # not said it is exhausted, so it may still count as unread.
        assert got.unread or len(reads) == end
        for outcome in got:
            i = outcome.index
            if outcome.ok:
                assert i in ran and actions[i] not in ("raise", "hang", *BASE_ERRORS) and outcome.value == i * 7
            elif isinstance(outcome.error, Boom):
                assert i in ran and actions[i] == "raise"
            else:
                assert isinstance(outcome.error, lambda_fanout.DeadlineExceeded), repr(outcome.error)
                assert ctx is not None, "a deadline report without a deadline"
                assert outcome.error.started == (i in ran)
    else:
        failed = [i for i in ran if actions[i] == "raise"]
        if raised is None:
            assert not failed and got == [i * 7 for i in reads] and not got.unread
        else:
            assert isinstance(raised, lambda_fanout.TaskError), repr(raised)
            if isinstance(raised.__cause__, Boom):
                assert raised.index in failed
            else:
                assert isinstance(raised.__cause__, lambda_fanout.DeadlineExceeded) and ctx is not None
                assert not failed, "a task's failure was hidden behind a deadline report"

    # Nothing leaks once the hung items are released, and the next call is clean.
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= threads_before
    release.remove()
    assert lambda_fanout.map(lambda_fanout.Task(xproc.negate, _aneg), range(9), strategy=strategy_name,
                             max_workers=workers) == [-i for i in range(9)]


async def _aneg(i):
    return -i


@pytest.fixture(autouse=True)
def _asyncio_loop_started():
    # The shared loop's own thread is started once up front, so it is not counted as a leak.
    from lambda_fanout._loop import get_loop

    get_loop()
