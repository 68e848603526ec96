"""``threads``: ThreadPoolExecutor, submit, results handled in completion order, placed by index.

Under auto the pool is this module's :class:`LimitPool`: threads that follow the run's limit.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from functools import partial
from itertools import count

# Annotations only (postponed by `from __future__ import annotations`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .._limiter import Meter

from .._run import Run
from .base import WINDOW_PER_WORKER, CallPool, Strategy, drive_window, thread_pool


class ThreadsStrategy(Strategy):
    """Submit a bounded window of jobs; as each completes, submit the next.

    This is the submit + as_completed pattern with a sliding window
    (:func:`~lambda_fanout.strategies.base.drive_window`): completions are handled
    in the order as_completed would yield them, without one slow item stalling
    every refill. Under auto the pool's threads follow the run's limit
    (:class:`LimitPool`), and the window keeps a backlog queued beyond it, as it does
    for a fixed count: a thread that finishes a job takes the next at once, rather
    than waiting for this driver.

    The executor lives for one call, so no thread outlives it (unless a task hangs
    past the deadline: that thread is left to finish on its own and its result is
    ignored).
    """

    def _drive(self, run: Run) -> None:
        meter = run.meter
        executor = thread_pool(self.max_workers, "fanout") if meter is None else LimitPool(meter, run.execute, "fanout")
        with CallPool(run, executor) as pool:
            submit = partial(pool.executor.submit, run.execute) if meter is None else pool.executor.submit
            drive_window(run, run.jobs, submit, self.max_workers * WINDOW_PER_WORKER, meter=meter)


#: An idle thread of a pool that is shutting down ends within this long even if the
#: sentinel that ends it promptly was never queued (an exception, from a signal's handler,
#: interrupted the shutdown).
IDLE_CHECK_S = 1.0


class LimitPool:
    """Threads running ``fn`` over submitted jobs, as many at once as the meter's limit, timed by it.

    The jobs submitted beyond the limit wait in the queue, and each thread takes the
    next itself. A thread that finishes a job while more run than the limit parks until
    the limit rises again. :meth:`submit` (on the driver's thread) leaves a job to an idle
    thread while idle threads outnumber the jobs queued, else resumes a parked one, else
    starts one, while fewer run than the limit;
    a thread that finishes a job only resumes parked ones, so a start the system refuses
    raises to the caller, as ThreadPoolExecutor's does. Threads are kept, not ended, as
    the limit moves: starting one costs more CPU than a job's hand-off, which a small
    CPU share feels. Like ThreadPoolExecutor it starts a future with
    ``set_running_or_notify_cancel`` (a cancelled one is skipped), keeps its threads in
    ``_threads``, and cancels what is still queued on ``shutdown(cancel_futures=True)``.
    """

    def __init__(self, meter: Meter, fn: Callable[[Any], Any], name: str) -> None:
        self._meter = meter
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # Timed where it runs; what waits in the queue waits for the limit.
        self._fn = meter.timed(fn, lambda: (self._running - self._idle - 1, self._queue.qsize()))
        self._name = name
        self._lock = threading.Lock()
        self._resume = threading.Condition(self._lock)
        # Each state change is one step, so that an exception a signal's handler raises
        # between two steps leaves no count out of step: the running threads are the
        # threads not parked.
        self._threads: set[threading.Thread] = set()
        self._parked = 0
        self._idle = 0  # threads waiting for a job (counted only when the queue ran dry)
        self._resumed = 0  # parked threads told to resume that have not yet woken
        self._count = count()
        self._shutdown = False

    @property
    def _running(self) -> int:
        return len(self._threads) - self._parked

    def submit(self, job: Any) -> Future:
        """Queue ``fn(job)``, with a thread for it while fewer than the limit run; returns its future."""
        future: Future = Future()
        self._queue.put((future, job))
        # Idle threads take jobs only as many as they are: a burst after a pause in the
        # input needs more threads than the one that waited for it.
        if self._running < self._meter.limit and self._idle < self._queue.qsize():
            with self._lock:
                if (self._shutdown or self._running >= self._meter.limit
                        or self._idle >= self._queue.qsize() or self._wake(1)):
                    return future
                thread = threading.Thread(target=self._work, name=f"{self._name}_{next(self._count)}")
                try:
                    self._threads.add(thread)
                    thread.start()
                except BaseException:
                    # Refused, or interrupted: given up for (a thread that began finds
                    # itself so and ends), and raised as ThreadPoolExecutor's submit does.
                    self._threads.discard(thread)
                    raise
        return future

    def _wake(self, wanted: int) -> int:
        # Under the lock: resume up to ``wanted`` parked threads; returns how many.
        resumed = min(wanted, self._parked)
        if resumed > 0:
            self._parked -= resumed
            self._resumed += resumed
            self._resume.notify(resumed)
        return resumed

    def _park(self) -> bool:
        # After a job while more run than the limit: wait until told to resume (True) or
        # the pool shuts down (False).
        with self._lock:
            if self._running <= self._meter.limit or self._shutdown:
                return not self._shutdown
            self._parked += 1
            while not self._resumed and not self._shutdown:
                self._resume.wait()
            if self._resumed:
                self._resumed -= 1  # _wake counted it running again
                return True
            self._parked -= 1
            return False

    def _work(self) -> None:
        fn, get, get_nowait, meter = self._fn, self._queue.get, self._queue.get_nowait, self._meter
        me = threading.current_thread()
        with self._lock:  # held by submit until its start() returned or was given up for
            if me not in self._threads:
                return
        try:
            while True:
                try:
                    item = get_nowait()
                except queue.Empty:
                    with self._lock:
                        self._idle += 1
                    try:
                        item = get(timeout=IDLE_CHECK_S)
                    except queue.Empty:
                        if self._shutdown:
                            return
                        continue
                    finally:
                        with self._lock:
                            self._idle -= 1
                if item is None:
                    self._queue.put(None)  # passed on: one sentinel ends every idle thread
                    return
                future, job = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(job))
                    except BaseException as exc:  # as ThreadPoolExecutor's work item does
                        future.set_exception(exc)
                    del future, item
                running, limit = self._running, meter.limit
                if running > limit:
                    if not self._park():
                        return
                elif running < limit and self._parked and self._queue.qsize():
                    with self._lock:  # the limit grew: parked threads resume for the jobs waiting
                        self._wake(min(limit - self._running, self._queue.qsize()))
        finally:
            with self._lock:
                self._threads.discard(me)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            self._resume.notify_all()  # parked threads end
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                item[0].cancel()
        self._queue.put(None)  # idle threads end, each passing it on; busy ones after their job
        if wait:
            for thread in threads:
                thread.join()
