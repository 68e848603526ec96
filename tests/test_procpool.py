"""The worker-process pool behind the ``processes`` strategy: pipes only, persistent, killable."""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest

import xproc
from lambda_fanout import ConfigError, _procpool
from lambda_fanout._procpool import ChunkSizer, Killed, ProcessPool, WorkerError

# Worker pools killed and replaced at deadlines of a few hundred ms: these run alone.
pytestmark = pytest.mark.serial


@pytest.fixture
def pool():
    p = ProcessPool()
    yield p
    p.shutdown()


def task(fn):
    return _procpool.pickled_task(fn, "processes")


def run(pool, fn, items, timeout=None):
    worker = pool.acquire()
    try:
        results, _ = worker.call(task(fn), items, timeout)
    finally:
        pool.release(worker, keep=4)
    return results


# -- sizing ---------------------------------------------------------------------------------

def _fake_cgroup(tmp_path, quota: str, period: str = "100000"):
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text(quota)
    (cpu / "cpu.cfs_period_us").write_text(period)
    return str(tmp_path)


def test_v1_quota_read_and_rounded_up(tmp_path, monkeypatch):
    monkeypatch.setattr(_procpool.cpus, "_cgroup_paths", lambda: (None, "/"))
    root = _fake_cgroup(tmp_path, "170000")
    assert _procpool.cgroup_cpus(root) == pytest.approx(1.7)
    assert _procpool.vcpus(cgroup_root=root) == 2


def test_v2_cpu_max_smallest_on_the_way_up(tmp_path, monkeypatch):
    monkeypatch.setattr(_procpool.cpus, "_cgroup_paths", lambda: ("/a/b", None))
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "cpu.max").write_text("50000 100000\n")
    (tmp_path / "a" / "b" / "cpu.max").write_text("max 100000\n")
    assert _procpool.cgroup_cpus(str(tmp_path)) == pytest.approx(0.5)
    assert _procpool.vcpus(cgroup_root=str(tmp_path)) == 1


def test_without_quota_affinity_counts_and_memory_caps(tmp_path, monkeypatch):
    monkeypatch.setattr(_procpool.cpus, "_cgroup_paths", lambda: (None, "/"))
    root = _fake_cgroup(tmp_path, "-1")
    affinity = len(os.sched_getaffinity(0))
    assert _procpool.cgroup_cpus(root) is None
    assert _procpool.vcpus(cgroup_root=root) == affinity
    assert _procpool.vcpus(128, cgroup_root=root) == 1
    assert _procpool.vcpus(3008, cgroup_root=root) == min(affinity, 2)
    assert _procpool.vcpus(10240, cgroup_root=root) == min(affinity, 6)



@pytest.mark.parametrize("quota, memory_mb, expected", [
    ("170000", None, 1.0), ("50000", None, 0.5), ("-1", None, 1.0), ("-1", 1024, 1024 / 1769),
    ("50000", 1024, 0.5), ("-1", 3008, 1.0),
])
def test_python_cpus_is_at_most_one_within_the_quota_and_memory_share(tmp_path, monkeypatch, quota, memory_mb,
                                                                      expected):
    """What one process's Python can use (auto's CPU_BUSY measures against it): one CPU
    under the GIL, less under a cgroup quota or Lambda's memory share."""
    from lambda_fanout._procpool.cpus import python_cpus

    monkeypatch.setattr(_procpool.cpus, "_cgroup_paths", lambda: (None, "/"))
    root = _fake_cgroup(tmp_path, quota)
    assert python_cpus(memory_mb, cgroup_root=root) == pytest.approx(expected)

