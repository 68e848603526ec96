"""Round-2 attacks on lambda-fanout's documented guarantees (processes, auto, batches, testing, bench).

Each test quotes the promise it attacks. Seventeen of them first failed, each showing a
broken promise; all are fixed, and every test here now checks a promise that holds.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import attack_helpers as ah
import lambda_fanout
from fakes import FakeContext
from lambda_fanout import _procpool


@pytest.fixture
def attack_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTACK_DIR", str(tmp_path))
    return str(tmp_path)


def _fresh_pool():
    # One worker, known history: the process-wide pool's idle workers are stopped.
    _procpool.shutdown()


def _pmap(task, items, **kw):
    return lambda_fanout.map(task, items, strategy="processes", **kw)


# == 1. processes =========================================================================

def test_processes_unloadable_result_fails_that_item_alone(attack_dir):
    """README (processes): "An item or result that cannot be pickled fails that item alone, saying so."

    A result whose unpickling raises (it pickled fine in the worker) must fail item 5
    only, in collect mode; instead the ValueError from pickle.loads escapes map itself.
    """
    out = _pmap(ah.unloadable_result, range(8), max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True] * 5 + [False] + [True] * 2


def test_processes_unloadable_item_mid_chunk_fails_alone(attack_dir):
    """README (processes): "An item or result that cannot be pickled fails that item alone, saying so."

    Items 0..3 go one per chunk; then the chunk grows to 256 (items 4..259). Item 10
    pickles but raises when the worker unpickles it: only item 10 should fail.
    """
    _fresh_pool()
    items = list(range(20))
    items[10] = ah.Unloadable()
    out = _pmap(ah.identity, items, max_workers=1, errors="collect")
    failed = [o.index for o in out if not o.ok]
    assert failed == [10], [(o.index, type(o.error).__name__) for o in out if not o.ok]


def test_processes_worker_exit_mid_chunk_no_phantom_deadline(attack_dir):
    """README: DeadlineExceeded is for "Items read but not started" once "the remaining time falls under
    FANOUT_DEADLINE_MARGIN_MS"; processes: the dead worker "is replaced for the next items".

    With no context there is no deadline; a worker that exits at item 10 must not turn
    items 11..19 into DeadlineExceeded (they are run by the replacement, or fail with a
    cause that says what happened).
    """
    _fresh_pool()
    out = _pmap(ah.exit_at, range(20), max_workers=1, errors="collect")
    phantom = [o.index for o in out if isinstance(o.error, lambda_fanout.DeadlineExceeded)]
    assert phantom == []
    # the worker died running item 10: only item 10 is to blame
    assert [o.index for o in out if not o.ok] == [10]


def test_processes_raise_mode_nothing_starts_after_failure(attack_dir):
    """README Guarantees: "errors="raise": nothing starts after the first failure is recorded, under
    every strategy: items queued in an executor are skipped, not run".

    Items 0..3 go one per chunk, then chunks of 256: 4..259 to one worker, 260..515 to
    the other. Item 4 fails once item 260 has begun; items 261.. must not start after.
    """
    with pytest.raises(lambda_fanout.TaskError) as info:
        _pmap(ah.cross_worker, range(2000), max_workers=2)
    assert info.value.index == 4
    events = ah.read_log(attack_dir, "events")
    assert "fail" in events, events[:5]
    after = events[events.index("fail") + 1:]
    assert after == [], f"{len(after)} items started after the failure, e.g. {after[:3]}"


def test_processes_environment_after_unpicklable_item(attack_dir, monkeypatch):
    """README (processes): "a worker runs each call in the caller's environment (sent along when it
    changes), so AWS_* settings and the handler's own variables are the same there".
    """
    _fresh_pool()
    monkeypatch.setenv("ATTACK_VAR", "one")
    assert _pmap(ah.getenv_task, [0], max_workers=1) == ["one"]
    monkeypatch.setenv("ATTACK_VAR", "two")
    out = _pmap(ah.getenv_task, [threading.Lock()], max_workers=1, errors="collect")
    assert not out[0].ok  # the lock fails alone, as documented
    assert _pmap(ah.getenv_task, [0], max_workers=1) == ["two"]


def test_processes_unpicklable_exception_with_bad_str(attack_dir):
    """README (processes): "An exception from a task comes back with the worker's traceback as its
    __cause__". An exception that cannot cross the pipe is sent as text; one whose str()
    also fails must still fail its item alone, not crash the worker.
    """
    _fresh_pool()
    out = _pmap(ah.raise_bad, range(3), max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True, False, True]
    assert not isinstance(out[1].error, _procpool.WorkerError) or "exited" not in str(out[1].error)


def test_processes_cancelled_amap_starts_nothing(attack_dir):
    """README Guarantees: "Cancelling amap (asyncio.wait_for, task.cancel()) starts no further item
    under any strategy and raises CancelledError in the caller at once."
    """
    running = os.path.join(attack_dir, "running")

    async def main():
        task = asyncio.ensure_future(lambda_fanout.amap(ah.slow_log, range(1000), strategy="processes",
                                                        max_workers=1))
        for _ in range(3000):
            if os.path.exists(running):
                break
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(ah.read_log(attack_dir, "events"))

    at_cancel = asyncio.run(main())
    time.sleep(0.5)
    later = len(ah.read_log(attack_dir, "events"))
    # one item may have been mid-start at the cancel
    assert later <= at_cancel + 1, f"{later - at_cancel} items started after the cancel"


def test_processes_zero_margin_unstarted_items_not_started(attack_dir, monkeypatch):
    """README (processes): "Deadline: at the margin, a worker still running is killed; the records it had
    begun are DeadlineExceeded with .started=True, the rest of its chunk .started=False".
    FANOUT_DEADLINE_MARGIN_MS accepts 0. Item 4 hangs; items 5..19 of its chunk never start.
    """
    monkeypatch.setenv("FANOUT_DEADLINE_MARGIN_MS", "0")
    _fresh_pool()
    out = _pmap(ah.hang_at, range(20), max_workers=1, errors="collect", context=FakeContext(1200))
    assert out[4].error is not None and out[4].error.started
    wrongly = [o.index for o in out[5:] if o.error is not None and o.error.started]
    assert wrongly == [], f"never started, reported started: {wrongly}"


# -- attacks that held ---------------------------------------------------------------------

def test_processes_closure_task_config_error_before_reading(attack_dir):
    """README (processes): "A lambda or a closure raises ConfigError at the start of the call, before
    any item is read". Held."""
    read = []

    def gen():
        read.append(1)
        yield 1

    with pytest.raises(lambda_fanout.ConfigError, match="cannot be pickled"):
        _pmap(lambda x: x, gen(), max_workers=1)
    assert read == []


