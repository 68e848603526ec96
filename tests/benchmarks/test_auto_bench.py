"""FANOUT_MAX_WORKERS=auto beside fixed worker counts, side by side in one run.

Workloads against the local endpoint (moto's server behind the latency proxy) and a
pure-latency one: ``latency`` (each item waits 20 ms), ``s3`` (get_object, median
25 ms with a lognormal tail), ``dynamodb`` (get_item, median 8 ms) and ``throttled``
(the s3 workload through the proxy's throttling mode: a token bucket per prefix well
below what 64 workers ask for, answering the excess with S3's 503 SlowDown, which
botocore retries). Each runs under ``threads`` and ``asyncio`` at every fixed count
of SWEEP, and under auto twice: ``auto-first`` forgets what the limiter learned
before each round (a cold first invocation), ``auto-warm`` keeps it (warm ones).

The per-task overhead of auto beside a fixed count is in test_core_bench.py
(``test_overhead_auto_beside_fixed``).

At the end the module prints, per workload and strategy, auto's throughput relative to
the best fixed count and to fixed 16 (the count a cold limiter starts from), each the
median of the rounds with their range (the noise), the best count's wall time, and for
``throttled`` the 503s relative to fixed 64 (run with -s).
Under ``--benchmark-disable`` (``./build.sh test``) each case runs once on few items.
"""

from __future__ import annotations

import statistics
import time

import pytest

import lambda_fanout
from lambda_fanout import _limiter, aws
from lambda_fanout.bench.seeding import ddb_item, ddb_keys, s3_body, s3_keys, seed
from lambda_fanout.bench.workloads import sleep_task

pytestmark = pytest.mark.aws

SWEEP = (4, 8, 16, 32, 64, 128, 256)
AUTO = ("auto-first", "auto-warm")
STRATEGIES = ("threads", "asyncio")
#: Enough for a run of a second or more at the best fixed count on every workload.
ITEMS = 3000
QUICK_ITEMS = 40
ROUNDS = 3
BUCKET = "fanout-auto-bench"
TABLE = "fanout-auto-bench"
#: The throttled workload's token bucket, requests per second per prefix (and its depth).
THROTTLE_RATE = 150
THROTTLE_BURST = 10
WORKLOADS = {
    # name: (proxy delay ms, throttle or None)
    "latency": (None, None),
    "s3": (25.0, None),
    "dynamodb": (8.0, None),
    "throttled": (25.0, {"rate": THROTTLE_RATE, "burst": THROTTLE_BURST}),
}

_results: dict[tuple[str, str], dict[str, dict]] = {}


@pytest.fixture(scope="module")
def bench_endpoint(endpoint):
    seed(endpoint.moto_url, BUCKET, TABLE, ITEMS)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in endpoint.environ().items():
            mp.setenv(name, value)
        for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
            mp.delenv(name, raising=False)
        aws.reset_clients()
        yield endpoint
        endpoint.configure()
        from lambda_fanout._loop import reset_loop

        reset_loop()
        aws.reset_clients()
    _report()


def _task_and_items(workload: str, n: int):
    if workload == "latency":
        return sleep_task(0.020), list(range(n)), list(range(n))
    if workload == "dynamodb":
        keys = ddb_keys(n)
        return aws.dynamodb_get_item(TABLE), [{"pk": {"S": k}} for k in keys], [ddb_item(k) for k in keys]
    keys = s3_keys(n)
    return aws.s3_get_object(BUCKET), keys, [s3_body(k) for k in keys]