def test_real_cgroup_quota_gives_two_workers_at_1_7_cpus():
    from lambda_fanout_dev.quota import cpu_quota

    quota, why = cpu_quota(1.7)
    if quota is None:
        pytest.skip(f"no cgroup CPU quota on this machine: {why}")
    try:
        out = subprocess.run(
            [sys.executable, "-c", "from lambda_fanout._procpool import vcpus; print(vcpus())"],
            preexec_fn=quota.enter, capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    finally:
        quota.close()
    assert out.strip() == "2"


# -- round trips ---------------------------------------------------------------------------

def test_results_in_order_and_the_worker_is_reused(pool):
    assert run(pool, xproc.square, [1, 2, 3]) == [(True, 1), (True, 4), (True, 9)]
    first = run(pool, xproc.pid, [0])[0][1]
    assert run(pool, xproc.pid, [0])[0][1] == first != os.getpid()
    assert pool.started == 1


def test_task_sent_again_only_when_it_changes(pool):
    worker = pool.acquire()
    try:
        worker.call(task(xproc.square), [2])
        assert worker.task == task(xproc.square)
        assert worker.call(task(xproc.square), [3])[0] == [(True, 9)]
        assert worker.call(task(functools.partial(pow, 2)), [5])[0] == [(True, 32)]
    finally:
        pool.release(worker, keep=1)


def test_exception_comes_back_with_the_worker_traceback(pool):
    (ok1, v1), (ok2, err) = run(pool, xproc.fail_on_odd, [2, 3])
    assert (ok1, v1) == (True, 2)
    assert not ok2 and isinstance(err, ValueError) and str(err) == "odd item 3"
    assert "fail_on_odd" in str(err.__cause__) and "Traceback" in str(err.__cause__)


@pytest.mark.parametrize("fn, kind", [(xproc.interrupt_on, KeyboardInterrupt), (xproc.exit_on, SystemExit)])
def test_base_exception_ends_the_chunk(pool, fn, kind):
    results = run(pool, fn, [1, 2, 3, 4, 5])
    assert results[:2] == [(True, 1), (True, 2)]
    assert len(results) == 3 and isinstance(results[2][1], kind)
    assert run(pool, xproc.square, [4]) == [(True, 16)]  # the worker serves on


def test_stop_on_failure_runs_nothing_after_the_first_failure(pool):
    worker = pool.acquire()
    try:
        results, _ = worker.call(task(xproc.fail_on_odd), [2, 3, 4, 5], stop_on_failure=True)
    finally:
        pool.release(worker, keep=4)
    assert results[0] == (True, 2) and len(results) == 2 and isinstance(results[1][1], ValueError)


def test_unpicklable_item_fails_alone(pool):
    results = run(pool, xproc.identity, [1, threading.Lock(), 3])
    assert results[0] == (True, 1) and results[2] == (True, 3)
    assert not results[1][0] and "cannot be pickled" in str(results[1][1])


def test_an_unpicklable_exit_whose_code_cannot_be_read_comes_back_with_a_failures_status(pool):
    (ok, err), = run(pool, functools.partial(xproc.raise_from_at, xproc.UnreadableExitFrom, 0), [0])
    assert not ok and type(err) is SystemExit and err.code == 1
    assert "UnreadableExitFrom" in "".join(err.__notes__)
    assert run(pool, xproc.square, [4]) == [(True, 16)] and pool.started == 1  # the worker serves on


def test_unpicklable_result_and_exception_are_reported(pool):
    (ok, err), = run(pool, xproc.unpicklable_result, [0])
    assert not ok and "cannot be pickled back" in str(err)
    (ok, err), = run(pool, xproc.raise_needs_two, [0])
    assert not ok and isinstance(err, WorkerError) and "NeedsTwo" in str(err)


def test_worker_that_exits_is_reported_and_replaced(pool):
    worker = pool.acquire()
    with pytest.raises(WorkerError, match=r"exited \(code 3\)") as info:
        worker.call(task(xproc.die), [0, 1])
    assert info.value.started == 1
    later: list = []
    pool.release(worker, keep=4, later=later)
    pool.start_later(later, pool.generation)
    until = time.monotonic() + 10
    while pool.idle() < 1 and time.monotonic() < until:
        time.sleep(0.01)
    assert pool.idle() == 1  # replaced at once, the task loading in the background
    assert run(pool, xproc.square, [5]) == [(True, 25)]


def test_timeout_kills_the_worker_and_a_new_one_serves(pool):
    worker = pool.acquire()
    old = worker.process.pid
    t0 = time.monotonic()
    with pytest.raises(Killed, match="killed") as info:
        worker.call(task(xproc.sleep_s), [60, 1], timeout=0.5)
    assert info.value.started == 1  # the second item never began
    assert time.monotonic() - t0 < 10
    pool.release(worker, keep=4)
    gone = time.monotonic() + 5
    while _alive(old) and time.monotonic() < gone:  # SIGKILL is delivered, not waited for
        time.sleep(0.01)
    assert not _alive(old)
    assert run(pool, xproc.pid, [0])[0][1] != old


def test_interrupt_from_another_thread_unblocks_the_call(pool):
    worker = pool.acquire()
    worker.call(task(xproc.square), [1])  # started
    timer = threading.Timer(0.3, worker.interrupt)
    timer.start()
    with pytest.raises(Killed):
        worker.call(task(xproc.sleep_s), [60])
    timer.join()
    pool.release(worker, keep=4)
    assert pool.idle() == 0  # discarded; a call replaces it (test_processes.py)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- what cannot be pickled -----------------------------------------------------------------

def test_lambda_and_closure_are_refused_saying_what_to_do():
    def local(x):
        return x

    for fn in (lambda x: x, local):
        with pytest.raises(ConfigError) as info:
            _procpool.pickled_task(fn, "processes")
        text = str(info.value)
        assert "cannot be pickled" in text and "module level" in text and "FANOUT_STRATEGY=threads" in text


def test_partial_of_a_module_function_is_accepted():
    data = _procpool.pickled_task(functools.partial(xproc.sleep_s), "processes")
    assert pickle.loads(data).func is xproc.sleep_s


# -- chunking -------------------------------------------------------------------------------

def test_chunk_grows_for_cheap_items_and_stays_one_for_slow_ones():
    cheap = ChunkSizer()
    assert cheap.size() == 1
    cheap.observe(1, 1e-6)
    assert cheap.size() == _procpool.MAX_CHUNK
    slow = ChunkSizer()
    slow.observe(4, 0.2)
    assert slow.size() == 1
    mid = ChunkSizer()
    mid.observe(10, 0.001)
    assert mid.size() == int(_procpool.CHUNK_TARGET_S / 0.0001)


# -- results as they finish, stops between items ----------------------------------------------

def test_results_larger_than_the_arena_come_back_in_order(pool):
    sizes = [300_000] * 5 + [2 * _procpool.ARENA_SIZE, 10, 300_000]
    results = run(pool, xproc.blob, sizes)
    assert [(ok, len(value)) for ok, value in results] == [(True, size) for size in sizes]


def test_a_worker_that_exits_after_spilling_keeps_each_finished_result_once(pool):
    worker = pool.acquire()
    try:
        with pytest.raises(WorkerError, match="exited") as info:
            worker.call(task(xproc.blob), [400_000] * 4 + [-1, 5])
    finally:
        pool.release(worker, keep=4)
    assert [len(value) for _, value in info.value.results] == [400_000] * 4
    assert info.value.started == 5  # item 4 was running; item 5 never began


def test_the_board_stops_a_request_between_items(pool):
    slot = pool.take_slot()
    worker = pool.acquire()
    try:
        timer = threading.Timer(0.3, lambda: pool.board.__setitem__(slot, 1))
        timer.start()
        results, _ = worker.call(task(xproc.sleep_s), [0.05] * 40, slot=slot)
        timer.join()
        assert 0 < len(results) < 40 and all(ok for ok, _ in results)
        assert worker.call(task(xproc.square), [3])[0] == [(True, 9)]  # slot 0: never stopped
    finally:
        pool.release(worker, keep=4)
        pool.free_slot(slot)


def test_unstarted_names_what_a_killed_worker_never_began(pool):
    worker = pool.acquire()
    worker.call(task(xproc.square), [1])  # started
    unstarted: list = []

    def kill():
        sent = worker.sent
        worker.interrupt()
        unstarted.extend(worker.unstarted(sent, 5.0))

    timer = threading.Timer(0.3, kill)
    timer.start()
    with pytest.raises(Killed) as info:
        worker.call(task(xproc.sleep_s), [0, 60, 1, 2], sent=["a", "b", "c", "d"])
    timer.join()
    pool.release(worker, keep=4)
    assert unstarted == ["c", "d"] and info.value.started == 2 and info.value.results == [(True, 0)]


def test_a_replacement_for_a_call_begun_before_a_shutdown_is_not_kept(pool):
    """SnapStart stops the idle workers before the snapshot (shutdown): a replacement for a call
    begun before it, started on its way out, must not put one back."""
    worker = pool.acquire()
    with pytest.raises(WorkerError):
        worker.call(task(xproc.die), [0, 1])
    generation = pool.generation
    pool.shutdown()
    later: list = []
    pool.release(worker, keep=4, later=later)
    pool.start_later(later, generation)
    for thread in threading.enumerate():
        if thread.name == "fanout-replace":
            thread.join(10)
    assert pool.idle() == 0
