"""The bench's parts: cost model, CPU quota, statistics and recommendations, cases, history, runner, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import itertools
import random
import statistics
import zlib

import lambda_fanout
import staging
from lambda_fanout.bench import cases as bench_cases
from lambda_fanout.bench import cost, report, runner, seeding, stats
from lambda_fanout.bench.options import QUICK, Options
from lambda_fanout.bench import workloads as bench_workloads
from lambda_fanout.bench.workloads import WORKLOADS
from lambda_fanout_dev import quota
from lambda_fanout_dev.bench import history


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
    assert not os.path.exists(q.path)


def test_a_quota_is_removed_even_with_a_process_still_in_it():
    """A process the client left behind (or one still exiting) is moved out, so no empty cgroup
    stays behind after the run: the kernel never removes one on its own."""
    q, why = quota.cpu_quota(0.5)
    if q is None:
        pytest.skip(f"this machine gives no CPU quota: {why}")
    left = subprocess.Popen(["sleep", "30"])
    try:
        with open(q.procs_file, "w") as f:
            f.write(str(left.pid))
        q.close()
        assert not os.path.exists(q.path), "the cgroup was left behind"
        assert left.poll() is None  # moved out of the quota, not killed
    finally:
        left.kill()
        left.wait()


# -- statistics: a real difference is named, noise is not ------------------------------------

def samples(center: float, spread: float, n: int, seed: int) -> list[float]:
    """n round times around ``center`` with a relative lognormal spread, as a loaded machine gives."""
    rng = random.Random(seed)
    return [center * rng.lognormvariate(0, spread) for _ in range(n)]


def test_a_real_difference_is_measurable():
    slow, fast = samples(100, 0.05, 8, 1), samples(50, 0.05, 8, 2)
    r = stats.ratio(slow, fast)
    assert r.measurable and r.b_faster and not r.a_faster
    assert 1.8 < r.low <= r.value <= r.high < 2.3
    assert stats.ratio(fast, slow).a_faster


def test_three_rounds_a_side_suffice_for_a_large_difference():
    assert stats.ratio([2.0, 2.2, 2.1], [0.20, 0.25, 0.22]).b_faster


@pytest.mark.parametrize("seed", range(20))
def test_noise_is_never_called_a_difference(seed):
    """Two sets of rounds from one distribution (with the spread of a shared machine): no winner."""
    a, b = samples(50, 0.15, 8, seed), samples(50, 0.15, 8, seed + 1000)
    assert not stats.ratio(a, b).measurable


def test_a_tight_difference_below_the_minimum_effect_is_not_measurable():
    a, b = samples(103, 0.002, 15, 3), samples(100, 0.002, 15, 4)
    r = stats.ratio(a, b)
    assert r.low > 1  # clearly different rounds, yet 3% is within drift between cases
    assert not r.measurable


@pytest.mark.parametrize("a,b", [([1.0, 2.0, float("nan")], [3.0, 3.0]), ([1.0, float("inf")], [1.0]),
                                  ([1.0], [0.0]), ([-1.0, 2.0], [1.0])])
def test_a_ratio_of_times_that_are_not_positive_finite_numbers_is_refused(a, b):
    # A NaN round would otherwise decide a verdict that no interval supports.
    with pytest.raises(ValueError, match="positive, finite"):
        stats.ratio(a, b)


def test_iqr_and_bad_input():
    assert stats.iqr([1, 2, 3, 4, 5]) == (2, 4)
    assert stats.iqr([7.0]) == (7.0, 7.0)
    with pytest.raises(ValueError, match="rounds on both sides"):
        stats.ratio([], [1.0])
    with pytest.raises(ValueError, match="at least one timed round"):
        stats.median([])


# -- recommendations on synthetic rows ------------------------------------------------------

def row(impl, center, *, kind="strategy", workers=16, spread=0.05, n=8, seed=0, cpu=0.1, workload="latency",
        section="main", memory_mb=1024, **extra):
    return {"workload": workload, "impl": impl, "kind": kind, "workers": None if impl == "sequential" else workers,
            "items": 100, "data": samples(center, spread, n, zlib.crc32(f"{impl} {seed} {memory_mb}".encode())),
            "cpu_ms_per_item": cpu, "ideal_s": 0.14, "memory_mb": memory_mb, "cpus": 0.58, "section": section,
            "check": "ok", "check_ok": True, **extra}


def test_noise_recommends_sequential_saying_there_is_no_measurable_difference():
    """CPU-bound work where every strategy is the same work: whatever the medians, keep sequential."""
    for seed in range(10):
        rows = [row(s, 0.050, spread=0.2, seed=seed, workload="cpu", cpu=0.4 + 0.01 * i)
                for i, s in enumerate(lambda_fanout.STRATEGIES)]
        text = report.recommend("cpu", rows)
        assert text.startswith("Keep `sequential`"), text
        assert "no measurable difference" in text or "measurably slower" in text


def test_a_real_gain_is_named_and_ties_go_to_the_cheapest_in_cpu():
    rows = [row("sequential", 2.0), row("threads", 0.150, cpu=0.30), row("asyncio", 0.148, cpu=0.05),
            row("threads-map", 0.40, cpu=0.2), row("raw:executor.map", 0.16, kind="raw"),
            row("peer:gather-all", 0.100, kind="peer", workers=None)]
    text = report.recommend("latency", rows)
    assert text.startswith("Use `asyncio` (FANOUT_STRATEGY=asyncio, FANOUT_MAX_WORKERS=16)"), text
    assert "no measurable difference between `threads` (16 workers), `asyncio` (16 workers)" in text
    assert "threads-map" not in text.split("Beside")[0]  # measurably slower: not part of the tie
    assert "`peer:gather-all` is measurably faster" in text


def test_an_unmeasurable_gain_keeps_sequential():
    rows = [row("sequential", 0.100, spread=0.3), row("threads", 0.090, spread=0.3)]
    text = report.recommend("latency", rows)
    assert text.startswith("Keep `sequential`") and "no measurable difference between `sequential` and `threads`" in text


def test_the_noise_control_raises_the_bar_for_a_gain():
    """A 1.3x gain with tight rounds is named, until the same case measured twice differs by as much."""
    rows = [row("sequential", 0.130, spread=0.02), row("threads", 0.100, spread=0.02)]
    assert report.recommend("cpu", rows).startswith("Use `threads`")
    control = row("threads", 0.135, spread=0.02, seed=7, control=True)
    floor, seen = report.noise_floor(rows + [control])
    assert floor > 1.3 and seen.value > 1.3  # 0.135 / 0.100, the same case twice
    text = report.recommend("cpu", rows + [control])
    assert text.startswith("Keep `sequential`") and "no measurable difference" in text and "Noise: the control" in text
    table = report.workload_table(rows + [control], 1024, "x86_64")
    assert table[-1][0] == "threads (noise control)" and table[0][5].endswith("~")


def fixed_row(impl, data, *, cpu=0.1, workers=None, check="ok", check_ok=True, kind="strategy"):
    """A latency row with the given rounds, as written, rather than drawn around a centre."""
    return {"section": "main", "workload": "latency", "impl": impl, "kind": kind, "workers": workers,
            "items": 100, "profile": None, "control": False, "data": list(data), "cpu_ms_per_item": cpu,
            "check": check, "check_ok": check_ok}


SEQ = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01]


def test_a_change_is_advised_only_for_a_row_measurably_faster_than_untuned():
    """The advice never names a setting that is not shown to beat what an untuned function gets:
    a noisy row tied with a faster one is not picked over the untuned default for being closer
    to it; of the tie, only the rows measurably faster than the untuned one count."""
    untuned = fixed_row("threads", [0.300, 0.302, 0.298, 0.301, 0.299, 0.300, 0.303, 0.297], workers="auto")
    faster = {**fixed_row("asyncio", [0.200, 0.201, 0.199, 0.200, 0.202, 0.198, 0.200, 0.201], workers=16),
              "profile": "lean"}
    noisy = fixed_row("asyncio", [0.10, 0.45, 0.12, 0.40, 0.15, 0.35, 0.11, 0.42], workers="auto")
    rows = [fixed_row("sequential", SEQ), untuned, faster, noisy]
    pick, text = report.choose(rows)
    assert pick is faster, text
    assert report.untuned_clause(rows, pick).endswith("faster than untuned.")
    # Without the faster row, nothing beats the untuned one: it is kept.
    pick, text = report.choose([fixed_row("sequential", SEQ), untuned, noisy])
    assert pick is untuned, text


@pytest.mark.parametrize("flaw, says", [({"failed_items": 4}, "4 items came back failed"),
                                         ({"check_ok": False, "check": "wrong"}, "its result was wrong")])
def test_the_untuned_figure_names_a_lost_or_wrong_result_rather_than_comparing_it(flaw, says):
    """An untuned row faster than the pick only because it lost items or got them wrong is
    said to be so, never called "no measurable difference" from the pick."""
    untuned = {**fixed_row("threads", [0.200, 0.201, 0.199, 0.200, 0.202, 0.198, 0.200, 0.201], workers="auto"),
               **flaw}
    other = fixed_row("threads-map", [0.500, 0.501, 0.499, 0.500, 0.502, 0.498, 0.500, 0.501], workers=16)
    rows = [fixed_row("sequential", SEQ), untuned, other]
    pick, _ = report.choose(rows)
    assert pick is other
    clause = report.untuned_clause(rows, pick)
    assert says in clause and "no measurable difference" not in clause, clause


def test_bench_never_recommends_a_wrong_result():
    """README (bench): the report shows "whether the result was right" and "recommends a strategy per
    workload". A strategy whose results were wrong (here: threads, 3 records missing) is
    no recommendation at all, however fast it ran."""
    rows = [fixed_row("sequential", SEQ, cpu=0.05),
            fixed_row("threads", [x / 10 for x in SEQ], workers=16, check="WRONG: 3 records missing",
                      check_ok=False),
            fixed_row("asyncio", [x / 4 for x in SEQ], workers=16, cpu=0.2)]
    pick, text = report.choose(rows)
    assert pick["impl"] != "threads", text


def test_bench_keep_sequential_claim_holds_for_every_strategy():
    """README: "Two rows differ measurably only when the 95% bootstrap confidence interval ... lies wholly
    beyond the workload's noise floor". choose() says of sequential "every other strategy is
    measurably slower" only when it is so; here asyncio's median is slower but its interval
    overlaps 1x."""
    noisy = [0.5, 0.6, 1.6, 1.7, 1.15, 1.2, 0.55, 1.65]  # median 1.175
    rows = [fixed_row("sequential", SEQ), fixed_row("threads", [x * 1.1 for x in SEQ], workers=16),
            fixed_row("asyncio", noisy, workers=16)]
    assert not stats.ratio(noisy, SEQ).measurable  # the data: asyncio is not measurably slower
    pick, text = report.choose(rows)
    assert pick["impl"] == "sequential"
    assert "every other strategy is measurably slower" not in text, text


def test_bench_processes_below_one_never_recommended():
    """README: "The report keeps sequential wherever the speed-up is not measurable". processes at 0.8x
    and threads within noise: sequential is kept."""
    rows = [fixed_row("sequential", SEQ), fixed_row("processes", [x * 1.25 for x in SEQ], workers=2),
            fixed_row("threads", [x * 1.01 for x in SEQ], workers=16)]
    pick, text = report.choose(rows)
    assert pick["impl"] == "sequential" and "no measurable difference" in text


def test_a_new_strategy_appears_in_the_table_and_can_win():
    rows = [row("sequential", 1.0), row("threads", 0.5), row("processes", 0.2)]
    table = report.workload_table(rows, 1024, "x86_64")
    assert [r[0] for r in table] == ["processes", "threads", "sequential"]
    assert report.recommend("cpu", rows).startswith("Use `processes`")


def test_table_shows_rounds_spread_interval_and_skips():
    rows = [row("sequential", 2.0, n=6), row("threads", 0.15, n=9),
            {"workload": "latency", "impl": "peer:absent", "kind": "peer", "section": "main",
             "skipped": "absent is not installed"}]
    table = report.workload_table(rows, 1024, "x86_64")
    threads = table[0]
    assert threads[0] == "threads" and threads[2] == "9"
    q1, q3 = (float(v) for v in threads[4].split("-"))
    assert q1 < float(threads[3]) < q3
    assert 12 < float(threads[5].split("x")[0]) < 15 and "(" in threads[5] and not threads[5].endswith("~")
    assert table[-1][0] == "peer:absent" and table[-1][-1] == "skipped: absent is not installed"
    md = report.build_markdown(rows, memory_mb=1024, arch="x86_64", notes=["a note"])
    assert "95% bootstrap confidence interval" in md and "skipped: absent is not installed" in md


def test_sweep_recommendation_per_memory_size():
    rows = [row("sequential", 3.0, section="sweep", memory_mb=128, workload="s3"),
            row("threads", 2.9, section="sweep", memory_mb=128, workload="s3", spread=0.2),
            row("sequential", 3.0, section="sweep", memory_mb=1769, workload="s3"),
            row("threads", 0.3, section="sweep", memory_mb=1769, workload="s3")]
    text = report.sweep_recommendation(rows)
    assert "128 MB: no measurable gain over `sequential`" in text and "1769 MB: `threads` 10." in text


def test_the_cpu_sweep_keeps_sequential_where_processes_does_not_gain():
    """Below two vCPUs processes pays its hand-off for nothing; above, it is named with its gain."""
    sweep = []
    for memory, seq, threads, processes in ((128, 4.0, 4.1, 4.6), (1769, 0.30, 0.31, 0.33), (3008, 0.30, 0.31, 0.17)):
        sweep += [row("sequential", seq, section="sweep", memory_mb=memory, workload="cpu"),
                  row("threads", threads, section="sweep", memory_mb=memory, workload="cpu", workers=16),
                  row("processes", processes, section="sweep", memory_mb=memory, workload="cpu",
                      workers=2 if memory > 1769 else 1)]
    main = [{**r, "section": "main", "memory_mb": 1024, "startup_ms": 180.0 if r["impl"] == "processes" else None}
            for r in sweep if r["memory_mb"] == 1769]
    md = report.build_markdown(main + sweep, memory_mb=1024, arch="x86_64", notes=[])
    assert "## Memory size: the cpu workload" in md and "## Memory size: the s3 workload" not in md
    text = report.sweep_recommendation(sweep)
    assert "128 MB: no measurable gain over `sequential`" in text
    assert "1769 MB: no measurable gain over `sequential`" in text
    assert "3008 MB: `processes` 1.7" in text
    assert "**cpu**: Keep `sequential`" in md
    assert "worker start-up, paid by the first call" in md and "median 180 ms" in md


def test_rows_from_pytest_benchmark_json():
    data = {"benchmarks": [
        {"stats": {"median": 0.5, "data": [0.4, 0.5, 0.6]},
         "extra_info": {"workload": "s3", "impl": "threads", "workers": 8, "section": "main"}},
        {"stats": {"median": 0.1, "data": [0.1]}, "extra_info": {}},
    ], "skipped": [{"workload": "s3", "impl": "peer:x", "kind": "peer", "skipped": "why"}]}
    assert history.rows_from_pytest_benchmark(data) == [
        {"workload": "s3", "impl": "threads", "workers": 8, "section": "main", "data": [0.4, 0.5, 0.6]},
        {"section": "main", "workload": "s3", "impl": "peer:x", "kind": "peer", "skipped": "why"}]


# -- cases, options, seeding ------------------------------------------------------------------

def test_cases_follow_the_strategy_registry_and_worker_modes(monkeypatch):
    monkeypatch.setattr(bench_cases, "STRATEGIES", lambda_fanout.STRATEGIES + ("fibers",))
    opts = Options.create(workers=(8, "auto"), workloads=("s3", "cpu"))
    ids = [c.id for c in bench_cases.cases(opts)]
    assert "s3-fibers-8w" in ids and "s3-fibers-autow" in ids and "cpu-fibers-autow" in ids
    # processes: only where the task pickles, once, at one worker per vCPU of the memory size.
    from lambda_fanout._procpool import vcpus

    assert [i for i in ids if "processes" in i] == [f"cpu-processes-{vcpus(opts.memory_mb)}w"]
    assert ids.count("s3-sequential-1w") == 1 and ids.count("cpu-raw:list-comprehension-1w") == 1
    assert ids[ids.index("cpu-sequential-1w") - 1] == "s3-threads-8w-control"  # each workload ends with its control
    assert "s3-peer:aioboto3+gather-8w" not in ids  # it runs from .venv-peers
    peer_ids = [c.id for c in bench_cases.cases(opts, "peers")]
    # auto is the library's mode: the raw idioms and peers run at the counts only.
    assert "s3-peer:aioboto3+gather-8w" in peer_ids and "s3-peer:aioboto3+gather-autow" not in peer_ids
    assert "s3-raw:boto3+ThreadPoolExecutor-8w" in ids and "s3-raw:boto3+ThreadPoolExecutor-autow" not in ids
    assert WORKLOADS["s3"].ideal_s(opts, "auto") is None


def test_every_pass_runs_in_one_schedule_every_other_one_reversed():
    """The suite runs every pass in one process: pass 1 in table order, pass 2 reversed, and so
    on; a later pass's run carries the pass in its id, which the CLI takes off to merge the rounds."""
    ids = [c.id for c in bench_cases.cases(Options.create(workloads=("cpu",)))]
    sched = bench_cases.schedule(Options.create(workloads=("cpu",), passes=3))
    assert [(n, c.id) for n, c in sched] == [(1, i) for i in ids] + [(2, i) for i in ids[::-1]] + [(3, i) for i in ids]
    named = [bench_cases.scheduled_id(n, c) for n, c in sched]
    assert len(set(named)) == len(named) and named[:len(ids)] == ids
    assert [bench_cases.unscheduled(f"test_workload[{name}]") for name in named] == [
        (f"test_workload[{c.id}]", n) for n, c in sched]
    assert bench_cases.unscheduled("test_workload[peer:x@passive-1w]") == ("test_workload[peer:x@passive-1w]", 1)


