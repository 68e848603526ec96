"""The workload suite behind ``./build.sh bench``: every strategy beside the raw idioms.

Run by the bench CLI with its options in FANOUT_BENCH_OPTIONS (and its endpoint in
the AWS_* environment); run by ``./build.sh test`` once, quick and untimed, against
the test session's own endpoint so it cannot rot.
"""

from __future__ import annotations

import pytest

from lambda_fanout.bench.runner import row
from lambda_fanout.bench.workloads import WORKLOADS, Env, Options, cases, measure, seed

OPTS = Options.from_env()
CASES = cases(OPTS)


@pytest.fixture(scope="session")
def bench_setup(request):
    """(Env, environment variables) for the AWS workloads."""
    if OPTS.proxy_url or OPTS.endpoint_url:
        from lambda_fanout.testing.endpoint import ProxyControl

        return Env(OPTS.bucket, OPTS.table, ProxyControl(OPTS.proxy_url) if OPTS.proxy_url else None), {}
    endpoint = request.getfixturevalue("endpoint")
    names = OPTS.workloads or tuple(WORKLOADS)
    needed = max([OPTS.n_items(WORKLOADS[w]) for w in names if WORKLOADS[w].needs_aws] or [0])
    if needed:
        seed(endpoint.moto_url, OPTS.bucket, OPTS.table, needed)
    return Env(OPTS.bucket, OPTS.table, endpoint), endpoint.environ()


@pytest.fixture
def bench_env(bench_setup, monkeypatch):
    env, environ = bench_setup
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    yield env
    from lambda_fanout import aws
    from lambda_fanout._loop import reset_loop

    reset_loop()
    aws.reset_clients()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_workload(benchmark, case, bench_env):
    workload = case.workload
    benchmark.group = f"{workload.name}: {workload.title}"
    call, close, items = case.prepare(OPTS, bench_env)
    cpu: list[float] = []

    def timed():
        result, _, cpu_s = measure(call)
        cpu.append(cpu_s)
        return result

    try:
        result = benchmark.pedantic(timed, rounds=OPTS.rounds, iterations=1, warmup_rounds=1)
    finally:
        close()
    expected = workload.expected(items, OPTS)
    if expected is not None:
        assert result == expected
    timed_cpu = sorted(cpu[1:] or cpu)  # the warm-up round pays for client creation
    info = row(case, OPTS, "main", len(items), 0.0, timed_cpu[len(timed_cpu) // 2])
    info.pop("median_s")
    info.pop("section")
    if case.impl == "processes":
        from lambda_fanout._procpool import get_pool

        # The first call waited for its slowest worker to start (they start side by side).
        started = get_pool().startup_ms[:case.workers]
        info["startup_ms"] = max(started) if started else None
    benchmark.extra_info.update(info)
