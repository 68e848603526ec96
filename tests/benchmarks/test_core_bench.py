"""Core benchmarks: per-task overhead and the latency-bound ceiling, beside the raw idioms.

Each group puts the toolkit's strategies beside the standard-library idiom they wrap,
in one run, so ratios (not absolute times) are what to read.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

import lambda_fanout
import staging
from lambda_fanout.bench import idioms
from lambda_fanout.bench.workloads import sleep_task

OVERHEAD_ITEMS = 20_000
OVERHEAD_WORKERS = 16
LATENCY_ITEMS = 1_000
LATENCY_S = 0.020
LATENCY_WORKERS = 50


def trivial(x):
    return x + 1


async def atrivial(x):
    return x + 1


TRIVIAL = lambda_fanout.Task(trivial, atrivial)


WAIT = sleep_task(LATENCY_S)


# -- the raw idioms a user would write by hand: the bench's one table ---------------------

RAW = {name: idiom for name, idiom in idioms.RAW.items() if idiom.form in ("sync", "async")}


@pytest.fixture
def raw_runner():
    """Builds a raw idiom once per test (its reused loop included) and closes it after."""
    runners = []

    def build(name, task, workers):
        runner = idioms.build(name, task, {}, workers)
        runners.append(runner)
        return runner

    yield build
    for runner in runners:
        runner.close()


# -- per-task overhead ---------------------------------------------------------------

@pytest.mark.parametrize("impl", list(lambda_fanout.STRATEGIES) + list(RAW))
def test_overhead_20k_trivial(benchmark, raw_runner, impl):
    benchmark.group = f"overhead: {OVERHEAD_ITEMS} trivial tasks, {OVERHEAD_WORKERS} workers"
    items = list(range(OVERHEAD_ITEMS))
    if impl in RAW:
        runner = raw_runner(impl, TRIVIAL, OVERHEAD_WORKERS)
        result = benchmark.pedantic(runner.run, args=(items,), rounds=5, iterations=1)
    else:
        # processes: one worker per vCPU (its default); the warm-up round starts them.
        workers = None if impl == "processes" else OVERHEAD_WORKERS
        result = benchmark.pedantic(
            lambda_fanout.map, args=(TRIVIAL, items),
            kwargs={"strategy": impl, "max_workers": workers}, rounds=5, iterations=1, warmup_rounds=1,
        )
    assert result == [x + 1 for x in items]


@pytest.mark.parametrize("workers", [OVERHEAD_WORKERS, "auto"], ids=str)
# processes takes auto as its vCPU count, with no limiter: nothing of auto's to measure there.
@pytest.mark.parametrize("strategy", [s for s in lambda_fanout.STRATEGIES if s not in ("sequential", "processes")])
def test_overhead_auto_beside_fixed(benchmark, strategy, workers):
    """FANOUT_MAX_WORKERS=auto's own cost per task: the limiter's timing and decisions."""
    benchmark.group = f"overhead, auto beside fixed: {OVERHEAD_ITEMS} trivial tasks, {strategy}"
    items = list(range(OVERHEAD_ITEMS))
    result = benchmark.pedantic(lambda_fanout.map, args=(TRIVIAL, items),
                                kwargs={"strategy": strategy, "max_workers": workers}, rounds=7, iterations=1)
    assert result == [x + 1 for x in items]


# -- latency-bound ceiling ------------------------------------------------------------

IDEAL_S = math.ceil(LATENCY_ITEMS / LATENCY_WORKERS) * LATENCY_S


@pytest.mark.parametrize(
    # processes is for CPU-bound items: 50 processes waiting on sleeps prove nothing.
    "impl", [s for s in lambda_fanout.STRATEGIES if s not in ("sequential", "processes")]
    + ["raw:submit+as_completed", "raw:executor.map", "raw:gather+semaphore"],
)
def test_latency_1000x20ms(benchmark, raw_runner, impl):
    benchmark.group = f"latency: {LATENCY_ITEMS} items x {LATENCY_S * 1000:.0f} ms, {LATENCY_WORKERS} workers"
    benchmark.extra_info["ideal_s"] = IDEAL_S
    items = list(range(LATENCY_ITEMS))
    if impl in RAW:
        runner = raw_runner(impl, WAIT, LATENCY_WORKERS)
        result = benchmark.pedantic(runner.run, args=(items,), rounds=3, iterations=1)
    else:
        result = benchmark.pedantic(
            lambda_fanout.map, args=(WAIT, items),
            kwargs={"strategy": impl, "max_workers": LATENCY_WORKERS}, rounds=3, iterations=1,
        )
    assert result == items


# -- import cost ----------------------------------------------------------------------

PYTHON_DIR = staging.python_dir()


@pytest.mark.parametrize("module", ["concurrent.futures", "lambda_fanout"])
def test_import_time(benchmark, module):
    benchmark.group = "cold start: import in a fresh interpreter (includes interpreter start)"
    cmd = [sys.executable, "-S", "-c", f"import {module}"]
    env = {"PYTHONPATH": PYTHON_DIR, "PATH": os.environ.get("PATH", "")}
    benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True, "env": env}, rounds=15, iterations=1)