def test_client_profiles_add_rows_where_the_aws_helpers_have_them(monkeypatch):
    from lambda_fanout import aws

    monkeypatch.setattr(aws, "CLIENT_PROFILES", ("default", "lean", "crt"), raising=False)
    ids = [c.id for c in bench_cases.cases(Options.create(workers=(8,), workloads=("s3", "dynamodb", "cpu")))]
    assert "s3-threads[lean]-8w" in ids and "s3-asyncio[crt]-8w" in ids and "s3-threads-8w" in ids
    assert "dynamodb-threads[lean]-8w" in ids and not [i for i in ids if i.startswith("dynamodb") and "crt" in i]
    assert not [i for i in ids if "[default]" in i or i.startswith("cpu") and "[" in i]
    assert "s3-sequential[lean]-1w" not in ids  # the reference stays one row
    rows = [row("sequential", 1.0), row("threads", 0.5), row("threads", 0.2, profile="lean")]
    assert report.recommend("s3", rows).startswith("Use `threads` (FANOUT_STRATEGY=threads, FANOUT_MAX_WORKERS=16, "
                                                   "client profile lean)")
    assert report.workload_table(rows, 1024, "x86_64")[0][0] == "threads [lean]"


def test_options_declare_their_defaults_once():
    quick = Options.create(quick=True)
    assert quick.workers == QUICK.workers and quick.memory_sweep == QUICK.memory_sweep and quick.n_passes == QUICK.passes
    assert quick.rounds_for(10.0) == QUICK.min_rounds and quick.rounds_for(1e-9) == QUICK.max_rounds
    assert Options.create(rounds=3).rounds_for(1e-9) == 3
    assert Options.create(quick=True, memory_sweep=()).memory_sweep == ()
    sweep = Options.create().sweep_run(128, "s3")
    assert sweep.workloads == ("s3",) and not sweep.with_others and sweep.memory_mb == 128
    # The sweep: s3 at the mode's sizes, cpu below, at and above one vCPU (where processes can help).
    assert Options.create(quick=True).sweeps() == []  # a quick run answers at one memory size
    assert Options.create(quick=True, memory_sweep=(128, 1769)).sweeps() == [
        (128, ("s3", "cpu")), (1769, ("s3", "cpu")), (3008, ("cpu",))]
    assert Options.create(workloads=("s3",)).sweeps() == [(m, ("s3",)) for m in (128, 512, 1769, 3008)]
    assert Options.create(workloads=("frequency",)).sweeps() == [] == Options.create(memory_sweep=()).sweeps()