@pytest.mark.parametrize("workers", SWEEP + AUTO, ids=str)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("workload", tuple(WORKLOADS))
def test_auto_beside_fixed(benchmark, bench_endpoint, workload, strategy, workers):
    n = QUICK_ITEMS if benchmark.disabled else ITEMS
    delay_ms, throttle = WORKLOADS[workload]
    bench_endpoint.configure(delay_ms=delay_ms or 0.0, tail_sigma=0.5 if delay_ms else 0.0, throttle=throttle)
    task, items, expected = _task_and_items(workload, n)
    max_workers = "auto" if workers in AUTO else workers
    benchmark.group = f"{workload} / {strategy}"
    runs: list[dict] = []

    def setup():
        if workers == "auto-first":
            _limiter.forget()
        bench_endpoint.reset_stats()
        if throttle:
            time.sleep(THROTTLE_BURST / THROTTLE_RATE)  # the bucket refills between rounds

    def once():
        t0 = time.perf_counter()
        out = lambda_fanout.map(task, items, strategy=strategy, max_workers=max_workers, errors="collect")
        wall = time.perf_counter() - t0
        lim = _limiter.learned(task, strategy) if workers in AUTO else None
        runs.append({"wall": wall, "ok": sum(o.ok for o in out), "out": out,
                     "limit": lim.limit if lim else workers, "peak": lim.peak if lim else workers,
                     "history": [(round(t, 4), n) for t, n in lim.history] if lim else None})
        return out

    if workers == "auto-warm":
        _limiter.forget()
        lambda_fanout.map(task, items, strategy=strategy, max_workers="auto", errors="collect")  # the first invocation
    out = benchmark.pedantic(once, setup=setup, rounds=1 if benchmark.disabled else ROUNDS, iterations=1)
    stats = bench_endpoint.stats()

    # Nothing lost: every item came back in order, either its value or a throttling error.
    assert [o.index for o in out] == list(range(n))
    for o in out:
        if o.ok:
            assert o.value == expected[o.index]
        else:
            assert throttle and _limiter.is_throttle(o.error), o.error
    if not throttle:
        assert all(o.ok for o in out)
    median_wall = statistics.median(r["wall"] for r in runs)
    throughputs = [r["ok"] / r["wall"] for r in runs]
    info = {"throughput": statistics.median(throughputs), "throughputs": throughputs, "wall": median_wall,
            "throttled_503": stats["throttled"], "limit": runs[-1]["limit"], "peak": runs[-1]["peak"],
            "failed": n - runs[-1]["ok"]}
    if runs[-1]["history"] is not None:
        info["limit_over_time"] = runs[-1]["history"]  # (seconds, limit) at each change: the chart's data
    benchmark.extra_info.update(info)
    _results.setdefault((workload, strategy), {})[str(workers)] = info


def _report() -> None:
    if not _results:
        return
    lines = ["", "auto beside fixed counts: throughput (ok items/s) relative to the best fixed count"]
    for (workload, strategy), row in sorted(_results.items()):
        fixed = {w: r for w, r in row.items() if w.isdigit()}
        if not fixed:
            continue
        best_w, best = max(fixed.items(), key=lambda kv: kv[1]["throughput"])
        parts = [f"{workload:9s} {strategy:8s} best fixed {best_w:>3s} at {best['throughput']:7.1f}/s "
                 f"({best['wall']:.2f} s)"]
        for name in AUTO:
            if name in row:
                r = row[name]
                parts.append(f"{name} {_ratio(r, best)} of best, {_ratio(r, fixed.get('16'))} of 16 "
                             f"(limit {r['limit']}, peak {r['peak']})")
        if workload == "throttled" and "64" in row:
            f64 = max(row["64"]["throttled_503"], 1)
            parts.append("503s vs fixed 64: " + ", ".join(
                f"{name} {row[name]['throttled_503'] / f64:.2f}x" for name in AUTO if name in row))
            parts.append(f"(fixed 64: {row['64']['throttled_503']} 503s, {row['64']['failed']} failed)")
        lines.append("  ".join(parts))
    print("\n".join(lines))


def _ratio(row: dict, reference: dict | None) -> str:
    """Throughput relative to ``reference``'s median: the median of the rounds, and their range."""
    if reference is None:
        return "-"
    ratios = sorted(t / reference["throughput"] for t in row["throughputs"])
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
