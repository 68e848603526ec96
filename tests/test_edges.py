"""The README's guarantees at the edges, each under every strategy.

Raising input iterators, BaseException and CancelledError from tasks, cancelled amap,
short-lived threads, huge or slow input under a deadline, odd contexts, odd settings.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from functools import partial

import pytest

import lambda_fanout
from lambda_fanout import _procpool
import staging
import resources
import xproc
from lambda_fanout.strategies.base import WINDOW_PER_WORKER


class Boom(Exception):
    pass


def dual(fn):
    """The same work as a Task with both forms (the coroutine form calls the blocking one)."""
    async def afn(item):
        return fn(item)

    return lambda_fanout.Task(fn, afn)


def hanging(release: xproc.Flag, hang_on, value=xproc.identity):
    """A Task whose items in ``hang_on`` block (sync form) or never complete (async form)."""
    return xproc.Hang(release, hang_on, value).task()


@pytest.fixture
def release():
    """A flag that frees hung sync tasks when the test ends, so no thread outlives it long."""
    flag = xproc.Flag()
    yield flag
    flag.set()
    time.sleep(0.02)
    flag.remove()


@pytest.fixture
def started():
    """What the tasks record as they start, from whichever process runs them."""
    log = xproc.Log()
    yield log
    log.remove()


@pytest.fixture
def margin_100ms(monkeypatch):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    return 100


# -- coroutine functions are detected whatever is imported ---------------------------------

def test_coroutine_callables_detected_in_a_fresh_interpreter(strategy_name):
    # Neither inspect nor asyncio is imported before the call in the child.
    code = textwrap.dedent(f'''
        import functools, json, sys
        import lambda_fanout
        assert "inspect" not in sys.modules and "asyncio" not in sys.modules
        async def add(n, item):
            return n + item
        class AsyncCallable:
            async def __call__(self, item):
                return item * 10
        out = {{}}
        for label, task in (("partial", functools.partial(add, 1)), ("instance", AsyncCallable())):
            try:
                out[label] = lambda_fanout.map(task, [1, 2, 3], strategy={strategy_name!r})
            except lambda_fanout.ConfigError as exc:
                out[label] = "ConfigError: " + str(exc)
        print(json.dumps(out))
    ''')
    env = {**os.environ, "PYTHONPATH": staging.python_dir()}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    if strategy_name == "asyncio":
        assert out == {"partial": [2, 3, 4], "instance": [10, 20, 30]}
    else:
        for label in ("partial", "instance"):
            assert out[label].startswith("ConfigError: ") and "coroutine function" in out[label], out


# -- BaseException and CancelledError from a task: raised once, the next call clean --------------

@pytest.mark.parametrize("error", [asyncio.CancelledError, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("errors", ["raise", "collect"])
def test_base_exception_from_a_task_propagates_and_leaves_everything_clean(strategy_name, error, errors):
    with pytest.raises(error):
        lambda_fanout.map(dual(partial(xproc.raise_at, error, 3)), range(40), strategy=strategy_name,
                          max_workers=4, errors=errors)
    # Never turned into a DeadlineExceeded (there is no context), and the next call is clean.
    assert lambda_fanout.map(dual(partial(xproc.add, 1)), range(20), strategy=strategy_name, max_workers=4) == \
        list(range(1, 21))
    if strategy_name == "asyncio":
        from lambda_fanout._loop import get_loop, run

        async def others():
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        assert run(others()) == []
        assert get_loop().is_running() and not get_loop().is_closed()


def test_cancelled_error_from_a_task_is_not_a_deadline(strategy_name, fake_context):
    # With a generous context too: the task's own CancelledError is its error, not the deadline's.
    with pytest.raises(asyncio.CancelledError):
        lambda_fanout.map(dual(partial(xproc.raise_at, asyncio.CancelledError, 1)), range(10), strategy=strategy_name, max_workers=1, errors="collect",
                          context=fake_context(60_000))


def test_a_task_cancelling_itself_is_its_own_error():
    async def self_cancel(i):
        if i == 1:
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
        return i

    with pytest.raises(asyncio.CancelledError):
        lambda_fanout.map(self_cancel, range(4), strategy="asyncio", max_workers=1, errors="collect")
    assert lambda_fanout.map(self_cancel, [0, 2], strategy="asyncio") == [0, 2]


# -- short-lived threads leak no loop, thread or file descriptor ----------------------------

def _loops() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed())


def test_asyncio_from_short_lived_threads_leaks_nothing(strategy_name):
    async def double(i):
        return 2 * i

    def invocation():
        # Each invocation on its own short-lived thread; inside, a task of the outer strategy
        # calls map with asyncio, as a threads-strategy task might.
        assert lambda_fanout.map(lambda_fanout.Task(xproc.sum_of_asyncio_map, None)
                                 if strategy_name != "asyncio" else double,
                                 range(2), strategy=strategy_name, max_workers=2) is not None

    def run_on_thread():
        thread = threading.Thread(target=invocation)
        thread.start()
        thread.join()

    # Worker processes an earlier test discarded are closed lazily (at the pool's next
    # release): settle them first, so their pipes do not close in the middle of the count.
    _procpool.shutdown()
    for _ in range(20):
        run_on_thread()  # warm-up: the shared loop and its thread exist from here on
    files, threads, loops = resources.open_files(), resources.threads(), _loops()
    for _ in range(1000):
        run_on_thread()
    assert resources.open_files() - files == set()
    assert resources.threads() - threads == set()
    assert _loops() == loops


# -- the deadline holds on every exit path ---------------------------------------------------

def test_raising_input_with_a_hung_task_returns_by_the_deadline(strategy_name, fake_context, release, margin_100ms):
    def items():
        yield from range(4)
        raise Boom("the listing failed")

    ctx = fake_context(500)
    try:
        got = lambda_fanout.map(hanging(release, {0}), items(), strategy=strategy_name, max_workers=4,
                                errors="collect", context=ctx)
    except Boom as exc:
        assert any("input iterator raised after 4 items" in note for note in exc.__notes__)
    else:
        # Only sequential, stuck on item 0, never reads as far as the failing listing.
        assert strategy_name == "sequential" and got.unread and got[0].error.started
    assert ctx.get_remaining_time_in_millis() > 0, "returned after the Lambda deadline"


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_base_exception_with_a_hung_task_returns_by_the_deadline(strategy_name, fake_context, release,
                                                                  margin_100ms, error):
    value = partial(xproc.raise_at, error, 2)
    ctx = fake_context(500)
    hang_on = {5} if strategy_name == "sequential" else {0}  # sequential would never reach item 2
    with pytest.raises(error):  # never turned into DeadlineExceeded
        lambda_fanout.map(hanging(release, hang_on, value), range(10), strategy=strategy_name, max_workers=4,
                          context=ctx)
    assert ctx.get_remaining_time_in_millis() > 0, "raised after the Lambda deadline"


@pytest.mark.parametrize("errors", ["raise", "collect"])
@pytest.mark.parametrize("fn, kind, code", [
    (partial(xproc.raise_from_at, xproc.ExitFrom, 3), SystemExit, 7),
    (partial(xproc.raise_from_at, xproc.QuietExitFrom, 3), SystemExit, False),
    (partial(xproc.raise_from_at, xproc.InterruptFrom, 3), KeyboardInterrupt, None),
    (partial(xproc.raise_local_cancel_at, 3), asyncio.CancelledError, None),
], ids=["exit-7", "exit-false", "interrupt", "cancelled"])
def test_a_base_exception_that_cannot_be_pickled_still_reaches_the_caller(strategy_name, fn, kind, code, errors):
    with pytest.raises(kind) as info:
        lambda_fanout.map(dual(fn), iter(range(30)), strategy=strategy_name, max_workers=2, errors=errors)
    if kind is SystemExit:
        assert info.value.code == code  # the same exit status
    if strategy_name == "processes":  # the standard library's class stands in; its note names the task's
        assert type(info.value).__module__ in ("builtins", "asyncio.exceptions"), type(info.value)
        assert "raised in a worker process as " in "".join(info.value.__notes__)


def test_an_exception_whose_pickling_raises_fails_its_item_alone(strategy_name, caplog):
    fn = partial(xproc.raise_unsendable_at, 3)
    got = lambda_fanout.map(dual(fn), range(8), strategy=strategy_name, max_workers=2, errors="collect")
    assert [o.ok for o in got] == [True] * 3 + [False] + [True] * 4, [o.error for o in got]
    assert "InterruptsWhenPickled" in f"{type(got[3].error).__name__} {got[3].error}"
    assert "in raise_unsendable_at" in caplog.text  # the log shows where the task raised it
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(dual(fn), range(8), strategy=strategy_name, max_workers=2)
    assert info.value.index == 3


def test_a_blocking_read_at_the_deadline_finishes_first(strategy_name, fake_context, margin_100ms):
    consumed = []

    def items():
        for i in itertools.count():
            if i == 3:
                time.sleep(0.4)  # this read is under way when the margin passes
            consumed.append(i)
            yield i

    got = lambda_fanout.map(dual(xproc.identity), items(), strategy=strategy_name, max_workers=2, errors="collect",
                            context=fake_context(500))
    assert len(got) == len(consumed) and got.unread  # every item taken from the input has its entry
    frozen = list(got)
    time.sleep(0.1)
    assert list(got) == frozen and all(isinstance(o, lambda_fanout.Outcome) for o in got)


def test_a_late_result_never_leaves_a_placeholder(strategy_name, fake_context, release, monkeypatch):
    # Widen the window between a late result's check and its write, as a thread switch would.
    from lambda_fanout import _run

    class SlowOutcome(_run.Outcome):
        __slots__ = ()

        def __init__(self, index, *rest):
            if index == 1:
                time.sleep(0.03)
            super().__init__(index, *rest)

    monkeypatch.setattr(_run, "Outcome", SlowOutcome)
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "500")
    ctx = fake_context(600)

    fn = xproc.SettleAtMargin(release, ctx.deadline)
    got = lambda_fanout.map(dual(fn), [0, 1], strategy=strategy_name, max_workers=2, errors="collect",
                            context=ctx)
    assert all(isinstance(o, lambda_fanout.Outcome) for o in got), got


def test_a_list_read_to_its_end_is_not_unread(strategy_name, fake_context, release, margin_100ms):
    got = lambda_fanout.map(hanging(release, {1}), [0, 1], strategy=strategy_name, max_workers=1,
                            errors="collect", context=fake_context(400))
    assert [o.ok for o in got] == [True, False] and not got.unread


# -- raise mode: nothing starts after the first failure ---------------------------------------

@pytest.mark.parametrize("report", ["at-once", "late"])
def test_raise_mode_starts_nothing_after_the_first_failure(strategy_name, started, report):
    reads = []
    # Item 0 fails at once; the others are slow: plenty of time to (wrongly) refill.
    # A late report: item 0's failure takes 0.5 s to reach the caller from a worker
    # process, so the others end first and their workers ask for more meanwhile.
    fn = partial(xproc.fail_first_then_wait, started)
    if report == "late":
        fn = partial(fn, error=xproc.SlowToSend)

    def items():
        for i in range(1000):
            reads.append(i)
            yield i

    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(dual(fn), items(), strategy=strategy_name, max_workers=4)
    assert info.value.index == 0
    read_at_raise = len(reads)
    time.sleep(0.3)
    # Only items already running when item 0 failed ever started; none started after it.
    assert set(started) <= set(range(4)), sorted(started)
    assert len(reads) == read_at_raise, "the input was read after the call stopped"
    assert read_at_raise <= 2 * 4 * WINDOW_PER_WORKER, read_at_raise


# -- the input: read only as far as a deadline allows, and what was read runs ----------------

def test_huge_generator_under_a_deadline_is_not_drained(strategy_name, fake_context, margin_100ms):
    slow = partial(xproc.sleep_then, 0.001)
    source = iter(range(3_000_000))
    ctx = fake_context(400)
    got = lambda_fanout.map(dual(slow), source, strategy=strategy_name, max_workers=4, errors="collect",
                            context=ctx)
    assert ctx.get_remaining_time_in_millis() > 0, "returned after the Lambda deadline"
    assert got.unread and 0 < len(got) < 3_000_000
    assert [o.index for o in got] == list(range(len(got)))  # every item read has its outcome
    assert next(source) == len(got)  # the input is left at the first unread item


def test_slow_input_under_a_deadline(strategy_name, fake_context, margin_100ms):
    def pages():
        for i in itertools.count():
            time.sleep(0.02)  # a paginated listing: every item costs a wait
            yield i

    ctx = fake_context(400)
    got = lambda_fanout.map(dual(xproc.identity), pages(), strategy=strategy_name, max_workers=4, errors="collect",
                            context=ctx)
    assert ctx.get_remaining_time_in_millis() > 0, "returned after the Lambda deadline"
    assert got.unread and [o.index for o in got] == list(range(len(got)))
    # The last items read may have arrived after the margin: reported as never started.
    done = [o for o in got if o.ok]
    assert done and [o.value for o in done] == list(range(len(done)))
    assert all(not o.error.started for o in got if not o.ok)


def test_items_read_before_the_input_fails_all_run(strategy_name, started):
    ran = started

    def items():
        yield from "abc"
        raise OSError("listing failed")

    with pytest.raises(OSError) as info:
        lambda_fanout.map(dual(ran.append), items(), strategy=strategy_name, max_workers=4)
    assert sorted(ran.entries()) == ["a", "b", "c"]
    assert "after 3 items were read; those items ran" in info.value.__notes__[0]


# -- cancelling amap starts nothing more and raises at once ----------------------------------

@pytest.mark.serial
def test_cancelled_amap_stops_starting_items(strategy_name, release, started):
    fn = partial(xproc.record_then_wait, started, release)

    async def afn(i):
        started.append(i)
        await asyncio.sleep(5)
        return i

    async def caller():
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                lambda_fanout.amap(lambda_fanout.Task(fn, afn), range(1000), strategy=strategy_name,
                                   max_workers=4), timeout=0.2)
        return time.monotonic() - t0

    waited = asyncio.run(caller())
    assert waited < 2.0, f"the cancellation took {waited:.1f} s to reach the caller"
    at_cancel = len(started)
    release.set()  # the running items finish now; nothing new may start behind them
    time.sleep(0.3)
    assert 0 < at_cancel <= 4 and len(started) == at_cancel, (at_cancel, len(started))


@pytest.mark.serial
def test_amap_cancel_with_a_task_that_swallows_cancellation(strategy_name, release, started):
    fn = partial(xproc.record_then_wait_for, started, release, 0.05)

    async def afn(i):
        started.append(i)
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            return None  # swallowed: the worker would go on pulling jobs
        return i

    async def caller():
        task = asyncio.ensure_future(lambda_fanout.amap(lambda_fanout.Task(fn, afn), range(40),
                                                        strategy=strategy_name, max_workers=2))
        await asyncio.sleep(0.12)
        task.cancel()
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0, len(started)

    waited, at_cancel = asyncio.run(caller())
    time.sleep(0.2)
    assert waited < 0.5 and len(started) == at_cancel < 40


def test_amap_returns_by_the_deadline_when_a_task_delays_its_cancellation(fake_context, margin_100ms):
    async def stubborn(i):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1)  # slow clean-up: must not hold the caller past the deadline
            raise
        return i

    async def caller(ctx):
        return await lambda_fanout.amap(stubborn, range(3), strategy="asyncio", errors="collect", context=ctx)

    ctx = fake_context(400)
    got = asyncio.run(caller(ctx))
    assert ctx.get_remaining_time_in_millis() > 0, "returned after the Lambda deadline"
    assert all(o.error.started for o in got)


# -- only ASCII digits are numbers -------------------------------------------------------------

@pytest.mark.parametrize("variable", ["FANOUT_MAX_WORKERS", "FANOUT_DEADLINE_MARGIN_MS"])
@pytest.mark.parametrize("value", ["²", "٣", "１６", "4²"])
def test_non_ascii_digits_are_a_config_error(strategy_name, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(lambda_fanout.ConfigError, match=variable) as info:
        lambda_fanout.map(abs, [1], strategy=strategy_name)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["\u20038", "8\xa0", "8\n", "+8", "-0", "0x10", "1e3"])
def test_only_plain_ascii_digits_are_numbers(monkeypatch, value):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", value)
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_MAX_WORKERS"):
        lambda_fanout.Settings.resolve()


# -- a context with no real deadline ----------------------------------------------------------

class Forever:
    def __init__(self, remaining):
        self.remaining = remaining

    def get_remaining_time_in_millis(self):
        return self.remaining


@pytest.mark.parametrize("remaining", [float("inf"), 10**13, float("nan")])
def test_infinite_remaining_time_is_no_deadline(strategy_name, remaining):
    got = lambda_fanout.map(dual(partial(xproc.times, 3)), range(50), strategy=strategy_name, errors="collect",
                            context=Forever(remaining))
    assert [o.value for o in got] == [i * 3 for i in range(50)] and not got.unread


def test_a_context_without_a_number_is_a_config_error(strategy_name):
    with pytest.raises(lambda_fanout.ConfigError, match="get_remaining_time_in_millis"):
        lambda_fanout.map(dual(abs), [1], strategy=strategy_name, context=Forever("soon"))


@pytest.mark.parametrize("context", [Forever("300000"), Forever(True), "magicmock"],
                         ids=["numeric-string", "bool", "magicmock"])
def test_a_remaining_time_that_only_converts_to_a_number_is_a_config_error(strategy_name, context):
    # A unit test's MagicMock() context returns a MagicMock, which float() reads as 1.0: a
    # deadline already past would report every item cut. Only an int or float is a time.
    from unittest.mock import MagicMock

    if context == "magicmock":
        context = MagicMock()
    with pytest.raises(lambda_fanout.ConfigError, match="must return a number of milliseconds") as info:
        lambda_fanout.map(dual(abs), [1], strategy=strategy_name, context=context)
    assert "context=None" in str(info.value)


@pytest.mark.parametrize("context,named", [({"Records": [{"body": "secret-payload"}]}, "a dict"),
                                           (object(), "an object")], ids=["the-event", "an-object"])
def test_a_context_without_remaining_time_is_a_config_error_naming_its_type(strategy_name, context, named):
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.map(dual(abs), [1], strategy=strategy_name, context=context)
    message = str(info.value)
    assert f"but got {named};" in message and "get_remaining_time_in_millis" in message, message
    assert "pass the Lambda context object" in message and "context=None" in message, message
    assert "secret-payload" not in message and "Records" not in message, message


def test_a_remaining_time_too_large_for_a_float_is_no_deadline(strategy_name):
    assert lambda_fanout.map(dual(abs), [-1, -2], strategy=strategy_name, context=Forever(10**400)) == [1, 2]


# -- errors and warnings carry no payload -------------------------------------------------------

def test_task_error_message_has_type_not_payload(strategy_name):
    with pytest.raises(lambda_fanout.TaskError) as info:  # KeyError('alice@example.com'): the payload
        lambda_fanout.map(dual(xproc.lookup_empty), ["alice@example.com"], strategy=strategy_name)
    assert "alice" not in str(info.value)
    # The type, then (tests/test_task_error.py) where it was raised; never the payload.
    assert str(info.value).partition(",")[0] == "task failed on item #0: KeyError"
    assert isinstance(info.value.__cause__, KeyError) and info.value.__cause__.args == ("alice@example.com",)


def test_task_error_keeps_a_tasks_own_deadline_text_out(strategy_name):
    with pytest.raises(lambda_fanout.TaskError) as info:  # the task's own timeout type
        lambda_fanout.map(dual(xproc.lookup_times_out), ["alice@example.com"], strategy=strategy_name)
    assert str(info.value).partition(",")[0] == "task failed on item #0: LookupTimeout"
    assert "alice" not in str(info.value)


def test_sync_task_names_never_show_bound_arguments(recwarn):
    import functools

    from lambda_fanout import _task

    def fetch(bucket, key):
        return key

    for n in range(50):  # warm invocations, each with its own partial over event data
        lambda_fanout.map(functools.partial(fetch, f"customer-secret-bucket-{n}"), ["k"], strategy="asyncio")
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(messages) <= 1 and not any("customer-secret" in m for m in messages)
    assert not any("customer-secret" in name for name in _task._warned_no_async)


# -- the two kinds of deadline report ---------------------------------------------------------------

def test_deadline_reports_say_started_or_not(strategy_name, fake_context, release, margin_100ms):
    got = lambda_fanout.map(hanging(release, {0}), range(3), strategy=strategy_name, max_workers=1,
                            errors="collect", context=fake_context(400))
    first = got[0].error
    assert isinstance(first, lambda_fanout.DeadlineExceeded) and first.started
    assert "may have had side effects" in str(first)
    for outcome in got[1:]:  # read before the cut (threads' windows) but never started
        assert not outcome.error.started and "safe to redeliver" in str(outcome.error)


# -- the EMF line counts what happened ------------------------------------------------------------

def test_emf_counts_what_happened(strategy_name, monkeypatch, capsys, fake_context):
    monkeypatch.setenv("FANOUT_METRICS", "on")

    fail_first = xproc.fail_at_zero

    def emitted():
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]

    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(dual(fail_first), range(50), strategy=strategy_name, max_workers=1)
    doc = emitted()[-1]
    assert doc["Failed"] == 1 and doc["Succeeded"] == 0
    assert doc["Items"] == doc["Succeeded"] + doc["Failed"] + doc["Unprocessed"]
    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(dual(abs), range(3), strategy=strategy_name, context=Forever(50))  # no time at all
    doc = emitted()[-1]
    assert (doc["Items"], doc["Succeeded"], doc["Failed"], doc["Unprocessed"]) == (0, 0, 0, 0)

    def broken():
        yield 1
        raise OSError("listing failed")

    with pytest.raises(OSError):
        lambda_fanout.map(dual(abs), broken(), strategy=strategy_name)
    assert emitted()[-1]["Succeeded"] == 1


# -- batch events Lambda never sends, and results that are not JSON -----------------------------------

@pytest.mark.parametrize("event, fragment", [
    ({"Items": []}, "'Items' is empty"),
    ({"detail-type": "x", "source": "y", "detail": {}}, "has no 'id'"),
])
def test_batches_lambda_never_sends_are_refused(strategy_name, event, fragment):
    ran = []
    with pytest.raises(ValueError, match=fragment):
        lambda_fanout.process_batch(event, dual(ran.append), strategy=strategy_name)
    assert ran == []


def test_a_distributed_map_result_that_is_not_json_fails_its_record(strategy_name):
    with pytest.raises(lambda_fanout.BatchError) as info:
        lambda_fanout.process_batch({"Items": [1, 2], "BatchInput": {}}, dual(xproc.nan_at_two),
                                    strategy=strategy_name)
    assert [f.index for f in info.value.failures] == [1]
