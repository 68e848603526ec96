"""When is a difference real? A bootstrap confidence interval of the ratio of medians.

The bench times every implementation over several rounds (pytest-benchmark's
per-round data). Two implementations differ *measurably* only when the 95%
bootstrap confidence interval of the ratio of their median wall times lies wholly
outside the band [1/MIN_EFFECT, MIN_EFFECT]:

- the interval is the percentile interval of the bootstrap law of that ratio: the ratio
  of the medians of each side's rounds resampled with replacement. The law is computed
  exactly from binomial counts (:func:`_median_law`), not drawn, so it needs no seed and
  no resample count, and the same rounds always give the same answer;
- MIN_EFFECT (5%) covers what rounds of one case cannot see: the cases run one after
  another, so slow drift of a shared machine shifts whole cases, not single rounds.

With three rounds a side the interval spans roughly the ratio of the ranges, so the
test is strict where data is scarce; more rounds narrow it. Pure Python on purpose:
the same report is built inside Lambda, where numpy is not at hand.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
import statistics
import struct
import sys
from typing import Sequence

CONFIDENCE = 0.95
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

    A verdict needs no interval: "low > x" is "at most ``tail`` of the bootstrap law lies at
    or below x", one reading of its distribution function, and the rounds' range decides most
    without even that (every resampled median lies within its side's rounds, so every
    bootstrap ratio lies within [min(a) / max(b), max(a) / min(b)]). ``low`` and ``high``
    themselves are found when asked for, for the report's text.
    """

    def __init__(self, a: tuple[float, ...], b: tuple[float, ...], confidence: float, min_effect: float) -> None:
        self.value = median(a) / median(b)
        self.min_effect = min_effect
        self._least, self._most = min(a) / max(b), max(a) / min(b)
        self._a, self._b = a, b
        self._tail = (1 - confidence) / 2

    @property
    def low(self) -> float:
        return _quantile(self._a, self._b, self._tail)

    @property
    def high(self) -> float:
        return _quantile(self._a, self._b, 1 - self._tail)

    def _low_above(self, x: float) -> bool:
        """low > x: the law puts at most ``tail`` at or below x."""
        if self._least > x or self._most <= x:
            return self._least > x
        return _cdf(self._a, self._b, x, strict=False) <= self._tail

    def _high_below(self, x: float) -> bool:
        """high < x: the law puts more than 1 - ``tail`` below x."""
        if self._most < x or self._least >= x:
            return self._most < x
        return _cdf(self._a, self._b, x, strict=True) > 1 - self._tail

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


def ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
          min_effect: float = MIN_EFFECT) -> Ratio:
    """Compare two sets of round times: median(a) / median(b) and its bootstrap interval.

    Args:
        a, b: wall times of the rounds (any unit, the same for both).
        confidence: the interval's coverage, e.g. 0.95.
        min_effect: the smallest ratio ever called measurable.

    Raises:
        ValueError: a side without rounds, or a time that is not a positive, finite number.
    """
    if not a or not b:
        raise ValueError(f"a ratio needs rounds on both sides, got {len(a)} and {len(b)}")
    if not all(0 < x < math.inf for x in (*a, *b)):  # NaN fails every comparison
        raise ValueError("round times must be positive, finite numbers")
    # Sorted floats: the law depends on the rounds only, and 2 and 2.0 are one key of the cache.
    return Ratio(tuple(sorted(map(float, a))), tuple(sorted(map(float, b))), confidence, min_effect)


#: A term of a median's law below this is left out: together far under the 2.5% tails an
#: interval reads, and it keeps the law of many rounds small.
_NEGLIGIBLE = 1e-16


