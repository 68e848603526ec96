"""The ``processes`` strategy: its start method, and the cpu workload at Lambda's CPU share.

- start method: a fresh caller with threads running (an asyncio loop thread, a boto3
  client, a thread taking a lock) starts two workers, replaces a killed one, and checks
  that new workers do not inherit the lock held by the caller's thread. Side by side:
  fork, forkserver, spawn. The figures behind ``_procpool.START_METHOD``.
- the cpu workload (the bench's JSON parsing) under a cgroup CPU quota of 128, 1,769 and
  3,008 MB's share (0.07, 1 and 1.7 vCPUs): sequential, threads and processes, timed in
  one child per size (workers inherit its quota). Read the ratios within a size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lambda_fanout import _procpool
from lambda_fanout_dev.quota import cpu_quota, vcpus_for_memory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.parametrize("method", _procpool.START_METHODS)
def test_start_method(benchmark, method):
    benchmark.group = "processes: start method, a fresh caller with threads running (includes interpreter start)"
    runs = []

    def probe():
        out = subprocess.run([sys.executable, os.path.join(HERE, "startprobe.py"), method],
                             capture_output=True, text=True, check=True, timeout=120, cwd=ROOT)
        runs.append(json.loads(out.stdout))

    benchmark.pedantic(probe, rounds=3, iterations=1)
    for key in ("cold_ms", "replace_ms"):
        values = sorted(r[key] for r in runs)
        benchmark.extra_info[key] = round(values[len(values) // 2], 1)
    benchmark.extra_info["lock_free_in_new_workers"] = [r["lock_free_in_new_workers"] for r in runs]
    print(f"\nSTART {method} {json.dumps(benchmark.extra_info)}")


class QuotaChild:
    """A child under the CPU share of ``memory_mb`` that runs the cpu workload on request."""

    def __init__(self, memory_mb: int, items: int) -> None:
        self.quota, why = cpu_quota(vcpus_for_memory(memory_mb))
        self.why = why
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "quota_child.py"), str(items)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=self.quota.enter if self.quota else None,
        )

    def run(self, impl: str) -> dict:
        self.proc.stdin.write(impl + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        if self.quota:
            self.quota.close()


SIZES_MB = (128, 1769, 3008)
_children: dict[int, QuotaChild] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_children():
    yield
    for child in _children.values():
        child.close()


@pytest.mark.parametrize("impl", ["sequential", "threads", "processes"])
@pytest.mark.parametrize("memory_mb", SIZES_MB)
def test_cpu_workload_at_memory(benchmark, memory_mb, impl):
    items = 300 if benchmark.enabled else 30
    benchmark.group = f"processes: cpu workload, {items} items, at {memory_mb} MB's CPU share"
    child = _children.get(memory_mb) or _children.setdefault(memory_mb, QuotaChild(memory_mb, items))
    replies = []
    first = child.run(impl)  # the first processes call starts the workers: timed apart, below
    benchmark.pedantic(lambda: replies.append(child.run(impl)), rounds=5 if benchmark.enabled else 1, iterations=1)
    assert all(r["n"] == items for r in [first, *replies])
    benchmark.extra_info.update(
        memory_mb=memory_mb, impl=impl, workers=first["workers"],
        cpus=first["cpus"] if child.quota else f"not emulated: {child.why}",
    )
    if impl == "processes":
        benchmark.extra_info["first_call_startup_ms"] = round(max(first["startup_ms"][: first["workers"]]), 1)
    print(f"\nCPU {json.dumps(benchmark.extra_info)}")
