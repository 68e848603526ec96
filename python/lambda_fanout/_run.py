"""The ledger: one call's bookkeeping, shared by every strategy and every batch source.

A strategy only decides *how* jobs run concurrently. Everything else lives here:
lazy, gated reading of the input, one result slot per record, raise/collect, the
Lambda deadline (decided in one place), and the reports for records that never
started or never finished.

A job is one record (``map``), or a group of records that must run one at a time in
order (one FIFO message group, one partition key, one item key): each record keeps its
own slot. A strategy pulls jobs from :attr:`Run.jobs` and runs each with
:meth:`Run.execute` (blocking form) or ``await`` :meth:`Run.aexecute` (coroutine form).
"""

from __future__ import annotations

from contextvars import copy_context
from time import monotonic
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

from ._errors import ConfigError, DeadlineExceeded, SkippedAfterFailure, TaskError
from ._task import Outcome, Results

# Slot states before a record settles. A settled slot holds the value ("raise") or
# the Outcome ("collect").
_QUEUED = object()   # read (or known, in a batch), not started
_RUNNING = object()  # started, not finished

#: A remaining time above this (about 31 years) is no deadline at all: Lambda's is at
#: most 15 minutes, and float("inf") or 10**13 from a test context must not overflow.
_NO_DEADLINE_MS = 1e12


