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
from .base import WINDOW_PER_WORKER, CallPool, Strategy, drive_window


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
        executor = None if meter is None else LimitPool(meter, run.execute, "fanout")
        with CallPool(run, self.max_workers, "fanout", executor) as pool:
            submit = partial(pool.executor.submit, run.execute) if meter is None else pool.executor.submit
            drive_window(run, run.jobs, submit, self.max_workers * WINDOW_PER_WORKER, meter=meter)


class LimitPool:
    """Threads running ``fn`` over submitted jobs, as many at once as the meter's limit, timed by it.

    The jobs submitted beyond the limit wait in the queue, and each thread takes the
    next itself. A thread that finishes a job while more run than the limit parks until
    the limit rises again; while fewer run than the limit and jobs wait, parked threads
    resume first, then new ones start. Threads are kept, not ended, as the limit moves:
    starting one costs more CPU than a job's hand-off, which a small CPU share feels.
    Like ThreadPoolExecutor it starts a future with ``set_running_or_notify_cancel`` (a
    cancelled one is skipped), keeps its threads in ``_threads``, and cancels what is
    still queued on ``shutdown(cancel_futures=True)``.
    """

    def __init__(self, meter: Meter, fn: Callable[[Any], Any], name: str) -> None:
        self._meter = meter
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # Timed where it runs; what waits in the queue waits for the limit.
        self._fn = meter.timed(fn, lambda: (self._running - 1, self._queue.qsize()))
        self._name = name
        self._lock = threading.Lock()
        self._resume = threading.Condition(self._lock)
        self._threads: set[threading.Thread] = set()
        self._running = 0  # threads taking jobs (not parked)
        self._parked = 0
        self._resumed = 0  # parked threads told to resume that have not yet woken
        self._count = count()
        self._shutdown = False

    def submit(self, job: Any) -> Future:
        """Queue ``fn(job)``, with a thread for it while fewer than the limit run; returns its future."""
        future: Future = Future()
        self._queue.put((future, job))
        if self._running < self._meter.limit:
            self._grow(1)
        return future

    def _grow(self, wanted: int) -> None:
        # Up to ``wanted`` more running threads, never past the limit: parked ones first. A
        # start that fails (the system refuses a thread, or a signal's exception interrupts
        # it) is given up for and raises, as ThreadPoolExecutor's submit does; a thread
        # whose start was interrupted after it began finds itself given up for and ends.
        with self._lock:
            wanted = min(wanted, self._meter.limit - self._running)
            if wanted <= 0 or self._shutdown:
                return
            resumed = min(wanted, self._parked)
            if resumed:
                self._parked -= resumed
                self._resumed += resumed
                self._running += resumed
                self._resume.notify(resumed)
            for _ in range(wanted - resumed):
                thread = threading.Thread(target=self._work, name=f"{self._name}_{next(self._count)}")
                self._running += 1
                self._threads.add(thread)
                try:
                    thread.start()
                except BaseException:
                    self._running -= 1
                    self._threads.discard(thread)
                    raise

    def _park(self) -> bool:
        # Called after a job while more run than the limit: wait until told to resume (True)
        # or the pool shuts down (False).
        with self._lock:
            if self._running <= self._meter.limit or self._shutdown:
                return not self._shutdown
            self._running -= 1
            self._parked += 1
            while not self._resumed and not self._shutdown:
                self._resume.wait()
            if self._resumed:
                self._resumed -= 1  # _grow counted it running again
                return True
            self._parked -= 1
            return False

    def _work(self) -> None:
        fn, get, meter = self._fn, self._queue.get, self._meter
        me = threading.current_thread()
        with self._lock:  # held by _grow until its start() returned or was given up for
            if me not in self._threads:
                return
        ended = False  # by a sentinel or by shutdown while parked: not counted running
        try:
            while True:
                item = get()
                if item is None:
                    ended = True
                    return
                future, job = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(job))
                    except BaseException as exc:  # as ThreadPoolExecutor's work item does
                        future.set_exception(exc)
                    del future, item
                if self._running > meter.limit:
                    if not self._park():
                        ended = True
                        return
                elif self._running < meter.limit:
                    self._grow(self._queue.qsize())  # the limit grew: a thread for each job waiting
        finally:
            with self._lock:
                self._threads.discard(me)
                if not ended:
                    self._running -= 1  # an exception ended it (a refused start of another thread)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            running = self._running
            threads = list(self._threads)
            self._resume.notify_all()  # parked threads end
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in range(running):
            self._queue.put(None)  # an idle thread ends; a busy one ends after its job
        if wait:
            for thread in threads:
                thread.join()
