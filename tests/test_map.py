"""Behaviour of lambda_fanout.map / amap under every strategy."""

from __future__ import annotations

import asyncio
import itertools
import threading
import warnings
from functools import partial

import pytest

import lambda_fanout
import xproc
from lambda_fanout import _procpool
from xproc import TaskBoom, make_task
from lambda_fanout.strategies.base import WINDOW_PER_WORKER


def double(x):
    return 2 * x


async def adouble(x):
    return 2 * x


DOUBLE = lambda_fanout.Task(double, adouble)


def test_results_in_input_order(strategy_name):
    delays = [0.003, 0.0, 0.001, 0.0, 0.002]
    items = list(enumerate(range(40)))
    got = lambda_fanout.map(make_task(delays, set()), items, strategy=strategy_name, max_workers=8)
    assert got == [v * 2 + 1 for _, v in items]


def test_collect_outcomes_carry_index_item_value_error(strategy_name):
    items = list(enumerate([5, 6, 7]))
    got = lambda_fanout.map(make_task([], {1}), items, strategy=strategy_name, errors="collect")
    assert [o.index for o in got] == [0, 1, 2]
    assert [o.item for o in got] == items
    assert [o.ok for o in got] == [True, False, True]
    assert got[0].value == 11 and got[0].error is None
    assert got[1].value is None and isinstance(got[1].error, TaskBoom)


def test_raise_stops_new_items_after_a_failure(strategy_name, tmp_path):
    started = xproc.Log(str(tmp_path / "started"))
    open(started.path, "w").close()
    task = partial(xproc.record_then_fail_at, started, 3)

    async def atask(i):
        return task(i)

    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(lambda_fanout.Task(task, atask), range(10_000), strategy=strategy_name, max_workers=4)
    assert info.value.index == 3 and info.value.item == 3
    assert isinstance(info.value.__cause__, xproc.Boom)
    # Only a bounded window of items started once the failing item had (the log is in the
    # order items started, in every process): how many started before it depends on how
    # fast its worker or thread got going.
    order = list(started)
    assert len(order) - order.index(3) - 1 <= 4 * WINDOW_PER_WORKER * 2


def test_task_error_message_names_index_not_payload(strategy_name):
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(make_task([], {0}), [(0, "s3cr3t-payload")], strategy=strategy_name)
    assert "#0" in str(info.value) and "Boom" in str(info.value)
    assert "s3cr3t-payload" not in str(info.value)


def test_generator_read_a_bounded_number_ahead(strategy_name, tmp_path):
    workers = 4
    # processes sends chunks (at most MAX_CHUNK items each) where the others send items.
    per_job = _procpool.MAX_CHUNK if strategy_name == "processes" else 1
    bound = 2 * workers * WINDOW_PER_WORKER * per_job + 1
    done = xproc.Log(str(tmp_path / "done"))
    open(done.path, "w").close()
    state = {"pulled": 0, "worst": 0}
    lock = threading.Lock()

    def source():
        for i in range(500):
            with lock:
                state["pulled"] += 1
                state["worst"] = max(state["worst"], state["pulled"] - len(done))
            yield i

    task = partial(xproc.sleep_then_record, done)

    async def atask(i):
        await asyncio.sleep(0.0005 if i % 3 else 0.002)
        done.append(i)
        return i

    got = lambda_fanout.map(lambda_fanout.Task(task, atask), source(), strategy=strategy_name, max_workers=workers)
    assert got == list(range(500))
    assert state["worst"] <= bound


@pytest.mark.serial  # how far the reading gets before the failure is seen depends on the CPU it gets
def test_huge_generator_is_not_materialised(strategy_name):
    """A few items are read from an endless generator when the first one fails."""
    fail_on_first = xproc.boom

    async def afail(i):
        raise TaskBoom("stop")

    reads = []

    def endless():
        for i in itertools.count():
            reads.append(i)
            yield i

    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(lambda_fanout.Task(fail_on_first, afail), endless(), strategy=strategy_name, max_workers=4)
    # At most the first window was read; the failure stopped the reading.
    assert 1 <= len(reads) <= 4 * WINDOW_PER_WORKER * 2


def test_no_threads_leak(strategy_name):
    lambda_fanout.map(DOUBLE, range(50), strategy=strategy_name, max_workers=8)  # warm up
    before = threading.active_count()
    for _ in range(5):
        lambda_fanout.map(DOUBLE, range(200), strategy=strategy_name, max_workers=8)
        lambda_fanout.map(make_task([], {3}), list(enumerate(range(20))), strategy=strategy_name, errors="collect")
    assert threading.active_count() == before


def test_asyncio_reuses_one_loop_and_leaves_nothing_pending():
    from lambda_fanout._loop import get_loop

    lambda_fanout.map(DOUBLE, range(10), strategy="asyncio")
    loop = get_loop()
    for _ in range(3):  # warm invocations
        assert lambda_fanout.map(DOUBLE, range(100), strategy="asyncio", max_workers=7) == [2 * i for i in range(100)]
        assert get_loop() is loop and not loop.is_closed()
        assert not asyncio.all_tasks(loop)