def deadline_of(context: Any, margin_ms: int) -> float | None:
    """The monotonic time after which no record may start, or None without a usable deadline.

    Raises:
        ConfigError: the context's remaining time is not a number.
    """
    if context is None:
        return None
    remaining = context.get_remaining_time_in_millis()
    try:
        remaining = float(remaining)
    except OverflowError:  # an int too large for a float: no deadline either
        return None
    except (TypeError, ValueError):
        raise ConfigError(
            f"context.get_remaining_time_in_millis() must return a number of milliseconds but "
            f"returned {remaining!r}; pass the Lambda context object, or context=None for no deadline."
        ) from None
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
        limiter: under ``max_workers="auto"``, the adaptive limiter whose ``limit`` the
            strategy follows; every failure is shown to it (a throttling error is a signal).
    """

    __slots__ = (
        "fn", "collect", "deadline", "margin_ms", "check", "stop_on_failure",
        "results", "pending", "failures", "first_failure", "stopped", "closed", "fatal", "input_error",
        "exhausted", "size", "reading", "winding_down",
        "jobs", "execute", "aexecute", "groups", "final", "limiter", "on_stop", "context",
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
        limiter: Any = None,
    ) -> None:
        self.fn = fn
        self.limiter = limiter
        #: the caller's context variables, as the call began: every record run by
        #: execute() runs in a copy of it, whichever thread runs it (as an asyncio task
        #: runs in a copy of its creator's), so what the caller set is there, and what a
        #: record sets stays with that record. Under auto it also holds the limiter, for
        #: botocore's retry hook.
        self.context = copy_context()
        if limiter is not None:
            from ._limiter import current

            self.context.run(current.set, limiter)
        self.collect = collect
        self.deadline = deadline
        self.margin_ms = margin_ms
        self.check = check
        self.stop_on_failure = stop_on_failure or not collect
        self.results: Results = Results()
        #: index -> record, for every record not yet settled.
        self.pending: dict[int, Any] = {}
        #: raise mode: index -> (record, exception).
        self.failures: dict[int, tuple[Any, BaseException]] = {}
        self.first_failure: int | None = None
        self.stopped = False
        self.closed = False
        self.fatal: BaseException | None = None
        self.input_error: BaseException | None = None
        self.groups = groups
        self.exhausted = groups is not None
        #: the input's length where it has one: a list read to its end is not "unread"
        #: even when the deadline came before the iterator said it was exhausted.
        self.size = len(items) if groups is None and hasattr(items, "__len__") else None
        #: True while the caller's iterator is inside next(): the call waits for that read.
        self.reading = False
        #: True once the driver cancels its own workers: a CancelledError then is ours.
        self.winding_down = False
        #: set by a strategy whose records run elsewhere: called by stop(), so they stop there too
        self.on_stop: Callable[[], None] | None = None
        if groups is None:
            self.jobs: Iterator[Any] = self._read(iter(items))
            self.execute = self._execute_one
            self.aexecute = self._aexecute_one
        else:
            records = list(items)
            self.results.extend([_QUEUED] * len(records))
            self.pending.update(enumerate(records))
            self.jobs = self._hand_out(groups)
            self.execute = self._execute_group
            self.aexecute = self._aexecute_group

    # -- handing out jobs -----------------------------------------------------------------

    def may_start(self) -> bool:
        """False once the call stopped (failure, fatal error, cancel) or the deadline margin passed."""
        if self.stopped:
            return False
        deadline = self.deadline
        return deadline is None or monotonic() < deadline

    def _read(self, items: Iterator[Any]) -> Iterator[int]:
        # Checked before each read: after a stop or at the deadline no further item is
        # pulled from the caller's iterator, so a huge or slow input is never drained.
        results = self.results
        pending = self.pending
        deadline = self.deadline
        index = 0
        while not self.stopped and (deadline is None or monotonic() < deadline):  # may_start(), inlined
            self.reading = True
            try:
                item = next(items)
            except StopIteration:
                self.exhausted = True
                return
            except Exception as exc:
                # The input ends here: the items already read still run, then finish()
                # raises this exception.
                self.input_error = exc
                return
            except BaseException as exc:
                self.fatal_error(exc)
                return
            finally:
                self.reading = False
            results.append(_QUEUED)
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
    # The slot is marked _RUNNING before the stop flag is read: a finish() that still
    # sees _QUEUED had already set the flag, so such a record is then never started, and
    # one it sees _RUNNING is reported as possibly started (the safe side).

    def begin(self, index: int) -> bool:
        """Mark record ``index`` started if it may still start: the start check of every record.

        :meth:`execute` and :meth:`aexecute` start each record they run this way (the
        same steps, written out), so a strategy that runs its jobs through them never
        calls it. A strategy that ships records elsewhere (another process) and reports
        them later calls it for each record just before sending it, sends
        ``run.pending[index]`` only when it returns True, and later reports the record's
        outcome with :meth:`settle`, :meth:`fail` or :meth:`fatal_error`, or calls
        :meth:`unbegin` for one that never ran there.

        Returns:
            True: the record is marked started and must now run. False: the call stopped
            or the deadline margin passed; the record stays not started (finish() reports it).
        """
        results = self.results
        results[index] = _RUNNING
        if self.may_start():
            return True
        results[index] = _QUEUED
        return False

    def unbegin(self, index: int) -> None:
        """Take back :meth:`begin`'s mark for a record that was never reached where it was sent.

        For a strategy that ships records elsewhere: the worker holding the record stopped
        (killed at the deadline, failed, or stopped at an earlier record's failure) before
        the record began. finish() then reports it as not started rather than not finished.
        Once the call has returned, this does nothing.
        """
        if not self.closed:
            self.results[index] = _QUEUED

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
        if self.closed:
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
        if self.closed:
            return False
        if self.limiter is not None:
            from ._limiter import note_failure

            note_failure(self.limiter, error)
        pending = self.pending
        if self.first_failure is None:
            self.first_failure = index
        if self.stop_on_failure:
            self.stopped = True
        if self.collect:
            self.results[index] = Outcome(index, pending[index], None, error)
        else:
            self.failures[index] = (pending[index], error)
            self.results[index] = None
        del pending[index]
        return False

    def fatal_error(self, error: BaseException) -> None:
        """Report a BaseException that ends the call (KeyboardInterrupt, SystemExit): finish() raises it."""
        # KeyboardInterrupt, SystemExit, a task's own CancelledError: recorded and
        # raised by finish(), outside any worker thread or event loop, so neither is
        # left mid-step. Nothing starts after it.
        if self.fatal is None:
            self.fatal = error
        self.stopped = True

    def _execute_one(self, index: int) -> bool:
        results = self.results
        results[index] = _RUNNING
        if self.stopped or (self.deadline is not None and monotonic() >= self.deadline):  # begin(), inlined
            results[index] = _QUEUED
            return False
        try:
            value = self.context.copy().run(self.fn, self.pending[index])
        except Exception as exc:
            return self.fail(index, exc)
        except BaseException as exc:
            self.fatal_error(exc)
            return False
        return self.settle(index, value)

    async def _aexecute_one(self, index: int) -> bool:
        results = self.results
        results[index] = _RUNNING
        if self.stopped or (self.deadline is not None and monotonic() >= self.deadline):  # begin(), inlined
            results[index] = _QUEUED
            return False
        try:
            value = await self.fn(self.pending[index])
        except Exception as exc:
            return self.fail(index, exc)
        except BaseException as exc:
            if self.winding_down and _is_cancellation(exc):
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

    def _skip_rest(self, group: list[int], position: int) -> None:
        index = group[position]
        if self.results[index] is _QUEUED or self.closed:
            return  # it never started (stop or deadline): finish() reports the rest as such
        skipped = SkippedAfterFailure(f"not started: record #{index} of the same group failed first", after=index)
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

    def stop(self) -> None:
        """Start no further job (the caller cancelled the call)."""
        self.stopped = True
        if self.on_stop is not None:
            self.on_stop()

    # -- the end of the call ----------------------------------------------------------------

    def finish(self) -> Results:
        """Close the run and return the results, or raise.

        Raises, in this order: a fatal BaseException from a task or the input; an
        exception from the input iterator (after the items read before it ran); TaskError
        for the first failed record in raise mode (a record cut by the deadline counts).
        """
        self.stopped = True  # first: a record's start check reads it after marking its slot
        self.closed = True
        if self.fatal is not None:
            raise self.fatal
        # Snapshots in this order: a report writes its slot before leaving `pending`, so
        # every record missing from this `pending` has its final value in the copy below.
        pending = dict(self.pending)
        results = Results(self.results) if pending else self.results
        results.unread = not self.exhausted and (self.size is None or len(results) < self.size)
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
        after_failure = self.stop_on_failure and self.collect and self.first_failure is not None
        for index, item in sorted(pending.items()):
            slot = results[index]
            if slot is _RUNNING:
                # Started, or at the instant of starting: it may have had side effects.
                error: BaseException = DeadlineExceeded.did_not_finish(self.margin_ms)
            elif slot is not _QUEUED:
                continue  # settled between the two snapshots: its value stands
            elif after_failure:
                error = SkippedAfterFailure(
                    f"not started: record #{self.first_failure} failed first and the batch stops at the "
                    "first failure", after=self.first_failure)
            else:
                error = DeadlineExceeded.not_started(self.margin_ms)
            if self.collect:
                results[index] = Outcome(index, item, None, error)
            else:
                results[index] = None
                self.failures.setdefault(index, (item, error))

    def counts(self) -> tuple[int, int, int, int]:
        """(records read, succeeded, failed, not run or cut by the deadline), once finish() has run.

        A record that never started (deadline, or a stop after a failure) and one the
        deadline cut while running count as not run; a record that ran and raised, failed.
        """
        final = self.final
        if self.collect:
            ok = sum(1 for outcome in final if outcome.error is None)
            failed = sum(1 for outcome in final if outcome.error is not None and not _not_run(outcome.error))
        else:
            failures = self.failures
            failed = sum(1 for _, error in failures.values() if not _not_run(error))
            ok = sum(1 for i, slot in enumerate(final)
                     if slot is not _QUEUED and slot is not _RUNNING and i not in failures)
        return len(final), ok, failed, len(final) - ok - failed


def _not_run(error: BaseException) -> bool:
    # The ledger's own reports carry their margin or the failed record; a task's own
    # exception of the same class does not.
    return (isinstance(error, DeadlineExceeded) and error.margin_ms is not None) or (
        isinstance(error, SkippedAfterFailure) and error.after is not None)


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError)
