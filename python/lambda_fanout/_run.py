"""The ledger: one call's bookkeeping, shared by every strategy and every batch source.

A strategy only decides *how* jobs run concurrently. Everything else lives here:
lazy, gated reading of the input, one result slot per record, raise/collect, the
Lambda deadline (decided in one place), and the reports for records that never
started or never finished. A new guarantee about records goes here; a new way of
running jobs goes in ``lambda_fanout.strategies``.

A job is one record (``map``), or a group of records that must run one at a time in
order (one FIFO message group, one partition key, one item key): each record keeps its
own slot. A strategy pulls jobs from :attr:`Run.jobs` and runs each with
:meth:`Run.execute` (blocking form) or ``await`` :meth:`Run.aexecute` (coroutine form),
or, when it ships records elsewhere, starts and reports each itself through the start
protocol (:meth:`Run.begin`, :meth:`Run.unbegin`, :meth:`Run.settle`, :meth:`Run.fail`,
:meth:`Run.fatal_error`). It never writes the ledger's fields: it adds a stop hook
(:meth:`Run.add_stop_hook`) or winds down (:meth:`Run.wind_down`).

States, named as concurrent.futures names a future's:

- a record's slot is QUEUED (read, not started), RUNNING (started, not finished), or
  holds its value ("raise") or Outcome ("collect") once settled;
- the call is OPEN (jobs may start), then STOPPED (no job starts: a failure that stops
  it, a fatal error, a cancel), WINDING_DOWN (its driver cancels its own workers: a
  CancelledError then is the driver's, not a task's), CLOSED (finish() ran: a late
  report is written nowhere); it only ever moves forward;
- the input is MORE (items may follow), READING (inside the caller's ``next()``: the
  call waits for that read), EXHAUSTED, or BROKEN (the iterator raised).
"""

from __future__ import annotations

import gc
import threading
from contextvars import copy_context
from time import monotonic
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

    from ._limiter import Meter

from ._errors import (ConfigError, DeadlineExceeded, SkippedAfterFailure, TaskError, drop_tracebacks,
                      is_own_report, kind)
from ._task import Outcome, Results