def test_fifo_failures_cover_the_rest_of_each_failed_group():
    records = seeding.sqs_records(60, groups=10)
    assert {r["attributes"]["MessageGroupId"] for r in records} == {f"group-{g}" for g in range(10)}
    assert seeding.expected_failures(records, 10) == {f"msg-{i:06d}" for i in (13, 23, 33, 43, 53)}
    assert seeding.expected_failures(seeding.sqs_records(200), None) == {"msg-000013", "msg-000110"}


# -- saved runs, history, --compare -------------------------------------------------------------

def pytest_benchmark_doc(rows):
    return {"benchmarks": [{"name": r["impl"], "fullname": r["impl"], "stats": history.stats_dict(r.pop("data")),
                            "extra_info": r} for r in rows], "skipped": []}


def test_saved_runs_history_and_compare(tmp_path):
    before = pytest_benchmark_doc([row("sequential", 2.0), row("threads", 0.30), row("asyncio", 0.20)])
    saved = history.save_run(tmp_path, before, "tuned")
    assert saved.name.endswith("_tuned.json")
    history.append_history(tmp_path, before, "tuned", "./build.sh bench")
    line = json.loads((tmp_path / history.HISTORY).read_text().splitlines()[-1])
    assert line["run"] == "tuned" and len(line["rows"]) == 3 and line["rows"][0]["rounds"] == 8
    label, loaded = history.load_run("tuned", tmp_path)
    assert label == saved.stem and len(loaded["benchmarks"]) == 3
    assert history.load_run(str(saved), tmp_path)[1] == loaded
    with pytest.raises(FileNotFoundError, match="tuned"):
        history.load_run("nothing-saved-so", tmp_path)
    now = [row("sequential", 2.0, seed=5), row("threads", 0.15, seed=5), row("asyncio", 0.20, seed=5)]
    md = history.compare_markdown(label, loaded, now)
    assert "1 of 3 rows changed beyond noise" in md
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| latency")}
    assert "**faster**" in lines["latency threads 16w"] and "within noise" in lines["latency asyncio 16w"]
    # A noise control that moved 2.5x between its two measurements makes the same change noise.
    noisy = now + [row("threads", 0.5, seed=6, control=True)]
    assert "0 of 3 rows changed beyond noise" in history.compare_markdown(label, loaded, noisy)


