"""The ``processes`` strategy: what only it promises, and proof it runs where Lambda has no /dev/shm."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

import lambda_fanout
import resources
import xproc
from fakes import FakeContext
from lambda_fanout import ConfigError, DeadlineExceeded, TaskError, _procpool
from lambda_fanout._failures import MAX_FRAMES, ForeignTraceback

# Worker pools killed and replaced at deadlines of a few hundred ms: these run alone.
pytestmark = pytest.mark.serial


def test_dev_shm_is_unusable_when_the_harness_says_so():
    if not os.environ.get("TEST_WITHOUT_DEV_SHM"):
        pytest.skip("runs where /dev/shm is unusable (tests/without-dev-shm: part 2 of ./build.sh test, "
                    "and test_no_dev_shm.py)")
    import multiprocessing

    with pytest.raises(OSError):
        multiprocessing.Lock()


# -- the strategy ---------------------------------------------------------------------------

def test_a_task_that_runs_processes_again_fails_its_item_saying_what_to_do():
    """A worker process cannot start workers of its own: a nested processes map is a ConfigError
    that names the way out, and a nested threads map runs."""
    got = lambda_fanout.map(xproc.nested_map, ["processes", "threads"], strategy="processes", max_workers=2,
                            errors="collect")
    assert isinstance(got[0].error, ConfigError), got[0].error
    assert "inside a task that itself runs under 'processes'" in str(got[0].error)
    assert "strategy='threads'" in str(got[0].error)
    assert got[1].value == [0, -1, -2]


def test_cpu_items_in_order_over_reused_workers():
    pool = _procpool.get_pool()
    out = lambda_fanout.map(xproc.parse, [50] * 400, strategy="processes", max_workers=2)
    assert out == [50] * 400
    started = pool.started
    pids = set(lambda_fanout.map(xproc.pid, range(64), strategy="processes", max_workers=2))
    assert pool.started == started and len(pids) <= 2 and os.getpid() not in pids


def test_unpicklable_task_refused_before_any_item_is_read():
    read = []

    def items():
        read.append(1)
        yield 1

    factor = 3
    for task in (lambda x: x, lambda x: x * factor):
        with pytest.raises(ConfigError, match="cannot be pickled"):
            lambda_fanout.map(task, items(), strategy="processes")
    assert read == []


@pytest.mark.parametrize("fn, kind", [(xproc.interrupt_on, KeyboardInterrupt), (xproc.exit_on, SystemExit)])
def test_base_exception_from_a_worker_propagates(fn, kind):
    with pytest.raises(kind):
        lambda_fanout.map(fn, range(10), strategy="processes", max_workers=2, errors="collect")


def test_raise_and_collect():
    with pytest.raises(TaskError) as info:
        lambda_fanout.map(xproc.fail_on_odd, range(6), strategy="processes", max_workers=2)
    # Two workers: whichever odd item fails first stops the other worker before its next item,
    # so item 1 (sent to a worker still starting) may never start when item 3 fails first.
    assert info.value.index in (1, 3, 5) and isinstance(info.value.__cause__, ValueError)
    outcomes = lambda_fanout.map(xproc.fail_on_odd, range(6), strategy="processes", errors="collect")
    assert [o.ok for o in outcomes] == [True, False] * 3


def test_hung_item_is_killed_at_the_deadline_and_its_worker_replaced(fake_context):
    pool = _procpool.get_pool()
    t0 = time.monotonic()
    outcomes = lambda_fanout.map(
        xproc.sleep_s, [60, 0.01, 0.01, 60], strategy="processes", max_workers=2,
        errors="collect", context=fake_context(1500),
    )
    took = time.monotonic() - t0
    assert took < 1.5, took
    assert [type(o.error) for o in outcomes if not o.ok] and all(
        isinstance(o.error, DeadlineExceeded) for o in outcomes if not o.ok
    )
    assert len(outcomes) == 4
    assert _sleepers() == [], "a killed worker still runs"
    assert lambda_fanout.map(xproc.square, [7], strategy="processes") == [49]
    assert pool.idle() <= 2


def _sleepers() -> list[int]:
    # Worker processes still alive (not zombies) that run xproc.sleep_s.
    found = []
    for pid in _descendants():
        if _state(pid) not in ("Z", None) and _busy_sleeping(pid):
            found.append(pid)
    return found


def _busy_sleeping(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "nanosleep" in f.read() or "hrtimer" in f.read()
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _descendants() -> list[int]:
    todo, seen = [os.getpid()], []
    while todo:
        for child in _children(todo.pop()):
            seen.append(child)
            todo.append(child)
    return seen


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _resources() -> tuple[int, int, int]:
    """(fds, threads, descendant processes) once a call's background work is over.

    A killed worker is reaped, and its replacement started, after the call returns.
    """
    pool = _procpool.get_pool()
    until = time.monotonic() + 10
    while (pool.reap() or threading.active_count() > 1) and time.monotonic() < until:
        time.sleep(0.01)
    gc.collect()
    return len(os.listdir("/proc/self/fd")), threading.active_count(), len(_descendants())


def test_1000_warm_invocations_leave_no_zombie_and_no_fd(fake_context):
    def invoke():
        lambda_fanout.map(xproc.parse, [5] * 8, strategy="processes", max_workers=2)
        # now and then a deadline kills a worker mid-item
        lambda_fanout.map(xproc.sleep_s, [0.0, 0.0], strategy="processes", max_workers=2,
                          errors="collect", context=fake_context(1000))

    _procpool.shutdown()  # idle workers of earlier tests would be used up and counted as freed
    for _ in range(20):
        invoke()
    before = _resources()
    for _ in range(1000):
        invoke()
    after = _resources()
    zombies = [p for p in _descendants() if _state(p) == "Z"]
    print(f"\nSOAK processes fds/threads/processes before {before} after {after}")
    assert zombies == []
    assert after == before


def test_kill_and_replace_over_many_invocations_leaks_nothing(fake_context):
    def invoke():
        lambda_fanout.map(xproc.sleep_s, [5.0], strategy="processes", max_workers=1,
                          errors="collect", context=fake_context(550))

    _procpool.shutdown()
    invoke()
    before = _resources()
    for _ in range(20):
        invoke()
    after = _resources()
    assert [p for p in _descendants() if _state(p) == "Z"] == []
    assert after == before


def test_default_workers_are_the_real_vcpus(monkeypatch):
    strategy = lambda_fanout.get_strategy("processes")
    assert strategy.max_workers == _procpool.vcpus()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    assert lambda_fanout.get_strategy("processes").max_workers == 1
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "3")
    assert lambda_fanout.get_strategy("processes").max_workers == 3
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots")
    with pytest.raises(ConfigError, match="AWS_LAMBDA_FUNCTION_MEMORY_SIZE"):
        lambda_fanout.get_strategy("processes")


def test_safe_with_a_lock_held_by_another_thread():
    # A lock held in the caller at the moment workers start is free in every worker:
    # they are not forked from the caller, whose other threads may hold locks.
    _procpool.shutdown()
    with xproc.LOCK:
        assert lambda_fanout.map(xproc.grab, range(4), strategy="processes", max_workers=2) == [True] * 4


def test_threads_running_in_the_caller_do_not_matter():
    import boto3

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        _procpool.shutdown()
        assert lambda_fanout.map(xproc.square, range(50), strategy="processes", max_workers=2) == [
            i * i for i in range(50)
        ]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()



@pytest.fixture
def dies_once(monkeypatch):
    """The next worker lent out is killed (SIGKILL) as it is handed over: it dies before its first item."""
    import signal

    acquire, killed = _procpool.ProcessPool.acquire, []

    def acquire_and_kill(self):
        worker = acquire(self)
        if not killed:
            killed.append(worker.process.pid)
            os.kill(worker.process.pid, signal.SIGKILL)
        return worker

    monkeypatch.setattr(_procpool.ProcessPool, "acquire", acquire_and_kill)
    return killed


def test_a_worker_that_dies_before_its_first_item_costs_no_item(dies_once):
    assert lambda_fanout.map(xproc.square, range(300), strategy="processes", max_workers=1) == [
        i * i for i in range(300)]
    assert dies_once


def test_a_batch_record_costs_nothing_when_its_worker_died_before_it(dies_once):
    from lambda_fanout_dev import events

    reply = lambda_fanout.process_batch(events.sqs(3), xproc.identity, strategy="processes", max_workers=1)
    assert reply == {"batchItemFailures": []} and dies_once


# -- items, results and exceptions that cannot cross the pipe --------------------------------

@pytest.fixture
def log_dir(tmp_path, monkeypatch):
    """A directory for the tasks' log files, named to the workers by TASK_LOG_DIR."""
    monkeypatch.setenv("TASK_LOG_DIR", str(tmp_path))
    return str(tmp_path)


