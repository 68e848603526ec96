"""max_workers="auto" under every concurrent strategy: the ledger's guarantees while the
limit moves, the pool following it, and what the metrics say."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lambda_fanout
import xproc
from xproc import make_task
from lambda_fanout import _limiter


@pytest.fixture(params=[s for s in lambda_fanout.STRATEGIES if s not in ("sequential", "processes")])
def concurrent_strategy(request) -> str:
    """Each strategy auto adapts: not sequential (one at a time) nor processes (one per vCPU)."""
    return request.param


class Scripted(_limiter.Limiter):
    """A limiter whose limit follows a script, one step per completion, so the strategies
    see it rise and fall as fast as it ever can."""

    __slots__ = ("script",)

    def _record(self, started, now, in_use, ok):  # every completion, however the strategy times it
        super()._record(started, now, in_use, ok)
        with self._lock:
            if self.script:
                self.limit = self.script.pop(0)
                self.peak = max(self.peak, self.limit)


class Peak:
    """Counts how many calls run at once."""

    def __init__(self):
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 120), script=st.lists(st.integers(1, 12), max_size=80),
       failing=st.sets(st.integers(0, 119), max_size=10), delays=st.lists(st.sampled_from([0.0, 0.001]), max_size=120))
def test_a_moving_limit_keeps_order_and_loses_nothing(concurrent_strategy, monkeypatch, n, script, failing, delays):
    made = []

    def limiter_for(task, strategy, workers, settings=()):
        lim = Scripted(workers.cap, initial=script[0] if script else 4)
        lim.script = list(script)
        made.append(lim)
        return lim

    monkeypatch.setattr(_limiter, "limiter_for", limiter_for)
    items = list(enumerate(range(n)))
    task = make_task(delays, failing)
    peak = Peak()
    inner_sync, inner_async = task.sync_fn, task.async_fn

    def sync_fn(item):
        with peak:
            return inner_sync(item)

    async def async_fn(item):
        with peak:
            return await inner_async(item)

    expected = lambda_fanout.map(task, items, strategy="sequential", errors="collect")
    got = lambda_fanout.map(lambda_fanout.Task(sync_fn, async_fn), items, strategy=concurrent_strategy,
                            max_workers="auto:12", errors="collect")
    assert got == expected
    assert len(made) == 1
    # Never more in flight than the highest limit it was given (threads-map: than its
    # pool, the cap, as it hands executor.map whole windows).
    assert peak.peak <= (12 if concurrent_strategy == "threads-map" else made[0].peak)


def test_auto_grows_on_a_latency_bound_task_and_persists(concurrent_strategy):
    _limiter.forget()
    peak = Peak()

    def wait(x):
        with peak:
            time.sleep(0.01)
        return x

    async def await_(x):
        with peak:
            await asyncio.sleep(0.01)
        return x

    task = lambda_fanout.Task(wait, await_)
    assert lambda_fanout.map(task, range(600), strategy=concurrent_strategy, max_workers="auto:128") == list(range(600))
    lim = _limiter.learned(task, concurrent_strategy)
    assert lim.peak > _limiter.INITIAL_LIMIT, lim  # (a loaded machine may shrink it again later)
    assert peak.peak > _limiter.INITIAL_LIMIT
    # A second (warm) call starts where the first ended.
    learned = lim.limit
    lambda_fanout.map(task, range(50), strategy=concurrent_strategy, max_workers="auto:128")
    assert lim.history[0] == (0.0, learned)
    _limiter.forget()


def test_emf_reports_peak_and_throttled(monkeypatch, capsys):
    _limiter.forget()
    monkeypatch.setenv("FANOUT_METRICS", "on")

    class SlowDown(Exception):
        response = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}

    def task(x):
        if x % 10 == 0:
            raise SlowDown()
        time.sleep(0.002)
        return x

    out = lambda_fanout.map(task, range(100), strategy="threads", max_workers="auto:32", errors="collect")
    assert sum(not o.ok for o in out) == 10
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"WorkersPeak", "Throttled"} <= names
    assert doc["Throttled"] == 10
    assert doc["Workers"] == 32
    assert 1 <= doc["WorkersPeak"] <= 32
    lambda_fanout.map(task, [1, 2], strategy="threads", max_workers=5)
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["Throttled"] == 0 and doc["WorkersPeak"] == doc["Workers"] == 5
    _limiter.forget()


def test_process_batch_under_auto_counts_the_record_handlers_throttles(concurrent_strategy, monkeypatch, capsys):
    """process_batch (the zero-code handler's engine) under auto: every record reported,
    and throttling errors the record handler raised are signals, though the batch
    layer catches them per record."""
    import batches

    _limiter.forget()
    monkeypatch.setenv("FANOUT_METRICS", "on")

    class Throttled(Exception):
        response = {"Error": {"Code": "ThrottlingException"}}

    def handle(record):
        n = int(record["messageId"].split("-")[1])
        if n % 7 == 0:
            raise Throttled()
        time.sleep(0.001)

    async def ahandle(record):
        return handle(record)

    event = batches.sqs(70)
    out = lambda_fanout.process_batch(event, lambda_fanout.Task(handle, ahandle),
                                      strategy=concurrent_strategy, max_workers="auto:16")
    failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
    assert failed == {f"msg-{i:05d}" for i in range(70) if i % 7 == 0}
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["Throttled"] == 10 and doc["Workers"] == 16 and doc["Items"] == 70
    _limiter.forget()


def test_sequential_accepts_auto_and_runs_one_at_a_time():
    strat = lambda_fanout.get_strategy("sequential", max_workers="auto")
    assert strat.max_workers == 1
    assert strat.map(lambda x: x * 2, range(5)) == [0, 2, 4, 6, 8]
    assert strat.start(abs, [1]).limiter is None
    assert lambda_fanout.get_strategy("threads", max_workers="auto:8").start(abs, [1]).limiter.cap == 8


def test_processes_takes_auto_as_its_vcpu_count_within_the_cap(monkeypatch):
    from lambda_fanout._procpool import vcpus

    strat = lambda_fanout.get_strategy("processes", max_workers="auto")
    assert strat.settings.max_workers == strat.max_workers == vcpus()
    assert lambda_fanout.get_strategy("processes", max_workers="auto:1").max_workers == 1
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "auto")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    assert lambda_fanout.get_strategy("processes").max_workers == 1  # 128 MB: one vCPU at most
    assert lambda_fanout.get_strategy("processes").start(abs, [1]).limiter is None


def test_bad_auto_fails_at_init_naming_it(monkeypatch):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "auto:many")
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_MAX_WORKERS.*'auto:many'"):
        lambda_fanout.get_strategy("threads")


# -- failures auto has to classify ---------------------------------------------------------

AUTO_STRATEGIES = ["threads", "threads-map", "asyncio"]


@pytest.mark.parametrize("strategy", AUTO_STRATEGIES)
def test_auto_odd_exception_properties_fail_the_item(strategy):
    """README: errors="collect" gives "one lambda_fanout.Outcome per item read"; Throttling: auto reads
    a signal from ".response of botocore's shape, .status, .status_code". An exception whose
    property raises is just a failure of its item, not of the call.
    """
    out = lambda_fanout.map(xproc.odd_failure, range(8), strategy=strategy, max_workers="auto:4",
                            errors="collect")
    assert [o.ok for o in out] == [True, True, True, False, True, False, True, True]


@pytest.mark.parametrize("strategy", AUTO_STRATEGIES)
def test_auto_cyclic_cause_is_not_a_hang(strategy):
    """An exception whose __cause__ chain is a cycle is classified in bounded time."""
    out = lambda_fanout.map(xproc.cyclic_failure, range(4), strategy=strategy, max_workers="auto",
                            errors="collect")
    assert [o.ok for o in out] == [True, False, True, True]


def test_auto_batch_odd_exception_reported_as_record_failure():
    """README (batches): partial failures "with correct partial-failure responses"; a record is
    always either processed or reported failed. Under FANOUT_MAX_WORKERS=auto the record
    whose exception has a raising .response property is reported in batchItemFailures.
    """
    from lambda_fanout_dev import events

    event = events.sqs(6)
    reply = lambda_fanout.process_batch(event, xproc.batch_odd, strategy="threads", max_workers="auto")
    assert reply == {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["messageId"]}]}


def test_auto_concurrent_calls_keep_their_throttled_count(monkeypatch, capsys):
    """README (metrics): "One EMF line on stdout per map ... call": "Throttled the throttling signals seen";
    auto: "Two concurrent calls of the same task and strategy share one limiter". Call A is
    throttled once; call B of the same task starts while A runs; A's line counts it.
    """
    monkeypatch.setenv("FANOUT_METRICS", "on")
    _limiter.forget()
    xproc.B_STARTED.clear()
    out = {}
    a = threading.Thread(target=lambda: out.setdefault("A", lambda_fanout.map(
        xproc.shared_task, [("A", 0), ("A", 1)], strategy="threads", max_workers="auto:4", errors="collect")))
    a.start()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        learned = _limiter.learned(xproc.shared_task, "threads")
        if learned is not None and learned.throttled >= 1:
            break
        time.sleep(0.005)
    lambda_fanout.map(xproc.shared_task, [("B", 0)], strategy="threads", max_workers="auto:4")
    a.join(10)
    assert not out["A"][0].ok and out["A"][1].ok
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert sorted(line["Items"] for line in lines) == [1, 2]
    a_line = next(line for line in lines if line["Items"] == 2)
    assert a_line["Throttled"] >= 1, a_line


# -- the limit within [1, cap] -----------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map", "asyncio"])
def test_auto_limit_within_cap_when_tasks_fail_hang_and_throttle(strategy, fake_context):
    """Promise (Adaptive concurrency): "The limit stays within [1, cap] ... threads-map ...
    may run up to twice the limit, never more than the cap"; every item read ends exactly once."""
    from lambda_fanout import DeadlineExceeded

    _limiter.forget()
    xproc.GAUGE.__init__()
    items = list(range(400))
    try:
        got = lambda_fanout.map(xproc.rough, items, strategy=strategy, max_workers="auto:8", errors="collect",
                                context=fake_context(1500))
    finally:
        # The hung item (3 s) outlives the call's deadline. Under asyncio it holds the shared
        # event loop, so the next test's first call would start late: wait for it to end.
        xproc.GAUGE.wait_idle(5.0)
    assert xproc.GAUGE.peak <= 8
    assert [o.index for o in got] == list(range(len(got)))
    for o in got:
        if o.ok:
            assert o.value == o.index
        elif not isinstance(o.error, DeadlineExceeded):
            assert o.index % 7 == 0 or o.index % 11 == 0, o
    limiter = _limiter.learned(xproc.rough, strategy)
    if limiter is not None:
        assert 1 <= limiter.limit <= 8 and all(1 <= limit <= 8 for _, limit in limiter.history)


@pytest.mark.parametrize("strategy", ["threads", "threads-map", "asyncio"])
def test_auto_very_fast_tasks(strategy):
    """Promise (Adaptive concurrency): under auto, results in input order, limit within
    [1, cap], very fast tasks timed one in a stride."""
    _limiter.forget()
    xproc.GAUGE.__init__()
    got = lambda_fanout.map(xproc.fast, range(20_000), strategy=strategy, max_workers="auto:4")
    assert list(got) == [i * 2 for i in range(20_000)]
    assert xproc.GAUGE.peak <= 4
    limiter = _limiter.learned(xproc.fast, strategy)
    assert 1 <= limiter.limit <= 4


def _pinned(script):
    """limiter_for's stand-in: a limiter whose limit follows ``script`` (then stays)."""
    made = []

    def limiter_for(task, strategy, workers, settings=()):
        lim = Scripted(workers.cap, initial=script[0])
        lim.script = list(script)
        made.append(lim)
        return lim

    return limiter_for, made


def _pool_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fanout_")]


def test_threads_under_auto_run_on_as_many_threads_as_the_limit_and_no_more_than_a_fallen_one(monkeypatch):
    # 8 at a time for the first 40 completions, then 2: the threads beyond the limit
    # stand down as their jobs end, and the queued backlog runs 2 at a time.
    limiter_for, made = _pinned([8] * 40 + [2] * 1000)
    monkeypatch.setattr(_limiter, "limiter_for", limiter_for)
    started = []
    lock = threading.Lock()
    late = Peak()

    def job(x):
        with lock:
            started.append(threading.current_thread().name)
            position = len(started)
        if position > 60:  # well after the fall: every thread of the 8 has ended a job since
            with late:
                time.sleep(0.002)
        else:
            time.sleep(0.002)
        return x

    assert lambda_fanout.map(job, range(120), strategy="threads", max_workers="auto:64") == list(range(120))
    assert len(set(started[:40])) <= 8  # threads follow the limit, not the cap of 64
    assert late.peak <= 2
    assert _pool_threads() == []  # every pool thread ended with the call


@pytest.mark.parametrize("workers", [32, "auto"])
@pytest.mark.parametrize("started", [0, 3, 16])
def test_threads_raise_the_systems_refusal_of_a_thread_and_leave_none_running(monkeypatch, capfd, workers, started):
    """Refused once ``started`` threads run, also while a limit grows past them: the call
    raises the refusal as a fixed pool does, no worker dies of it (no thread's traceback
    on stderr), and no thread is left."""
    def refuse(self):
        if self.name.startswith("fanout") and len(_pool_threads()) >= started:
            raise RuntimeError("can't start new thread")
        return start(self)

    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", refuse)
    limiter_for, _ = _pinned([16] * 20 + [32] * 1000)  # grows past 16 threads mid-call
    monkeypatch.setattr(_limiter, "limiter_for", limiter_for)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        # Jobs long enough that a backlog stays queued (no thread waits idle) on a loaded machine.
        lambda_fanout.map(partial(xproc.sleep_then, 0.03), range(300), strategy="threads", max_workers=workers)
    monkeypatch.undo()
    assert _pool_threads() == []
    assert "Exception in thread" not in capfd.readouterr().err


@pytest.mark.parametrize("workers", [16, "auto"])
@pytest.mark.parametrize("nth", [1, 3, 10])
@pytest.mark.parametrize("began", [True, False])
def test_an_interrupt_while_a_thread_starts_propagates_and_leaves_no_thread(monkeypatch, workers, nth, began):
    """A signal's KeyboardInterrupt can land in Thread.start before or after the thread
    began: the call raises it (nothing else), and no thread is left waiting for work
    (which would hold the interpreter's exit)."""
    calls = []

    def interrupted(self):
        if began or not self.name.startswith("fanout"):
            start(self)
        if self.name.startswith("fanout"):
            calls.append(self.name)
            if len(calls) == nth:
                raise KeyboardInterrupt
            if not began:
                start(self)

    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", interrupted)
    if workers == "auto":
        limiter_for, _ = _pinned([16])
        monkeypatch.setattr(_limiter, "limiter_for", limiter_for)
    with pytest.raises(KeyboardInterrupt):
        lambda_fanout.map(partial(xproc.sleep_then, 0.005), range(40), strategy="threads", max_workers=workers)
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while _pool_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _pool_threads() == []


def test_a_task_whose_results_are_false_is_timed_like_any_other(concurrent_strategy):
    _limiter.forget()

    def wait(x):
        time.sleep(0.01)
        return False

    async def await_(x):
        await asyncio.sleep(0.01)
        return False

    task = lambda_fanout.Task(wait, await_)
    assert lambda_fanout.map(task, range(600), strategy=concurrent_strategy, max_workers="auto:128") == [False] * 600
    assert _limiter.learned(task, concurrent_strategy).peak > _limiter.INITIAL_LIMIT
    _limiter.forget()


@pytest.mark.parametrize("workers", [16, "auto"])
def test_an_interrupt_during_the_pools_shutdown_leaves_no_thread_for_long(monkeypatch, workers):
    """A signal's KeyboardInterrupt landing in the pool's shutdown (as it queues the
    sentinel that ends idle threads) propagates, and the pool's threads still end."""
    from lambda_fanout.strategies import threads as threads_module

    fired = []

    class InterruptedOnce(queue.SimpleQueue):
        def put(self, item, *args, **kwargs):
            super().put(item, *args, **kwargs)
            if item is None and not fired:
                fired.append(True)
                raise KeyboardInterrupt

    monkeypatch.setattr(threads_module.queue, "SimpleQueue", InterruptedOnce)
    with pytest.raises(KeyboardInterrupt):
        lambda_fanout.map(partial(xproc.sleep_then, 0.002), range(100), strategy="threads", max_workers=workers)
    monkeypatch.undo()
    assert fired
    deadline = time.monotonic() + 5
    while _pool_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pool_threads() == []


def test_threads_under_auto_hand_slow_input_to_an_idle_thread_rather_than_start_more():
    names = set()

    def job(x):
        names.add(threading.current_thread().name)
        return x

    def arriving():
        for i in range(20):
            time.sleep(0.01)
            yield i

    for workers in (16, "auto"):
        names.clear()
        assert lambda_fanout.map(job, arriving(), strategy="threads", max_workers=workers) == list(range(20))
        assert len(names) <= 2, (workers, names)  # one thread, or two where a job and a read overlap


def test_threads_under_auto_run_a_burst_after_a_pause_in_the_input_on_as_many_threads_as_the_limit(monkeypatch):
    """A thread that waited idle through a pause takes one job of the burst that follows,
    not all of them: the rest get threads of their own, up to the limit."""
    limiter_for, _ = _pinned([16])
    monkeypatch.setattr(_limiter, "limiter_for", limiter_for)
    peak = Peak()

    def job(x):
        with peak:
            time.sleep(0.02)
        return x

    def paused():
        yield -1
        time.sleep(0.2)  # the one thread finishes item -1 and waits idle
        yield from range(64)

    assert lambda_fanout.map(job, paused(), strategy="threads", max_workers="auto:64") == [-1, *range(64)]
    assert peak.peak > 8  # near the limit of 16, never one at a time