def test_compare_reads_the_earlier_run_before_this_run_replaces_its_files(tmp_path):
    """``--compare out/benchmark.json`` (the last run's file) and ``--save X --compare X`` compare
    with the earlier run, not with the run being written: a run twice as slow shows as slower."""
    import argparse

    from lambda_fanout_dev.bench import cli

    def run(threads_s):
        return pytest_benchmark_doc([row("sequential", 2.0), row("threads", threads_s), row("asyncio", 0.20)])

    for compare, save in ((str(tmp_path / "benchmark.json"), None), ("tuned", "tuned")):
        cli.finish(argparse.Namespace(compare=None, save="tuned"), Options.create(quick=True), run(0.15), [],
                   tmp_path, "./build.sh bench")
        md = cli.finish(argparse.Namespace(compare=compare, save=save), Options.create(quick=True), run(0.30), [],
                        tmp_path, "./build.sh bench")
        assert "1 of 3 rows changed beyond noise" in md, (compare, md[-1500:])
        lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| latency")}
        assert "**slower**" in lines["latency threads 16w"], (compare, lines)


# -- the library runner and its Lambda handler, against the local endpoint -----------------

def test_runner_library_and_lambda_handler(aws_endpoint, monkeypatch):
    opts = Options.create(quick=True, items=12, workers=(4,), workloads=("latency", "frequency"), rounds=1)
    rows = runner.run(opts, None)
    assert {(r["workload"], r["impl"]) for r in rows} >= {("latency", "sequential"), ("latency", "asyncio"),
                                                          ("frequency", "raw:submit+as_completed")}
    assert all(r["data"] and r["data"][0] > 0 for r in rows)

    class Context:
        memory_limit_in_mb = 512

    monkeypatch.setenv("FANOUT_BENCH_BUCKET", "fanout-handler-bench")
    monkeypatch.setenv("FANOUT_BENCH_TABLE", "fanout-handler-bench")
    out = runner.lambda_handler({"workloads": ["s3", "batch-fifo"], "items": 20, "workers": [3], "rounds": 2,
                                 "seed": True}, Context())
    assert "## s3: S3 get_object" in out["report"] and "## batch-fifo:" in out["report"]
    assert "512 MB" in out["report"]
    batch = [r for r in out["rows"] if r["workload"] == "batch-fifo" and not r.get("skipped")]
    from lambda_fanout.bench.workloads import WORKLOADS

    # Every strategy, but processes only where the workload says it runs in processes (cpu-bound ones).
    strategies = {s for s in lambda_fanout.STRATEGIES if s != "processes" or WORKLOADS["batch-fifo"].in_processes}
    assert {r["impl"] for r in batch} >= strategies | {"peer:powertools SqsFifoPartialProcessor"}
    assert all(r["check"] == "exact: 1 of 20 reported" for r in batch)  # record 13 fails
    skipped = [r for r in out["rows"] if r.get("skipped")]
    assert {r["impl"] for r in skipped} == {"peer:aioboto3+gather", "peer:powertools AsyncBatchProcessor (FIFO)"}


# -- the layer keeps only what the in-Lambda runner needs --------------------------------------

def test_layer_keeps_the_runner_but_not_the_cli(tmp_path):
    # The package as the zip lays it out.
    staging.build_layer_module().copy_package(tmp_path)
    bench = os.path.join(str(tmp_path), "lambda_fanout", "bench")
    shipped = set(os.listdir(bench))
    assert {"runner.py", "cases.py", "report.py", "stats.py", "records.py"} <= shipped
    assert not shipped & {"cli.py", "__main__.py", "quota.py", "chart.py", "history.py"}
    code = "import lambda_fanout.bench.runner as r; print(r.lambda_handler.__name__)"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": os.environ.get("PATH", "")})
    assert out.stdout.strip() == "lambda_handler", out.stderr


def test_the_shipped_package_never_imports_the_dev_tools():
    """lambda_fanout_dev imports lambda_fanout, never the other way: the layer cannot need it."""
    import ast
    from pathlib import Path

    shipped = [*Path(staging.ROOT, "python").rglob("*.py"), *Path(staging.ROOT, "strategies").rglob("*.py")]
    assert len(shipped) > 20
    offenders = []
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path}:{node.lineno} {n}" for n in names if n.split(".")[0] == "lambda_fanout_dev"]
    assert not offenders


# -- the CLI, end to end -------------------------------------------------------------------

def test_a_worker_count_or_workload_given_twice_is_measured_once():
    """``--workers 16,16`` or ``--workload cpu --workload cpu`` asks for the same cases twice: each
    runs once per pass, so pytest never has to tell two apart and every pass merges into one row."""
    once = [c.id for c in bench_cases.cases(Options.create(workers=(16,), workloads=("cpu", "s3")))]
    twice = bench_cases.cases(Options.create(workers=(16, 16), workloads=("cpu", "s3", "cpu")))
    assert [c.id for c in twice] == once and len(set(once)) == len(once)


