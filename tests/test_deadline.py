"""The Lambda deadline: unstarted items are reported, never lost; the call returns in time."""

from __future__ import annotations

import threading
import time

import pytest

import lambda_fanout
import xproc
from lambda_fanout.bench.workloads import sleep_task


@pytest.mark.parametrize("workers", [4, "auto:4"])
def test_deadline_mid_run_reports_every_item(strategy_name, fake_context, monkeypatch, workers):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    ctx = fake_context(400)
    t0 = time.monotonic()
    got = lambda_fanout.map(sleep_task(0.01), range(400), strategy=strategy_name, max_workers=workers,
                            errors="collect", context=ctx)
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert ctx.get_remaining_time_in_millis() > 0, f"returned after the deadline ({elapsed_ms:.0f} ms)"
    # The deadline stopped the reading too: every item read has its outcome, the rest
    # of the input was left unread and the results say so.
    assert got.unread and 0 < len(got) < 400
    assert [o.index for o in got] == list(range(len(got)))
    done = [o for o in got if o.ok]
    cut = [o for o in got if not o.ok]
    assert done  # cut holds what was read ahead and never started (none for asyncio, which reads on demand)
    assert all(isinstance(o.error, lambda_fanout.DeadlineExceeded) for o in cut)
    assert all(o.value == o.index for o in done)
    # Finished items come first: nothing after the cut ran.
    if cut:
        assert max(o.index for o in done) < min(o.index for o in cut) + 4 * 4


def test_deadline_in_raise_mode(strategy_name, fake_context, monkeypatch):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(sleep_task(0.01), range(400), strategy=strategy_name, max_workers=4,
                          context=fake_context(300))
    assert isinstance(info.value.__cause__, lambda_fanout.DeadlineExceeded)


def test_no_time_left_runs_nothing(strategy_name, fake_context):
    ran = []
    got = lambda_fanout.map(lambda_fanout.Task(ran.append, None) if strategy_name != "asyncio" else _arecord(ran),
                            range(5), strategy=strategy_name, errors="collect", context=fake_context(100))
    assert ran == []
    assert got == [] and got.unread


def _arecord(ran):
    async def record(i):
        ran.append(i)

    return record


def test_enough_time_runs_everything(strategy_name, fake_context):
    got = lambda_fanout.map(sleep_task(0), range(50), strategy=strategy_name, errors="collect", context=fake_context(60_000))
    assert all(o.ok for o in got) and len(got) == 50 and not got.unread


def test_hung_task_is_reported_and_its_late_result_ignored(strategy_name, fake_context, monkeypatch):
    name = strategy_name
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "100")
    release = xproc.Flag()
    hang = xproc.Hang(release, {0})  # item 0 hangs past the deadline (never completes, async)
    sync_fn, async_fn = hang, hang.aio

    ctx = fake_context(400)
    try:
        got = lambda_fanout.map(lambda_fanout.Task(sync_fn, async_fn), range(20), strategy=name,
                                max_workers=2, errors="collect", context=ctx)
        assert ctx.get_remaining_time_in_millis() > 0
        snapshot = [(o.ok, o.value) for o in got]
        assert isinstance(got[0].error, lambda_fanout.DeadlineExceeded)
        assert got[0].error.started  # it ran: it may have had side effects
        assert all(o.ok or isinstance(o.error, lambda_fanout.DeadlineExceeded) for o in got)
        assert [o.index for o in got] == list(range(len(got)))
        assert got.unread == (len(got) < 20)
        # sequential stops reading behind the hung item; threads-map behind its windows.
        assert len(got) == 20 or name in ("sequential", "threads-map")
    finally:
        release.set()
    time.sleep(0.05)  # the hung thread finishes now; its result must not reach `got`
    assert [(o.ok, o.value) for o in got] == snapshot
    # The next (warm) call is unaffected.
    assert lambda_fanout.map(lambda_fanout.Task(sync_fn, async_fn), range(1, 6), strategy=name) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("workers", [8, 16])
def test_threads_map_stops_starting_records_beyond_the_window_at_a_hung_record(fake_context, workers):
    """executor.map yields in order: blocked on a hung record, threads-map never submits the
    windows after the one already queued, so those records are reported failed (redelivered);
    threads keeps going and reports only the hung one."""
    import json

    import batches
    from lambda_fanout.strategies.base import WINDOW_PER_WORKER

    release = threading.Event()

    def record(r):
        if json.loads(r["body"])["n"] == 5:
            release.wait()

    failed = {}
    try:
        for strategy in ("threads", "threads-map"):
            out = lambda_fanout.process_batch(batches.sqs(100), record, fake_context(1500), strategy=strategy,
                                              max_workers=workers)
            failed[strategy] = [int(f["itemIdentifier"][4:]) for f in out["batchItemFailures"]]
    finally:
        release.set()
    window = workers * WINDOW_PER_WORKER
    assert failed["threads"] == [5]
    # The hung record's window and the one queued behind it ran; nothing after them started.
    assert failed["threads-map"] == [5] + list(range(2 * window, 100))
