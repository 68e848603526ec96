"""The adaptive limiter behind FANOUT_MAX_WORKERS=auto: parsing, signals, and its control
properties against a simulated service (hypothesis; no real sleeps)."""

from __future__ import annotations

import math
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lambda_fanout
import xproc
from lambda_fanout import ConfigError, Settings
from lambda_fanout import _config, _limiter
from lambda_fanout._config import Auto, pool_size
from lambda_fanout._config import resolve_workers as parse_workers
from lambda_fanout._limiter import DEFAULT_CAP, Limiter, is_throttle
from simservice import Service, Simulation

SIM_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- turning it on -----------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("auto", Auto(DEFAULT_CAP)), ("AUTO", Auto(DEFAULT_CAP)), (" auto:64 ", Auto(64)),
    ("auto:1", Auto(1)), ("auto:1024", Auto(1024)), ("12", 12),
])
def test_environment_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", raw)
    assert parse_workers() == expected


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "8")
    assert parse_workers("auto:32") == Auto(32)
    assert parse_workers(Auto(5)) == Auto(5)
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "auto")
    assert parse_workers(3) == 3


@pytest.mark.parametrize("raw", ["auto:0", "auto:1025", "auto:", "auto:x", "autox", "auto 8", "auto:-3"])
def test_bad_auto_names_the_variable_the_value_and_the_choices(monkeypatch, raw):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", raw)
    with pytest.raises(ConfigError) as err:
        parse_workers()
    message = str(err.value)
    assert "FANOUT_MAX_WORKERS" in message and repr(raw) in message
    assert "'auto'" in message and "'auto:N'" in message and "1024" in message


@pytest.mark.parametrize("raw", ["auto:0", "auto:", "auto:1025", "auto:-1", "auto:1.5", "auto8", "auto:８",
                                 "auto:8:2", "autox"])
def test_auto_parsing_rejects_bad_caps(raw, monkeypatch):
    """README: a wrong value "fails ... at once with the variable and its value in the message"."""
    monkeypatch.setenv("FANOUT_MAX_WORKERS", raw)
    with pytest.raises(ConfigError) as info:
        lambda_fanout.get_strategy("threads")
    assert "FANOUT_MAX_WORKERS" in str(info.value) and repr(raw) in str(info.value)


def test_auto_object_cap_is_validated():
    """_config.resolve_workers: "Raises: ConfigError: anything else, naming the source, repeating the value
    and listing what is accepted." An Auto(cap=0) is not accepted as is."""
    with pytest.raises(ConfigError):
        lambda_fanout.map(xproc.identity, range(4), strategy="threads", max_workers=Auto(0))


def test_bad_argument_is_named_as_an_argument():
    with pytest.raises(ConfigError, match=r"argument max_workers= .*'auto:N'.*'auto:zero'"):
        parse_workers("auto:zero")
    with pytest.raises(ConfigError, match="max_workers"):
        parse_workers("sixteen")  # not auto: the fixed-count rules and message apply


def test_the_pool_follows_the_cap():
    assert pool_size(Auto(40)) == 40
    assert pool_size(7) == 7
    assert str(Auto()) == "auto" and str(Auto(8)) == "auto:8"


def test_settings_carry_auto_and_list_it_among_other_problems():
    assert Settings.resolve(max_workers="auto:12", environ={}).max_workers == Auto(12)
    assert Settings.resolve(environ={"FANOUT_MAX_WORKERS": "auto"}).max_workers == Auto(_config.DEFAULT_AUTO_CAP)
    with pytest.raises(ConfigError) as err:
        Settings.resolve(environ={"FANOUT_MAX_WORKERS": "auto:²", "FANOUT_STRATEGY": "thread"})
    assert "2 settings are not valid" in str(err.value) and "'auto:²'" in str(err.value)


# -- throttling signals --------------------------------------------------------------------

def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize("code", sorted(_limiter.THROTTLE_CODES))
def test_every_throttle_code_is_a_signal(code):
    assert is_throttle(_client_error(code, 400))


@pytest.mark.parametrize("code, status, expected", [
    ("NoSuchKey", 404, False), ("InternalError", 500, False), ("AccessDenied", 403, False),
    ("ServiceUnavailable", 503, True), ("Whatever", 429, True),
])
def test_status_and_code(code, status, expected):
    assert is_throttle(_client_error(code, status)) is expected


def test_odd_response_shapes_are_no_signal_and_no_error():
    class Odd(Exception):
        def __init__(self, response):
            self.response = response

    for response in ({"Error": {"Code": {"nested": 1}}}, {"ResponseMetadata": {"HTTPStatusCode": [503]}},
                     {"Error": "SlowDown"}, "SlowDown", None, {"ResponseMetadata": {"HTTPStatusCode": "503"}}):
        assert not is_throttle(Odd(response))