def test_processes_unpicklable_item_fails_alone(attack_dir):
    """README (processes): "An item ... that cannot be pickled fails that item alone, saying so". Held."""
    items = [1, 2, threading.Lock(), 4]
    out = _pmap(ah.identity, items, max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True, True, False, True]
    assert "pickled" in str(out[2].error)


def test_processes_hung_item_killed_and_next_call_works(attack_dir):
    """README: "a worker process still running an item at the margin is killed (SIGKILL) and replaced
    on the next use, so a hung item holds neither this invocation nor the next". Held: the
    call returns at the margin, the hung item is started=True, the ones after it
    started=False, and the next call runs on a replacement.
    """
    _fresh_pool()
    ctx = FakeContext(1500)
    t0 = time.monotonic()
    out = _pmap(ah.hang_at, range(20), max_workers=1, errors="collect", context=ctx)
    assert time.monotonic() - t0 < 1.4
    assert isinstance(out[4].error, lambda_fanout.DeadlineExceeded) and out[4].error.started
    later = [o for o in out[5:] if not o.ok]
    assert later and all(isinstance(o.error, lambda_fanout.DeadlineExceeded) and not o.error.started
                         for o in later)
    assert _pmap(ah.identity, range(10), max_workers=1) == list(range(10))


def test_processes_finished_items_not_lost_at_deadline(attack_dir):
    """README (map): at the margin "a task still running then (a hung call)" comes back with
    .started == True, "its late result ignored". Items 2 and 3 finish at once, about a
    second before the margin; only the hung item 4 was still running. (The processes
    section words it "the records it had begun", which makes every finished item of
    the hung item's chunk, up to 255, a failure to redeliver.)
    """
    _fresh_pool()
    out = _pmap(ah.hang_at, range(20), max_workers=1, errors="collect", context=FakeContext(1500))
    assert [o.ok for o in out[:4]] == [True] * 4, [o.error for o in out[:4]]


def test_processes_keyboard_interrupt_and_system_exit_propagate(attack_dir):
    """README (processes): "KeyboardInterrupt and SystemExit propagate". Held; the next call works."""
    with pytest.raises(KeyboardInterrupt):
        _pmap(ah.interrupt_at, range(8), max_workers=2)
    with pytest.raises(SystemExit) as info:
        _pmap(ah.sysexit_at, range(8), max_workers=2, errors="collect")
    assert info.value.code == 7
    assert _pmap(ah.identity, range(50), max_workers=2) == list(range(50))