def _fresh_pool():
    # One worker, known history: the process-wide pool's idle workers are stopped.
    _procpool.shutdown()


def _pmap(task, items, **kw):
    return lambda_fanout.map(task, items, strategy="processes", **kw)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
def test_processes_unloadable_result_fails_that_item_alone(log_dir, error):
    """README (processes): "An item or result that cannot be pickled fails that item alone, saying so."

    A result whose unpickling raises (it pickled fine in the worker) fails item 5 only,
    in collect mode; what pickle.loads raised, even a BaseException, does not escape map itself.
    """
    out = _pmap(functools.partial(xproc.unloadable_result, error=error), range(8), max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True] * 5 + [False] + [True] * 2
    assert "could not be unpickled" in str(out[5].error)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
def test_processes_unloadable_item_mid_chunk_fails_alone(log_dir, error):
    """README (processes): "An item or result that cannot be pickled fails that item alone, saying so."

    Items 0..3 go one per chunk; then the chunk grows to 256 (items 4..259). Item 10
    pickles but raises when the worker unpickles it (even a BaseException): only item 10
    fails, and no worker ends for it.
    """
    _fresh_pool()
    started = _procpool.get_pool().started
    items = list(range(20))
    items[10] = xproc.Unloadable(error)
    out = _pmap(xproc.identity, items, max_workers=1, errors="collect")
    failed = [o.index for o in out if not o.ok]
    assert failed == [10], [(o.index, type(o.error).__name__) for o in out if not o.ok]
    assert "could not be unpickled in the worker" in str(out[10].error)
    assert _procpool.get_pool().started == started + 1