def test_http_libraries_by_status_and_a_cause_chain():
    class HTTPError(Exception):
        def __init__(self, status):
            self.status = status

    class Response:
        status_code = 429

    class RequestsError(Exception):
        response = Response()

    assert is_throttle(HTTPError(503)) and not is_throttle(HTTPError(404))
    assert is_throttle(RequestsError())
    try:
        try:
            raise _client_error("SlowDown", 503)
        except Exception as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_throttle(outer)
    assert not is_throttle(ValueError("plain"))


def test_user_exception_types_hook(monkeypatch):
    monkeypatch.setattr(_limiter, "_user_types", ())

    class RateLimited(Exception):
        pass

    assert not is_throttle(RateLimited())
    _limiter.register_throttle_error(RateLimited)
    assert is_throttle(RateLimited())
    with pytest.raises(ConfigError, match="exception classes"):
        _limiter.register_throttle_error("RateLimited")


def test_classification_does_not_load_botocore():
    import subprocess
    import sys

    code = ("import sys, lambda_fanout._limiter as l\n"
            "class E(Exception):\n    response = {'Error': {'Code': 'SlowDown'}}\n"
            "assert l.is_throttle(E())\nassert 'botocore' not in sys.modules, 'botocore loaded'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the controller against a simulated service ---------------------------------------------

services = st.builds(
    Service,
    latency_s=st.floats(0.001, 0.2),
    sigma=st.sampled_from([0.0, 0.1, 0.3, 0.5]),
    capacity=st.one_of(st.just(math.inf), st.floats(1, 400)),
    rate=st.one_of(st.just(math.inf), st.floats(20, 5000)),
    burst=st.floats(1, 50),
    attempts=st.integers(1, 3),
)


@SIM_SETTINGS
@given(phases=st.lists(services, min_size=1, max_size=3), cap=st.integers(1, 300),
       initial=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_limit_stays_within_one_and_the_cap(phases, cap, initial, seed):
    sim = Simulation(cap, initial=initial, seed=seed)
    seen = set()

    def check(lim):
        assert 1 <= lim.limit <= cap
        assert len(sim.heap) <= max(lim.limit, lim.peak)
        seen.add(lim.limit)

    for service in phases:
        sim.run(service, completions=400, check=check)
    assert seen


CONVERGE_WITHIN = 40  # adjustments
STAY_FOR = 40


@SIM_SETTINGS
@given(latency=st.floats(0.002, 0.1), sigma=st.sampled_from([0.0, 0.1, 0.3]),
       capacity=st.one_of(st.just(math.inf), st.floats(2, 300)), cap=st.integers(2, 256),
       seed=st.integers(0, 2**16))
def test_converges_on_a_stationary_service(latency, sigma, capacity, cap, seed):
    """Within CONVERGE_WITHIN adjustments the limit settles into a band around what the
    service can take (its capacity, or the cap) and stays there.

    The floor latency is what the service showed at the lowest limit tried, so a
    service already saturated at the starting limit is held near it (same throughput,
    more latency; steps up stop once latency passes GROW_BELOW times that floor): the
    band's top is never below that."""
    service = Service(latency, sigma=sigma, capacity=capacity)
    sim = Simulation(cap, seed=seed)
    while len(sim.limits) < CONVERGE_WITHIN + STAY_FOR:
        sim.run(service, completions=50)
    knee = min(cap, capacity)
    low = max(1, math.floor(knee * 0.5))
    high = min(cap, max(math.ceil(knee * 2.5), math.ceil(_limiter.INITIAL_LIMIT * _limiter.GROW_BELOW) + 1))
    settled = sim.limits[CONVERGE_WITHIN:CONVERGE_WITHIN + STAY_FOR]
    assert all(low <= limit <= high for limit in settled), (low, high, settled)


@SIM_SETTINGS
@given(latency=st.floats(0.002, 0.1), sigma=st.sampled_from([0.0, 0.3]),
       warmup=st.integers(50, 1500), cap=st.integers(1, 256), seed=st.integers(0, 2**16),
       attempts=st.integers(1, 3))
def test_backs_off_within_one_adjustment_of_a_throttle_burst(latency, sigma, warmup, cap, seed, attempts):
    first = {}

    class Recording(Limiter):
        __slots__ = ()

        def throttle(self):
            if first:
                return super().throttle()
            first["limit"], first["adjustments"] = self.limit, self.adjustments
            super().throttle()
            first["cut"], first["adjusted"] = self.limit, self.adjustments

    sim = Simulation(cap, seed=seed, limiter_cls=Recording)
    sim.run(Service(latency, sigma=sigma), completions=warmup)
    lim = sim.limiter
    # The burst: the service admits a quarter of one request's worth per latency.
    sim.run(Service(latency, sigma=sigma, rate=0.25 / latency, burst=1.0, attempts=attempts),
            completions=len(sim.heap) + 100)
    assert first, "the burst produced no throttling signal"
    assert first["adjusted"] == first["adjustments"] + 1
    assert first["cut"] == max(1, int(first["limit"] * _limiter.BACKOFF))
    assert lim.limit <= first["cut"]


def test_throttle_cuts_at_once_and_once_per_burst():
    clock = [0.0]
    lim = Limiter(64, initial=40, clock=lambda: clock[0])
    starts = [lim.begin() for _ in range(40)]
    lim.throttle()
    assert lim.limit == int(40 * _limiter.BACKOFF)
    for _ in range(10):
        lim.throttle()  # the rest of the same burst: requests sent before the cut
    assert lim.limit == int(40 * _limiter.BACKOFF) and lim.throttled == 11
    for started in starts:
        clock[0] += 0.001
        lim.end(started, ok=False)
    lim.begin()
    lim.throttle()  # a new burst, after the old in-flight drained
    assert lim.limit == int(int(40 * _limiter.BACKOFF) * _limiter.BACKOFF)


def test_state_persists_per_task_and_strategy_and_resets_on_new_settings():
    _limiter.forget()

    def read(x):
        return x

    def other(x):
        return x

    first = _limiter.limiter_for(read, "threads", Auto(64))
    first.limit = 40
    again = _limiter.limiter_for(read, "threads", Auto(64))
    assert again is first and again.limit == 40 and again.peak == 40
    assert _limiter.limiter_for(read, "asyncio", Auto(64)) is not first
    assert _limiter.limiter_for(other, "threads", Auto(64)) is not first
    changed = _limiter.limiter_for(read, "threads", Auto(32))
    assert changed is not first and changed.limit == _limiter.INITIAL_LIMIT
    assert _limiter.limiter_for(read, "threads", Auto(64)) is not first  # reset, not restored
    settings = Settings.resolve(max_workers="auto:64", environ={})
    kept = _limiter.limiter_for(read, "threads", Auto(64), settings)
    assert _limiter.limiter_for(read, "threads", Auto(64), Settings.resolve(max_workers="auto:64", environ={})) is kept
    other_margin = Settings.resolve(max_workers="auto:64", deadline_margin_ms=10, environ={})
    assert _limiter.limiter_for(read, "threads", Auto(64), other_margin) is not kept
    assert _limiter.learned(read, "threads") is not kept and _limiter.learned(read, "nothing") is None
    _limiter.forget()


def test_each_new_run_relaxes_a_floor_the_service_no_longer_meets():
    """A service that became 1.8 times slower for good (too little to shrink the limit,
    enough to stop its growth): with each warm invocation the floor moves halfway
    (geometrically) towards the new latency, and growth resumes."""
    sim = Simulation(256, initial=8, seed=3)
    # Settled (slow start over) on a service that takes 32 at 10 ms: the floor.
    sim.run(Service(0.010, capacity=32), completions=3000)
    lim = sim.limiter
    assert not lim._slow and lim.limit < lim.cap
    sim.run(Service(0.018), completions=3000)
    held = lim.limit
    sim.run(Service(0.018), completions=3000)
    assert lim.limit == held < lim.cap  # latency 1.8x the floor: neither growth nor shrinking
    floors = []
    for _ in range(4):
        sim.drain()
        lim.new_run()
        floors.append(lim._floor)
        sim.run(Service(0.018), completions=300)
    assert floors[0] == pytest.approx((0.010 * 0.018) ** 0.5, rel=0.05)
    assert floors == sorted(floors)
    assert lim.limit > held


@SIM_SETTINGS
@given(latency=st.floats(0.001, 0.2), cap=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_slow_start_grows_per_completion_fourfold_per_round_trip(latency, cap, seed):
    """On a service whose latency stays flat, each completion in slow start adds
    SLOW_START_GAIN to the limit: one round trip multiplies it by four (up to the cap),
    without waiting for a window's slowest answer; no round trip more than that."""
    sim = Simulation(cap, seed=seed)
    lim = sim.limiter
    expected = lim.limit
    for _ in range(6):
        wave = lim.limit
        start = sim.now
        sim.run(Service(latency), completions=wave)
        assert sim.now == pytest.approx(start + latency)  # one round trip
        expected = min(cap, expected * (1 + _limiter.SLOW_START_GAIN))
        assert lim.limit == expected and lim.peak == expected
        assert len(sim.heap) <= lim.limit


def test_a_burst_before_the_first_completion_is_cut_once():
    """The asyncio and threads strategies report in-flight counts as jobs end, so the
    first throttles of a run arrive before any count: every request of that first
    burst was sent at the starting limit, and the burst cuts it once, not once per 503
    (16 -> 11 -> 7 -> 4 -> 2 -> 1 within a millisecond, as a real run did)."""
    clock = [0.0]
    lim = Limiter(256, initial=16, clock=lambda: clock[0])
    for _ in range(6):
        lim.throttle()
    assert lim.limit == int(16 * _limiter.BACKOFF) and lim.throttled == 6
    for n in range(16):  # the burst drains: every request sent at 16 answers
        clock[0] += 0.001
        lim.sample(0.0, clock[0], 15 - n, ok=False)
    lim.throttle()  # a new burst
    assert lim.limit == int(int(16 * _limiter.BACKOFF) * _limiter.BACKOFF)


def test_slow_start_grows_only_while_the_limit_is_in_use():
    """Jobs that finish before the next starts (trivial tasks, a short input) never fill
    the limit: completions then say nothing about a larger one, and it stays put (as
    RFC 7661 keeps TCP's window when the sender does not use it)."""
    clock = [0.0]
    lim = Limiter(256, clock=lambda: clock[0])
    for _ in range(500):
        started = lim.begin()
        clock[0] += 0.01
        lim.end(started)  # one at a time: in flight never above 1
    assert lim.limit == _limiter.INITIAL_LIMIT and lim.peak == _limiter.INITIAL_LIMIT


def test_jobs_of_an_earlier_run_that_end_late_leave_the_next_runs_count_in_flight_alone():
    """Jobs left running by one invocation (hung, or a call beside the next one) that end
    during the next: that run counts its own jobs in flight from zero, so when its own
    fill the limit, slow start still sees it in use and grows."""
    clock = [0.0]
    lim = Limiter(256, clock=lambda: clock[0])
    limit = lim.limit
    leftovers = [lim.begin() for _ in range(limit)]
    clock[0] += 1.0
    lim.new_run()
    for started in leftovers:
        lim.end(started, ok=False)
    mine = [lim.begin() for _ in range(limit)]
    clock[0] += 0.01
    lim.end(mine[0])  # the limit was in use: every other job of this run still in flight
    assert lim.limit > limit


def test_latency_alone_never_takes_the_limit_below_the_fixed_count_it_replaces():
    """A service that saturates at 2 in flight (or CPU-bound work, whose latency is its wait
    for the GIL and grows with any limit) after the limit grew on a flat one: it shrinks
    as latency climbs, but never below LEAST_LIMIT, where fewer in flight would buy
    nothing; a throttling signal still cuts below it."""
    sim = Simulation(256, seed=5)
    sim.run(Service(0.005), completions=2000)
    grown = sim.limiter.limit
    assert grown > 4 * _limiter.LEAST_LIMIT
    mark = len(sim.limits)
    sim.run(Service(0.005, capacity=2), completions=5000)
    lim = sim.limiter
    assert min(sim.limits[mark:]) == _limiter.LEAST_LIMIT and lim.limit < grown
    sim.drain()
    lim.new_run()
    before = lim.limit
    lim.throttle()
    assert lim.limit == int(before * _limiter.BACKOFF) < _limiter.LEAST_LIMIT


def test_latency_never_shrinks_a_limit_already_at_or_below_the_least():
    """After a throttling cut took it below LEAST_LIMIT, rising latency holds the limit:
    only another throttling signal cuts it further."""
    clock = [0.0]
    lim = Limiter(256, initial=10, clock=lambda: clock[0])
    lim._slow = False
    latency = 0.010
    for _ in range(40):  # floor at 10 ms, then latency climbs to 8x it
        for _ in range(16):
            started = clock[0]
            clock[0] += 0.001
            lim.sample(started - latency, clock[0], 9)
        latency = min(latency * 1.5, 0.080)
    assert lim._floor == pytest.approx(0.010, rel=0.3)
    assert lim.limit == 10 and min(limit for _, limit in lim.history) == 10



@pytest.mark.parametrize("cpus, used, bound", [(1.0, 1.0, True), (0.5, 0.48, True), (1.0, 0.5, False)])
def test_a_window_that_spends_the_process_cpu_grows_no_further(cpus, used, bound):
    """Jobs that need the process's CPU (pure Python holds the GIL): a window in which the
    process's CPU time reached CPU_BUSY of what its Python can use (``cpus``: one CPU, or
    Lambda's share below it) takes back the slow start's growth and holds the limit, even
    on flat latency: more in flight would only queue for the GIL. Once the CPU is free
    again, the limit grows. A process using half of a whole CPU is not CPU-bound."""
    spent = {"busy": True, "cpu": 0.0, "since": 0.0}
    sim = None

    def cpu_clock():  # CPU seconds: ``used`` of each second while busy
        now = 0.0 if sim is None else sim.now
        return spent["cpu"] + ((now - spent["since"]) * used if spent["busy"] else 0.0)

    sim = Simulation(256, seed=2, limiter_cls=partial(Limiter, cpu_clock=cpu_clock, cpus=cpus))
    sim.run(Service(0.010), completions=3000)
    lim = sim.limiter
    if not bound:
        assert lim.limit > 4 * _limiter.INITIAL_LIMIT
        return
    assert set(sim.limits) == {_limiter.INITIAL_LIMIT}
    spent.update(busy=False, cpu=cpu_clock(), since=sim.now)
    sim.run(Service(0.010), completions=3000)
    assert lim.limit > 4 * _limiter.INITIAL_LIMIT


def test_a_kept_limiter_measures_the_process_cpu_against_the_function_share(monkeypatch):
    """limiter_for gives the limiter the process's CPU clock, and the CPU its Python can
    use at the function's memory (a 1,024 MB function has 1024/1769 of a vCPU)."""
    import time

    from lambda_fanout._procpool import cpus

    monkeypatch.setattr(cpus, "cgroup_cpus", lambda root="/sys/fs/cgroup": None)
    _limiter.forget()

    def read(x):
        return x

    settings = Settings.resolve(max_workers="auto:64", environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"})
    lim = _limiter.limiter_for(read, "threads", Auto(64), settings)
    assert lim.cpu_clock is time.process_time and lim.cpus == pytest.approx(1024 / 1769)
    _limiter.forget()
    assert _limiter.limiter_for(read, "threads", Auto(64)).cpus == 1.0
    _limiter.forget()


@pytest.mark.parametrize("sigma", [0.5, 0.8])
@pytest.mark.parametrize("seed", range(6))
def test_the_floor_does_not_read_low_on_a_noisy_service(sigma, seed):
    """A service with a lognormal tail and no limit of its own: the floor stays near its
    median latency (the first window's from the batch sent as it opened, not from its
    fastest answers; no slow-start window's; later ones only beyond their sampling
    noise), so its noise never reads as congestion and the limit reaches the cap."""
    sim = Simulation(256, seed=seed)
    sim.run(Service(0.025, sigma=sigma), completions=10_000)
    lim = sim.limiter
    assert 0.6 * 0.025 <= lim._floor <= 1.4 * 0.025
    assert lim.limit == 256


def test_a_congested_service_keeps_its_floor_at_the_least_limit():
    """A service that takes 4 at 30 ms: at the least limit its latency is 4 times the
    floor, which is real congestion, so the floor stays and the limit is held near the
    least, not grown again."""
    sim = Simulation(256, seed=2)
    lim = sim.limiter
    sim.run(Service(0.030, capacity=4), completions=3000)
    floor = lim._floor
    sim.run(Service(0.030, capacity=4), completions=3000)
    assert lim._floor == floor
    assert lim.limit <= _limiter.LEAST_LIMIT * _limiter.GROW_BELOW + 1


def test_slow_start_growth_on_other_threads_never_writes_over_a_throttling_cut():
    """Workers report completions from their own threads while another thread's job is
    throttled: once the cut is made, slow start is over and no completion grows the
    limit past it (no window closes here, so only growth could)."""
    import sys
    import threading
    import time

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(100):
            lim = Limiter(10**9)
            lim._need = 10**12
            stop = threading.Event()

            def complete():
                while not stop.is_set():
                    now = lim.clock()
                    lim.sample(now - 1e-6, now, lim.limit, True)

            threads = [threading.Thread(target=complete) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(0.001)
            lim.throttle()
            cut, verdicts = lim.limit, lim.adjustments
            time.sleep(0.001)
            stop.set()
            for thread in threads:
                thread.join()
            # (The cut opens a window of `cut` samples: on a slow machine it may close and
            # climb back towards the throttled limit, a verdict the limiter counts.)
            assert not lim._slow and (lim.limit == cut or lim.adjustments > verdicts)
    finally:
        sys.setswitchinterval(interval)