def test_processes_input_iterator_raises(attack_dir):
    """README Guarantees: "An exception from the input iterator ends the input: the items read before it
    still run ..., then the exception propagates unchanged, with a note". Held under processes."""

    class Boom(Exception):
        pass

    def gen():
        yield from range(5)
        raise Boom("input broke")

    with pytest.raises(Boom) as info:
        _pmap(ah.identity, gen(), max_workers=2)
    assert any("5 items were read" in note for note in info.value.__notes__)


def test_processes_concurrent_maps_from_threads(attack_dir):
    """Several threads calling map under processes at once share one pool: each gets its own results,
    in order. Held."""
    barrier = threading.Barrier(4)
    results, errors = {}, []

    def call(n):
        try:
            barrier.wait(5)
            results[n] = _pmap(ah.identity, range(n * 100, n * 100 + 60), max_workers=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(results[n] == list(range(n * 100, n * 100 + 60)) for n in range(4))


def _children_states() -> dict[int, str]:
    # Children of this process and of its children (the forkserver's workers).
    me, found = {os.getpid()}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            found[int(entry)] = (fields[0], int(fields[1]))
    mine = {pid: st for pid, (st, ppid) in found.items() if ppid in me}
    grand = {pid: st for pid, (st, ppid) in found.items() if ppid in mine}
    return {**mine, **grand}


def test_processes_no_zombie_after_deadline_kill(attack_dir):
    """README Guarantees: under processes "a worker process still running an item at the margin is killed
    (SIGKILL) ..., and no thread or process of the call is left behind"; "No zombie". Held
    (the workers are the forkserver's children, and it reaps them), and no driver thread
    is left.
    """
    _fresh_pool()
    _pmap(ah.identity, range(4), max_workers=1)
    before = set(_children_states())
    _pmap(ah.hang_at, range(8), max_workers=1, errors="collect", context=FakeContext(1000))
    time.sleep(0.3)  # SIGKILL is delivered at once; give the kernel ample time
    zombies = [pid for pid, state in _children_states().items() if state == "Z"]
    assert zombies == [], f"zombie children {zombies} (children before: {sorted(before)})"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fanout-processes")]


# == 2. FANOUT_MAX_WORKERS=auto ==========================================================

AUTO_STRATEGIES = ["threads", "threads-map", "asyncio"]


@pytest.mark.parametrize("strategy", AUTO_STRATEGIES)
def test_auto_odd_exception_properties_fail_the_item(strategy):
    """README: errors="collect" gives "one lambda_fanout.Outcome per item read"; Throttling: auto reads
    a signal from ".response of botocore's shape, .status, .status_code". An exception whose
    property raises is just a failure of its item, not of the call.
    """
    out = lambda_fanout.map(ah.odd_failure, range(8), strategy=strategy, max_workers="auto:4",
                            errors="collect")
    assert [o.ok for o in out] == [True, True, True, False, True, False, True, True]


@pytest.mark.parametrize("strategy", AUTO_STRATEGIES)
def test_auto_cyclic_cause_is_not_a_hang(strategy):
    """An exception whose __cause__ chain is a cycle is classified in bounded time (held)."""
    out = lambda_fanout.map(ah.cyclic_failure, range(4), strategy=strategy, max_workers="auto",
                            errors="collect")
    assert [o.ok for o in out] == [True, False, True, True]


@pytest.mark.parametrize("raw", ["auto:0", "auto:", "auto:1025", "auto:-1", "auto:1.5", "auto8", "auto:８",
                                 "auto:8:2", "autox"])
def test_auto_parsing_rejects_bad_caps(raw, monkeypatch):
    """README: a wrong value "fails ... at once with the variable and its value in the message". Held."""
    monkeypatch.setenv("FANOUT_MAX_WORKERS", raw)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.get_strategy("threads")
    assert "FANOUT_MAX_WORKERS" in str(info.value) and repr(raw) in str(info.value)


def test_auto_object_cap_is_validated():
    """_config.resolve_workers: "Raises: ConfigError: anything else, naming the source, repeating the value
    and listing what is accepted." An Auto(cap=0) is accepted as is."""
    from lambda_fanout._config import Auto

    with pytest.raises(lambda_fanout.ConfigError):
        lambda_fanout.map(ah.identity, range(4), strategy="threads", max_workers=Auto(0))


# == 3. batch sources =====================================================================

def test_processes_fifo_batch_hung_record_killed_every_record_reported(attack_dir):
    """README (batches): "With context, records not started before the deadline margin are reported as
    failures ...: none is lost"; "After a record fails, the later records of its group are not
    started and are reported failed". Under processes, with a record hung in a worker. Held.
    """
    from lambda_fanout_dev import events

    event = events.sqs(12, groups=[f"g{i % 3}" for i in range(12)])  # FIFO: g0 = 0,3,6,9; g1 = 1,4,7,10
    t0 = time.monotonic()
    reply = lambda_fanout.process_batch(event, ah.batch_hang, FakeContext(2000), strategy="processes",
                                        max_workers=3)
    assert time.monotonic() - t0 < 1.9
    failed = {f["itemIdentifier"] for f in reply["batchItemFailures"]}
    ids = [r["messageId"] for r in event["Records"]]
    done = {int(line.split()[1]) for line in ah.read_log(attack_dir, "events")}
    # every record is processed (and not reported) or reported; group g1 stops at 1, g2 at 5
    assert {ids[i] for i in (1, 4, 7, 10, 5, 8, 11)} <= failed
    assert all((i in done) != (ids[i] in failed) for i in range(12)), (sorted(done), failed)


# == 4. the bench's recommendation ========================================================

def _row(impl, data, *, cpu=0.1, workers=None, check="ok", check_ok=True, kind="strategy"):
    return {"section": "main", "workload": "latency", "impl": impl, "kind": kind, "workers": workers,
            "items": 100, "profile": None, "control": False, "data": list(data), "cpu_ms_per_item": cpu,
            "check": check, "check_ok": check_ok}


SEQ = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01]