def test_a_processes_start_up_is_reported_by_the_case_that_started_the_workers_only():
    """Every pass runs in one process: a later pass finds the ``processes`` workers running, so only
    the run that started them reports a start-up, and the report counts each start once."""
    script = """if True:
        from lambda_fanout.bench import cases
        from lambda_fanout.bench.options import Options
        from lambda_fanout.bench.workloads import WORKLOADS
        opts = Options.create(items=8, workers=(2,), rounds=1, passes=2)
        case = cases.Case(WORKLOADS["cpu"], "processes", "strategy", 2)
        first = cases.measure_case(case, opts, None, cases.loop_timer)
        again = cases.measure_case(case, opts, None, cases.loop_timer, again=True)
        print(first.info.get("startup_ms"), again.info.get("startup_ms"), first.check.ok and again.check.ok)
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    first, again, ok = out.stdout.split()
    assert float(first) > 0 and again == "None" and ok == "True"


def test_the_measurements_are_written_before_the_report_is_built(tmp_path, monkeypatch):
    """A report that fails to build loses no measurement: benchmark.json and the saved run are
    written first."""
    import argparse

    from lambda_fanout_dev.bench import cli

    def broken(*args, **kwargs):
        raise RuntimeError("the report could not be built")

    monkeypatch.setattr(cli, "build_markdown", broken)
    doc = {"benchmarks": [], "skipped": [], "machine_info": {}, "commit_info": {}, "datetime": "x", "version": "5"}
    args = argparse.Namespace(compare=None, save="kept")
    with pytest.raises(RuntimeError, match="could not be built"):
        cli.finish(args, Options.create(quick=True), doc, [], tmp_path, "./build.sh bench")
    assert json.loads((tmp_path / "benchmark.json").read_text())["benchmarks"] == []
    assert (tmp_path / history.HISTORY).exists() and not (tmp_path / "report.md").exists()


def test_a_suites_passes_come_back_as_one_row_per_case_with_every_round(capsys):
    """Every pass runs in one suite process: its progress names each run's pass, and the
    later passes' runs (ids marked with the pass) join their case's row, rounds and per-round
    figures together, also for an id that holds brackets of its own."""
    from types import SimpleNamespace

    from lambda_fanout_dev.bench import cli

    lines = ["tests/benchmarks/test_workloads.py::test_workload[s3-threads[crt]-16w] PASSED [ 50%]\n",
             "tests/benchmarks/test_workloads.py::test_workload[s3-threads[crt]-16w@pass2] PASSED [100%]\n"]
    cli._progress(SimpleNamespace(stdout=iter(lines)), "main", 2)
    shown = capsys.readouterr().out.splitlines()
    assert shown == ["  [ 50%] main pass 1/2 s3-threads[crt]-16w ok", "  [100%] main pass 2/2 s3-threads[crt]-16w ok"]

    def row(case_id, data, cpu, endpoint):
        name = f"test_workload[{case_id}]"
        return {"name": name, "fullname": f"tests/benchmarks/test_workloads.py::{name}",
                "stats": history.stats_dict(data), "extra_info": {
                    "check_ok": True, "check": "ok", "rounds": len(data), "cpu_ms_per_item": statistics.median(cpu),
                    "cpu_ms_per_item_rounds": cpu, "endpoint_cpu_ms_per_request": statistics.median(endpoint),
                    "endpoint_cpu_ms_per_request_rounds": endpoint}}

    doc = {"benchmarks": [], "skipped": []}
    part = {"benchmarks": [row("s3-threads[crt]-16w", [0.1, 0.2], [1.0, 2.0], [0.2, 0.1]),
                           row("s3-threads[crt]-16w@pass2", [0.3, 0.5], [3.0, 5.0], [0.15, 0.9])]}
    cli._merge(doc, part, "main", "main")
    [merged] = doc["benchmarks"]
    assert merged["fullname"] == "tests/benchmarks/test_workloads.py::test_workload[s3-threads[crt]-16w]"
    assert merged["stats"]["data"] == [0.1, 0.2, 0.3, 0.5] and merged["extra_info"]["rounds"] == 4
    assert merged["extra_info"]["cpu_ms_per_item_rounds"] == [1.0, 2.0, 3.0, 5.0]
    assert merged["extra_info"]["cpu_ms_per_item"] == 2.5
    # The endpoint's CPU per request too: the median of every round, not of each pass's median.
    assert merged["extra_info"]["endpoint_cpu_ms_per_request_rounds"] == [0.2, 0.1, 0.15, 0.9]
    assert merged["extra_info"]["endpoint_cpu_ms_per_request"] == pytest.approx(0.175)


def test_bench_cli_quick_end_to_end(tmp_path):
    # A user's shell: no settings, and not inside a pytest-xdist worker (pytest-benchmark turns
    # itself off in a pytest started with PYTEST_XDIST_WORKER set).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "AWS_", "PYTEST_XDIST_"))}
    cmd = [sys.executable, "-m", "lambda_fanout_dev.bench", "--quick", "--workload", "frequency", "--workload", "s3",
           "--items", "8", "--rounds", "1", "--memory-sweep", "128,1769", "--out", str(tmp_path), "--save", "first"]
    before = set(_proxies())  # another run's proxies on the same machine are not this run's to check
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (tmp_path / "report.md").read_text()
    assert "## s3:" in md and "## frequency:" in md and "## Memory size" in md
    assert "**Recommendation:**" in md and "95% CI" in md
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "benchmark.json").read_text())
    sections = {b["extra_info"]["section"] for b in data["benchmarks"]}
    assert sections == {"main", "sweep"}
    main_rounds = {len(b["stats"]["data"]) for b in data["benchmarks"] if b["extra_info"]["section"] == "main"}
    assert main_rounds == {QUICK.passes}  # one round in each pass, merged
    s3_rows = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"]["workload"] == "s3"]
    for info in s3_rows:  # the fields a check outside the suite reads, by these names
        assert info["bound_s"] > 0 and info["endpoint_cpu_ms_per_request"] > 0 and info["cpu_ms_per_item"] > 0
        assert (len(info["bound_s_rounds"]) == len(info["cpu_ms_per_item_rounds"])
                == len(info["endpoint_cpu_ms_per_request_rounds"]) == info["rounds"])
    assert "wall / bound" in md
    assert "peer:aioboto3+gather" in md  # a row, measured from .venv-peers or skipped with the reason
    assert "[" in proc.stdout and "ok" in proc.stdout  # the progress lines
    again = subprocess.run(cmd[:5] + ["frequency", "--items", "8", "--rounds", "1", "--no-memory-sweep", "--out",
                                      str(tmp_path), "--compare", "first"], capture_output=True, text=True,
                           timeout=600, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "## Change against 0001_first" in again.stdout and "| frequency sequential |" in again.stdout
    assert len((tmp_path / history.HISTORY).read_text().splitlines()) == 2
    # Nothing left running: no moto server or proxy started by this run survives it.
    mine = [pid for pid in _proxies() if pid not in before and _parent_is_gone(pid)]
    assert not mine


def _proxies() -> list[str]:
    """The pids of every bench proxy running on the machine."""
    found = subprocess.run(["pgrep", "-f", "lambda_fanout_dev.proxy --upstream"], capture_output=True, text=True)
    return found.stdout.split()


def test_bench_cli_rejects_a_bad_compare_reference_before_running(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lambda_fanout_dev.bench", "--compare", "no-such-run", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no such file and no saved run" in proc.stderr


def _parent_is_gone(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[3] == "1"
    except OSError:
        return False


# -- auto and the throttled workload in the bench -----------------------------------------------

def test_auto_joins_the_default_runs_on_the_workloads_the_mode_names():
    quick = [c.id for c in bench_cases.cases(Options.create(quick=True))]
    assert {"latency-threads-autow", "latency-asyncio-autow", "s3-threads-autow", "s3-asyncio-autow"} <= set(quick)
    # auto is the library's default, so it runs on every workload, a fixed 16 beside it.
    assert {"dynamodb-threads-autow", "cpu-threads-autow", "cpu-threads-16w"} <= set(quick)
    assert not any(i.startswith("throttled-") for i in quick)  # slow: left out of quick runs unless named
    full = [c.id for c in bench_cases.cases(Options.create())]
    assert {"throttled-threads-autow", "throttled-threads-16w", "dynamodb-threads-map-autow"} <= set(full)
    assert not any("raw:" in i and "autow" in i for i in full)  # the idioms take counts only
    # Workers given: exactly those; and the memory sweep measures its one count.
    assert not any("autow" in c.id for c in bench_cases.cases(Options.create(quick=True, workers=(8,))))
    swept = Options.create().sweep_run(1769, "s3")
    assert not any("autow" in c.id for c in bench_cases.cases(swept))
    # Against another endpoint (real AWS) there is no proxy to throttle: throttled only when named.
    far = Options.create(endpoint_url="https://s3.example")
    assert "throttled" not in bench_workloads.selected(far)
    assert bench_workloads.selected(dataclasses.replace(far, workloads=("throttled",))) == ("throttled",)
    with pytest.raises(RuntimeError, match="needs the embedded endpoint's proxy"):
        WORKLOADS["throttled"].setup(far, bench_workloads.Env("b", "t", None))


def test_the_limit_over_time_is_reported_per_auto_row():
    history_ = [[0.0, 16], [0.021, 64], [0.043, 256]]
    auto = row("threads", 0.080, workers="auto", limit_over_time=history_, limit_peak=256, limit_final=256)
    samples_ = report.limit_samples(auto, width=9)
    assert samples_[0] == 16 and samples_[-1] == 256 and samples_ == sorted(samples_)
    assert set(samples_) == {16, 64, 256}
    line = report.sparkline([1, 16, 256])
    assert line[0] == report.SPARKS[0] and line[-1] == report.SPARKS[-1] and line[1] == report.SPARKS[4]
    assert report.sparkline([8, 16]) == report.SPARKS[0] + report.SPARKS[-1]  # from its lowest to its highest
    assert report.sparkline([9, 9]) == report.SPARKS[-1] * 2
    md = report.build_markdown([row("sequential", 1.0), row("threads", 0.1), auto], memory_mb=1024,
                               arch="x86_64", notes=[])
    section = md[md.index("## `auto`: the limit over time"):]
    assert "| latency | threads |" in section and "16 \u2192 256" in section and report.sparkline(samples_) != ""
    assert "| auto (peak 256) |" in md  # the workers cell of its table row


def test_rows_that_lost_items_to_throttling_are_never_recommended():
    rows = [row("sequential", 3.0, workload="throttled"),
            row("threads", 0.5, workers=64, workload="throttled", failed_items=12,
                check="ok: 488 read, 12 throttled after botocore's retries", responses_503_per_round=900.0),
            row("threads", 1.2, workers=4, workload="throttled", responses_503_per_round=3.0)]
    text = report.recommend("throttled", rows)
    assert "FANOUT_MAX_WORKERS=4" in text and "FANOUT_MAX_WORKERS=64" not in text, text
    cells = report.workload_table(rows, 1024, "x86_64")
    assert any(c[-1].endswith("12 throttled after botocore's retries; 900 503s per round") for c in cells)


def test_the_charts_draw_the_auto_limits_beside_the_comparison(tmp_path):
    from lambda_fanout_dev.bench import chart

    rows = [row("sequential", 1.0), row("threads", 0.1, workers=8), row("threads", 0.12, workers=32),
            row("asyncio", 0.09, workers="auto", limit_over_time=[[0.0, 16], [0.02, 64]], limit_peak=64,
                limit_final=64)]
    png = b"\x89PNG\r\n\x1a\n"
    for draw, name in ((chart.write_chart, "comparison.png"), (chart.write_limit_chart, "auto-limits.png")):
        path = draw(rows, str(tmp_path / name))
        assert path and (tmp_path / name).read_bytes().startswith(png)
    assert chart.write_limit_chart(rows[:3], str(tmp_path / "none.png")) is None  # no auto row: no chart
    assert not (tmp_path / "none.png").exists()


def test_a_slow_first_warm_up_does_not_leave_a_case_one_round(monkeypatch):
    """The round count comes from a second, warm run of the warm-up slice: a first run
    that starts worker processes (seconds) would otherwise leave the case at the
    minimum of rounds, and its confidence interval on two samples."""
    import time as time_

    calls = []

    class Slow(bench_workloads.Latency):
        def strategy_runner(self, env, strategy, workers, profile=None):
            def run(items):
                calls.append(len(items))
                time_.sleep(0.5 if len(calls) == 1 else 0.0005)  # the first call starts workers
                return list(items)
            return bench_workloads.idioms.Runner(run, lambda: None)

    opts = Options.create(items=64, workers=(4,), passes=1)
    case = bench_cases.Case(Slow(), "threads", "strategy", 4)
    measured = bench_cases.measure_case(case, opts, None, bench_cases.loop_timer)
    assert calls[:2] == [8, 8]  # the warm slice, twice
    assert measured.info["rounds"] > opts.mode.min_rounds, measured.info["rounds"]


# -- the bound of a round ------------------------------------------------------------------

def test_makespan_schedules_the_delays_in_request_order():
    from lambda_fanout.bench.bound import makespan

    assert makespan([1, 1, 1, 1], 2) == 2
    assert makespan([3, 1, 1, 1], 2) == 3  # one worker takes the 3, the other the three 1s
    assert makespan([1, 1, 1, 3], 2) == 4  # in order: the 3 starts last, after a 1 (a reordering would give 3)
    assert makespan([0.02] * 48, 16) == pytest.approx(0.06)  # ceil(N / C) x L without a tail
    assert makespan([5, 1], 64) == 5 and makespan([], 4) == 0 and makespan([2, 2], 1) == 4
    with pytest.raises(ValueError):
        makespan([1], 0)
    with pytest.raises(ValueError):
        makespan([-1], 2)


def test_a_round_bound_is_the_larger_of_the_delays_and_the_cpu_at_the_quota():
    from lambda_fanout.bench.bound import round_bound

    assert round_bound([0.025] * 32, 16, cpu_s=0.01, cpus=0.5) == pytest.approx(0.05)  # the delays
    assert round_bound([0.025] * 32, 16, cpu_s=0.05, cpus=0.5) == pytest.approx(0.1)  # the client's CPU
    with pytest.raises(ValueError):
        round_bound([1], 1, 1, 0)


def test_each_row_reports_its_bound_from_the_rounds_it_ran():
    opts = Options.create(items=32, workers=(8,), rounds=3, passes=1, latency_ms=5)
    case = bench_cases.Case(bench_workloads.WORKLOADS["latency"], "threads", "strategy", 8)
    info = bench_cases.measure_case(case, opts, None, bench_cases.loop_timer).info
    quota = len(os.sched_getaffinity(0))
    assert len(info["bound_s_rounds"]) == 3 == len(info["cpu_ms_per_item_rounds"])
    for bound, cpu_ms in zip(info["bound_s_rounds"], info["cpu_ms_per_item_rounds"]):
        assert bound == pytest.approx(max(4 * 0.005, cpu_ms * 32 / 1000 / quota))
    assert info["bound_s"] == statistics.median(info["bound_s_rounds"])
    sequential = bench_cases.Case(bench_workloads.WORKLOADS["latency"], "sequential", "strategy", None)
    assert bench_cases.measure_case(sequential, opts, None, bench_cases.loop_timer).info["bound_s"] >= 32 * 0.005


# -- advice on one screen --------------------------------------------------------------------

def test_a_tie_keeps_the_default_unless_another_uses_measurably_less_cpu():
    noisy_cpu = {"cpu_ms_per_item_rounds": [0.9, 2.9, 1.0, 3.1, 1.1, 2.8, 0.95, 3.0]}  # median ~2, noisy
    default = lambda_fanout.DEFAULT_MAX_WORKERS  # the untuned rows: no FANOUT_* settings
    rows = [row("sequential", 2.0), row("threads", 0.150, cpu=2.0, cpu_ms_per_item_rounds=[2.0, 2.1, 1.9, 2.0] * 2,
                                        workers=default),
            row("asyncio", 0.149, cpu=1.9, **noisy_cpu, seed=3, workers=default)]
    pick, text = report.choose(rows)
    assert pick["impl"] == "threads" and "it is the default" in text, text
    cheap = [0.5, 0.52, 0.49, 0.5] * 2
    rows[2] = row("asyncio", 0.149, cpu=0.5, cpu_ms_per_item_rounds=cheap, seed=3, workers=default)
    pick, text = report.choose(rows)
    assert pick["impl"] == "asyncio" and "the client CPU of `threads`" in text and "95% CI" in text, text


def test_advice_names_preconditions_and_what_an_untuned_function_gets():
    rows = [row("sequential", 2.0, workload="s3"), row("threads", 0.40, workload="s3", workers=16),
            row("threads", 0.40, workload="s3", workers=lambda_fanout.DEFAULT_MAX_WORKERS, seed=1),
            row("asyncio", 0.10, workload="s3", workers="auto", profile="crt")]
    text = report.advice(rows)
    assert text.startswith("Use `asyncio` (FANOUT_STRATEGY=asyncio, FANOUT_MAX_WORKERS=auto, client profile crt)")
    assert "FANOUT_AWS_CLIENT=crt" in text and "native layer zip" in text and "async form" in text
    assert "figures are warm" in text
    assert "Untuned (no FANOUT_* settings: `threads`, auto workers" in text and "faster than untuned" in text


def test_a_tie_of_many_variants_is_one_short_clause():
    rows = [row("sequential", 2.0, workload="s3")]
    for impl in ("threads", "threads-map", "asyncio"):
        for workers in (16, "auto"):
            for profile in (None, "lean", "crt"):
                rows.append(row(impl, 0.2, workload="s3", workers=workers, profile=profile,
                                seed=zlib.crc32(f"{impl}{workers}{profile}".encode()) % 1000))
    pick, text = report.choose(rows)
    tie = text.split("no measurable difference between ")[1].split(" at this size")[0]
    assert tie == "`threads`, `threads-map`, `asyncio` (16 or auto workers; clients default, lean, crt)", tie


def test_of_rows_measurably_cheaper_than_the_default_the_simplest_is_kept_whatever_their_noise():
    """A/A: the same rows measured again with other noise give the same advice. Of a tie in wall
    time, several rows use measurably less CPU than the untuned one and do not differ among
    themselves: the one that changes the fewest settings is kept, not the lowest median."""
    default = lambda_fanout.DEFAULT_MAX_WORKERS
    picks = set()
    for seed in range(10):
        rng = random.Random(seed)
        cpu = lambda center: [center * rng.uniform(0.8, 1.25) for _ in range(8)]  # noqa: E731
        rows = [row("sequential", 2.0, workload="s3", seed=seed),
                row("threads", 0.2, workload="s3", workers=default, seed=seed + 1, cpu_ms_per_item_rounds=cpu(2.0)),
                row("threads", 0.2, workload="s3", workers=default, profile="crt", seed=seed + 2,
                    cpu_ms_per_item_rounds=cpu(0.6)),
                row("asyncio", 0.2, workload="s3", workers=16, profile="crt", seed=seed + 3,
                    cpu_ms_per_item_rounds=cpu(0.58)),
                row("threads-map", 0.2, workload="s3", workers=default, profile="crt", seed=seed + 4,
                    cpu_ms_per_item_rounds=cpu(0.62))]
        pick, text = report.choose(rows)
        picks.add((pick["impl"], pick["workers"], pick.get("profile")))
        assert text.startswith("Use `threads`") and "client profile crt" in text, text
    assert picks == {("threads", default, "crt")}


def test_a_tie_without_the_untuned_row_keeps_the_one_closest_to_it():
    rows = [row("sequential", 2.0), row("asyncio", 0.150, cpu=0.3), row("threads-map", 0.149, cpu=0.3),
            row("threads", 0.152, cpu=0.3)]
    pick, text = report.choose(rows)
    assert pick["impl"] == "threads" and "it is the closest to the default of them" in text, text


def test_a_row_measurably_slower_than_another_is_never_part_of_the_tie():
    """A/A: a noisy row that happens to have the lowest median does not pull into the tie
    a row that another is measurably faster than (here the untuned one, which a tie keeps)."""
    default = lambda_fanout.DEFAULT_MAX_WORKERS
    picks = set()
    for seed in range(6):
        rows = [row("sequential", 2.0, seed=seed),
                row("asyncio", 0.100, spread=0.01, seed=seed + 1),  # tight, fastest in truth
                row("threads-map", 0.100 if seed % 2 else 0.097, spread=0.35, seed=seed + 2),  # noisy
                row("threads", 0.125, spread=0.01, workers=default, seed=seed + 3)]  # untuned, measurably slower
        assert report.ratio(rows[3]["data"], rows[1]["data"], min_effect=report.noise_floor(rows)[0]).b_faster
        pick, text = report.choose(rows)
        picks.add(pick["impl"])
        assert "`threads` (" not in text.split("; ")[-1] and pick["impl"] != "threads", text
    assert len(picks) == 1, picks


def test_prepared_cases_find_their_clients_made_and_every_answer_recorded(aws_endpoint):
    """Before the CPU quota, prepare() makes each AWS case's clients and has the endpoint record
    each answer the way that case's client asks: a case run afterwards makes no client and
    sends nothing the endpoint has to forward to moto."""
    from lambda_fanout import aws
    from lambda_fanout.bench.seeding import seed
    from lambda_fanout.bench.workloads import Env

    opts = Options.create(quick=True, items=8, workers=(4,), workloads=("s3", "dynamodb"), rounds=1, passes=1,
                          memory_sweep=(), bucket="fanout-prepare", table="fanout-prepare")
    seed(aws_endpoint.moto_url, opts.bucket, opts.table, 8)
    aws_endpoint.forget()
    env = Env(opts.bucket, opts.table, aws_endpoint)
    todo = [c for c in bench_cases.cases(opts) if c.kind == "strategy"]
    assert {c.workload.name for c in todo} == {"s3", "dynamodb"}
    bench_cases.prepare(todo, opts, env)
    made = dict(aws._registry)
    assert made
    aws_endpoint.configure(replay=True)
    aws_endpoint.reset_stats()
    for case in todo:
        runner = case.runner(env)
        try:
            assert case.workload.check(runner.run(case.workload.items(8)), case.workload.items(8)).ok
        finally:
            runner.close()
    stats = aws_endpoint.stats()
    assert stats["requests"] > 0 and stats["replayed"] == stats["requests"]
    assert aws._registry == made  # the same client pairs, none made again


def test_a_prepared_case_warms_up_once_and_auto_twice(aws_endpoint):
    """A strategy case at a fixed worker count on an AWS workload ran before the quota
    (prepare), so one run of its warm-up slice is a warm one and gives its round estimate;
    ``auto``, which learns its limit in the warm-up, still warms up twice."""
    from lambda_fanout.bench.seeding import seed
    from lambda_fanout.bench.workloads import Env

    calls = []

    class Counted(bench_workloads.S3Get):
        def strategy_runner(self, env, strategy, workers, profile=None):
            inner = super().strategy_runner(env, strategy, workers, profile)

            def run(items):
                calls.append(len(items))
                return inner.run(items)
            return bench_workloads.idioms.Runner(run, inner.close)

    opts = Options.create(quick=True, items=8, workers=(4,), workloads=("s3",), rounds=1, passes=1,
                          memory_sweep=(), bucket="fanout-warm", table="fanout-warm")
    seed(aws_endpoint.moto_url, opts.bucket, opts.table, 8)
    aws_endpoint.forget()
    env = Env(opts.bucket, opts.table, aws_endpoint)
    fixed, auto = (bench_cases.Case(Counted(), "threads", "strategy", w) for w in (4, "auto"))
    bench_cases.prepare([fixed, auto], opts, env)
    # In a later pass of the same process (again=True) auto's limiter is warm too: one run.
    for case, again, warm_runs in ((fixed, False, 1), (auto, False, 2), (fixed, True, 1), (auto, True, 1)):
        calls.clear()
        measured = bench_cases.measure_case(case, opts, env, bench_cases.loop_timer, again=again)
        assert measured.check.ok, measured.check.text
        assert calls == [8] * warm_runs + [8] * measured.info["rounds"], (case.id, again, calls)


def test_the_same_rounds_give_the_same_interval_whatever_was_asked_before():
    """Rounds given as whole numbers and the same rounds as floats, in any order, are one
    pair: their interval is the same, whichever was asked first in the process."""
    a, b = [122, 102, 109, 108, 127, 121, 122, 115, 127], [92, 120, 105, 115, 116, 101, 113, 125, 113]
    stats._quantile.cache_clear()
    floats_first = stats.ratio([float(x) for x in a], [float(x) for x in b])
    stats._quantile.cache_clear()
    ints_first = stats.ratio(a, b)
    shuffled = stats.ratio([float(x) for x in reversed(a)], [float(x) for x in b[::2] + b[1::2]])
    assert (floats_first.low, floats_first.high) == (ints_first.low, ints_first.high) == \
        (shuffled.low, shuffled.high)


def test_an_interval_has_finite_exact_ends_for_any_count_and_any_positive_rounds():
    """Hundreds of rounds a side give an interval (no float overflow in the law); an end whose
    quotient overflows a float's range in the search still comes back as the law's own ratio;
    an end on an atom of the law is that atom exactly, so it agrees with the verdict."""
    rng = random.Random(3)
    many = [rng.lognormvariate(0, 0.2) for _ in range(700)]
    r = stats.ratio(many, [x * 1.3 for x in many])
    assert 0.7 < r.low <= r.value <= r.high < 0.8 and r.a_faster

    extreme = stats.ratio([1.0, 1.0, 1.0, 1.0, 1e300], [1e-10, 1.0, 1.0, 1.0, 1.0])
    assert (extreme.low, extreme.high) == (1.0, 1e300)

    on_atom = stats.ratio([25, 23, 24, 19], [18, 20, 18], min_effect=1.05)
    assert on_atom.low == 21 / 20 and not on_atom.measurable  # P(ratio <= 1.05) = 4.35% > 2.5%

    # Ends among the smallest floats, and among rounds a few ulps apart, are found in a few steps.
    assert (stats.ratio([5e-324, 1e-323, 1.5e-323], [1.0]).low, stats.ratio([5e-324, 1e-323, 1.5e-323], [1.0]).high) \
        == (5e-324, 1.5e-323)
    dense = stats.ratio([1 + k * 1e-15 for k in range(40)], [1 + k * 2e-15 for k in range(40)])
    assert 0.99999999 < dense.low <= dense.high < 1.00000001


def test_the_bootstrap_law_of_a_median_is_every_resample_counted():
    """The law the intervals come from is exact: for up to 6 rounds, with and without equal
    rounds, each median's probability is the share of all n**n resamples with that median."""
    import itertools
    from collections import Counter

    rng = random.Random(7)
    for n in range(1, 7):
        for rounds in ([rng.uniform(1, 10) for _ in range(n)], [rng.choice([1.0, 2.0, 3.5]) for _ in range(n)]):
            x = tuple(sorted(rounds))
            counted = Counter(statistics.median(draw) for draw in itertools.product(x, repeat=n))
            values, cumulative = stats._median_law(x)
            law = dict(zip(values, [c - before for c, before in zip(cumulative, (0.0, *cumulative))]))
            assert law.keys() == counted.keys()
            assert all(abs(law[v] - counted[v] / n ** n) < 1e-12 for v in law), (x, law)


