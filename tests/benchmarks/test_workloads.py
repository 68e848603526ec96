"""The workload suite behind ``./build.sh bench``: every strategy beside the raw idioms and peers.

Run by the bench CLI with its options in FANOUT_BENCH_OPTIONS (and its endpoint in
the AWS_* environment), every pass in one process, once in .venv and once in
.venv-peers for the peers whose pins clash with the layer's; run by ``./build.sh test`` once, quick and untimed,
against the test session's own endpoint so it cannot rot. The harness itself is
lambda_fanout.bench.cases.measure_case, shared with the in-Lambda runner.
"""

from __future__ import annotations

import json
import os

import pytest

from lambda_fanout.bench.cases import cases, measure_case, prepare, schedule, scheduled_id
from lambda_fanout.bench.options import Options
from lambda_fanout.bench.seeding import seed
from lambda_fanout.bench.workloads import WORKLOADS, Env, selected

#: The CLI's options, else what ``./build.sh test`` runs: small sizes, one round, every workload.
OPTS = Options.from_env() or Options.create(
    quick=True, items=16, workers=(4,), rounds=1, passes=1, memory_sweep=(), workloads=tuple(WORKLOADS),
    auto_on=("latency", "throttled"))
CASES = cases(OPTS)
SCHEDULE = schedule(OPTS)  # (pass, case) of every timed run


@pytest.fixture(scope="session")
def bench_setup(request):
    """(Env, environment variables) for the AWS workloads; the clients and the shared loop the
    cases made are closed once the suite ends (cases share them, as warm invocations do)."""
    if OPTS.proxy_url or OPTS.endpoint_url:
        from lambda_fanout_dev.endpoint import ProxyControl

        control = ProxyControl(OPTS.proxy_url) if OPTS.proxy_url else None
        yield Env(OPTS.bucket, OPTS.table, control), {}
        if control is not None:
            control.close_control()
    else:
        endpoint = request.getfixturevalue("endpoint")
        names = selected(OPTS)
        needed = max([OPTS.n_items(WORKLOADS[w]) for w in names if WORKLOADS[w].needs_aws] or [0])
        if needed:
            seed(endpoint.moto_url, OPTS.bucket, OPTS.table, needed)
            endpoint.forget()  # written past the proxy: no answer it recorded before holds
        yield Env(OPTS.bucket, OPTS.table, endpoint), endpoint.environ()
    from lambda_fanout import aws
    from lambda_fanout._loop import reset_loop

    reset_loop()
    aws.reset_clients()


@pytest.fixture(scope="session")
def under_quota(bench_setup):
    """Make the cases' clients, then move this process into the CPU quota the CLI made: only the
    cases run under it (the process leaves it once they have all run)."""
    env, environ = bench_setup
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        prepare(CASES, OPTS, env)
        if env.proxy is not None:
            env.proxy.configure()
    if OPTS.quota_procs:
        with open(OPTS.quota_procs, "w") as f:
            f.write(str(os.getpid()))
    yield
    if OPTS.quota_procs:
        # Every case has run: what is left (closing clients, writing the JSON, exiting) measures
        # nothing, and at 128 MB's 0.07 CPUs would take seconds. Back to the cgroup the quota
        # was made in, where the CLI can; else it ends under the quota, as it ran.
        outside = os.path.join(os.path.dirname(os.path.dirname(OPTS.quota_procs)), "cgroup.procs")
        try:
            with open(outside, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass


@pytest.fixture
def bench_env(bench_setup, under_quota, monkeypatch):
    env, environ = bench_setup
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    yield env
    if env.proxy is not None:
        env.proxy.configure()  # no throttling or latency left for whatever runs next


@pytest.mark.parametrize(("number", "case"), SCHEDULE, ids=[scheduled_id(n, c) for n, c in SCHEDULE])
def test_workload(benchmark, number, case, bench_env):
    why_not = case.unavailable()
    if why_not:
        if OPTS.skip_file and number == 1:
            with open(OPTS.skip_file, "a") as f:
                f.write(json.dumps({"workload": case.workload.name, "impl": case.impl, "kind": case.kind,
                                    "skipped": why_not}) + "\n")
        pytest.skip(why_not)
    benchmark.group = f"{case.workload.name}: {case.workload.title}"
    measured = measure_case(case, OPTS, bench_env,
                            lambda fn, rounds, setup: benchmark.pedantic(fn, setup=setup, rounds=rounds,
                                                                         iterations=1),
                            again=number > 1)
    benchmark.extra_info.update(measured.info)
    if case.kind == "strategy":  # the toolkit's own contract; a peer's wrong answer is reported, not fatal
        assert measured.check.ok, measured.check.text
