"""Adaptive concurrency for ``FANOUT_MAX_WORKERS=auto``: a limit that finds its own level.

The controller follows TCP Vegas and Netflix's concurrency-limits (Vegas, Gradient2):
the median latency of a window of completions, smoothed over windows, is compared with
the lowest one seen (the no-load latency; lowered only beyond its sampling noise, and
for the first window the median of the batch it sent rather than of its fastest
answers). The limit starts small and, in slow start, grows with each completion while
it is in use (x4 per round trip while latency is flat), each window keeping that
growth only while latency stays near the floor and completions per second rise; it
then grows in smaller steps while both hold, undoes a step that bought no throughput,
shrinks in proportion when latency climbs (never below ``LEAST_LIMIT``: below it only
a throttling signal cuts), and is cut multiplicatively on a throttling signal (TCP's
AIMD, CUBIC's 0.7), at most once per burst of requests that were already in flight
when the signal came. After a cut it climbs back quickly towards the limit that
throttled, then probes past it slowly. A window in which the process spent its CPU
(``CPU_BUSY``) grows no further and takes back the growth it made: CPU-bound work only
queues for the GIL.

Per completion the work is two clock reads and a list append, for one job in
``stride`` (more than one only for jobs faster than ``FAST_JOB_S``); the decisions
run once per window (about one round trip: ``limit`` samples, at least
``MIN_WINDOW_S``), under a lock, with one read of the process's CPU time.

Throttling signals: a botocore ``ClientError`` whose code is in
:data:`THROTTLE_CODES`, an HTTP 429 or 503 (``.response`` of botocore's shape,
``.status``, ``.status_code`` or ``.response.status_code``), an exception of a type
given to :func:`register_throttle_error`, any of these as ``__cause__``, and every
throttled attempt that botocore retries inside a client made by
:mod:`lambda_fanout.aws` (:func:`botocore_retry_hook`, registered by
:func:`watch_client`; the crt path calls it per attempt). Nothing here imports botocore.

What goes where: a new throttling signal goes here: a new error shape in
:func:`is_throttle` (or :data:`THROTTLE_CODES`), a new client's retried attempts
through :func:`botocore_retry_hook` (by :func:`watch_client` for a botocore client, or
called per attempt by a transport of its own, as ``_crt`` does). A strategy never
touches the limiter directly: it follows the run's :class:`Meter` (its limit, stride
sampling, and the current-limiter context variable). The setting itself
(``auto``, ``auto:N``) is parsed with the others, in ``_config``.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections import deque

# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Hashable

# The setting itself (``Auto``, ``auto:N``) is parsed with the others, in _config.
from ._config import DEFAULT_AUTO_CAP as DEFAULT_CAP, Auto
from ._procpool.cpus import python_cpus
from . import _snapstart
from ._errors import ConfigError
from ._errors import safe_attr as _read

#: botocore error codes that mean "slow down" (S3, DynamoDB, the query/JSON protocols).
THROTTLE_CODES = frozenset({
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
})
THROTTLE_STATUSES = frozenset({429, 503})

#: Where a limiter with no history starts: small, so a throttling service sees a gentle ramp.
INITIAL_LIMIT = 16
#: Latency alone never takes the limit below this (a throttling signal still does): it
#: is the fixed count auto replaces, and the level a cold limiter measures its floor at.
#: Below it fewer in flight buy nothing on a saturated service, and on CPU-bound work
#: (where latency is the wait for the GIL and grows with any limit) each shrink would
#: only lower the floor for the next, down to a few workers and a hand-off per job.
LEAST_LIMIT = INITIAL_LIMIT
#: A window closes after ``limit`` completions and at least this long, so that very
#: fast tasks adjust a few hundred times per second, not once per item.
MIN_WINDOW_S = 0.005
#: Fewer samples than this make a median too noisy to act on.
MIN_SAMPLES = 8
#: Latency within this factor of the floor counts as "near its observed minimum".
GROW_BELOW = 1.5
#: Latency above this factor of the floor shrinks the limit towards GROW_BELOW.
SHRINK_ABOVE = 2.0
#: Latency within this factor of the floor is flat: slow start quadruples the limit
#: per round trip (SLOW_START_GAIN more per completion), else it doubles (one more).
FLAT = 1.2
SLOW_START_GAIN = 3
#: Weight of the newest window in the smoothed latency.
SMOOTHING = 0.5
#: A smoothed latency lowers the floor only by what its sampling noise cannot explain:
#: to itself times this many standard errors (estimated from the window's spread), so
#: the lowest of many noisy windows does not read as the service's no-load latency (a
#: floor read low makes latency seem to climb, and the limit stop or shrink too early).
FLOOR_NOISE_Z = 3.0
#: The multiplicative cut on a throttling signal (CUBIC's beta).
BACKOFF = 0.7
#: A step up is kept only if completions per second rose by at least this share of
#: the step (a doubling must bring 25 % more).
STEP_GAIN = 0.25
#: A window in which the process's CPU time reached this share of what its Python can
#: use (one CPU under the GIL, less under Lambda's memory share) is CPU-bound: more in
#: flight cannot complete more, only queue for the GIL, so the limit does not grow and a
#: growth made during the window is taken back.
CPU_BUSY = 0.9
#: Jobs faster than this are timed one in ``stride``: a clock read costs up to a
#: microsecond on some virtual machines, as much as a trivial job itself.
FAST_JOB_S = 0.0002
MAX_STRIDE = 64
#: Adjustments kept for the limit-over-time chart.
HISTORY = 4096


# -- throttling signals ----------------------------------------------------------------

_user_types: tuple[type, ...] = ()


def register_throttle_error(*types: type) -> None:
    """Count exceptions of these types as throttling signals under ``auto``.

    For clients the built-in classification cannot recognise (a rate-limited HTTP API
    raising its own exception). Registration is process-wide and adds to earlier ones.

    Args:
        *types: exception classes.

    Raises:
        ConfigError: something that is not an exception class.
    """
    global _user_types
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(f"register_throttle_error() takes exception classes but got {kind!r}.")
    _user_types = tuple(dict.fromkeys(_user_types + types))


def _status(obj: Any) -> Any:
    status = _read(obj, "status_code")
    return _read(obj, "status") if status is None else status


def response_throttled(response: Any) -> bool:
    """True for a botocore-shaped response dict (or an HTTP response) that says slow down."""
    if isinstance(response, dict):
        error = response.get("Error")
        code = error.get("Code") if isinstance(error, dict) else None
        if type(code) is str and code in THROTTLE_CODES:
            return True
        meta = response.get("ResponseMetadata")
        status = meta.get("HTTPStatusCode") if isinstance(meta, dict) else None
    else:
        status = _status(response)
    return type(status) is int and status in THROTTLE_STATUSES


def is_throttle(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a throttling signal."""
    for _ in range(4):
        if exc is None:
            return False
        if _user_types and isinstance(exc, _user_types):
            return True
        if response_throttled(_read(exc, "response")):
            return True
        status = _status(exc)
        if type(status) is int and status in THROTTLE_STATUSES:
            return True
        exc = exc.__cause__
    return False