def test_asyncio_runs_sync_only_task_inline_with_one_warning():
    def only_sync(x):
        return x + 1

    with pytest.warns(RuntimeWarning, match="no async form"):
        assert lambda_fanout.map(only_sync, range(5), strategy="asyncio") == [1, 2, 3, 4, 5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lambda_fanout.map(only_sync, range(3), strategy="asyncio") == [1, 2, 3]


@pytest.mark.parametrize("name", ["sequential", "threads", "threads-map"])
def test_sync_strategy_refuses_a_coroutine_function(name):
    with pytest.raises(lambda_fanout.ConfigError, match=f"'{name}'.*coroutine function"):
        lambda_fanout.map(adouble, [1], strategy=name)
    with pytest.raises(lambda_fanout.ConfigError, match="only an async form"):
        lambda_fanout.map(lambda_fanout.Task(None, adouble), [1], strategy=name)


# -- with no strategy set, the task's own form picks it ------------------------------------

async def on_the_loop(x):
    # Awaited, so under asyncio: a sync strategy refuses a coroutine function.
    await asyncio.sleep(0)
    return asyncio.get_running_loop(), 2 * x


def on_a_thread(x):
    return threading.current_thread().name, 2 * x


def test_unset_strategy_runs_an_async_only_task_under_asyncio():
    from lambda_fanout._loop import get_loop

    got = lambda_fanout.map(on_the_loop, range(20))
    # Every item was awaited on the event loop every asyncio call shares.
    assert got == [(get_loop(), 2 * i) for i in range(20)]
    assert lambda_fanout.map(lambda_fanout.Task(None, adouble), range(5)) == [0, 2, 4, 6, 8]


def test_unset_strategy_amap_awaits_an_async_only_task_on_the_callers_loop():
    async def handler():
        return asyncio.get_running_loop(), await lambda_fanout.amap(on_the_loop, range(10))

    caller, got = asyncio.run(handler())
    assert got == [(caller, 2 * i) for i in range(10)]


def test_unset_strategy_runs_a_sync_only_task_on_threads():
    got = lambda_fanout.map(on_a_thread, range(20))
    assert [v for _, v in got] == [2 * i for i in range(20)]
    assert all(name.startswith("fanout") for name, _ in got), got


def test_unset_strategy_runs_a_task_with_both_forms_under_the_documented_default():
    forms = []

    def sync_fn(x):
        forms.append("sync")
        return x

    async def async_fn(x):
        forms.append("async")
        return x

    assert lambda_fanout.map(lambda_fanout.Task(sync_fn, async_fn), range(10)) == list(range(10))
    assert lambda_fanout.DEFAULT_STRATEGY == "threads" and forms == ["sync"] * 10


@pytest.mark.parametrize("name", ["sequential", "threads", "threads-map"])
def test_a_strategy_set_in_the_environment_still_refuses_a_coroutine_function(monkeypatch, name):
    monkeypatch.setenv(lambda_fanout.ENV_STRATEGY, name)
    with pytest.raises(lambda_fanout.ConfigError, match=f"'{name}'.*coroutine function"):
        lambda_fanout.map(adouble, [1])
    with pytest.raises(lambda_fanout.ConfigError, match=f"'{name}'.*coroutine function"):
        asyncio.run(lambda_fanout.amap(adouble, [1]))


def test_amap_inside_a_running_loop(strategy_name):
    async def handler():
        return await lambda_fanout.amap(DOUBLE, range(30), strategy=strategy_name, max_workers=5)

    assert asyncio.run(handler()) == [2 * i for i in range(30)]


def test_map_inside_a_running_loop_says_use_amap(strategy_name):
    async def handler():
        lambda_fanout.map(DOUBLE, [1], strategy=strategy_name)

    with pytest.raises(RuntimeError, match=r"await lambda_fanout\.amap"):
        asyncio.run(handler())


def _nested_batch(strategy):
    # A plain function that runs a whole batch call of its own under ``strategy``.
    event = {"Records": [{"messageId": f"m{j}", "eventSource": "aws:sqs", "body": "x"} for j in range(2)]}
    return lambda_fanout.process_batch(event, lambda_fanout.Task(xproc.identity, xproc.aidentity), strategy=strategy)


async def _anested_batch(strategy):
    return _nested_batch(strategy)


@pytest.mark.parametrize("nested", ["threads", "asyncio"])
@pytest.mark.parametrize("task", [_nested_batch, _anested_batch], ids=["inline-plain-function", "coroutine"])
def test_a_blocking_call_on_the_asyncio_loop_fails_its_item_at_once(task, nested):
    """A batch call made where the asyncio strategy's loop runs (a plain function it runs
    inline, or a coroutine) would block that loop, and wait forever for work queued behind
    it: it fails its item with the error saying what to do, and the loop stays usable."""
    got: list = []

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "no async form": the point here
            got.extend(lambda_fanout.map(task, [nested], strategy="asyncio", errors="collect"))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(20)
    assert not caller.is_alive(), "the nested call blocked the event loop"
    (outcome,) = got
    assert isinstance(outcome.error, RuntimeError) and "await lambda_fanout.amap" in str(outcome.error)
    assert "asyncio.to_thread(lambda_fanout.process_batch" in str(outcome.error)
    assert lambda_fanout.map(DOUBLE, range(3), strategy="asyncio") == [0, 2, 4]


def test_a_plain_function_raising_stop_iteration_fails_with_stop_iteration(strategy_name):
    """The same error under every strategy: asyncio runs a plain function inline, and a
    StopIteration raised inside a coroutine would turn into RuntimeError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # asyncio: "no async form"
        got = lambda_fanout.map(partial(xproc.raise_at, StopIteration, 1), range(3), strategy=strategy_name, errors="collect")
    assert [o.value for o in got if o.ok] == [0, 2]
    assert type(got[1].error) is StopIteration


def test_base_exceptions_are_not_swallowed(strategy_name):
    interrupt = partial(xproc.raise_at, KeyboardInterrupt, 2)

    async def ainterrupt(i):
        return interrupt(i)

    with pytest.raises(KeyboardInterrupt):
        lambda_fanout.map(lambda_fanout.Task(interrupt, ainterrupt), range(5), strategy=strategy_name, errors="collect")
    # The next call runs cleanly: nothing stale, nothing pending.
    assert lambda_fanout.map(DOUBLE, range(5), strategy=strategy_name) == [0, 2, 4, 6, 8]


def test_strategy_object_is_a_context_manager(strategy_name):
    with lambda_fanout.get_strategy(strategy_name, max_workers=3) as s:
        assert s.name == strategy_name
        assert s.max_workers == (1 if strategy_name == "sequential" else 3)
        assert s.map(DOUBLE, [1, 2]) == [2, 4]


def test_empty_input(strategy_name):
    assert lambda_fanout.map(DOUBLE, [], strategy=strategy_name) == []
    assert lambda_fanout.map(DOUBLE, iter(()), strategy=strategy_name, errors="collect") == []


def test_items_must_be_iterable(strategy_name):
    with pytest.raises(TypeError):
        lambda_fanout.map(DOUBLE, 5, strategy=strategy_name)
    with pytest.raises(TypeError, match="wrap a single item"):
        lambda_fanout.map(DOUBLE, "abc", strategy=strategy_name)


@pytest.mark.parametrize("items,named", [(None, "None"), (5, "an int")])
def test_items_that_are_not_iterable_are_refused_saying_what_was_passed(strategy_name, items, named):
    with pytest.raises(TypeError, match=f"items must be an iterable of items .* but got {named}; pass the records"):
        lambda_fanout.map(DOUBLE, items, strategy=strategy_name)


def test_the_no_async_form_warning_points_at_the_callers_line():
    """The warning names the user's file and line, whichever entry point they called."""
    import inspect

    def inline_a(x):
        return x

    def inline_b(x):
        return x

    def inline_c(x):
        return x

    async def via_amap():
        return await lambda_fanout.amap(inline_c, [1], strategy="asyncio")

    calls = [
        (lambda: lambda_fanout.map(inline_a, [1], strategy="asyncio"), "lambda_fanout.map(inline_a"),
        (lambda: lambda_fanout.get_strategy("asyncio").map(inline_b, [1]), ".map(inline_b"),
        (lambda: asyncio.run(via_amap()), "lambda_fanout.amap(inline_c"),
    ]
    source, first = inspect.getsourcelines(test_the_no_async_form_warning_points_at_the_callers_line)
    for call, text in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        (warning,) = [w for w in caught if "no async form" in str(w.message)]
        assert warning.filename == __file__, (text, warning.filename)
        line = next(first + i for i, s in enumerate(source) if text in s and "calls" not in s)
        assert warning.lineno == line, (text, warning.lineno, line)


class _Failure(Exception):
    pass


def _failing_with_weakrefs(raised: list):
    import weakref

    def make(i):
        error = _Failure(i)
        raised.append(weakref.ref(error))
        return error

    def fail(i):
        raise make(i)  # no local of this frame, which its traceback keeps, holds the exception

    async def afail(i):
        raise make(i)

    return lambda_fanout.Task(fail, afail)


@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map", "asyncio"])
def test_a_call_s_failures_go_when_its_results_are_dropped(strategy):
    # A failure's traceback keeps the frames that ran it, the ledger's among them; a
    # returned call holds nothing of its records, so no reference cycle keeps the
    # failures (and every frame they hold) until a full garbage collection.
    import gc

    raised: list = []
    task = _failing_with_weakrefs(raised)
    lambda_fanout.map(task, range(3), errors="collect", strategy=strategy)  # warm: pools, loop, imports
    raised.clear()
    gc.collect()
    gc.disable()
    try:
        out = lambda_fanout.map(task, range(40), errors="collect", strategy=strategy)
        assert [type(o.error) for o in out] == [_Failure] * 40 and all(o.error.__traceback__ for o in out)
        del out
        alive = sum(ref() is not None for ref in raised)
    finally:
        gc.enable()
    assert len(raised) == 40 and alive == 0
