"""One call's bookkeeping, shared by every strategy.

A strategy only decides *how* jobs run concurrently. Everything else lives here:
lazy, gated consumption of the input, results placed by index, raise/collect
semantics, the Lambda deadline, and what is reported for items never run.
"""

from __future__ import annotations

import time
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

from ._errors import DeadlineExceeded, TaskError
from ._task import Outcome

_PENDING = object()


class Run:
    """State of one ``map`` call: the gated job stream and the result slots.

    Strategies pull ``(index, item)`` pairs from :attr:`jobs` and report each
    with :meth:`succeeded` / :meth:`failed` (the ``work`` helpers do that);
    :meth:`wait_timeout` says how long they may block waiting for in-flight jobs.
    """

    __slots__ = (
        "fn", "collect", "context", "margin_ms", "results", "inflight", "failures",
        "stopped", "wait_until", "unprocessed", "closed",
        "jobs", "final", "limiter",
    )

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        collect: bool,
        context: Any,
        margin_ms: int,
        limiter: Any = None,
    ) -> None:
        self.fn = fn
        #: The adaptive limiter under max_workers=auto (strategies read its .limit), else None.
        self.limiter = limiter
        self.collect = collect
        self.context = context
        self.margin_ms = margin_ms
        self.results: list[Any] = []
        self.inflight: dict[int, Any] = {}
        self.failures: dict[int, tuple[Any, BaseException]] = {}
        self.stopped = False
        self.wait_until: float | None = None
        self.unprocessed = 0
        self.closed = False
        self.jobs: Iterator[tuple[int, Any]] = self._gate(iter(items))

    # -- the input, consumed lazily ---------------------------------------------------

    def _time_left(self) -> bool:
        """Ask the Lambda context whether another item may start; refresh wait_until."""
        remaining = self.context.get_remaining_time_in_millis() - self.margin_ms
        self.wait_until = time.monotonic() + max(remaining, 0) / 1000.0
        return remaining > 0

    def _gate(self, items: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        results = self.results
        inflight = self.inflight
        check_deadline = self.context is not None
        pending = _PENDING
        index = -1
        for index, item in enumerate(items):
            if self.stopped:
                return
            if check_deadline and not self._time_left():
                self._cut(index, item, items)
                return
            results.append(pending)
            inflight[index] = item
            yield index, item

    def _cut(self, index: int, item: Any, rest: Iterator[Any]) -> None:
        """The deadline margin was reached: report every unstarted item, lose none."""
        err = DeadlineExceeded(
            f"not started: the Lambda deadline was within the {self.margin_ms} ms margin "
            "(FANOUT_DEADLINE_MARGIN_MS)"
        )
        if not self.collect:
            # Raise mode reports the first unstarted item; the rest are never read.
            self.results.append(None)
            self.failures[index] = (item, err)
            self.unprocessed += 1
            return
        append = self.results.append
        append(Outcome(index, item, None, err))
        self.unprocessed += 1
        for i, it in enumerate(rest, start=index + 1):
            append(Outcome(i, it, None, err))
            self.unprocessed += 1

    # -- reports from the strategies (any thread) --------------------------------------
    # Each report writes its slot before leaving ``inflight``, so finish() can tell
    # from a snapshot which items never finished and still find their items.

    def succeeded(self, index: int, value: Any) -> None:
        if self.closed:
            return  # a late result after the call returned: ignored, never overwrites
        inflight = self.inflight
        self.results[index] = Outcome(index, inflight[index], value, None) if self.collect else value
        del inflight[index]

    def failed(self, index: int, error: BaseException) -> None:
        if self.closed:
            return
        if self.limiter is not None:
            from ._limiter import note_failure

            note_failure(self.limiter, error)  # a throttling error is a signal to auto
        inflight = self.inflight
        if self.collect:
            self.results[index] = Outcome(index, inflight[index], None, error)
        else:
            self.failures[index] = (inflight[index], error)
            self.results[index] = None
            self.stopped = True
        del inflight[index]

    def wait_timeout(self) -> float | None:
        """Seconds a strategy may block waiting for in-flight jobs; None without a deadline."""
        if self.context is None:
            return None
        if self.wait_until is None:
            self._time_left()
        return max(self.wait_until - time.monotonic(), 0.0)

    def expired(self) -> bool:
        """True once the deadline margin has passed (strategies stop waiting then)."""
        return self.context is not None and not self._time_left()

    # -- the end of the call ----------------------------------------------------------

    def finish(self) -> list[Any]:
        """Close the run and return the results, or raise TaskError in raise mode.

        Items still in flight (a task that hung past the deadline) are reported as
        DeadlineExceeded; their late results are ignored.
        """
        # A strategy that stopped waiting at the deadline leaves input unread; reading it
        # now runs it through the gate, which reports each item as not started.
        for _ in self.jobs:
            pass
        self.closed = True
        results = self.results
        if self.inflight:
            items = dict(self.inflight)
            # A copy: a hung worker may still write into the run's own list later.
            results = list(results)
            err = DeadlineExceeded(
                f"did not finish before the Lambda deadline margin of {self.margin_ms} ms "
                "(FANOUT_DEADLINE_MARGIN_MS)"
            )
            for index, slot in enumerate(results):
                if slot is _PENDING:
                    self.unprocessed += 1
                    if self.collect:
                        results[index] = Outcome(index, items[index], None, err)
                    else:
                        self.failures.setdefault(index, (items[index], err))
        self.final = results
        if self.failures:
            index = min(self.failures)
            item, error = self.failures[index]
            raise TaskError(index, item, error) from error
        return results

    def counts(self) -> tuple[int, int, int]:
        """(items seen, failed, not run before the deadline), once finish() has run."""
        if self.collect:
            errors = sum(1 for o in self.final if o.error is not None)
        else:
            errors = len(self.failures)
        return len(self.final), errors - self.unprocessed, self.unprocessed


def run_sync(run: Run, job: tuple[int, Any]) -> bool:
    """Run one job with the sync form and report it; True if it succeeded. BaseException propagates."""
    index, item = job
    try:
        value = run.fn(item)
    except Exception as exc:
        run.failed(index, exc)
        return False
    run.succeeded(index, value)
    return True


async def run_async(run: Run, job: tuple[int, Any]) -> bool:
    """Await one job with the async form and report it; True if it succeeded. BaseException propagates."""
    index, item = job
    try:
        value = await run.fn(item)
    except Exception as exc:
        run.failed(index, exc)
        return False
    run.succeeded(index, value)
    return True
