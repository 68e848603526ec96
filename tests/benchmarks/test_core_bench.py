"""Core benchmark: the cost of importing the toolkit, beside the standard library's executor.

Per-task overhead (the ``frequency`` workload: 20,000 trivial items) and the
latency-bound ceiling (the ``latency`` workload) are measured by the workload suite
(test_workloads.py), each strategy beside the raw idioms of lambda_fanout.bench.idioms.RAW.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import staging

PYTHON_DIR = staging.python_dir()


@pytest.mark.parametrize("module", ["concurrent.futures", "lambda_fanout"])
def test_import_time(benchmark, module):
    benchmark.group = "cold start: import in a fresh interpreter (includes interpreter start)"
    cmd = [sys.executable, "-S", "-c", f"import {module}"]
    env = {"PYTHONPATH": PYTHON_DIR, "PATH": os.environ.get("PATH", "")}
    benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True, "env": env}, rounds=15, iterations=1)
