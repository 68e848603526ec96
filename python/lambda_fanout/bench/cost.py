"""Lambda's price table and billing rule: what one invocation of a given duration costs."""

from __future__ import annotations

import math

#: us-east-1, first pricing tier, as published on the AWS Lambda pricing page.
PRICES_READ_ON = "2026-11-26"
PRICE_PER_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_PER_MILLION_REQUESTS = 0.20
#: Lambda bills duration rounded up to the next millisecond.
BILLING_GRANULARITY_MS = 1
ARCHITECTURES = tuple(PRICE_PER_GB_SECOND)
#: Memory Lambda allows, in MB.
MEMORY_RANGE_MB = (128, 10240)


def billed_ms(duration_ms: float) -> int:
    """Duration as billed: rounded up to the granularity, at least 1 ms."""
    if duration_ms < 0:
        raise ValueError(f"duration_ms must be >= 0 but got {duration_ms!r}")
    return max(BILLING_GRANULARITY_MS, math.ceil(duration_ms / BILLING_GRANULARITY_MS) * BILLING_GRANULARITY_MS)


def cost_per_million(duration_ms: float, memory_mb: int, arch: str = "x86_64") -> float:
    """Dollars for one million invocations: billed duration x memory x price + requests.

    Raises:
        ValueError: an unknown architecture or memory outside Lambda's range.
    """
    if arch not in PRICE_PER_GB_SECOND:
        raise ValueError(f"arch must be one of {ARCHITECTURES} but got {arch!r}")
    low, high = MEMORY_RANGE_MB
    if not low <= memory_mb <= high:
        raise ValueError(f"memory_mb must be from {low} to {high} but got {memory_mb!r}")
    gb_seconds = billed_ms(duration_ms) / 1000.0 * (memory_mb / 1024.0)
    return 1_000_000 * gb_seconds * PRICE_PER_GB_SECOND[arch] + PRICE_PER_MILLION_REQUESTS


def ideal_seconds(items: int, workers: int, latency_s: float) -> float:
    """The concurrency ceiling for latency-bound work: ceil(N / C) x L."""
    if items < 0 or workers < 1 or latency_s < 0:
        raise ValueError("items >= 0, workers >= 1 and latency_s >= 0 are required")
    return math.ceil(items / workers) * latency_s