#: The limiter of the task running in this thread or coroutine (set per job under auto).
current: contextvars.ContextVar[Limiter | None] = contextvars.ContextVar("fanout_limiter", default=None)

# ids of botocore responses already counted by the retry hook, so the ClientError
# raised from the last attempt is not counted a second time.
_counted: deque[int] = deque(maxlen=256)


def botocore_retry_hook(response: Any = None, **_: Any) -> None:
    """botocore ``needs-retry`` handler: report each throttled attempt to the running limiter.

    Registered first on every client :mod:`lambda_fanout.aws` makes; returns None, so
    botocore's own retry decision is unchanged.
    """
    if response is None:
        return None
    limiter = current.get()
    if limiter is None:
        return None
    http, parsed = response
    if response_throttled(parsed) or getattr(http, "status_code", None) in THROTTLE_STATUSES:
        _counted.append(id(parsed))
        limiter.throttle()
    return None


def watch_client(client: Any) -> Any:
    """Register :func:`botocore_retry_hook` on a botocore (or aiobotocore) client; returns the client.

    The one registration every client :mod:`lambda_fanout.aws` makes goes through.
    Registered first at the level botocore's own retry handler uses, so it runs before
    that handler (which may return a delay and end the chain). The crt path, which runs
    botocore's retry handler itself, calls the hook once per attempt the same way.
    """
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(
        f"needs-retry.{service}", botocore_retry_hook, unique_id="lambda-fanout-throttle-signal"
    )
    return client