class State:
    """A named state of a record's slot or of the call's input; printed by name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class CallState(int):
    """A named state of the call: an int, its rank in the order the call moves through them.

    OPEN, the only state in which a job may start, is 0: ``if run.state:`` reads "no job
    may start", as cheap as testing a flag on the path every record takes.
    """

    def __new__(cls, rank: int, name: str) -> "CallState":
        state = super().__new__(cls, rank)
        state.name = name
        return state

    def __repr__(self) -> str:
        return self.name


# A record's slot before it settles.
QUEUED = State("QUEUED")
RUNNING = State("RUNNING")

# The call, in the order it moves through them.
OPEN = CallState(0, "OPEN")
STOPPED = CallState(1, "STOPPED")
WINDING_DOWN = CallState(2, "WINDING_DOWN")
CLOSED = CallState(3, "CLOSED")

# The caller's input.
MORE = State("MORE")
READING = State("READING")
EXHAUSTED = State("EXHAUSTED")
BROKEN = State("BROKEN")

#: A remaining time above this (about 31 years) is no deadline at all: Lambda's is at
#: most 15 minutes, and float("inf") or 10**13 from a test context must not overflow.
_NO_DEADLINE_MS = 1e12


class CallEnd:
    """The end of one call, the same for ``Strategy.run`` and ``Strategy.arun``.

    Use it as a context manager around the whole call: :meth:`finish` once driving
    ends, then :meth:`reply`; leaving releases the ledger (:meth:`Run.release`) and
    resumes the collector, whatever happened.

    From :meth:`finish` until the reply is built the cyclic garbage collector is held
    off. A full collection walks every object alive, and a call whose records failed
    keeps each failure's traceback (its frames) alive until its reply is built: at a
    small function's CPU share that one walk can take longer than the whole deadline
    margin. The end of a call allocates what it returns (an Outcome and a reply entry
    per record), enough to set one off, so the collector waits until the reply is built;
    whatever the call left behind is collected afterwards as usual. A collector the
    caller turned off stays off.
    """

    __slots__ = ("run", "paused")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.paused = False

    def __enter__(self) -> "CallEnd":
        return self

    def finish(self) -> None:
        """Pause the collector and end the ledger (:meth:`Run.finish`)."""
        if gc.isenabled():
            gc.disable()
            self.paused = True
        self.run.finish()

    def reply(self, then: Callable[[Results], Any] | None) -> Any:
        """finish()'s results, or ``then(results)``: the caller's reply, built while the collector waits."""
        # No local holds the results: a failure's traceback keeps this frame alive.
        return self.run.final if then is None else then(self.run.final)

    def __exit__(self, *exc_info: Any) -> None:
        self.run.release()
        if self.paused:
            self.paused = False
            gc.enable()


def deadline_of(context: Any, margin_ms: int) -> float | None:
    """The monotonic time after which no record may start, or None without a usable deadline.

    Raises:
        ConfigError: the context has no get_remaining_time_in_millis(), or its remaining
            time is not a number.
    """
    if context is None:
        return None
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        # Only its type is shown: what was passed (often the event) may carry the payload.
        raise ConfigError(
            f"context must be the Lambda context object (it has get_remaining_time_in_millis()) but got "
            f"{kind(context)}; pass the Lambda context object (the handler's second argument), or "
            "context=None for no deadline."
        )
    remaining = remaining_ms()
    # A number only: a unit test's MagicMock() context returns a MagicMock, which float()
    # reads as 1.0 (a deadline already past), and a numeric string is no remaining time.
    if not isinstance(remaining, (int, float)) or isinstance(remaining, bool):
        raise ConfigError(
            f"context.get_remaining_time_in_millis() must return a number of milliseconds but "
            f"returned {kind(remaining)}; pass the Lambda context object, or context=None for no "
            "deadline (a mock context needs get_remaining_time_in_millis.return_value set, e.g. 300000)."
        )
    try:
        remaining = float(remaining)
    except OverflowError:  # an int too large for a float: no deadline either
        return None
    if remaining != remaining or remaining > _NO_DEADLINE_MS:  # NaN or effectively infinite
        return None
    return monotonic() + (remaining - margin_ms) / 1000.0


class Run:
    """State of one call: the gated job stream and one result slot per record.

    Args:
        fn: the callable the strategy runs (its blocking or coroutine form).
        items: the records: any iterable, read lazily one job at a time.
        collect: True for ``errors="collect"`` (one Outcome per record).
        deadline: monotonic time after which nothing starts (:func:`deadline_of`), or None.
        margin_ms: the deadline margin, for the reports.
        groups: for a batch, the jobs as lists of record indexes (each record in exactly
            one group, ``items`` a list); None makes every record its own job.
        check: called on each value; an exception from it fails the record.
        stop_on_failure: collect mode only: after the first failure no job starts, and
            records not started are reported as SkippedAfterFailure.
        meter: under ``max_workers="auto"``, the meter of the adaptive limiter whose
            ``limit`` the strategy follows (:class:`~lambda_fanout._limiter.Meter`); every
            failure is shown to it (a throttling error is a signal).
        tracebacks: keep the traceback of only this many failures, those of the lowest
            indexes (a failure the ledger reported by the deadline does not count); every
            other failure's exception loses its traceback and its chain's as it comes in.
            For a caller that shows the tracebacks of the first failures only and hands no
            exception back (a batch's partial reply): a failure's frames, and every frame
            above them, would otherwise stay alive to the end of the call, kilobytes a
            record. None keeps every traceback.
    """

    __slots__ = (
        "fn", "collect", "deadline", "margin_ms", "check", "stop_on_failure", "groups", "meter",
        "results", "pending", "failures", "first_failure", "fatal", "input_error", "size", "final",
        "state", "input", "jobs", "execute", "aexecute", "_stop_hooks", "_lock", "context",
        "tracebacks", "_traced",
    )

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        collect: bool,
        deadline: float | None,
        margin_ms: int,
        groups: list[list[int]] | None = None,
        check: Callable[[Any], Any] | None = None,
        stop_on_failure: bool = False,
        meter: Meter | None = None,
        tracebacks: int | None = None,
    ) -> None:
        self.fn = fn
        self.meter = meter
        #: the caller's context variables, as the call began: every record run by
        #: execute() runs in a copy of it, whichever thread runs it (as an asyncio task
        #: runs in a copy of its creator's), so what the caller set is there, and what a
        #: record sets stays with that record. Under auto it also holds the limiter, for
        #: botocore's retry hook.
        self.context = copy_context()
        if meter is not None:
            self.context.run(meter.enter)
        self.collect = collect
        self.deadline = deadline
        self.margin_ms = margin_ms
        self.check = check
        self.stop_on_failure = stop_on_failure or not collect
        self.groups = groups
        self.tracebacks = tracebacks
        #: the indexes of the failures whose tracebacks are kept, negated (a max-heap).
        self._traced: list[int] = []
        self.results: Results = Results()
        #: index -> record, for every record not yet settled.
        self.pending: dict[int, Any] = {}
        #: raise mode: index -> (record, exception).
        self.failures: dict[int, tuple[Any, BaseException]] = {}
        self.first_failure: int | None = None
        self.fatal: BaseException | None = None
        self.input_error: BaseException | None = None
        #: the input's length where it has one: a list read to its end is not "unread"
        #: even when the deadline came before the iterator said it was exhausted.
        self.size = len(items) if groups is None and hasattr(items, "__len__") else None
        #: what finish() returned (or would have, before raising); None until then.
        self.final: Results | None = None
        #: the call's state: OPEN, STOPPED, WINDING_DOWN, CLOSED (see the module).
        self.state = OPEN
        #: the input's state: MORE, READING, EXHAUSTED, BROKEN (see the module).
        self.input = MORE
        self._stop_hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # the call's state moves forward only, one change at a time
        if groups is None:
            self.jobs: Iterator[Any] = self._read(iter(items))
            self.execute = self._execute_one
            self.aexecute = self._aexecute_one
        else:
            self.input = EXHAUSTED  # a batch's records are all known
            records = list(items)
            self.results.extend([QUEUED] * len(records))
            self.pending.update(enumerate(records))
            self.jobs = self._hand_out(groups)
            self.execute = self._execute_group
            self.aexecute = self._aexecute_group

    # -- the call's state ---------------------------------------------------------------

    def _advance(self, state: CallState) -> None:
        with self._lock:
            if state > self.state:
                self.state = state

    @property
    def stopped(self) -> bool:
        """True once no job may start (the call is no longer OPEN)."""
        return self.state is not OPEN  # any later state

    @property
    def limiter(self) -> Any:
        """Under auto, the adaptive limiter the run's meter follows; else None."""
        return None if self.meter is None else self.meter.limiter

    @property
    def reading(self) -> bool:
        """True while the caller's iterator is inside ``next()``: the call waits for that read."""
        return self.input is READING

    # -- what a strategy may change ---------------------------------------------------------

    def add_stop_hook(self, callback: Callable[[], None]) -> None:
        """Have :meth:`stop` call ``callback``: how records running elsewhere stop there too."""
        self._stop_hooks.append(callback)

    def stop(self) -> None:
        """Start no further job, and call the stop hooks.

        For a driver: the caller cancelled the call, or the call was stopped where its
        records run (another process) before the report of why reached the ledger.
        """
        self._advance(STOPPED)
        for callback in self._stop_hooks:
            callback()

    def wind_down(self) -> None:
        """Stop, then mark the driver cancelling its own workers: a CancelledError is then its own."""
        self.stop()
        self._advance(WINDING_DOWN)

    # -- handing out jobs -----------------------------------------------------------------

    def may_start(self) -> bool:
        """False once the call stopped (failure, fatal error, cancel) or the deadline margin passed."""
        if self.state:  # past OPEN
            return False
        deadline = self.deadline
        return deadline is None or monotonic() < deadline

    def _read(self, items: Iterator[Any]) -> Iterator[int]:
        # Checked before each read: after a stop or at the deadline no further item is
        # pulled from the caller's iterator, so a huge or slow input is never drained.
        results = self.results
        pending = self.pending
        deadline = self.deadline
        reading, more = READING, MORE
        index = 0
        while not self.state and (deadline is None or monotonic() < deadline):  # may_start(), inlined
            self.input = reading
            try:
                item = next(items)
            except StopIteration:
                self.input = EXHAUSTED
                return
            except Exception as exc:
                # The input ends here: the items already read still run, then finish()
                # raises this exception.
                self.input_error = exc
                self.input = BROKEN
                return
            except BaseException as exc:
                self.input = BROKEN
                self.fatal_error(exc)
                return
            self.input = more
            results.append(QUEUED)
            pending[index] = item
            yield index
            index += 1

    def _hand_out(self, groups: list[list[int]]) -> Iterator[list[int]]:
        for group in groups:
            if not self.may_start():
                return
            yield group

    # -- running one job ----------------------------------------------------------------------
    # The blocking and coroutine forms differ only in the call itself: what records an
    # outcome is shared (settle/fail/fatal_error). Their start is begin()'s, written
    # out: a call there costs about 30 ns a record, 5-10% of the per-task overhead of
    # sequential and asyncio (tests/benchmarks/test_core_bench.py -k overhead).
    #
    # The slot is marked RUNNING before the call's state is read (OPEN is 0, so a true
    # state stops the start): a finish() that still sees QUEUED had already closed the call, so such a record is then never started,
    # and one it sees RUNNING is reported as possibly started (the safe side).

    def begin(self, index: int) -> bool:
        """Mark record ``index`` started if it may still start: the start gate of every record.

        As ``concurrent.futures.Future.set_running_or_notify_cancel``: True means the
        record is now RUNNING and must run; False that the call stopped or the deadline
        margin passed, and the record stays QUEUED (finish() reports it as not started).

        :meth:`execute` and :meth:`aexecute` start each record they run this way (the
        same steps, written out), so a strategy that runs its jobs through them never
        calls it. A strategy that ships records elsewhere (another process) and reports
        them later calls it for each record just before sending it, sends
        ``run.pending[index]`` only when it returns True, and later reports the record's
        outcome with :meth:`settle`, :meth:`fail` or :meth:`fatal_error`, or calls
        :meth:`unbegin` for one that never ran there.
        """
        results = self.results
        results[index] = RUNNING
        if self.may_start():
            return True
        results[index] = QUEUED
        return False

    def unbegin(self, index: int) -> None:
        """Take back :meth:`begin`'s mark for a record that was never reached where it was sent.

        For a strategy that ships records elsewhere: the worker holding the record stopped
        (killed at the deadline, failed, or stopped at an earlier record's failure) before
        the record began. finish() then reports it as not started rather than not finished.
        Once the call has returned, this does nothing.
        """
        if self.state is not CLOSED:
            self.results[index] = QUEUED

    def settle(self, index: int, value: Any) -> bool:
        """Report record ``index`` begun and finished with ``value``.

        The run's check (if any) sees the value first: an exception from it fails the
        record instead. A report after the call returned is written nowhere.

        Returns:
            True, or False when the check failed the record.
        """
        if self.check is not None:
            try:
                self.check(value)
            except Exception as exc:
                return self.fail(index, exc)
        if self.state is CLOSED:
            return True  # a late result after the call returned: written nowhere
        pending = self.pending
        self.results[index] = Outcome(index, pending[index], value, None) if self.collect else value
        del pending[index]
        return True

    def fail(self, index: int, error: BaseException) -> bool:
        """Report record ``index`` begun and failed with ``error`` (an Exception).

        In raise mode, or with ``stop_on_failure``, no record starts after it. Under auto
        the limiter sees the error. A report after the call returned is written nowhere.

        Returns:
            False, always: callers return it as the record's outcome.
        """
        if self.state is CLOSED:
            return False
        if self.meter is not None:
            self.meter.failed(error)
        pending = self.pending
        if self.first_failure is None:
            self.first_failure = index
        if self.stop_on_failure and self.state is OPEN:
            self._advance(STOPPED)
        if self.collect:
            self.results[index] = Outcome(index, pending[index], None, error)
        else:
            self.failures[index] = (pending[index], error)
            self.results[index] = None
        del pending[index]
        if self.tracebacks is not None and not (isinstance(error, DeadlineExceeded) and is_own_report(error)):
            self._keep_traceback(index, error)
        return False

    def _keep_traceback(self, index: int, error: BaseException) -> None:
        # The tracebacks of the lowest indexes are kept: failures come in nearly in index
        # order, so a kept one is rarely given up for a later, lower one.
        from heapq import heappush, heapreplace

        with self._lock:
            traced = self._traced
            if len(traced) < self.tracebacks:
                heappush(traced, -index)
                return
            if traced and -traced[0] > index:
                index = -heapreplace(traced, -index)
                slot = self.results[index]
                error = slot.error if self.collect else self.failures[index][1]
        drop_tracebacks(error)

    def fatal_error(self, error: BaseException) -> None:
        """Report a BaseException that ends the call (KeyboardInterrupt, SystemExit): finish() raises it."""
        # KeyboardInterrupt, SystemExit, a task's own CancelledError: recorded and
        # raised by finish(), outside any worker thread or event loop, so neither is
        # left mid-step. Nothing starts after it.
        if self.fatal is None:
            self.fatal = error
        self._advance(STOPPED)

    def _execute_one(self, index: int) -> bool:
        results = self.results
        results[index] = RUNNING
        if self.state or (self.deadline is not None and monotonic() >= self.deadline):  # begin(), inlined
            results[index] = QUEUED
            return False
        try:
            value = self.context.copy().run(self.fn, self.pending[index])
        except Exception as exc:
            return self._failed(index, exc)
        except BaseException as exc:
            self.fatal_error(exc)
            return False
        return self.settle(index, value)

    async def _aexecute_one(self, index: int) -> bool:
        results = self.results
        results[index] = RUNNING
        if self.state or (self.deadline is not None and monotonic() >= self.deadline):  # begin(), inlined
            results[index] = QUEUED
            return False
        try:
            value = await self.fn(self.pending[index])
        except Exception as exc:
            return self._failed(index, exc)
        except BaseException as exc:
            if self.state >= WINDING_DOWN and _is_cancellation(exc):
                raise  # the driver cancelled its workers (deadline, a cancelled amap): not the task's doing
            self.fatal_error(exc)
            return False
        return self.settle(index, value)

    def _execute_group(self, group: list[int]) -> None:
        for position, index in enumerate(group):
            if not self._execute_one(index):
                self._skip_rest(group, position)
                return

    async def _aexecute_group(self, group: list[int]) -> None:
        for position, index in enumerate(group):
            if not await self._aexecute_one(index):
                self._skip_rest(group, position)
                return

    def _failed(self, index: int, error: Exception) -> bool:
        # The task raised. A deadline report of this ledger's own (a task that ships its
        # record elsewhere and learns there that the deadline cut it or came first) is no
        # failure: the record stays RUNNING, or goes back to QUEUED if it never started,
        # and finish() reports it, and the records after it, as the deadline left them.
        if is_own_report(error) and isinstance(error, DeadlineExceeded):
            if not error.started:
                self.unbegin(index)
            return False
        return self.fail(index, error)

    def _skip_rest(self, group: list[int], position: int) -> None:
        index = group[position]
        slot = self.results[index]
        if slot is QUEUED or slot is RUNNING or self.state is CLOSED:
            return  # it never started or never finished (stop, deadline): finish() reports the rest as not started
        skipped = SkippedAfterFailure.in_group(index)
        for later in group[position + 1:]:
            self.fail(later, skipped)

    # -- the driver's view -------------------------------------------------------------------

    def wait_timeout(self) -> float | None:
        """Seconds a strategy may block waiting for running jobs; None without a deadline."""
        if self.deadline is None:
            return None
        return max(self.deadline - monotonic(), 0.0)

    def expired(self) -> bool:
        """True once the deadline margin has passed: strategies stop waiting then."""
        return self.deadline is not None and monotonic() >= self.deadline

    def must_return(self) -> bool:
        """True when the driver should stop waiting at once: a fatal error was recorded."""
        return self.fatal is not None

    # -- the end of the call ----------------------------------------------------------------

    def finish(self) -> Results:
        """Close the run and return the results, or raise.

        Raises, in this order: a fatal BaseException from a task or the input; an
        exception from the input iterator (after the items read before it ran); TaskError
        for the first failed record in raise mode (a record cut by the deadline counts).
        """
        self._advance(CLOSED)  # first: a record's start check reads it after marking its slot
        if self.fatal is not None:
            raise self.fatal
        # Snapshots in this order: a report writes its slot before leaving `pending`, so
        # every record missing from this `pending` has its final value in the copy below.
        pending = dict(self.pending)
        results = Results(self.results)  # the caller's own: release() empties the ledger's
        results.unread = self.input is not EXHAUSTED and (self.size is None or len(results) < self.size)
        if pending:
            self._report_unsettled(results, pending)
        self.final = results
        if self.input_error is not None:
            error = self.input_error
            error.add_note(
                f"lambda_fanout: the input iterator raised after {len(results)} items were read; "
                "those items ran (or were cut by the deadline) before this was raised."
            )
            raise error
        failures = dict(self.failures)
        if not self.collect and not failures and results.unread:
            # The deadline stopped the reading: the first unread item is the one reported
            # (never read, so .item is None).
            failures[len(results)] = (None, DeadlineExceeded.not_started(self.margin_ms))
        if failures:
            index = min(failures)
            item, error = failures[index]
            raise TaskError(index, item, error) from error
        return results

    def _report_unsettled(self, results: Results, pending: dict[int, Any]) -> None:
        if not self.collect and self.failures:
            return  # raise mode reports the first real failure; what it stopped is not reported
        # One report of each kind for the whole call, shared by every record it reports:
        # the end of a call must fit in the deadline margin, and a batch cut with
        # thousands of records left would otherwise build thousands of exceptions there
        # (microseconds each, many times that at a small function's CPU share).
        running: BaseException = DeadlineExceeded.did_not_finish(self.margin_ms)
        if self.stop_on_failure and self.collect and self.first_failure is not None:
            queued: BaseException = SkippedAfterFailure.in_batch(self.first_failure)
        else:
            queued = DeadlineExceeded.not_started(self.margin_ms)
        collect = self.collect
        failures = self.failures
        for index, item in pending.items():  # in index order: records enter `pending` in order
            slot = results[index]
            if slot is RUNNING:
                # Started, or at the instant of starting: it may have had side effects.
                error = running
            elif slot is QUEUED:
                error = queued
            else:
                continue  # settled between the two snapshots: its value stands
            if collect:
                results[index] = Outcome(index, item, None, error)
            else:
                results[index] = None
                failures.setdefault(index, (item, error))

    def release(self) -> None:
        """Let go of every record and outcome, once the caller has what finish() returned.

        A failure's traceback keeps alive the frames that ran it, this ledger's among them
        (``self``, and the slot list they read): were the ledger still to hold the
        outcomes, each call would leave its failures in a reference cycle that only a full
        garbage collection frees. Emptied, they go as soon as the caller drops the results.
        A late report still finds a slot to write, and is written nowhere that is read.
        """
        self._advance(CLOSED)
        results = self.results
        results[:] = [QUEUED] * len(results)
        self.pending.clear()
        self.failures.clear()
        self.final = None

    def counts(self) -> tuple[int, int, int, int]:
        """(records read, succeeded, failed, not run or cut by the deadline), once finish() has run.

        A record that never started (deadline, or a stop after a failure) and one the
        deadline cut while running count as not run (the ledger's own reports); a record
        that ran and raised, failed.
        """
        final = self.final
        if final is None:
            raise RuntimeError("Run.counts() needs finish() to have run")
        if self.collect:
            errors = [outcome.error for outcome in final if outcome.error is not None]
            ok = len(final) - len(errors)
        else:
            failures = self.failures
            errors = [error for _, error in failures.values()]
            ok = sum(1 for i, slot in enumerate(final)
                     if slot is not QUEUED and slot is not RUNNING and i not in failures)
        failed = len(errors) - _own_reports(errors)
        return len(final), ok, failed, len(final) - ok - failed


def _own_reports(errors: list[BaseException]) -> int:
    """How many of ``errors`` are the ledger's own reports, asking once per run of one shared report."""
    count = 0
    last: object = None
    own = False
    for error in errors:
        if error is not last:
            last = error
            own = is_own_report(error)
        count += own
    return count


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError)