def test_processes_environment_after_unpicklable_item(log_dir, monkeypatch):
    """README (processes): "a worker runs each call in the caller's environment (sent along when it
    changes), so AWS_* settings and the handler's own variables are the same there".
    """
    _fresh_pool()
    monkeypatch.setenv("TASK_VAR", "one")
    assert _pmap(xproc.getenv_task, [0], max_workers=1) == ["one"]
    monkeypatch.setenv("TASK_VAR", "two")
    out = _pmap(xproc.getenv_task, [threading.Lock()], max_workers=1, errors="collect")
    assert not out[0].ok  # the lock fails alone, as documented
    assert _pmap(xproc.getenv_task, [0], max_workers=1) == ["two"]


def test_a_task_that_changes_the_environment_does_not_pass_it_to_the_next_call(log_dir, monkeypatch):
    """README (processes): "a worker runs each call in the caller's environment". A task that
    sets or deletes a variable in its worker changes that call only: the next call, on the
    same worker, starts in the caller's environment again.
    """
    _fresh_pool()
    monkeypatch.setenv("TASK_VAR", "the caller's")
    monkeypatch.setenv("TASK_GONE", "still here")
    assert _pmap(xproc.change_environment, [0, 1], max_workers=1) == ["set by the task"] * 2
    assert _pmap(xproc.getenv_pair, [0], max_workers=1) == [("the caller's", "still here")]
    assert os.environ["TASK_VAR"] == "the caller's"  # the caller's own was never touched
    # And again after a second change.
    assert _pmap(xproc.change_environment, [0], max_workers=1) == ["set by the task"]
    assert _pmap(xproc.getenv_pair, [0, 1, 2], max_workers=1) == [("the caller's", "still here")] * 3


def test_processes_unpicklable_exception_with_bad_str(log_dir):
    """README (processes): "An exception from a task comes back with the worker's traceback as its
    __cause__". An exception that cannot cross the pipe is sent as text; one whose str()
    also fails still fails its item alone, and does not crash the worker.
    """
    _fresh_pool()
    out = _pmap(xproc.raise_bad, range(3), max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True, False, True]
    assert not isinstance(out[1].error, _procpool.WorkerError) or "exited" not in str(out[1].error)


def test_processes_worker_traceback_is_trimmed_to_the_most_recent_frames(log_dir):
    """README (processes): "An exception from a task comes back with the worker's traceback as its
    __cause__". It is the failure log's traceback: the whole chain, each exception's most
    recent frames (the outer ones counted, not shown), with the messages.
    """
    out = _pmap(functools.partial(xproc.fail_deep, 3 * MAX_FRAMES), range(3), max_workers=1, errors="collect")
    for outcome in out:
        error = outcome.error
        assert type(error) is ValueError and isinstance(error.__cause__, ForeignTraceback)
        text = str(error.__cause__)
        assert f"KeyError: {outcome.index}" in text
        assert "The above exception was the direct cause of the following exception:" in text
        assert text.rstrip('"').rstrip().endswith(f"ValueError: wrapped {outcome.index}")
        # The ValueError's outer frames (the worker's own, the first calls) are counted, not shown.
        assert re.search(r"\n  \[\d+ outer frames not shown\]\n  File .*, in fail_deep\n", text)
        assert "multiprocessing" not in text


def test_processes_closure_task_config_error_before_reading(log_dir):
    """README (processes): "A lambda or a closure raises ConfigError at the start of the call, before
    any item is read"."""
    read = []

    def gen():
        read.append(1)
        yield 1

    with pytest.raises(lambda_fanout.ConfigError, match="cannot be pickled"):
        _pmap(lambda x: x, gen(), max_workers=1)
    assert read == []


@pytest.mark.parametrize("unpicklable", [threading.Lock(), xproc.InterruptsWhenPickled("the item"),
                                         xproc.UnprintablyUnpicklable()],
                         ids=["a-lock", "interrupts-when-pickled", "unprintable-error"])
def test_processes_unpicklable_item_fails_alone(log_dir, unpicklable):
    """README (processes): "An item ... that cannot be pickled fails that item alone, saying so"."""
    items = [1, 2, unpicklable, 4]
    out = _pmap(xproc.identity, items, max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True, True, False, True]
    assert "pickled" in str(out[2].error)


# -- a worker that exits, is killed or hangs -----------------------------------------------------

