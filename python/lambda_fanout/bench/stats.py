"""When is a difference real? A bootstrap confidence interval of the ratio of medians.

The bench times every implementation over several rounds (pytest-benchmark's
per-round data). Two implementations differ *measurably* only when the 95%
bootstrap confidence interval of the ratio of their median wall times lies wholly
outside the band [1/MIN_EFFECT, MIN_EFFECT]:

- the interval comes from resampling each side's rounds with replacement and taking
  the ratio of the resampled medians, RESAMPLES times (percentile method);
- MIN_EFFECT (5%) covers what rounds of one case cannot see: the cases run one after
  another, so slow drift of a shared machine shifts whole cases, not single rounds.

With three rounds a side the interval spans roughly the ratio of the ranges, so the
test is strict where data is scarce; more rounds narrow it. Pure Python on purpose:
the same report is built inside Lambda, where numpy is not at hand.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
import zlib
from typing import Sequence

CONFIDENCE = 0.95
RESAMPLES = 2000
#: Differences inside +-5% are never called measurable (drift between cases).
MIN_EFFECT = 1.05


def median(samples: Sequence[float]) -> float:
    """The median of ``samples``.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("median of no samples: a case needs at least one timed round")
    return statistics.median(samples)


def iqr(samples: Sequence[float]) -> tuple[float, float]:
    """(first quartile, third quartile) of ``samples``; both the value itself for one sample."""
    if len(samples) < 2:
        value = median(samples)
        return value, value
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q3


class Ratio:
    """How many times longer ``a`` took than ``b``, with its confidence interval.

    Attributes:
        value: median(a) / median(b); above 1 means b was faster.
        low, high: the bootstrap confidence interval of that ratio.
        measurable: the interval lies wholly outside [1/min_effect, min_effect].

    The interval is resampled only when asked for, and a verdict only when the rounds
    leave it open: every resampled median lies within its side's rounds, so every
    resampled ratio, and both ends of the interval, lie within [min(a) / max(b),
    max(a) / min(b)]. Rounds apart beyond the band, or wholly inside it, decide without
    resampling, and the verdict is the one the interval would give.
    """

    def __init__(self, a: tuple[float, ...], b: tuple[float, ...], resamples: int, confidence: float,
                 min_effect: float) -> None:
        self.value = median(a) / median(b)
        self.min_effect = min_effect
        self._least, self._most = min(a) / max(b), max(a) / min(b)
        self._sides = (a, b, resamples, confidence)

    @property
    def low(self) -> float:
        return _interval(*self._sides)[0]

    @property
    def high(self) -> float:
        return _interval(*self._sides)[1]

    def _low_above(self, x: float) -> bool:
        """low > x, resampling only when the rounds' range leaves it open."""
        return True if self._least > x else False if self._most <= x else self.low > x

    def _high_below(self, x: float) -> bool:
        """high < x, resampling only when the rounds' range leaves it open."""
        return True if self._most < x else False if self._least >= x else self.high < x

    @property
    def measurable(self) -> bool:
        return self._low_above(self.min_effect) or self._high_below(1 / self.min_effect)

    @property
    def b_faster(self) -> bool:
        """b is measurably faster than a."""
        return self.measurable and self._low_above(1)

    @property
    def a_faster(self) -> bool:
        """a is measurably faster than b."""
        return self.measurable and self._high_below(1)

    def describe(self) -> str:
        """``2.31x (95% CI 2.10-2.52)``."""
        return f"{self.value:.2f}x (95% CI {self.low:.2f}-{self.high:.2f})"

    def __repr__(self) -> str:
        return f"Ratio({self.describe()}, measurable={self.measurable})"


def ratio(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES,
          confidence: float = CONFIDENCE, min_effect: float = MIN_EFFECT) -> Ratio:
    """Compare two sets of round times: median(a) / median(b) and its bootstrap interval.

    The resampling is seeded from the data, so the same rounds always give the same answer.

    Args:
        a, b: wall times of the rounds (any unit, the same for both).
        resamples: bootstrap resamples.
        confidence: the interval's coverage, e.g. 0.95.
        min_effect: the smallest ratio ever called measurable.

    Raises:
        ValueError: a side without rounds, or a time that is not a positive, finite number.
    """
    if not a or not b:
        raise ValueError(f"a ratio needs rounds on both sides, got {len(a)} and {len(b)}")
    if not all(0 < x < math.inf for x in (*a, *b)):  # NaN fails every comparison
        raise ValueError("round times must be positive, finite numbers")
    # As floats: 2 and 2.0 are one key of the cache, and must seed the resampling alike.
    return Ratio(tuple(map(float, a)), tuple(map(float, b)), resamples, confidence, min_effect)


@functools.lru_cache(maxsize=4096)
def _interval(a: tuple[float, ...], b: tuple[float, ...], resamples: int, confidence: float) -> tuple[float, float]:
    """The bootstrap interval of median(a) / median(b). The resampling is seeded from the rounds,
    so the same rounds always give the same interval, and a report asking again gets it at once."""
    rng = random.Random(zlib.crc32(repr((sorted(a), sorted(b))).encode()))
    ratios = sorted(
        statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
        for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return ratios[int(tail * resamples)], ratios[min(resamples - 1, int((1 - tail) * resamples))]
