"""The ``processes`` strategy: what only it promises, and proof it runs where Lambda has no /dev/shm."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import lambda_fanout
import proctasks
from lambda_fanout import ConfigError, DeadlineExceeded, TaskError, _procpool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: As root, a private mount namespace with a read-only 4 kB /dev/shm: POSIX semaphores
#: and shared memory fail with OSError there, as in Lambda, while pipes work.
NO_SHM = "mount -t tmpfs -o ro,size=4k none /dev/shm && exec \"$@\""


def run_without_shm(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``argv`` with /dev/shm unusable (skips the test where that cannot be arranged)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to make /dev/shm unusable")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", NO_SHM, "sh", "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.strip()}")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", NO_SHM, "sh", *argv],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, "FANOUT_TEST_NO_SHM": "1"},
    )


# -- Lambda's missing /dev/shm ------------------------------------------------------------

NO_SHM_SCRIPT = """
import multiprocessing, sys
sys.path.insert(0, "tests")
import lambda_fanout, proctasks
if __name__ == "__main__":
    for name, make in (("Pool", lambda: multiprocessing.Pool(2)), ("Queue", multiprocessing.Queue)):
        try:
            make()
        except OSError as exc:
            print(name, "OSError", exc.errno)
        else:
            print(name, "works")
    out = lambda_fanout.map(proctasks.square, range(200), strategy="processes", max_workers=2)
    print("processes", out == [i * i for i in range(200)])
"""


def test_pool_fails_without_dev_shm_and_processes_works():
    done = run_without_shm(sys.executable, "-c", NO_SHM_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["Pool OSError 30", "Queue OSError 30", "processes True"]


def test_process_tests_pass_without_dev_shm():
    done = run_without_shm(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
        "tests/test_procpool.py", "tests/test_processes.py", "tests/test_map.py", "tests/test_edges.py",
        "tests/test_contract.py", "tests/test_batch.py", "tests/test_deadline.py",
        "-k", "(procpool or processes) and not without_dev_shm",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_dev_shm_is_unusable_when_the_harness_says_so():
    if not os.environ.get("FANOUT_TEST_NO_SHM"):
        pytest.skip("runs inside the no-/dev/shm harness (test_process_tests_pass_without_dev_shm)")
    import multiprocessing

    with pytest.raises(OSError):
        multiprocessing.Lock()


# -- the strategy ---------------------------------------------------------------------------

def test_cpu_items_in_order_over_reused_workers():
    pool = _procpool.get_pool()
    out = lambda_fanout.map(proctasks.parse, [50] * 400, strategy="processes", max_workers=2)
    assert out == [50] * 400
    started = pool.started
    pids = set(lambda_fanout.map(proctasks.pid, range(64), strategy="processes", max_workers=2))
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


@pytest.mark.parametrize("fn, kind", [(proctasks.interrupt_on, KeyboardInterrupt), (proctasks.exit_on, SystemExit)])
def test_base_exception_from_a_worker_propagates(fn, kind):
    with pytest.raises(kind):
        lambda_fanout.map(fn, range(10), strategy="processes", max_workers=2, errors="collect")


def test_raise_and_collect():
    with pytest.raises(TaskError) as info:
        lambda_fanout.map(proctasks.fail_on_odd, range(6), strategy="processes", max_workers=2)
    # Two workers: whichever odd item fails first stops the other worker before its next item,
    # so item 1 (sent to a worker still starting) may never start when item 3 fails first.
    assert info.value.index in (1, 3, 5) and isinstance(info.value.__cause__, ValueError)
    outcomes = lambda_fanout.map(proctasks.fail_on_odd, range(6), strategy="processes", errors="collect")
    assert [o.ok for o in outcomes] == [True, False] * 3


def test_hung_item_is_killed_at_the_deadline_and_its_worker_replaced(fake_context):
    pool = _procpool.get_pool()
    t0 = time.monotonic()
    outcomes = lambda_fanout.map(
        proctasks.sleep_s, [60, 0.01, 0.01, 60], strategy="processes", max_workers=2,
        errors="collect", context=fake_context(1500),
    )
    took = time.monotonic() - t0
    assert took < 1.5, took
    assert [type(o.error) for o in outcomes if not o.ok] and all(
        isinstance(o.error, DeadlineExceeded) for o in outcomes if not o.ok
    )
    assert len(outcomes) == 4
    assert _sleepers() == [], "a killed worker still runs"
    assert lambda_fanout.map(proctasks.square, [7], strategy="processes") == [49]
    assert pool.idle() <= 2


def _sleepers() -> list[int]:
    # Worker processes still alive (not zombies) that run proctasks.sleep_s.
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
        lambda_fanout.map(proctasks.parse, [5] * 8, strategy="processes", max_workers=2)
        # now and then a deadline kills a worker mid-item
        lambda_fanout.map(proctasks.sleep_s, [0.0, 0.0], strategy="processes", max_workers=2,
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
        lambda_fanout.map(proctasks.sleep_s, [5.0], strategy="processes", max_workers=1,
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
    with proctasks.LOCK:
        assert lambda_fanout.map(proctasks.grab, range(4), strategy="processes", max_workers=2) == [True] * 4


def test_threads_running_in_the_caller_do_not_matter():
    import asyncio

    import boto3

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        _procpool.shutdown()
        assert lambda_fanout.map(proctasks.square, range(50), strategy="processes", max_workers=2) == [
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
    assert lambda_fanout.map(proctasks.square, range(300), strategy="processes", max_workers=1) == [
        i * i for i in range(300)]
    assert dies_once


def test_a_batch_record_costs_nothing_when_its_worker_died_before_it(dies_once):
    from lambda_fanout_dev import events

    reply = lambda_fanout.process_batch(events.sqs(3), proctasks.identity, strategy="processes", max_workers=1)
    assert reply == {"batchItemFailures": []} and dies_once


# -- each call as its caller left it ------------------------------------------------------------

def test_each_call_starts_in_the_callers_environment(monkeypatch):
    """A variable a task sets or deletes in a worker does not reach the next call there."""
    monkeypatch.setenv("FANOUT_TEST_CALLERS", "kept")
    monkeypatch.delenv("FANOUT_TEST_SET_BY_TASK", raising=False)
    changed = set(lambda_fanout.map(proctasks.change_environment, range(4), strategy="processes", max_workers=1))
    seen = lambda_fanout.map(proctasks.read_environment, range(4), strategy="processes", max_workers=1)
    assert {pid for pid, _, _ in seen} <= changed  # the same worker, kept warm between the calls
    assert [(set_by_task, callers) for _, set_by_task, callers in seen] == [(None, "kept")] * 4


def test_a_task_that_execs_another_program_fails_its_item_without_waiting_for_it():
    """The program a task execs (here, two minutes long) is not waited for: its item fails, the rest run."""
    t0 = time.monotonic()
    out = lambda_fanout.map(proctasks.exec_on_zero, range(4), strategy="processes", max_workers=1, errors="collect")
    assert time.monotonic() - t0 < 60  # far from the two minutes the program would hold the call
    assert "worker process exited" in str(out[0].error)
    assert [o.value for o in out[1:]] == [1, 2, 3]