def test_processes_worker_exit_mid_chunk_no_phantom_deadline(log_dir):
    """README: DeadlineExceeded is for "Items read but not started" once "the remaining time falls under
    FANOUT_DEADLINE_MARGIN_MS"; processes: the dead worker "is replaced for the next items".

    With no context there is no deadline; a worker that exits at item 10 does not turn
    items 11..19 into DeadlineExceeded (they are run by the replacement, or fail with a
    cause that says what happened).
    """
    _fresh_pool()
    out = _pmap(xproc.exit_at, range(20), max_workers=1, errors="collect")
    phantom = [o.index for o in out if isinstance(o.error, lambda_fanout.DeadlineExceeded)]
    assert phantom == []
    # the worker died running item 10: only item 10 is to blame
    assert [o.index for o in out if not o.ok] == [10]


def test_processes_zero_margin_unstarted_items_not_started(log_dir, monkeypatch):
    """README (processes): "Deadline: at the margin, a worker still running is killed; the records it had
    begun are DeadlineExceeded with .started=True, the rest of its chunk .started=False".
    FANOUT_DEADLINE_MARGIN_MS accepts 0. Item 4 hangs; items 5..19 of its chunk never start.
    """
    monkeypatch.setenv("FANOUT_DEADLINE_MARGIN_MS", "0")
    _fresh_pool()
    out = _pmap(xproc.hang_at, range(20), max_workers=1, errors="collect", context=FakeContext(1200))
    assert out[4].error is not None and out[4].error.started
    wrongly = [o.index for o in out[5:] if o.error is not None and o.error.started]
    assert wrongly == [], f"never started, reported started: {wrongly}"


def test_processes_hung_item_killed_and_next_call_works(log_dir):
    """README: "a worker process still running an item at the margin is killed (SIGKILL) and replaced
    on the next use, so a hung item holds neither this invocation nor the next": the call
    returns at the margin, the hung item is started=True, the ones after it started=False,
    and the next call runs on a replacement.
    """
    _fresh_pool()
    ctx = FakeContext(1500)
    t0 = time.monotonic()
    out = _pmap(xproc.hang_at, range(20), max_workers=1, errors="collect", context=ctx)
    assert time.monotonic() - t0 < 1.4
    assert isinstance(out[4].error, lambda_fanout.DeadlineExceeded) and out[4].error.started
    later = [o for o in out[5:] if not o.ok]
    assert later and all(isinstance(o.error, lambda_fanout.DeadlineExceeded) and not o.error.started
                         for o in later)
    assert _pmap(xproc.identity, range(10), max_workers=1) == list(range(10))


def test_processes_finished_items_not_lost_at_deadline(log_dir):
    """README (map): at the margin "a task still running then (a hung call)" comes back with
    .started == True, "its late result ignored". Items 2 and 3 finish at once, about a
    second before the margin; only the hung item 4 was still running. (The processes
    section words it "the records it had begun", which would make every finished item of
    the hung item's chunk, up to 255, a failure to redeliver.)
    """
    _fresh_pool()
    out = _pmap(xproc.hang_at, range(20), max_workers=1, errors="collect", context=FakeContext(1500))
    assert [o.ok for o in out[:4]] == [True] * 4, [o.error for o in out[:4]]


def test_processes_keyboard_interrupt_and_system_exit_propagate(log_dir):
    """README (processes): "KeyboardInterrupt and SystemExit propagate"; the next call works."""
    with pytest.raises(KeyboardInterrupt):
        _pmap(xproc.interrupt_on, range(8), max_workers=2)
    with pytest.raises(SystemExit) as info:
        _pmap(xproc.exit_on, range(8), max_workers=2, errors="collect")
    assert info.value.code == 7
    assert _pmap(xproc.identity, range(50), max_workers=2) == list(range(50))


def test_processes_worker_sigkilled_mid_item_fails_that_item_alone(log_dir):
    """A worker killed by a signal mid-item (the OOM killer, say): that item fails with an error saying the
    worker exited, the next items run on a replacement (single-item chunks)."""
    _fresh_pool()
    out = _pmap(xproc.kill_self_at_1, range(3), max_workers=1, errors="collect")
    assert [o.ok for o in out] == [True, False, True]
    assert "exited" in str(out[1].error)


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


def test_processes_no_zombie_after_deadline_kill(log_dir):
    """README Guarantees: under processes "a worker process still running an item at the margin is killed
    (SIGKILL) ..., and no thread or process of the call is left behind"; "No zombie" (the
    workers are the forkserver's children, and it reaps them), and no driver thread is left.
    """
    _fresh_pool()
    _pmap(xproc.identity, range(4), max_workers=1)
    before = set(_children_states())
    _pmap(xproc.hang_at, range(8), max_workers=1, errors="collect", context=FakeContext(1000))
    time.sleep(0.3)  # SIGKILL is delivered at once; give the kernel ample time
    zombies = [pid for pid, state in _children_states().items() if state == "Z"]
    assert zombies == [], f"zombie children {zombies} (children before: {sorted(before)})"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fanout-processes")]


# -- stopping: errors="raise", cancellation, input that raises ----------------------------------

