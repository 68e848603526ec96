"""The bench's parts: cost model, ideal time, CPU quota helper, report writer, runner, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lambda_fanout.bench import cost, quota, report, runner
from lambda_fanout.bench.workloads import Options


# -- cost model: worked examples ---------------------------------------------------------

def test_billed_duration_rounds_up_to_the_millisecond():
    assert cost.billed_ms(0) == 1
    assert cost.billed_ms(0.2) == 1
    assert cost.billed_ms(100.0) == 100
    assert cost.billed_ms(100.01) == 101


@pytest.mark.parametrize("duration_ms,memory_mb,arch,expected", [
    # 1 s at 1024 MB = 1 GB-s: 1e6 x $0.0000166667 + $0.20 = $16.8667
    (1000, 1024, "x86_64", 16.8667),
    # 100 ms at 128 MB = 0.0125 GB-s: 1e6 x 0.0125 x 0.0000166667 + 0.20 = $0.408334
    (100, 128, "x86_64", 0.408334),
    # arm64, 250.4 ms billed as 251 ms at 1769 MB: 1e6 x 0.251 x 1769/1024 x 0.0000133334 + 0.20
    (250.4, 1769, "arm64", 1e6 * 0.251 * 1769 / 1024 * 0.0000133334 + 0.20),
    # requests only, practically: 1 ms at 128 MB
    (1, 128, "arm64", 1e6 * 0.001 * 0.125 * 0.0000133334 + 0.20),
])
def test_cost_per_million_worked_examples(duration_ms, memory_mb, arch, expected):
    assert cost.cost_per_million(duration_ms, memory_mb, arch) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("args,match", [((100, 64, "x86_64"), "memory_mb"), ((100, 1024, "ppc"), "arch"),
                                        ((-1, 1024, "x86_64"), "duration_ms")])
def test_cost_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        cost.cost_per_million(*args)


def test_ideal_time_formula():
    assert cost.ideal_seconds(1000, 50, 0.020) == pytest.approx(0.4)
    assert cost.ideal_seconds(1001, 50, 0.020) == pytest.approx(0.42)
    assert cost.ideal_seconds(10, 64, 0.025) == pytest.approx(0.025)
    assert cost.ideal_seconds(0, 8, 1.0) == 0
    with pytest.raises(ValueError):
        cost.ideal_seconds(10, 0, 0.02)


# -- CPU quota helper ----------------------------------------------------------------------

def test_vcpus_follow_lambda_memory():
    assert quota.vcpus_for_memory(1769) == pytest.approx(1.0)
    assert quota.vcpus_for_memory(128) == pytest.approx(128 / 1769)
    assert quota.vcpus_for_memory(10240) == 6


def test_quota_falls_back_with_a_reason(tmp_path):
    q, why = quota.cpu_quota(0.5, v2_roots=(str(tmp_path / "none"),), v1_roots=(str(tmp_path / "none"),))
    assert q is None and "no cgroup cpu controller" in why


def test_quota_v1_layout(tmp_path):
    """A v1-style hierarchy in a temporary folder: the helper writes period and quota."""
    (tmp_path / "cpu.cfs_quota_us").write_text("-1")
    q, why = quota.cpu_quota(0.25, v2_roots=(), v1_roots=(str(tmp_path),))
    assert q is not None, why
    assert (tmp_path / os.path.basename(q.path) / "cpu.cfs_quota_us").read_text() == "5000"
    assert (tmp_path / os.path.basename(q.path) / "cpu.cfs_period_us").read_text() == "20000"


def test_quota_v2_layout(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory")
    q, why = quota.cpu_quota(1.5, v2_roots=(str(tmp_path),), v1_roots=())
    assert q is not None, why
    assert (tmp_path / os.path.basename(q.path) / "cpu.max").read_text() == "30000 20000"


def test_real_quota_limits_a_child_where_the_machine_allows():
    q, why = quota.cpu_quota(0.2)
    if q is None:
        pytest.skip(f"this machine gives no CPU quota: {why}")
    code = "import time\nc=time.process_time(); t=time.perf_counter()\nwhile time.process_time()-c<0.1: pass\nprint(time.perf_counter()-t)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             preexec_fn=q.enter).stdout
    finally:
        q.close()
    # 0.1 s of CPU at 0.2 CPUs needs about 0.5 s of wall time; unthrottled it would take 0.1 s.
    assert float(out) > 0.25


# -- report writer -------------------------------------------------------------------------

def fake_rows():
    base = {"items": 100, "cpu_ms_per_item": 1.0, "memory_mb": 1024, "cpus": 0.58, "section": "main"}
    return [
        {**base, "workload": "latency", "impl": "sequential", "workers": 16, "median_s": 2.0, "ideal_s": 0.14},
        {**base, "workload": "latency", "impl": "threads", "workers": 16, "median_s": 0.15, "ideal_s": 0.14},
        {**base, "workload": "latency", "impl": "asyncio", "workers": 16, "median_s": 0.145, "ideal_s": 0.14},
        {**base, "workload": "latency", "impl": "raw:executor.map", "workers": 16, "median_s": 0.16, "ideal_s": 0.14},
        {**base, "workload": "cpu", "impl": "sequential", "workers": 16, "median_s": 0.05, "ideal_s": None},
        {**base, "workload": "cpu", "impl": "threads", "workers": 16, "median_s": 0.08, "ideal_s": None},
        {**base, "workload": "s3", "impl": "sequential", "workers": 32, "median_s": 3.0, "ideal_s": None,
         "section": "sweep", "memory_mb": 128},
        {**base, "workload": "s3", "impl": "threads", "workers": 32, "median_s": 2.5, "ideal_s": None,
         "section": "sweep", "memory_mb": 128},
        {**base, "workload": "s3", "impl": "sequential", "workers": 32, "median_s": 3.0, "ideal_s": None,
         "section": "sweep", "memory_mb": 1769},
        {**base, "workload": "s3", "impl": "threads", "workers": 32, "median_s": 0.3, "ideal_s": None,
         "section": "sweep", "memory_mb": 1769},
    ]


def test_report_tables_and_recommendations(tmp_path):
    paths = report.write_report(str(tmp_path), fake_rows(), memory_mb=1024, arch="x86_64", notes=["a note"])
    md = (tmp_path / "report.md").read_text()
    assert md == paths["markdown"]
    assert "| asyncio | 16 | 145.0 | 13.79x | 1.04 | 1.000 | $2.62 |" in md
    assert "| sequential | 1 | 2000.0 | 1.00x | - |" in md
    assert "Use `asyncio` (FANOUT_STRATEGY=asyncio, FANOUT_MAX_WORKERS=16): 13.8x faster" in md
    assert "`threads` is within 3% of it" in md
    assert "Keep `sequential`" in md and "holds the GIL" in md
    assert "128 MB: `threads` 1.2x; 1769 MB: `threads` 10.0x" in md
    assert os.path.getsize(paths["chart"]) > 10_000


def cpu_sweep_rows():
    base = {"items": 100, "cpu_ms_per_item": 1.0, "workload": "cpu", "ideal_s": None, "section": "sweep"}
    rows = []
    for memory, cpus, seq, threads, processes in ((128, 0.072, 4.0, 4.1, 4.6), (1769, 1.0, 0.30, 0.31, 0.33),
                                                  (3008, 1.7, 0.30, 0.31, 0.17)):
        for impl, median in (("sequential", seq), ("threads", threads), ("processes", processes)):
            rows.append({**base, "memory_mb": memory, "cpus": cpus, "impl": impl, "median_s": median,
                         "workers": 2 if impl == "processes" and memory > 1769 else 1})
    return rows


def test_report_never_recommends_processes_below_sequential(tmp_path):
    main = [{**r, "section": "main", "memory_mb": 1024, "startup_ms": 180.0 if r["impl"] == "processes" else None}
            for r in cpu_sweep_rows() if r["memory_mb"] == 1769]
    md = report.write_report(str(tmp_path), main + cpu_sweep_rows(), memory_mb=1024, arch="x86_64",
                             notes=[])["markdown"]
    assert "## Memory size: the cpu workload" in md
    assert "128 MB: keep `sequential` (the best, `threads`, runs at 0.98x)" in md
    assert "1769 MB: keep `sequential` (the best, `threads`, runs at 0.97x)" in md
    assert "3008 MB: `processes` 1.8x" in md
    assert "**cpu**: Keep `sequential`" in md
    assert "worker start-up, paid by the first call" in md and "median 180 ms" in md
    assert report.recommend("cpu", main, 1024, "x86_64").startswith("Keep `sequential`")


def test_rows_from_pytest_benchmark_json():
    data = {"benchmarks": [
        {"stats": {"median": 0.5}, "extra_info": {"workload": "s3", "impl": "threads", "workers": 8}},
        {"stats": {"median": 0.1}, "extra_info": {}},
    ]}
    assert report.rows_from_pytest_benchmark(data, "main") == [
        {"workload": "s3", "impl": "threads", "workers": 8, "median_s": 0.5, "section": "main"}]


# -- the library runner and its Lambda handler, against the local endpoint -----------------

def test_runner_library_and_lambda_handler(aws_endpoint, monkeypatch):
    opts = Options(quick=True, items=12, workers=(4,), workloads=("latency", "frequency"), rounds=1, memory_sweep=())
    rows = runner.run(opts, None)
    assert {(r["workload"], r["impl"]) for r in rows} >= {("latency", "sequential"), ("latency", "asyncio"),
                                                          ("frequency", "raw:submit+as_completed")}
    assert all(r["median_s"] > 0 for r in rows)

    class Context:
        memory_limit_in_mb = 512

    monkeypatch.setenv("FANOUT_BENCH_BUCKET", "fanout-handler-bench")
    monkeypatch.setenv("FANOUT_BENCH_TABLE", "fanout-handler-bench")
    out = runner.lambda_handler({"workloads": ["s3", "dynamodb"], "items": 6, "workers": [3], "rounds": 1,
                                 "seed": True}, Context())
    assert "## s3: S3 get_object" in out["report"] and "## dynamodb:" in out["report"]
    assert "512 MB" in out["report"]
    assert {r["impl"] for r in out["rows"]} >= {"sequential", "threads", "threads-map", "asyncio"}


# -- the CLI, end to end -------------------------------------------------------------------

def test_bench_cli_quick_end_to_end(tmp_path):
    cmd = [sys.executable, "-m", "lambda_fanout.bench", "--quick", "--workload", "frequency", "--workload", "s3",
           "--items", "8", "--rounds", "1", "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "AWS_"))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (tmp_path / "report.md").read_text()
    assert "## s3:" in md and "## frequency:" in md and "## Memory size" in md
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(data) == {"main", "sweep-128MB", "sweep-1769MB"}
    assert "[" in proc.stdout and "ok" in proc.stdout  # the progress lines
    # Nothing left running: no moto server or proxy started by this run survives it.
    leftover = subprocess.run(["pgrep", "-f", "lambda_fanout.testing.proxy --upstream"], capture_output=True, text=True)
    mine = [pid for pid in leftover.stdout.split() if _parent_is_gone(pid)]
    assert not mine


def _parent_is_gone(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[3] == "1"
    except OSError:
        return False