def test_bench_never_recommends_a_wrong_result():
    """README (bench): the report shows "whether the result was right" and "recommends a strategy per
    workload". A strategy whose results were wrong (here: threads, 3 records missing) is
    no recommendation at all, however fast it ran."""
    from lambda_fanout.bench.report import choose

    rows = [_row("sequential", SEQ, cpu=0.05),
            _row("threads", [x / 10 for x in SEQ], workers=16, check="WRONG: 3 records missing", check_ok=False),
            _row("asyncio", [x / 4 for x in SEQ], workers=16, cpu=0.2)]
    pick, text = choose(rows)
    assert pick["impl"] != "threads", text


def test_bench_keep_sequential_claim_holds_for_every_strategy():
    """README: "Two rows differ measurably only when the 95% bootstrap confidence interval ... lies wholly
    beyond the workload's noise floor". choose() says of sequential "every other strategy is
    measurably slower"; here asyncio's median is slower but its interval overlaps 1x."""
    from lambda_fanout.bench.report import choose
    from lambda_fanout.bench.stats import ratio

    noisy = [0.5, 0.6, 1.6, 1.7, 1.15, 1.2, 0.55, 1.65]  # median 1.175
    rows = [_row("sequential", SEQ), _row("threads", [x * 1.1 for x in SEQ], workers=16),
            _row("asyncio", noisy, workers=16)]
    assert not ratio(noisy, SEQ).measurable  # the data: asyncio is not measurably slower
    pick, text = choose(rows)
    assert pick["impl"] == "sequential"
    assert "every other strategy is measurably slower" not in text, text


def test_bench_processes_below_one_never_recommended():
    """README: "The report keeps sequential wherever the speed-up is not measurable". processes at 0.8x
    and threads within noise: sequential is kept. Held."""
    from lambda_fanout.bench.report import choose

    rows = [_row("sequential", SEQ), _row("processes", [x * 1.25 for x in SEQ], workers=2),
            _row("threads", [x * 1.01 for x in SEQ], workers=16)]
    pick, text = choose(rows)
    assert pick["impl"] == "sequential" and "no measurable difference" in text



def test_auto_batch_odd_exception_reported_as_record_failure():
    """README (batches): partial failures "with correct partial-failure responses"; brief: "A record is
    always either processed or reported failed". Under FANOUT_MAX_WORKERS=auto the record
    whose exception has a raising .response property must be reported in batchItemFailures.
    """
    from lambda_fanout_dev import events

    event = events.sqs(6)
    reply = lambda_fanout.process_batch(event, ah.batch_odd, strategy="threads", max_workers="auto")
    assert reply == {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["messageId"]}]}


# == more: processes held, handler init, invoke's --event ===================================

def test_processes_worker_sigkilled_mid_item_fails_that_item_alone(attack_dir):
    """A worker killed by a signal mid-item (the OOM killer, say): that item fails with an error saying the
    worker exited, the next items run on a replacement. Held (single-item chunks)."""
    _fresh_pool()
    out = _pmap(ah.kill_self_at_1, range(3), max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True, False, True]
    assert "exited" in str(out[1].error)


