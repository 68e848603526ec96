"""The cost of the failure log line: a 1,000-record SQS batch where every record fails,
with FANOUT_LOG_FAILURES off, type-only (the default) and on, side by side in one group.

The lines go to a real handler writing to a StringIO (as Lambda's runtime writes them to
its log stream), so formatting and the handler's lock are paid, not a no-op logger.

And the deadline a failing batch keeps: 10,000 SQS records that all fail with a deep
chained traceback, at 128 MB's CPU share (0.072 vCPU, a cgroup quota), given 3 s: how
long before the deadline ``process_batch`` returns (``left_ms``; negative is after it,
when Lambda would have timed the invocation out and lost the reply), and how long the
failure log took (``log_ms``, first line to last). The end of the call runs inside the
margin: the cut records share one report of each kind, the reply and the log take a few
plain passes over the records, the garbage collector waits for the reply, and the batch
keeps the tracebacks of the failures it logs only (a full collection over ten thousand
tracebacks took longer than the margin at this CPU share). The reply comes back before
the deadline: the median round must.

And the cost of many items failing deep down, under threads and under processes (whose
workers format each traceback before sending it back).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import subprocess
import sys

import pytest

import batches
import lambda_fanout
import xproc
from lambda_fanout._failures import MAX_LINES
from lambda_fanout_dev.quota import cpu_quota, vcpus_for_memory

RECORDS = 1_000
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def fail(record):
    raise ValueError("refused " + record["messageId"])


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("lambda_fanout")
    logger.addHandler(handler)
    logger.propagate = False  # pytest's own capture would double the work being measured
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.mark.benchmark(group="failure-log: 1,000 failing SQS records, threads")
@pytest.mark.parametrize("level", ["off", "type-only", "on"])
def test_failure_log_cost(benchmark, monkeypatch, log_stream, level):
    monkeypatch.setenv("FANOUT_LOG_FAILURES", level)
    event = batches.sqs(RECORDS)

    def run():
        log_stream.seek(0)
        log_stream.truncate()
        return lambda_fanout.process_batch(event, fail, strategy="threads")

    out = benchmark(run)
    assert len(out["batchItemFailures"]) == RECORDS
    written = log_stream.getvalue()
    # At most MAX_LINES lines a call, and one summary line for the rest.
    assert written.count("lambda_fanout: sqs record #") == (0 if level == "off" else min(RECORDS, MAX_LINES))
    assert written.count("more records failed, not logged one by one") == (level != "off" and RECORDS > MAX_LINES)
    assert ("refused msg-" in written) == (level == "on")
    json.dumps(out)


DEEP_ITEMS = 500
DEEP_CALLS = 400


@pytest.mark.benchmark(group="failure-log: 500 items failing 400 calls deep, chained, collect")
@pytest.mark.parametrize("strategy", ["threads", "processes"])
def test_deep_traceback_cost(benchmark, log_stream, strategy):
    # Every item's traceback is formatted once, trimmed, its frames cached by where they
    # were raised: under processes in the worker, as the failure log does in the caller.
    task = functools.partial(xproc.fail_deep, DEEP_CALLS)
    out = benchmark.pedantic(lambda_fanout.map, (task, range(DEEP_ITEMS)),
                             {"strategy": strategy, "max_workers": 2, "errors": "collect"}, rounds=3)
    assert [type(o.error) for o in out] == [ValueError] * DEEP_ITEMS


DEADLINE_RECORDS = 10_000
DEADLINE_MEMORY_MB = 128
REMAINING_MS = 3_000


@pytest.fixture(scope="module")
def quota_child():
    """A child under 128 MB's CPU share that runs the failing batch on request."""
    quota, why = cpu_quota(vcpus_for_memory(DEADLINE_MEMORY_MB))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "failure_log_child.py"), str(DEADLINE_RECORDS)], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=quota.enter if quota else None,
    )

    def run(level: str) -> dict:
        proc.stdin.write(f"{level} {REMAINING_MS}\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    run.cpus = f"{quota.cpus:.3f}" if quota else f"not emulated: {why}"
    run.emulated = quota is not None
    try:
        yield run
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
        proc.stdout.close()
        if quota:
            quota.close()


@pytest.mark.parametrize("level", ["type-only", "on"])
def test_a_failing_batch_returns_before_the_deadline(benchmark, quota_child, level):
    benchmark.group = (f"failure-log: {DEADLINE_RECORDS:,} failing SQS records, deep chained tracebacks, "
                       f"{DEADLINE_MEMORY_MB} MB's CPU share, {REMAINING_MS} ms left")
    replies = []
    benchmark.pedantic(lambda: replies.append(quota_child(level)), rounds=5 if benchmark.enabled else 1,
                       iterations=1)
    assert all(r["failed"] == DEADLINE_RECORDS for r in replies)  # every record reported, cut or failed
    # The lines: at most MAX_LINES, the summary of the rest, the deadline's summary.
    assert all(r["lines"] <= MAX_LINES + 2 for r in replies)
    left = sorted(r["left_ms"] for r in replies)
    log = sorted(r["log_ms"] for r in replies)
    if quota_child.emulated:
        # The goal itself, timed: the median round (a machine shared with other work
        # can stall any single one).
        assert left[len(left) // 2] > 0, f"the reply came {-left[len(left) // 2]:.0f} ms after the deadline"
    benchmark.extra_info.update(cpus=quota_child.cpus, level=level, left_ms_min=left[0],
                                left_ms_median=left[len(left) // 2], log_ms_median=log[len(log) // 2],
                                log_ms_max=log[-1], lines_max=max(r["lines"] for r in replies))
    print(f"\nDEADLINE {json.dumps(benchmark.extra_info)}")
