"""CloudWatch Embedded Metric Format: one JSON line on stdout per map / process_batch call.

Only counts, durations, the strategy name and the function's name are written: never
a record's payload or identifiers.
"""

from __future__ import annotations

import sys
import time
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from . import _config

METRICS_UNITS = (
    ("Items", "Count"),
    ("Succeeded", "Count"),
    ("Failed", "Count"),
    ("Unprocessed", "Count"),
    ("DurationMs", "Milliseconds"),
    ("Workers", "Count"),
    ("WorkersPeak", "Count"),
    ("Throttled", "Count"),
)


def emf_line(strategy: str, values: dict[str, float], *, namespace: str = _config.DEFAULT_METRICS_NAMESPACE,
             function_name: str = "", timestamp_ms: int | None = None) -> str:
    """One EMF document for ``values`` (metric name -> number); declares the metrics given.

    Its one dimension set is FunctionName and Strategy (Strategy alone without a
    function name, outside Lambda), so each function's metrics are a series of their own.
    """
    import json

    dimensions = {"FunctionName": function_name, "Strategy": strategy} if function_name else {"Strategy": strategy}
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in METRICS_UNITS if name in values],
                }
            ],
        },
        **dimensions,
    }
    doc.update(values)
    return json.dumps(doc, separators=(",", ":"))


class measure:
    """Time one call of ``strategy`` over ``run`` and emit its EMF line on exit (if settings say so)."""

    __slots__ = ("strategy", "run", "on", "t0", "throttled0")

    def __init__(self, strategy: Any, run: Any) -> None:
        self.strategy = strategy
        self.run = run
        self.on = strategy.settings.metrics

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()
        # The limiter may be shared with a concurrent call of the same task: this call's
        # throttles are what its count grew by while it ran.
        limiter = self.run.limiter
        self.throttled0 = 0 if limiter is None else limiter.throttled

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.on or exc_type is not None and not issubclass(exc_type, Exception):
            return
        if self.run.final is None:  # finish() did not get as far as the results
            return
        items, _, failed, unprocessed = self.run.counts()
        settings = self.strategy.settings
        emit(
            self.strategy.name,
            namespace=settings.metrics_namespace,
            function_name=settings.function_name,
            items=items,
            failed=failed,
            unprocessed=unprocessed,
            duration_ms=(time.perf_counter() - self.t0) * 1000.0,
            workers=self.strategy.max_workers,
            limiter=self.run.limiter,
            throttled_before=self.throttled0,
        )


def emit(strategy: str, *, namespace: str, function_name: str, items: int, failed: int, unprocessed: int, duration_ms: float,
         workers: int, limiter: Any = None, throttled_before: int = 0) -> None:
    """Write one EMF line to stdout.

    ``Workers`` is the count, or auto's cap; ``WorkersPeak`` the highest limit auto
    reached (the count itself when fixed); ``Throttled`` the throttling signals auto saw
    (those beyond ``throttled_before``, the limiter's count when the call began).
    """
    line = emf_line(
        strategy,
        {
            "Items": items,
            "Succeeded": items - failed - unprocessed,
            "Failed": failed,
            "Unprocessed": unprocessed,
            "DurationMs": round(duration_ms, 3),
            "Workers": workers,
            "WorkersPeak": workers if limiter is None else limiter.peak,
            "Throttled": 0 if limiter is None else limiter.throttled - throttled_before,
        },
        namespace=namespace,
        function_name=function_name,
    )
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