def test_processes_raise_mode_nothing_starts_after_failure(log_dir):
    """README Guarantees: "errors="raise": nothing starts after the first failure is recorded, under
    every strategy: items queued in an executor are skipped, not run".

    Items 0..3 go one per chunk, then chunks of 256: 4..259 to one worker, 260..515 to
    the other. Item 4 fails once item 260 has begun; items 261.. do not start after.
    """
    with pytest.raises(lambda_fanout.TaskError) as info:
        _pmap(xproc.cross_worker, range(2000), max_workers=2)
    assert info.value.index == 4
    events = xproc.read_log(log_dir, "events")
    assert "fail" in events, events[:5]
    after = events[events.index("fail") + 1:]
    assert after == [], f"{len(after)} items started after the failure, e.g. {after[:3]}"


def test_processes_cancelled_amap_starts_nothing(log_dir):
    """README Guarantees: "Cancelling amap (asyncio.wait_for, task.cancel()) starts no further item
    under any strategy and raises CancelledError in the caller at once."
    """
    running = os.path.join(log_dir, "running")

    async def main():
        task = asyncio.ensure_future(lambda_fanout.amap(xproc.slow_log, range(1000), strategy="processes",
                                                        max_workers=1))
        for _ in range(3000):
            if os.path.exists(running):
                break
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(xproc.read_log(log_dir, "events"))

    at_cancel = asyncio.run(main())
    time.sleep(0.5)
    later = len(xproc.read_log(log_dir, "events"))
    # one item may have been mid-start at the cancel
    assert later <= at_cancel + 1, f"{later - at_cancel} items started after the cancel"


def test_processes_input_iterator_raises(log_dir):
    """README Guarantees: "An exception from the input iterator ends the input: the items read before it
    still run ..., then the exception propagates unchanged, with a note", under processes too."""

    class Boom(Exception):
        pass

    def gen():
        yield from range(5)
        raise Boom("the input fails")

    with pytest.raises(Boom) as info:
        _pmap(xproc.identity, gen(), max_workers=2)
    assert any("5 items were read" in note for note in info.value.__notes__)


# -- callers: threads, amap, batches ---------------------------------------------------------------