def note_failure(limiter: Limiter, exc: BaseException) -> None:
    """Report a task's exception to ``limiter`` when it is a throttling signal not yet counted."""
    if is_throttle(exc) and id(_read(exc, "response")) not in _counted:
        limiter.throttle()


# -- the controller --------------------------------------------------------------------

class Limiter:
    """How many items may be in flight; moved by latency, throughput and throttling.

    :meth:`throttle`, :meth:`begin` and :meth:`end` may be called from any thread;
    :meth:`sample` from one thread at a time (the one driving the run). Two runs of
    the same task and strategy at once share one limiter (and its limit).

    Attributes:
        limit: the current limit, within [1, cap].
        cap: the ceiling.
        peak: the highest limit reached (since :meth:`new_run`).
        throttled: throttling signals seen since the limiter was made (a call's own are
            what it grew by during the call: runs may share the limiter).
        adjustments: decisions taken so far (growth, hold, shrink or cut).
        history: ``(seconds since the run began, limit)`` after each change.
        stride: time one job in this many (1 unless jobs are very fast); each sample
            stands for ``stride`` completions.
        cpu_clock: the process's CPU seconds, read once per window (None: never CPU-bound).
        cpus: the CPU the process's Python can use, against which ``CPU_BUSY`` is measured.
    """

    __slots__ = (
        "cap", "limit", "peak", "throttled", "adjustments", "history", "clock", "stride", "_lock",
        "_inflight", "_done", "_samples", "_need", "_t0", "_win_peak", "_floor", "_rate",
        "_smooth", "_slow", "_stepped", "_before", "_ceiling", "_recover_at", "_origin",
        "_gain", "_opened", "_opened_before", "cpu_clock", "cpus", "_cpu0", "_starts",
    )

    def __init__(self, cap: int = DEFAULT_CAP, *, initial: int = INITIAL_LIMIT,
                 clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] | None = None, cpus: float = 1.0) -> None:
        """Build a limiter.

        Args:
            cap: the ceiling (at least 1).
            initial: where the limit starts (clamped into [1, cap]).
            clock: seconds, monotonic; a simulation passes its own.
            cpu_clock: the process's CPU seconds (``time.process_time``), read once per
                window on the same time scale as ``clock``; None: never CPU-bound.
            cpus: the CPU the process's Python can use (see ``CPU_BUSY``).
        """
        self.cap = max(1, int(cap))
        self.limit = min(self.cap, max(1, int(initial)))
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.cpus = cpus
        self._lock = threading.Lock()
        self._floor: float | None = None  # the no-load latency, once measured
        self._smooth: float | None = None  # window medians, smoothed
        self._slow = True  # slow start: growth per completion, judged per window
        self._gain = SLOW_START_GAIN
        self._ceiling = 0  # the limit at the last throttling cut (0: none yet)
        self.adjustments = 0
        self.stride = 1
        self.throttled = 0
        self._inflight = 0
        self._done = 0
        self.new_run()

    def new_run(self) -> None:
        """Start a new invocation's figures; what was learned (limit, floor) is kept.

        The floor is relaxed halfway (geometrically) towards the latency the last run
        ended with: it may have been set in a quieter spell, and a floor the service
        can no longer meet would read as congestion for every later invocation.
        """
        with self._lock:
            floor, smooth = self._floor, self._smooth
            if floor is not None and smooth is not None and smooth > floor:
                self._floor = (floor * smooth) ** 0.5
            self.peak = self.limit
            self._origin = self.clock()
            self.history = [(0.0, self.limit)]
            self._rate = 0.0
            self._stepped = 0  # +1 after a step up, so the next window can judge it
            self._before = self.limit
            self._recover_at = self._done
            self._inflight = 0  # a job left hung by the last run is no longer counted
            self._open_window(self._origin)

    def forget_floor(self) -> None:
        """Forget the latencies measured so far (the floor and its smoothed median); keep the limit.

        For a process resumed on another host (a SnapStart restore): what it learned about
        concurrency still holds, the no-load latency is measured again.
        """
        with self._lock:
            self._floor = self._smooth = None

    def _open_window(self, now: float) -> None:
        self._samples: list[float] = []
        self._starts: list[float] = []  # the samples' start times, while no floor is measured
        self._opened_before = getattr(self, "_opened", self.limit)
        self._opened = self.limit
        self._t0 = now
        self._cpu0 = self.cpu_clock() if self.cpu_clock is not None else 0.0
        self._win_peak = self._inflight
        self._need = max(self.limit, MIN_SAMPLES)

    # -- per item --------------------------------------------------------------------

    def sample(self, started: float, now: float, inflight: int, ok: bool = True, waiting: int = 0) -> None:
        """One job completed: it started at ``started`` and ended at ``now`` (clock seconds).

        Args:
            started: when the job started (this limiter's clock).
            now: when it ended.
            inflight: how many jobs are still in flight after this one.
            ok: False when it raised. A failed job's latency says nothing about the
                service's (a refused request comes back fast), so it is no sample.
            waiting: jobs queued for the limit's next free slot; they count as in use
                (the limit is in use while work waits for it), not as in flight.

        Cheap, and lock-free unless slow start grows the limit or the window closes. From
        the one thread that drives the run, from :meth:`end`, or from the threads of a
        pool that counts its own jobs (:meth:`Meter.timed`'s ``load``): the counts shared
        unlocked (completions, the window's samples and peak) may then miss one, which
        only moves when a window closes.
        """
        self._inflight = inflight
        self._record(started, now, inflight + waiting, ok)

    def _record(self, started: float, now: float, in_use: int, ok: bool) -> None:
        # ``in_use``: the jobs in flight after this one, and those queued for the limit.
        self._done += self.stride
        if in_use >= self._win_peak:
            self._win_peak = in_use + 1
        if ok:
            floor = self._floor
            if self._slow and in_use + 1 >= self.limit and (floor is None or now - started < floor * GROW_BELOW):
                # Slow start grows per completion, as TCP's does per acknowledgement, so
                # the limit rises as the first answers come back rather than after the
                # slowest of a window; the window's verdict below can take it back. Only
                # while the limit is in use (RFC 7661's rule): a limit the strategy cannot
                # fill says nothing about a larger one; and only on an answer near the
                # floor: one that took much longer says the limit already loads the work
                # (CPU-bound items queue for the GIL), so more would only add threads.
                # Under the lock, rechecked: a throttling cut made meanwhile (on another
                # thread) ends slow start, and no growth may write over it.
                with self._lock:
                    if self._slow:
                        limit = self.limit + self._gain * self.stride
                        self.limit = limit = self.cap if limit > self.cap else limit
                        if limit > self.peak:
                            self.peak = limit
            samples = self._samples
            samples.append(now - started)
            if floor is None:
                self._starts.append(started)
            if len(samples) >= self._need and now - self._t0 >= MIN_WINDOW_S:
                with self._lock:
                    if samples is self._samples:  # not already closed by another thread
                        self._adjust(now)

    def begin(self) -> float:
        """A job starts on any thread; returns its start time for :meth:`end`."""
        with self._lock:
            self._inflight += 1
            return self.clock()  # read under the lock: :meth:`new_run` tells its jobs by it

    def end(self, started: float, ok: bool = True) -> None:
        """The job begun at ``started`` ended (any thread); see :meth:`sample`.

        A job begun before the latest :meth:`new_run` (one left hung by an earlier
        invocation, or a call running beside the one that began since) is no longer
        counted in flight: that count restarted at zero.
        """
        now = self.clock()
        with self._lock:
            if started >= self._origin:
                self._inflight -= 1
            inflight = self._inflight
        self._record(started, now, inflight, ok)

    def throttle(self) -> None:
        """A throttling signal: cut the limit, once per window of requests already in flight."""
        with self._lock:
            self.throttled += 1
            if self._done < self._recover_at:
                return  # part of a burst already answered
            self._ceiling = self.limit
            self._slow = False
            self._set(max(1, int(self.limit * BACKOFF)), self.clock(), stepped=0)

    # -- per window ------------------------------------------------------------------

    def _set(self, limit: int, now: float, *, stepped: int) -> None:
        self.adjustments += 1
        self._before = self.limit
        self._stepped = stepped
        if limit < self.limit:
            # What is in flight now was sent at the old limit: its latencies and
            # throttles answer the old limit, not this one. Before the first completion
            # the in-flight count is not known yet (strategies report it as jobs end),
            # so the old limit stands for it.
            self._recover_at = self._done + max(self._inflight, self.limit)
        self.limit = limit
        if limit > self.peak:
            self.peak = limit
        history = self.history
        if history[-1][1] != limit:  # slow start also moved it between windows
            if len(history) >= HISTORY:
                del history[1::2]  # keep the shape, halve the resolution
            history.append((now - self._origin, limit))
        self._open_window(now)

    def _adjust(self, now: float) -> None:
        # The median, not the mean: a few retried or tail requests must not read as congestion.
        samples = sorted(self._samples)
        n = len(samples)
        median = samples[n // 2]
        if median < FAST_JOB_S:
            self.stride = min(MAX_STRIDE, self.stride * 2)
        elif median > 10 * FAST_JOB_S:
            self.stride = max(1, self.stride // 2)
        # Smoothed over windows, so one lucky window does not set a floor the
        # service cannot meet again (lognormal tails make single windows noisy).
        smooth = self._smooth
        self._smooth = latency = median if smooth is None else smooth + (median - smooth) * SMOOTHING
        rate = n * self.stride / (now - self._t0)
        floor = self._floor
        if floor is None:
            self._floor = floor = self._first_floor(median)
        elif latency < floor and smooth is not None and not self._slow:
            # (Not the first window after a restart: one median; nor a slow-start window,
            # which like the first closes on answers its own growth made the fastest.)
            # A lognormal's interquartile range spans 1.349 sigma (in logs); its median's
            # standard error is 1.2533 sigma / sqrt(n), and the smoothing keeps a third of
            # that variance.
            spread = math.log(samples[(3 * n) // 4] / samples[n // 4]) / 1.349 if samples[n // 4] > 0 else 0.0
            error = 1.2533 * spread / math.sqrt(n) * (SMOOTHING / (2.0 - SMOOTHING)) ** 0.5
            lowered = latency * math.exp(FLOOR_NOISE_Z * error)
            if lowered < floor:
                self._floor = floor = lowered
        ratio = latency / floor if floor > 0 else 1.0
        cpu_bound = (self.cpu_clock is not None
                     and self.cpu_clock() - self._cpu0 >= CPU_BUSY * self.cpus * (now - self._t0))
        limit = self.limit
        previous_rate, self._rate = self._rate, rate
        if self._done < self._recover_at:
            # Still draining what the old limit sent; the smoothed latency restarts after,
            # so a backlog already answered cannot shrink the new limit a second time.
            self._smooth = None
            self._set(limit, now, stepped=0)
            return
        if self._slow:
            # The window opened at ``_opened`` and grew per completion to ``limit``. The
            # growth stands while latency stays near the floor and throughput rose with
            # the previous window's growth; else slow start ends at the opening limit.
            opened, before = self._opened, self._opened_before
            if self._win_peak < opened:
                self._set(opened, now, stepped=0)  # the limit was not used: no verdict on more
                return
            wanted = 1.0 + STEP_GAIN * (opened - before) / before
            if ratio < GROW_BELOW and rate >= previous_rate * wanted and not cpu_bound:
                self._gain = SLOW_START_GAIN if ratio < FLAT else 1
                self._set(limit, now, stepped=0)
                return
            self._slow = False
            self._set(opened, now, stepped=0)
            if ratio <= SHRINK_ABOVE:
                return
            limit = opened
        elif self._stepped:
            # A step up must buy throughput, at least a share of what it would on an
            # unloaded service; else go back.
            wanted = 1.0 + STEP_GAIN * (limit - self._before) / self._before
            if rate < previous_rate * wanted or cpu_bound:
                self._set(self._before, now, stepped=0)
                return
        if ratio > SHRINK_ABOVE:
            if limit == 1:
                self._floor = latency  # the service itself became slower: a new floor
            target = int(limit * max(0.5, GROW_BELOW / ratio))
            self._ceiling = limit  # too many: growth climbs back towards it, then probes
            least = LEAST_LIMIT if limit > LEAST_LIMIT else limit  # below it only a throttle cuts
            self._set(max(least, min(target, limit - 1)), now, stepped=0)
            return
        if ratio >= GROW_BELOW or self._win_peak < limit or limit >= self.cap or cpu_bound:
            # Latency is rising, or the limit was not even used (an idle limit says
            # nothing about a larger one), or it is at the cap, or the process's CPU is
            # spent: hold.
            self._set(limit, now, stepped=0)
            return
        if limit < self._ceiling:
            grown = limit + max(1, (self._ceiling - limit) // 2)  # back towards the last cut quickly
        else:
            grown = limit + max(1, limit // 8)
        self._set(min(self.cap, grown), now, stepped=1)

    def _first_floor(self, median: float) -> float:
        """The first window's floor: the median of the batch sent as it opened, not of its answers.

        The window closes on its first answers, the fastest of what was sent (and of what
        its growth sent after), so their median reads low on a noisy service. The batch
        sent at the opening all started together: its answers came in the order of their
        latencies, so its median is its (batch / 2)-th fastest answer, known once more
        than half the batch has answered (else at least its slowest answer so far).
        """
        starts = self._starts
        if len(starts) != len(self._samples):
            return median  # the floor was forgotten during the window: its earlier answers have no start
        first_answer = min(start + latency for start, latency in zip(starts, self._samples))
        batch = sorted(latency for start, latency in zip(starts, self._samples) if start < first_answer)
        half = max(1, self._opened // self.stride) // 2
        if len(batch) > half:
            return batch[half]
        return batch[-1] if batch else median  # the batch's median is at least its slowest answer so far

    def __repr__(self) -> str:
        return f"<Limiter limit={self.limit} cap={self.cap} peak={self.peak} throttled={self.throttled}>"


# -- what persists across warm invocations ---------------------------------------------

_registry_lock = threading.Lock()
_registry: dict[Hashable, tuple[Hashable, Limiter]] = {}


def task_key(fn: Any) -> Hashable:
    """A key for a task that stays the same across warm invocations: its module and name."""
    target = getattr(fn, "sync_fn", None) or getattr(fn, "async_fn", None) or fn
    target = getattr(target, "func", target)  # functools.partial
    module = getattr(target, "__module__", None)
    # A Task's own name first: process_batch names its group task after the record handler.
    name = getattr(fn, "name", None) if hasattr(fn, "sync_fn") else None
    name = name or getattr(target, "__qualname__", None)
    if module is None or name is None:
        return type(target).__module__, type(target).__qualname__
    return module, name


def limiter_for(task: Any, strategy: str, workers: Auto, settings: Hashable = ()) -> Limiter:
    """The limiter for this task under this strategy, kept across warm invocations.

    Args:
        task: the task (its module and qualified name key the state).
        strategy: the strategy's name.
        workers: the auto setting (its cap).
        settings: the call's :class:`~lambda_fanout.Settings` (or anything else) that, when
            changed, must reset what was learned; its ``memory_mb`` sets the CPU share
            ``CPU_BUSY`` is measured against.

    Returns:
        A limiter, fresh for a new key or changed settings, else the one learned so far
        with its per-run figures reset.
    """
    key = (task_key(task), strategy)
    fingerprint = (workers.cap, settings)
    with _registry_lock:
        found = _registry.get(key)
        if found is not None and found[0] == fingerprint:
            limiter = found[1]
        else:
            limiter = Limiter(workers.cap, cpu_clock=time.process_time,
                              cpus=python_cpus(getattr(settings, "memory_mb", None)))
            _registry[key] = (fingerprint, limiter)
            _snapstart.register(after=forget_floors)
    limiter.new_run()
    return limiter


def learned(task: Any, strategy: str) -> Limiter | None:
    """The limiter kept for this task under this strategy, untouched (None if none yet)."""
    with _registry_lock:
        found = _registry.get((task_key(task), strategy))
    return None if found is None else found[1]


def forget_floors() -> None:
    """Every kept limiter forgets its latency floor (:meth:`Limiter.forget_floor`); limits stay.

    Registered for SnapStart (``lambda_fanout._snapstart``): after a restore, on a new host.
    """
    with _registry_lock:
        limiters = [limiter for _, limiter in _registry.values()]
    for limiter in limiters:
        limiter.forget_floor()


def forget() -> None:
    """Drop everything learned (tests; a process that wants a cold start)."""
    with _registry_lock:
        _registry.clear()


# -- around each job: the one seam the drivers call -------------------------------------

class Meter:
    """One run's view of its limiter: everything a strategy's driver calls under ``auto``.

    A driver reads :attr:`limit` for how many jobs to keep in flight, calls
    :meth:`enter` in each thread or coroutine that runs jobs (botocore's retry hook and
    the crt path report throttled attempts to the limiter found there), and times jobs
    by stride: :meth:`start` as a job to time is handed out (it returns the start time
    and how many of the following jobs to leave untimed: the driver counts those down
    without calling the meter, which keeps very fast jobs cheap) and :meth:`done` when
    that job completes, on the driver's thread; or, where jobs complete on many threads,
    runs :meth:`timed`'s wrapper of the task. A driver that submits to a pool running
    only ``limit`` jobs at a time keeps :meth:`window` submitted. The ledger shows it
    every failure (:meth:`failed`).
    """

    __slots__ = ("limiter", "_skip")

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        # Shared by the threads of a run without a lock: a miscount only moves which job is timed.
        self._skip = 0

    @property
    def limit(self) -> int:
        """The limiter's current limit."""
        return self.limiter.limit

    def window(self) -> int:
        """How many jobs a driver keeps submitted to a pool that runs only :attr:`limit` of
        them: as many as slow start may grow the limit to (x4 per round trip) before the
        driver, which may wait for the GIL, next tops the queue up. A backlog queued means
        a thread that finishes a job takes the next at once, and counts as the limit in
        use (:meth:`timed`'s ``load``)."""
        return self.limiter.limit * (SLOW_START_GAIN + 1)

    def enter(self) -> None:
        """Make this run's limiter the current one in this thread or coroutine (a pool's initializer)."""
        current.set(self.limiter)

    def start(self) -> tuple[float, int]:
        """A job to time is handed out: (its start time, how many following jobs to leave untimed).

        One job in ``limiter.stride`` is timed (each sample stands for ``stride`` completions).
        """
        limiter = self.limiter
        return limiter.clock(), limiter.stride - 1

    def done(self, started: float, inflight: int, ok: bool) -> None:
        """The job timed from ``started`` completed (the driver's thread); ``inflight`` are still running."""
        limiter = self.limiter
        limiter.sample(started, limiter.clock(), inflight, ok)

    def timed(self, fn: Callable[[Any], Any],
              load: Callable[[], tuple[int, int]] | None = None) -> Callable[[Any], Any]:
        """``fn``, ``Run.execute``, timed by stride from whichever thread runs it.

        Results and exceptions pass through; a job that raises or returns False (a
        record that failed or did not start) is no sample. The jobs in flight
        are counted with :meth:`Limiter.begin` / :meth:`Limiter.end`, under the limiter's
        lock, unless ``load`` gives them: for a pool that counts its own, ``() ->
        (in flight after this job, queued for the limit)``, read as each timed job ends,
        with no lock taken per job (threads that contend for one while holding the GIL in
        turn cost a CPU-bound task more than its timing).
        """
        limiter = self.limiter
        if load is None:
            begin, end = limiter.begin, limiter.end
        else:
            begin, clock, sample = limiter.clock, limiter.clock, limiter.sample

            def end(started: float, ok: bool) -> None:
                inflight, queued = load()
                sample(started, clock(), inflight, ok, queued)

        def measured(item: Any) -> Any:
            if self._skip:
                self._skip -= 1
                return fn(item)
            _, self._skip = self.start()
            started = begin()
            try:
                value = fn(item)
            except BaseException:
                end(started, False)
                raise
            end(started, value is not False)
            return value

        return measured

    def failed(self, error: BaseException) -> None:
        """A job failed with ``error``: a throttling signal not yet counted cuts the limit."""
        note_failure(self.limiter, error)