@functools.lru_cache(maxsize=1024)
def _median_law(x: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The bootstrap law of the median of ``x`` (sorted): the median of n draws with replacement
    from its n rounds, exactly. (values ascending, cumulative probabilities).

    Label the rounds 1..n in sorted order. For odd n = 2m + 1 the median is the (m + 1)-th
    smallest draw, at most round i when at least m + 1 draws are: a binomial tail. For even
    n = 2m it is the mean of the m-th and (m + 1)-th draws: rounds i < j when m draws are at
    most i, their largest i, and the other m at least j, their smallest j; round i twice unless
    m draws or more lie below it, or m or more above (both at once: m each).
    """
    n = len(x)
    m = n // 2
    law: dict[float, float] = {}

    def add(value: float, p: float) -> None:
        if p > _NEGLIGIBLE:
            law[value] = law.get(value, 0.0) + p

    if n % 2:
        below = 0.0
        for i in range(1, n + 1):
            at_most = _binomial_tail(n, i / n, m + 1)
            add(x[i - 1], at_most - below)
            below = at_most
    else:
        log_pairs = _log_comb(n, m)
        top = [_log(((i / n) ** m - ((i - 1) / n) ** m)) for i in range(1, n + 1)]  # m draws <= i, largest i
        bottom = top[::-1]  # m draws >= j, smallest j: the mirror image
        for i in range(1, n + 1):
            for j in range(i + 1, n + 1):
                add((x[i - 1] + x[j - 1]) / 2, math.exp(log_pairs + top[i - 1] + bottom[j - 1]))
            below, above = (i - 1) / n, (n - i) / n
            both = math.exp(log_pairs + m * (_log(below) + _log(above)))
            add(x[i - 1], 1 - _binomial_tail(n, below, m) - _binomial_tail(n, above, m) + both)
    values = tuple(sorted(law))
    total = math.fsum(law.values())  # 1, but for rounding and what was left out
    return values, tuple(min(1.0, c / total) for c in itertools.accumulate(law[v] for v in values))


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -math.inf


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _binomial_tail(n: int, p: float, k: int) -> float:
    """P(at least k of n draws), each with probability p."""
    if p <= 0:
        return float(k <= 0)
    if p >= 1:
        return float(k <= n)
    lp, lq = math.log(p), math.log1p(-p)
    return min(1.0, sum(math.exp(_log_comb(n, j) + j * lp + (n - j) * lq) for j in range(max(k, 0), n + 1)))


def _cdf(a: tuple[float, ...], b: tuple[float, ...], x: float, *, strict: bool) -> float:
    """The bootstrap probability that median(a) / median(b) is at most ``x`` (below it if strict)."""
    a_values, a_cum = _median_law(a)
    b_values, b_cum = _median_law(b)
    total, before = 0.0, 0.0
    for vb, cum in zip(b_values, b_cum):
        k = _count_at_most(a_values, vb, x, strict)
        if k:
            total += (cum - before) * a_cum[k - 1]
        before = cum
    return total


def _count_at_most(a_values: tuple[float, ...], vb: float, x: float, strict: bool = False) -> int:
    """How many of ``a_values`` (ascending) give va / vb at most ``x`` (below it if strict), the
    ratio as computed: a search on x * vb, then a step either way where its rounding differs."""
    cut, inside = (bisect.bisect_left, operator.lt) if strict else (bisect.bisect_right, operator.le)
    k = cut(a_values, x * vb)
    while k and not inside(a_values[k - 1] / vb, x):
        k -= 1
    while k < len(a_values) and inside(a_values[k] / vb, x):
        k += 1
    return k


@functools.lru_cache(maxsize=4096)
def _quantile(a: tuple[float, ...], b: tuple[float, ...], q: float) -> float:
    """The least ratio r of the bootstrap law with P(ratio <= r) > q: the percentile interval's end.

    A bisection over the floats themselves (their bit patterns order them): it ends, within 64
    steps whatever the rounds, on two neighbouring floats lo < hi with P(<= lo) <= q < P(<= hi),
    and the end, a ratio the law holds, is the one float above lo that can be it: hi.
    """
    a_values, b_values = _median_law(a)[0], _median_law(b)[0]
    lo = a_values[0] / b_values[-1]
    if _cdf(a, b, lo, strict=False) > q:
        return lo
    hi = min(a_values[-1] / b_values[0], sys.float_info.max)  # a quotient may overflow: a bracket to halve
    if _cdf(a, b, hi, strict=False) <= q:  # only where it did: the end is the overflowed ratio itself
        return math.inf
    lo_bits, hi_bits = _bits(lo), _bits(hi)
    while hi_bits - lo_bits > 1:
        mid = (lo_bits + hi_bits) // 2
        if _cdf(a, b, _float(mid), strict=False) > q:
            hi_bits = mid
        else:
            lo_bits = mid
    return _float(hi_bits)


def _bits(x: float) -> int:
    """A non-negative float's bit pattern, as an integer: it orders such floats as their values do."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]