def test_the_interval_ends_are_the_laws_percentiles_and_the_verdicts_agree_with_them():
    """low is the least ratio r with P(ratio <= r) > 2.5%, high the least with P > 97.5%, checked
    against every pair of resampled medians; a verdict is what those ends say, near its edge too."""
    rng = random.Random(11)
    for _ in range(40):
        a = [rng.lognormvariate(0, 0.15) * rng.choice([1.0, 1.06, 1.3]) for _ in range(rng.randint(1, 9))]
        b = [rng.lognormvariate(0, 0.15) for _ in range(rng.randint(1, 9))]
        r = stats.ratio(a, b)
        (av, ac), (bv, bc) = stats._median_law(tuple(sorted(a))), stats._median_law(tuple(sorted(b)))
        pairs = sorted((x / y, (pa - qa) * (pb - qb)) for x, pa, qa in zip(av, ac, (0.0, *ac))
                       for y, pb, qb in zip(bv, bc, (0.0, *bc)))
        cumulative = list(itertools.accumulate(p for _, p in pairs))

        def least_above(q):
            return next(v for (v, _), c in zip(pairs, cumulative) if c > q + 1e-12)

        assert r.low == pytest.approx(least_above(0.025), rel=1e-8)
        assert r.high == pytest.approx(least_above(0.975), rel=1e-8)
        assert r.b_faster == (r.low > 1 and (r.low > r.min_effect or r.high < 1 / r.min_effect))
        assert r.a_faster == (r.high < 1 and (r.low > r.min_effect or r.high < 1 / r.min_effect))
        assert r.measurable == (r.low > r.min_effect or r.high < 1 / r.min_effect)