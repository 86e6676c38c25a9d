"""Latency figures over a sliding window, summarised in microseconds of CPU.

``/statistics`` reports percentiles of the last 10,000 samples of nine figures
(five of the exchange, four of the publisher). They were computed by sorting
each window at every call: ~1 ms per window, ~9-10 ms per ``/statistics``, so a
single client polling it within its rate limit (10,000 a minute) took most of a
core and pushed everyone's order latency from p99 4 ms to 500 ms.

``LatencyWindow`` keeps, next to the window's samples, a histogram of them,
updated as samples enter and leave (``add``: O(1), ~0.3 us). A summary is then a
cumulative sum over the histogram's buckets (those between the lowest and the
highest ever used) and a binary search per percentile: O(buckets), ~5-30 us,
independent of the window size.

Buckets: exact below 128 ns; above, 64 per power of two (log-linear, as in HDR
histograms), so a bucket spans at most 1/64 of its value and a reported
percentile (the bucket's midpoint) is within 0.8% of the exact nearest-rank
value. The window's mean is exact (a running sum). Values beyond ~39 hours go
to the last bucket.

Invariant (``_check``): the histogram counts exactly the samples in the window,
and ``total`` is their sum.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from itertools import accumulate

_SUB_BITS = 6  # 2**6 = 64 buckets per power of two
_EXACT = 1 << (_SUB_BITS + 1)  # below this every value has its own bucket
_MAX_SHIFT = 40
BUCKETS = ((_MAX_SHIFT + 2) << _SUB_BITS) + 1


def bucket(ns: int) -> int:
    """The histogram bucket of a sample (ns >= 0). O(1)."""
    shift = ns.bit_length() - (_SUB_BITS + 1)
    if shift <= 0:
        return ns
    if shift > _MAX_SHIFT:
        return BUCKETS - 1
    return (shift << _SUB_BITS) + (ns >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``(lowest, highest)`` sample of a bucket."""
    if index < _EXACT:
        return index, index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


def bucket_value(index: int) -> float:
    """What a bucket reports: its midpoint (within 0.8% of any sample in it)."""
    low, high = bucket_bounds(index)
    return (low + high) / 2


class LatencyWindow:
    """The last ``size`` latency samples (ns), their histogram and sum.

    ``add`` is O(1); ``percentiles`` is O(buckets) (~30 us), whatever the window.
    """

    __slots__ = ("samples", "size", "counts", "total", "count", "max_ns", "low", "high")

    def __init__(self, size: int = 10_000) -> None:
        self.samples: deque[int] = deque(maxlen=size)
        self.size = size
        self.counts = [0] * BUCKETS
        self.total = 0  # sum of the samples in the window
        self.count = 0  # samples ever added
        self.max_ns = 0  # largest sample ever added
        # the lowest and highest bucket ever used: a summary sums only between them
        self.low = BUCKETS
        self.high = -1

    def add(self, ns: int) -> None:
        """Record one sample (negative ones as 0). Runtime complexity: O(1)."""
        # ``bucket`` inlined (7 = _SUB_BITS + 1): this runs several times per order.
        if ns < 0:
            ns = 0
        samples = self.samples
        counts = self.counts
        if len(samples) == self.size:
            old = samples[0]  # leaves the window with this append
            shift = old.bit_length() - 7
            counts[
                old if shift <= 0 else bucket(old) if shift > _MAX_SHIFT else (shift << 6) + (old >> shift)
            ] -= 1
            self.total -= old
        samples.append(ns)
        shift = ns.bit_length() - 7
        index = ns if shift <= 0 else bucket(ns) if shift > _MAX_SHIFT else (shift << 6) + (ns >> shift)
        counts[index] += 1
        if index > self.high:
            self.high = index
        if index < self.low:
            self.low = index
        self.total += ns
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def __len__(self) -> int:
        return len(self.samples)

    def percentiles(self, qs) -> list[float]:
        """The nearest-rank ``q`` quantile (0 < q <= 1) of the window for each
        of ``qs``, in ns, to within 0.8%; ``q == 1`` is the window's maximum.
        Empty window: an empty list. Runtime complexity: O(buckets + len(qs))."""
        n = len(self.samples)
        if not n:
            return []
        low = self.low
        cumulative = list(accumulate(self.counts[low : self.high + 1]))
        out = []
        for q in qs:
            rank = min(n - 1, int(q * n))  # 0-based, as data[int(q * n)] of the sorted window
            out.append(bucket_value(low + bisect_right(cumulative, rank)))
        return out

    def mean(self) -> float | None:
        """The window's exact mean (ns), or None."""
        n = len(self.samples)
        return self.total / n if n else None

    def _check(self) -> None:
        """Assert the invariant: the histogram and the sum match the window."""
        expected = [0] * BUCKETS
        for ns in self.samples:
            expected[bucket(ns)] += 1
        assert expected == self.counts
        assert sum(self.samples) == self.total
        assert len(self.samples) <= self.size
