"""Case preparation and the one measurement harness.

A case is one (workload, implementation, workers) row. :func:`measure_case` prepares
it, warms it up on a slice of its items (client creation, connections), picks the
number of rounds, times them through a *timer* and checks the result. The timer is
pytest-benchmark's fixture in the suite behind ``./build.sh bench``
(tests/benchmarks/test_workloads.py), and :class:`LoopTimer` inside Lambda, where
pytest is not at hand; everything else is shared.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

from .. import STRATEGIES, aws
from . import idioms, peers
from .bound import EndpointRounds, round_bound
from .options import Options
from .stats import median
from .workloads import WORKLOADS, Check, Env, Workload, selected

#: The strategy every other one is compared against: a plain loop.
REFERENCE = "sequential"
KINDS = ("strategy", "raw", "peer")


@dataclasses.dataclass(frozen=True)
class Case:
    workload: Workload
    impl: str
    kind: str  # one of KINDS
    workers: Any  # a worker count or mode; None for implementations without one
    profile: str | None = None  # a lambda_fanout.aws client profile other than the default
    control: bool = False  # a second measurement of a case, at the other end of its workload: the noise floor

    @property
    def id(self) -> str:
        profile = f"[{self.profile}]" if self.profile else ""
        return (f"{self.workload.name}-{self.impl}{profile}-{self.workers if self.workers is not None else 1}w"
                + ("-control" if self.control else ""))

    @property
    def venv(self) -> str:
        return peers.PEERS[self.impl].venv if self.kind == "peer" else "main"

    def unavailable(self) -> str | None:
        """Why this case cannot run in this process, or None."""
        return peers.PEERS[self.impl].unavailable() if self.kind == "peer" else None

    def concurrency(self, n_items: int) -> int:
        """How many items this case can have in flight: its pool's size (``auto``: ``limit_peak``
        is used instead), one for what runs items one at a time, all of them for what gathers."""
        if self.workers is None:
            if self.kind == "strategy" or (self.kind == "raw" and not idioms.RAW[self.impl].concurrent):
                return 1
            return 1 if self.kind == "peer" and peers.PEERS[self.impl].one_at_a_time else n_items
        return self.workload.concurrency(self.workers) or n_items

    def runner(self, env: Env | None) -> idioms.Runner:
        w = self.workload
        if self.kind == "strategy":
            return w.strategy_runner(env, self.impl, self.workers, self.profile)
        if self.kind == "raw":
            return idioms.build(self.impl, w.task(env), w.client_calls(env) if env else {}, self.workers)
        return peers.PEERS[self.impl].make(w, env, self.workers)


def _takes_workers(impl: str, kind: str) -> bool:
    if kind == "strategy":
        return impl != REFERENCE
    if kind == "raw":
        return idioms.RAW[impl].concurrent
    return peers.PEERS[impl].takes_workers


#: The strategy for CPU-bound items: it runs only the workloads whose task pickles
#: (Workload.in_processes), once, at one worker per vCPU of the emulated memory size.
PROCESSES = "processes"


def _own_workers(impl: str, kind: str, opts: Options) -> tuple[bool, Any]:
    """(fixed, count): whether a case ignores the worker sweep, and its own count if so:
    none for what takes none, one per vCPU of the emulated memory size for processes."""
    if not _takes_workers(impl, kind):
        return True, None
    if kind == "strategy" and impl == PROCESSES:
        from .._procpool import vcpus

        return True, vcpus(opts.memory_mb)
    return False, None


def client_profiles(service: str | None = None) -> tuple[str, ...]:
    """lambda_fanout.aws's client profiles other than its default (none where it has no profiles).

    ``service``: only those that change its calls (``crt`` changes S3's alone, see ``aws.NATIVE``).
    """
    default = getattr(aws, "DEFAULT_PROFILE", "default")
    native = getattr(aws, "NATIVE", {})
    return tuple(p for p in getattr(aws, "CLIENT_PROFILES", ()) if p != default
                 and (service is None or p not in native or service in native[p]))


def cases(opts: Options, venv: str | None = None) -> list[Case]:
    """Every case of ``opts`` that runs in ``venv`` (default: opts.venv), in table order.

    Each workload ends with a control: its first concurrent strategy measured again, so
    the report can tell how far two measurements of the same thing differ in this run.
    Strategies come from lambda_fanout.STRATEGIES and client profiles from
    lambda_fanout.aws.CLIENT_PROFILES, so a new strategy, worker mode or profile
    appears in every table without code here (``processes`` only on the workloads whose
    task pickles, at its own worker count). Profiles other than the default add a
    row per concurrent strategy on the workloads whose calls they change.
    """
    venv = venv or opts.venv
    out = []
    for name in selected(opts):
        w = WORKLOADS[name]
        first = len(out)
        impls = [(s, "strategy") for s in STRATEGIES if s != PROCESSES or w.in_processes]
        if opts.with_others:
            impls += [(r, "raw") for r in w.raws] + [(p, "peer") for p in w.peers]
        for number, workers in enumerate(opts.workers_for(w)):
            for impl, kind in impls:
                fixed, count = _own_workers(impl, kind, opts)
                if fixed and number:
                    continue  # one row is enough for what has no worker count, or its own
                if not fixed and kind != "strategy" and not isinstance(workers, int):
                    continue  # a mode such as auto is the library's: the idioms and peers take counts
                count = count if fixed else workers
                profiles = (None,) + (client_profiles(w.profiled) if kind == "strategy" and count is not None
                                      and w.profiled else ())
                for profile in profiles:
                    case = Case(w, impl, kind, count, profile)
                    if case.venv == venv and case not in out:  # a worker count or workload given twice
                        out.append(case)
        control = next((c for c in out[first:] if c.kind == "strategy" and c.workers is not None), None)
        if control is not None:
            out.append(dataclasses.replace(control, control=True))
    return out


#: What a later pass adds to a case's id in the suite (``s3-threads-16w@pass2``).
PASS_MARK = "@pass"


def schedule(opts: Options, venv: str | None = None) -> list[tuple[int, Case]]:
    """(pass number from 1, case) of every timed run of ``cases(opts, venv)``, in the order they run.

    Every other pass runs the cases in reverse order (see :class:`~.options.Mode`), all in one
    process: a later pass finds what an earlier one left warm, as a warm invocation would.
    """
    todo = cases(opts, venv)
    return [(number, case) for number in range(1, opts.n_passes + 1)
            for case in (todo if number % 2 else todo[::-1])]


def scheduled_id(number: int, case: Case) -> str:
    """The id of ``case``'s run in pass ``number``: its own id in pass 1, marked with the pass after."""
    return case.id if number == 1 else f"{case.id}{PASS_MARK}{number}"


def unscheduled(name: str) -> tuple[str, int]:
    """(the name with the pass mark removed, the pass number) of a name holding a scheduled id."""
    head, mark, tail = name.rpartition(PASS_MARK)
    digits = len(tail) - len(tail.lstrip("0123456789"))
    if not mark or not digits:
        return name, 1
    return head + tail[digits:], int(tail[:digits])


def warm_slice(items: list, workers: Any) -> list:
    """The items a warm-up runs: enough to open a connection per worker, never all of a large batch."""
    if workers is None:  # one at a time: a few items create the clients
        return items[:8]
    return items[:max(8, workers if isinstance(workers, int) else 32)]


def prepare(todo: list[Case], opts: Options, env: Env | None) -> None:
    """Make what the AWS cases of ``todo`` will use once, before any is measured: their clients,
    the shared event loop, the imports behind them, each answer recorded by the endpoint.

    Each case still warms up before its rounds; this only keeps a suite from paying client
    creation once per case, under a CPU quota where it is slowest (0.07 vCPU at 128 MB). Run it
    before the quota is entered, and keep the clients and the loop until the suite ends.
    """
    if env is None:
        return
    seen = set()
    for case in todo:
        w = case.workload
        key = (w.name, case.impl, case.kind, case.profile)
        if not w.needs_aws or key in seen or case.unavailable():
            continue
        seen.add(key)
        w.setup(opts, env)
        items = w.items(opts.n_items(w))
        if env.proxy is not None:
            env.proxy.configure(replay=True)  # no delay: nothing here is measured
            env.proxy.reset_stats()
        runner = case.runner(env)
        try:
            # The warm-up's slice makes the clients and opens their connections; every item only
            # where the endpoint has answers to record (a first run, a client asking in a new way).
            runner.run(warm_slice(items, case.workers))
            if env.proxy is None or _forwarded(env.proxy):
                runner.run(items)
        finally:
            runner.close()


@dataclasses.dataclass
class Measured:
    """What :func:`measure_case` learned: the report's row fields, the result check, the timer's output."""

    info: dict
    check: Check
    timed: Any


Timer = Callable[[Callable[[], Any], int, Callable[[], None]], Any]


def measure_case(case: Case, opts: Options, env: Env | None, timer: Timer, *, section: str = "main",
                 again: bool = False) -> Measured:
    """Prepare, warm up, time and check one case.

    Args:
        timer: ``timer(fn, rounds, setup)`` runs ``fn`` for ``rounds`` timed rounds, each
            after an untimed ``setup()``, and returns what the caller wants back; its last
            call's result must be ``fn``'s.
        again: this process measured the case before (an earlier pass): a strategy's
            clients, pool and limiter outlive its runner, so one warm-up run is a warm one.

    Returns:
        The row fields (without wall times, which the timer holds), the check, and the timer's return.
    """
    w = case.workload
    w.setup(opts, env)
    items = w.items(opts.n_items(w))
    warm = warm_slice(items, case.workers)
    runner = case.runner(env)
    results: list = []
    cpu: list[float] = []

    def one_round() -> Any:
        c0 = time.process_time()
        out = runner.run(items)
        cpu.append(time.process_time() - c0)
        results[:] = [out]
        return out

    proxied = w.needs_aws and env is not None and env.proxy is not None
    try:
        if proxied:
            env.proxy.reset_stats()
        starts = _worker_starts(case)
        t0 = time.perf_counter()
        runner.run(warm)  # first: clients, connections, processes' workers
        took = time.perf_counter() - t0
        # The warm-up waited for the slowest of the workers it started (they start side by side).
        started = _worker_starts(case)[len(starts):]
        recorded = proxied and _forwarded(env.proxy)
        if recorded:
            # Requests the endpoint had no recorded answer for: this client asks in a way not seen
            # before. Have every item's answer recorded now, without delay, not in a timed round.
            env.proxy.configure(replay=True)
            runner.run(items)
            w.setup(opts, env)
        if recorded or not _warm_at_once(case, env, again):
            # The round estimate comes from a second, warm run: a first one that starts worker
            # processes (a second or two) would leave a case one round per pass.
            t0 = time.perf_counter()
            runner.run(warm)
            took = time.perf_counter() - t0
        estimate = took * len(items) / max(len(warm), 1)
        rounds = opts.rounds_for(estimate)
        endpoint = EndpointRounds(env.proxy) if proxied else None
        if endpoint is not None:
            env.proxy.reset_stats()  # count what the timed rounds drew, not the warm-up
        timed = timer(one_round, rounds, endpoint.start if endpoint is not None else lambda: None)
        if endpoint is not None:
            endpoint.finish()
        proxy_stats = env.proxy.stats(since=1 << 62) if w.needs_proxy else None
    finally:
        runner.close()
    check = w.check(results[0], items)
    info = {
        "workload": w.name, "impl": case.impl, "kind": case.kind, "workers": case.workers, "items": len(items),
        "profile": case.profile, "control": case.control,
        "rounds": rounds, "cpu_ms_per_item": median(cpu) * 1000 / max(len(items), 1),
        "cpu_ms_per_item_rounds": [c * 1000 / max(len(items), 1) for c in cpu],
        "ideal_s": w.ideal_s(opts, case.workers), "memory_mb": opts.memory_mb, "cpus": opts.cpus,
        "check": check.text, "check_ok": check.ok, "failed_items": check.failed, "section": section,
    }
    if proxy_stats is not None:
        info["responses_503_per_round"] = proxy_stats["throttled"] / rounds
    if case.kind == "strategy" and isinstance(case.workers, str):
        info.update(_limit_figures(case, env))
    if endpoint is not None:
        info["endpoint_cpu_ms_per_request"] = median(endpoint.cpu_ms_per_request)
        info["endpoint_cpu_ms_per_request_rounds"] = endpoint.cpu_ms_per_request
    delays = endpoint.delays if endpoint is not None else (
        [[opts.latency_s(w)] * len(items)] * len(cpu) if w.latency_bound and not w.needs_aws else None)
    if delays is not None:
        info.update(_bounds(case, info, delays, cpu, opts))
    if started:  # only where this case started them: a later pass finds them running
        info["startup_ms"] = max(started)
    return Measured(info, check, timed)


def _worker_starts(case: Case) -> list[float]:
    """Every worker start-up (ms) of the ``processes`` pool so far, for a case of that strategy."""
    if case.impl != PROCESSES:
        return []
    from .._procpool import get_pool  # the pool only where a case uses it

    return list(get_pool().startup_ms)


def _warm_at_once(case: Case, env: Env | None, again: bool) -> bool:
    """Whether the first warm-up run of ``case`` is a warm one, so that it alone gives the round
    estimate: a strategy's clients, pool and limiter outlive its runner, so one measured in an
    earlier pass (``again``) is warm; so is a strategy at a fixed worker count on an AWS workload
    behind the endpoint, which :func:`prepare` ran (``auto`` still learns its limit in its first
    pass's warm-up, so it warms up twice there). A raw idiom or a peer makes its clients anew."""
    if case.kind != "strategy":
        return False
    return again or (case.workload.needs_aws and env is not None and env.proxy is not None
                     and not isinstance(case.workers, str))


def _forwarded(proxy: Any) -> int:
    """Requests since the proxy's stats were reset that its upstream answered (not replayed)."""
    stats = proxy.stats(since=1 << 62)
    return stats["served"] - stats["replayed"]


def _bounds(case: Case, info: dict, delays: list[list[float]], cpu: list[float], opts: Options) -> dict:
    """Each round's bound (see lambda_fanout.bench.bound) and their median, ``bound_s``."""
    workers = info.get("limit_peak") if isinstance(case.workers, str) else case.concurrency(info["items"])
    if not workers:
        return {}
    quota = opts.cpus or len(os.sched_getaffinity(0))
    floor = case.workload.floor_s(opts)  # what the service itself admits, where it limits the rate
    per_round = [max(round_bound(d, workers, c, quota), floor) for d, c in zip(delays, cpu)]
    return {"bound_s": median(per_round), "bound_s_rounds": per_round}


def _limit_figures(case: Case, env: Env | None) -> dict:
    """Where auto's limit went in the last round: its changes over time, peak and end."""
    from .. import _limiter

    try:
        task = case.workload.task(env, case.profile)
    except NotImplementedError:  # batch workloads: the limiter is keyed by the record handler
        return {}
    limiter = _limiter.learned(task, case.impl)
    if limiter is None:
        return {}
    return {"limit_over_time": [[round(t, 4), n] for t, n in limiter.history],
            "limit_peak": limiter.peak, "limit_final": limiter.limit}


def loop_timer(fn: Callable[[], Any], rounds: int, setup: Callable[[], None] = lambda: None) -> list[float]:
    """Time ``rounds`` calls of ``fn``, each after an untimed ``setup()``; the wall time of each
    (the harness without pytest)."""
    walls = []
    for _ in range(rounds):
        setup()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return walls