def test_processes_concurrent_maps_from_threads(log_dir):
    """Several threads calling map under processes at once share one pool: each gets its own results,
    in order."""
    barrier = threading.Barrier(4)
    results, errors = {}, []

    def call(n):
        try:
            barrier.wait(5)
            results[n] = _pmap(xproc.identity, range(n * 100, n * 100 + 60), max_workers=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(results[n] == list(range(n * 100, n * 100 + 60)) for n in range(4))


def test_processes_amap_results_in_order(log_dir):
    """README: "await lambda_fanout.amap(...) in async handlers"; results in input order, under processes."""
    async def main():
        return await lambda_fanout.amap(xproc.identity, range(300), strategy="processes", max_workers=2)

    assert asyncio.run(main()) == list(range(300))


def test_processes_fifo_batch_hung_record_killed_every_record_reported(log_dir):
    """README (batches): "With context, records not started before the deadline margin are reported as
    failures ...: none is lost"; "After a record fails, the later records of its group are not
    started and are reported failed". Under processes, with a record hung in a worker.
    """
    from lambda_fanout_dev import events

    event = events.sqs(12, groups=[f"g{i % 3}" for i in range(12)])  # FIFO: g0 = 0,3,6,9; g1 = 1,4,7,10
    t0 = time.monotonic()
    reply = lambda_fanout.process_batch(event, xproc.batch_hang, FakeContext(2000), strategy="processes",
                                        max_workers=3)
    assert time.monotonic() - t0 < 1.9
    failed = {f["itemIdentifier"] for f in reply["batchItemFailures"]}
    ids = [r["messageId"] for r in event["Records"]]
    done = {int(line.split()[1]) for line in xproc.read_log(log_dir, "events")}
    # every record is processed (and not reported) or reported; group g1 stops at 1, g2 at 5
    assert {ids[i] for i in (1, 4, 7, 10, 5, 8, 11)} <= failed
    assert all((i in done) != (ids[i] in failed) for i in range(12)), (sorted(done), failed)


def test_processes_batch_killed_worker_replaced_at_once(log_dir):
    """README (processes): "Deadline: at the margin, a worker still running is killed ... Its replacement
    starts at once and imports the task in the background" (as it does under map)."""
    from lambda_fanout_dev import events

    _fresh_pool()
    lambda_fanout.process_batch(events.sqs(1), xproc.batch_hang, strategy="processes", max_workers=1)  # warm
    pool = _procpool.get_pool()
    assert pool.idle() == 1
    reply = lambda_fanout.process_batch(events.sqs(3), xproc.batch_hang, FakeContext(1200), strategy="processes",
                                        max_workers=1)
    assert {"itemIdentifier": "msg-00001"} in reply["batchItemFailures"]
    deadline = time.monotonic() + 2
    while pool.idle() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.idle() == 1, "no replacement worker after the deadline kill"


# -- results through the workers' arenas -----------------------------------------------------------

@pytest.fixture
def procs():
    """The processes strategy with two workers, started before the test."""
    lambda_fanout.map(xproc.sized, [1, 2, 3, 4], strategy="processes", max_workers=2)
    return "processes"


def test_processes_large_array_result_keeps_its_type(procs):
    """Promise (README, processes): items and results are plain data sent back to the caller;
    the strategies are interchangeable (sequential gives the array itself)."""
    expected = xproc.as_array(20_000)  # 160 KB of doubles
    got = lambda_fanout.map(xproc.as_array, [20_000], strategy=procs, max_workers=2)
    assert type(got[0]) is type(expected) and got[0] == expected


def test_processes_bytearray_results_keep_type_when_many(procs):
    """Promise (README, processes): "per worker an arena where each result is written as its
    item finishes": the arena is a transport, results equal sequential's."""
    items = [5_000] * 40  # 200 KB in all
    seq = lambda_fanout.map(xproc.as_bytearray, items, strategy="sequential")
    got = lambda_fanout.map(xproc.as_bytearray, items, strategy=procs, max_workers=2)
    assert [type(v) for v in got] == [type(v) for v in seq]


def test_processes_results_around_the_arena_size(procs):
    """Promise: results larger than the arena, exactly at its boundary, and many that overflow
    it come back whole and in order."""
    from lambda_fanout._procpool import wire as _procpool

    room = _procpool.ARENA_SIZE - _procpool._HEAD - _procpool._FRAME.size - 5  # marshal: type byte + length
    sizes = [room - 1, room, room + 1, 3 << 20, 7, 400_000, 400_000, 400_000, 1, room]
    got = lambda_fanout.map(xproc.sized, sizes, strategy=procs, max_workers=2)
    assert [len(v) for v in got] == sizes
    assert all(v == b"x" * n for v, n in zip(got, sizes))


def test_processes_unpicklable_result_fails_alone(procs):
    """Promise: "An item or result that cannot be pickled ... fails that item alone, saying so"."""
    got = lambda_fanout.map(xproc.maybe_unpicklable, range(8), strategy=procs, max_workers=2, errors="collect")
    assert [o.ok for o in got] == [True, False, True, False, True, False, True, False]
    assert [o.value for o in got if o.ok and o.index != 4] == [0, 2, 6]
    assert got[4].value == xproc.maybe_unpicklable(4)
    assert all("pickled" in str(o.error) for o in got if not o.ok)


def test_processes_result_whose_pickling_raises_a_base_exception_fails_alone(procs):
    """The KeyboardInterrupt its pickling raises is the result's failure, not the task's: the call goes on."""
    got = lambda_fanout.map(functools.partial(xproc.return_unsendable_at, 3), range(8), strategy=procs, max_workers=2,
                            errors="collect")
    assert [o.ok for o in got] == [True] * 3 + [False] + [True] * 4, [o.error for o in got]
    assert "cannot be pickled back" in str(got[3].error)


def test_processes_result_that_pickles_only_once_comes_back_and_the_worker_serves_on(procs):
    """A result is pickled as its item ends, and the request's results once more at its end:
    whatever that second pickling raises, the first stands and the worker lives on."""
    lambda_fanout.map(xproc.identity, range(2), strategy=procs, max_workers=1)
    started = _procpool.get_pool().started
    got = lambda_fanout.map(xproc.pickles_once, range(4), strategy=procs, max_workers=1)
    assert all(type(v) is xproc.PicklesOnce for v in got), got
    assert _procpool.get_pool().started == started


# cheap items first: the chunk sizer then sends the rest several to a request
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("items", [[1] * 40 + [1, 2, 3, 4] * 10, [1] * 40 + [1, 200_000, 3, 2 << 20, 5] * 3])
def test_processes_result_that_does_not_unpickle_fails_alone(procs, items, error):
    """Promise (processes): a result that "pickles but cannot be unpickled on the other side
    fails that item alone, saying so", in a small request and in one that spills; whatever
    its loading raises, and the next call gets its own results."""
    got = lambda_fanout.map(functools.partial(xproc.unloadable_on_3, error=error), items, strategy=procs,
                            max_workers=1, errors="collect")
    for o, item in zip(got, items):
        if item == 3:
            assert not o.ok and "unpickled" in str(o.error), o
        else:
            assert o.ok and o.value == xproc.unloadable_on_3(item), o
    assert lambda_fanout.map(xproc.identity, range(50), strategy=procs, max_workers=1) == list(range(50))


def test_processes_numpy_result_comes_back_as_an_array(procs):
    """Promise (README, processes): CPU-bound work ("parsing, compression, hashing") runs in
    workers and its results come back; numpy arrays pickle, so they are sendable results."""
    numpy = pytest.importorskip("numpy")
    got = lambda_fanout.map(xproc.ndarray, [10, 50_000], strategy=procs, max_workers=2)
    assert isinstance(got[0], numpy.ndarray)  # a small one comes back whole
    assert isinstance(got[1], numpy.ndarray), type(got[1])
    assert (got[1] == numpy.arange(50_000, dtype="float64")).all()


def test_processes_deadline_kill_after_big_spill_keeps_results(procs, fake_context):
    """Promise (processes, Deadline): "a worker still running is killed: the items it had
    finished keep their results ... the one it was running is DeadlineExceeded with
    .started=True"."""
    items = [1] * 30 + [3 << 20, 2 << 20, -1, 5]
    got = lambda_fanout.map(xproc.big_then_hang, items, strategy=procs, max_workers=1, errors="collect",
                            context=fake_context(1600))
    hang = items.index(-1)
    for outcome, item in zip(got, items):
        if outcome.index < hang:
            assert outcome.ok and outcome.value == xproc.big_then_hang(item), outcome.index
    assert isinstance(got[hang].error, DeadlineExceeded) and got[hang].error.started is True
    assert isinstance(got[hang + 1].error, DeadlineExceeded)


# -- one call's stop, another call's run ------------------------------------------------------------

def test_processes_raise_in_one_call_does_not_stop_a_concurrent_call(procs):
    """Promise (processes, Stopping): "a worker whose item fails stops every worker *of the
    call*"; a board slot per call, so a concurrent call from another thread runs on."""
    from concurrent.futures import ThreadPoolExecutor

    def failing():
        with pytest.raises(lambda_fanout.TaskError):
            lambda_fanout.map(xproc.fail_on, [0] + [1] * 30, strategy="processes", max_workers=2)

    def other():
        return lambda_fanout.map(xproc.fail_on, list(range(1, 41)), strategy="processes", max_workers=2,
                                 errors="collect")

    with ThreadPoolExecutor(4) as ex:
        stops = [ex.submit(failing) for _ in range(2)]
        runs = [ex.submit(other) for _ in range(2)]
        for f in stops:
            f.result()
        for f in runs:
            got = f.result()
            assert [o.value for o in got] == list(range(1, 41)), [o.error for o in got if not o.ok][:3]


def test_processes_raise_stops_other_workers_mid_chunk(procs, tmp_path):
    """Promise (processes, Stopping): "under errors="raise" ... a worker whose item fails
    stops every worker of the call before its next item, even mid-chunk"."""
    path = str(tmp_path / "ran")
    # warm the chunk sizer's estimate with cheap items first, so later chunks are long
    items = [(i, path) for i in range(1, 60)] + [(0, path)] + [(i, path) for i in range(60, 400)]
    with pytest.raises(lambda_fanout.TaskError):
        lambda_fanout.map(xproc.logged_fail_on_zero, items, strategy=procs, max_workers=2)
    with open(path) as f:
        ran = [int(x) for x in f.read().split()]
    after = [i for i in ran if i >= 60]
    assert len(after) <= 4, after  # one item per worker may be under way when item 0 fails


def test_processes_warm_calls_leak_no_fd_or_child(procs):
    """Promise (Guarantees): "processes leaks no process ... No zombie, and file descriptors,
    threads and processes flat over 1,000 warm invocations", with failures and big results."""

    def children():
        me = str(os.getpid())
        count = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        count += f.read().rsplit(")", 1)[1].split()[1] == me
                except OSError:
                    pass
        return count

    # From a known pool: workers left idle by earlier tests (other worker counts) would be
    # discarded during the loop below, and their pipes closed, whatever this test does.
    _fresh_pool()
    for i in range(20):
        if i % 10 == 0:
            lambda_fanout.map(xproc.sized, [2 << 20, 5], strategy="processes", max_workers=2)
        lambda_fanout.map(xproc.maybe_unpicklable, range(6), strategy="processes", max_workers=2, errors="collect")
    files, threads, workers = resources.open_files(), resources.threads(), children()
    for i in range(1000):
        if i % 100 == 0:
            lambda_fanout.map(xproc.sized, [2 << 20, 5], strategy="processes", max_workers=2)
        lambda_fanout.map(xproc.maybe_unpicklable, range(6), strategy="processes", max_workers=2, errors="collect")
    assert resources.open_files() - files == set()
    assert resources.threads() - threads == set()
    assert children() == workers == 2


def test_processes_auto_cap_bounds_the_workers(procs):
    """Promise (processes): "auto means the same one-per-vCPU count (at most auto:N's cap)"."""
    got = lambda_fanout.map(xproc.pid_after, [0.03] * 12, strategy="processes", max_workers="auto:1")
    assert len(set(got)) == 1


# -- a task that replaces its worker ---------------------------------------------------------------

def test_a_task_that_execs_another_program_fails_its_item_without_waiting_for_it():
    """The program a task execs (here, two minutes long) is not waited for: its item fails, the rest run."""
    t0 = time.monotonic()
    out = lambda_fanout.map(xproc.exec_on_zero, range(4), strategy="processes", max_workers=1, errors="collect")
    assert time.monotonic() - t0 < 60  # far from the two minutes the program would hold the call
    assert "worker process exited" in str(out[0].error)
    assert [o.value for o in out[1:]] == [1, 2, 3]


def test_a_killed_worker_whose_child_holds_its_pipes_is_settled_inside_the_margin(fake_context, monkeypatch):
    """A task's forked child keeps the killed worker's pipe open, so no end of it ever comes:
    the worker's end is seen from its process instead. The items it finished keep their
    results, and the call returns inside the margin."""
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    ctx = fake_context(500)
    out = lambda_fanout.map(xproc.fork_and_hang_on_5, range(10), strategy="processes", max_workers=1,
                            errors="collect", context=ctx)
    left = ctx.get_remaining_time_in_millis()
    assert left > 0, f"returned {-left} ms after the Lambda deadline"
    assert [o.value for o in out[:5]] == [0, 1, 2, 3, 4], out[:5]
    assert isinstance(out[5].error, DeadlineExceeded) and out[5].error.started
    assert all(isinstance(o.error, DeadlineExceeded) and not o.error.started for o in out[6:])
    assert lambda_fanout.map(xproc.square, [7], strategy="processes") == [49]


def test_a_worker_that_dies_while_a_child_it_forked_runs_on_fails_its_item_at_once():
    """A worker that dies while a child it forked still holds its pipe (no end of the pipe
    comes): its end is seen from its process, so the item it ran fails as an exited worker at
    once, and the items it never reached run on a replacement, not after the child ends."""
    started = time.monotonic()
    out = lambda_fanout.map(xproc.fork_then_die_on_2, range(6), strategy="processes", max_workers=1,
                            errors="collect")
    took = time.monotonic() - started
    assert isinstance(out[2].error, _procpool.WorkerError) and "exited" in str(out[2].error), out[2]
    assert [o.value for o in out if o.ok] == [0, 1, 3, 4, 5]
    assert took < 15, f"the call waited {took:.1f} s for the forked child"


def test_a_worker_still_running_when_the_forkserver_ends_keeps_its_item():
    """The forkserver that started the workers ending (killed, or chosen by the OOM killer) ends
    no worker: the item under way on another worker completes with its value, as does the item
    whose task ended the forkserver, and the next call starts workers anew."""
    out = lambda_fanout.map(xproc.end_forkserver_on_0, [1, 0, 2, 3], strategy="processes", max_workers=2,
                            errors="collect")
    assert [o.value if o.ok else repr(o.error) for o in out] == [1, "ended", 2, 3]
    assert lambda_fanout.map(xproc.square, [7], strategy="processes") == [49]


COLD_CALL = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import lambda_fanout, xproc
from fakes import FakeContext

if __name__ == "__main__":
    items = [{"i": i, "s": 0.05, "dir": sys.argv[2]} for i in range(24)]
    out = lambda_fanout.map(xproc.mark_start, items, strategy="processes", max_workers=8, errors="collect",
                            context=FakeContext(150))
    print(json.dumps([o.index for o in out if not o.ok and o.error.started]))
"""


def test_records_cut_while_the_first_workers_start_are_reported_not_started(tmp_path):
    """The first call in a process starts the forkserver; a deadline that passes meanwhile cuts
    records that never ran, and each is reported not started (safe to redeliver), never as
    started. Run in a fresh interpreter, where the forkserver does not run yet."""
    marks = tmp_path / "started"
    marks.mkdir()
    for _ in range(3):
        for f in marks.iterdir():
            f.unlink()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        proc = subprocess.run([sys.executable, "-c", COLD_CALL, os.path.dirname(__file__), str(marks)],
                              capture_output=True, text=True, timeout=120,
                              env={**env, lambda_fanout.ENV_DEADLINE_MARGIN_MS: "50"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        reported_started = set(json.loads(proc.stdout.splitlines()[-1]))
        time.sleep(0.5)  # a record on its way into a worker would have written its file by now
        ran = {int(f.name) for f in marks.iterdir()}
        assert reported_started <= ran, f"reported started but never ran: {sorted(reported_started - ran)}"


def test_a_process_the_task_started_is_killed_with_its_worker_at_the_deadline(fake_context, tmp_path):
    """Nothing of the call runs on after it: the worker killed at the deadline takes the
    processes its task started with it."""
    pid_file = tmp_path / "child"
    out = lambda_fanout.map(xproc.start_sleep_and_hang, [str(pid_file)], strategy="processes", max_workers=1,
                            errors="collect", context=fake_context(1500))
    assert isinstance(out[0].error, DeadlineExceeded) and out[0].error.started
    child = int(pid_file.read_text())
    until = time.monotonic() + 5
    while _alive(child) and time.monotonic() < until:
        time.sleep(0.02)
    assert not _alive(child), "the task's child process outlived the call"


def _alive(pid: int) -> bool:
    # Running, not a zombie waiting to be reaped.
    return _state(pid) not in (None, "Z")


@pytest.mark.parametrize("how", ["fork", "fork-exit"])
def test_a_child_the_task_forked_never_answers_for_the_worker(how):
    """A child that returns or raises instead of ending with os._exit comes back into the
    worker's loop: it ends there, so the call gets the parent's result, and later calls
    their own."""
    out = lambda_fanout.map(xproc.fork_and_carry_on, ["a", how, "c"], strategy="processes", max_workers=2,
                            errors="collect")
    assert [o.value for o in out] == ["a", "parent", "c"], out
    for _ in range(3):
        assert lambda_fanout.map(xproc.fork_and_carry_on, list("uvwxyz"), strategy="processes",
                                 max_workers=2) == list("uvwxyz")