def test_processes_amap_results_in_order(attack_dir):
    """README: "await lambda_fanout.amap(...) in async handlers"; results in input order. Held under processes."""

    async def main():
        return await lambda_fanout.amap(ah.identity, range(300), strategy="processes", max_workers=2)

    assert asyncio.run(main()) == list(range(300))


@pytest.mark.parametrize("event, says", [
    ([{"messageId": "1"}], "Supported event shapes"),
    ({"eventSource": "aws:kafka", "records": {"t-0": [{"offset": "7"}]}}, "integer 'offset'"),
    ({"eventSource": "aws:kafka", "records": [{"offset": 7}]}, "expected an object mapping"),
    ({"Records": [{"eventSource": "aws:sqs", "messageId": "a"}, {"eventSource": "aws:kinesis"}]}, "mixes"),
    ({"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]}, "kinesis.sequenceNumber"),
])
def test_batch_malformed_events_named(event, says):
    """README (batches): "An event of no known shape, an empty or mixed batch, a non-object record or a record
    without its identifier raises ValueError before any record runs, saying what is wrong". Held."""
    ran = []
    with pytest.raises(ValueError, match=says):
        lambda_fanout.process_batch(event, ran.append, strategy="threads")
    assert ran == []


def test_handler_init_unpicklable_record_handler_names_the_variable(tmp_path):
    """README (batches): "The record handler, strategy and metrics settings are resolved at init: a missing
    or wrong value fails the function at once with the variable and its value in the message."
    """
    import subprocess
    import sys

    env = {**os.environ, "FANOUT_STRATEGY": "processes", "FANOUT_RECORD_HANDLER": "attack_helpers.lambda_record",
           "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.run([sys.executable, "-c", "import lambda_fanout.handler"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "ConfigError" in proc.stderr
    assert "FANOUT_RECORD_HANDLER" in proc.stderr and "attack_helpers.lambda_record" in proc.stderr, \
        proc.stderr.splitlines()[-1]


def test_invoke_event_spec_superscript_count():
    """Brief/README (invoke): a generated sample is KIND:N; bad input gets "a clear error: what was wrong,
    what was expected". load_event's other bad counts say "N must be a whole number from 1 to 10000"."""
    from lambda_fanout_dev.invoke import load_event

    with pytest.raises(ValueError, match="N must be a whole number"):
        load_event("sqs:²")


def test_processes_batch_killed_worker_replaced_at_once(attack_dir):
    """README (processes): "Deadline: at the margin, a worker still running is killed ... Its replacement
    starts at once and imports the task in the background" (as it does under map)."""
    from lambda_fanout_dev import events

    _fresh_pool()
    lambda_fanout.process_batch(events.sqs(1), ah.batch_hang, strategy="processes", max_workers=1)  # warm
    pool = _procpool.get_pool()
    assert pool.idle() == 1
    reply = lambda_fanout.process_batch(events.sqs(3), ah.batch_hang, FakeContext(1200), strategy="processes",
                                        max_workers=1)
    assert {"itemIdentifier": "msg-00001"} in reply["batchItemFailures"]
    deadline = time.monotonic() + 2
    while pool.idle() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.idle() == 1, "no replacement worker after the deadline kill"


def test_auto_concurrent_calls_keep_their_throttled_count(monkeypatch, capsys):
    """README (metrics): "One EMF line on stdout per map ... call": "Throttled the throttling signals seen";
    auto: "Two concurrent calls of the same task and strategy share one limiter". Call A is
    throttled once; call B of the same task starts while A runs; A's line must count it.
    """
    import json

    from lambda_fanout import _limiter

    monkeypatch.setenv("FANOUT_METRICS", "on")
    _limiter.forget()
    ah.B_STARTED.clear()
    out = {}
    a = threading.Thread(target=lambda: out.setdefault("A", lambda_fanout.map(
        ah.shared_task, [("A", 0), ("A", 1)], strategy="threads", max_workers="auto:4", errors="collect")))
    a.start()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        learned = _limiter.learned(ah.shared_task, "threads")
        if learned is not None and learned.throttled >= 1:
            break
        time.sleep(0.005)
    lambda_fanout.map(ah.shared_task, [("B", 0)], strategy="threads", max_workers="auto:4")
    a.join(10)
    assert not out["A"][0].ok and out["A"][1].ok
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert sorted(line["Items"] for line in lines) == [1, 2]
    a_line = next(line for line in lines if line["Items"] == 2)
    assert a_line["Throttled"] >= 1, a_line
