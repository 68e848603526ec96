"""What a function with no ``FANOUT_*`` setting gets, beside fixed worker counts, auto and Powertools.

Cases: 1,000 SQS records through ``process_batch`` with a 10 ms I/O record handler, a
plain one (threads) and an ``async def`` (asyncio, beside Powertools'
``AsyncBatchProcessor``); and the bench workloads ``latency``, ``cpu``, ``frequency``
and ``throttled`` through ``map``. Every configuration runs in one child process under
the CPU share of a 1,024 MB function (a cgroup quota, where the machine allows it; the
endpoint stays outside it), interleaved round by round (tests/benchmarks/defaults_child.py).

The printed table gives, per case and configuration, the median wall time over the
rounds with its range, and the untuned run's ratios: to the best fixed count, to fixed
16 (the default before auto), to Powertools, and for ``throttled`` the 503s. Run it
alone, with its output::

    .venv/bin/python -m pytest tests/benchmarks/test_defaults_bench.py -s -p no:cacheprovider

Under ``--benchmark-disable`` (``./build.sh test``) it runs one round on few items and
checks only the results.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from lambda_fanout.bench.seeding import seed

pytestmark = pytest.mark.aws

CHILD = os.path.join(os.path.dirname(__file__), "defaults_child.py")
BUCKET = "fanout-defaults-bench"
MEMORY_MB = 1024
ROUNDS = 7
FIXED = ("16", "64", "256")
CONFIGS = ("untuned", "untuned+warm", *FIXED, "auto", "auto+warm")
SIZES = {"sqs-sync": 1000, "sqs-async": 1000, "latency": 500, "cpu": 300, "frequency": 20_000, "throttled": 500}
QUICK_SIZES = {name: 20 for name in SIZES}


def test_untuned_beside_fixed_counts_auto_and_powertools(benchmark, endpoint):
    quick = benchmark.disabled
    sizes = QUICK_SIZES if quick else SIZES
    seed(endpoint.moto_url, BUCKET, BUCKET, sizes["throttled"])
    spec = {"rounds": 1 if quick else ROUNDS, "sizes": sizes, "bucket": BUCKET, "proxy_url": endpoint.proxy_url,
            "configs": CONFIGS}
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("FANOUT_") and k not in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_PROFILE")}
    environ.update(endpoint.environ())
    quota, why_not = (None, "quick run") if quick else _quota()
    try:
        out = benchmark.pedantic(_run_child, args=(spec, environ, quota), rounds=1, iterations=1)
    finally:
        if quota is not None:
            quota.close()
    assert set(out) == set(SIZES)
    for name, case in out.items():
        assert all(len(walls) == spec["rounds"] for walls in case["walls"].values()), name
    table = report(out, f"under {quota.describe()} ({MEMORY_MB} MB)" if quota else f"no CPU quota: {why_not}")
    benchmark.extra_info["table"] = table
    print("\n" + table)


def _quota():
    from lambda_fanout_dev.quota import cpu_quota, vcpus_for_memory

    return cpu_quota(vcpus_for_memory(MEMORY_MB))


def _run_child(spec, environ, quota):
    proc = subprocess.run([sys.executable, CHILD, json.dumps(spec)], env=environ, capture_output=True, text=True,
                          timeout=1800, preexec_fn=quota.enter if quota else None)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def report(out: dict, where: str) -> str:
    """The table: median wall (min-max) per configuration, and its ratios to the references.

    A ratio is the median over the rounds of the ratio within each round (the rounds
    interleave every configuration, so each pair ran side by side); the best fixed count
    is the one with the lowest median wall.
    """
    lines = [f"Untuned beside fixed counts, auto and Powertools, {where}: median wall ms (min-max) over the "
             "rounds; each ratio the median of the per-round ratios", "",
             "| case | configuration | wall ms | vs best fixed | vs fixed 16 | vs Powertools | 503s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, case in out.items():
        walls = case["walls"]
        best = min(FIXED, key=lambda c: statistics.median(walls[c]))
        peer = next((c for c in walls if c.startswith("powertools")), None)

        def ratio(config, reference):
            return statistics.median(a / b for a, b in zip(walls[config], walls[reference]))

        for config, w in walls.items():
            cells = [f"{statistics.median(w) * 1000:.0f} ({min(w) * 1000:.0f}-{max(w) * 1000:.0f})",
                     f"{ratio(config, best):.2f}x ({best})", f"{ratio(config, '16'):.2f}x",
                     f"{ratio(config, peer):.2f}x" if peer else "",
                     str(statistics.median(case["throttled_503"][config])) if "throttled_503" in case else ""]
            lines.append(f"| {name} ({case['n']}) | {config} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
