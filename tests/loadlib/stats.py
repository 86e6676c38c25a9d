"""Latency statistics: nearest-rank percentiles over exact samples.

Every sample is kept (no histogram buckets), so the figures are exact; a run of
60 s at 1,000 requests/s is 60,000 floats, nothing to worry about.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of an ascending sequence.

    The smallest value such that at least ``p`` percent of the samples are less than or
    equal to it; always one of the samples (no interpolation). ``p = 0`` gives the
    minimum, ``p = 100`` the maximum; ``None`` for an empty sequence.

    Runtime complexity: O(1) on a sorted sequence.

    Raises:
        ValueError: ``p`` outside [0, 100].
    """
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {p}")
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(p / 100.0 * n - 1e-9))
    return sorted_values[min(rank, n) - 1]


def summarize(values: Iterable[float], scale: float = 1000.0) -> dict:
    """count, mean, min, p50, p90, p99, p99.9 and max of ``values`` times ``scale``.

    With the default scale seconds become milliseconds. Empty input gives count 0
    and ``None`` for every figure.
    """
    s = sorted(values)
    out: dict = {"count": len(s)}
    if not s:
        out.update({k: None for k in ("mean", "min", "p50", "p90", "p99", "p99.9", "max")})
        return out
    out["mean"] = sum(s) / len(s) * scale
    out["min"] = s[0] * scale
    for p in PERCENTILES:
        out[f"p{p:g}"] = percentile(s, p) * scale
    out["max"] = s[-1] * scale
    return out


def per_interval(
    times: Sequence[float],
    values: Sequence[float] | None = None,
    interval: float = 1.0,
    end: float | None = None,
) -> list[list[float]]:
    """Group samples by ``int(time / interval)``.

    Returns one list per interval covering [0, ``end``) (``end`` defaults to the last
    sample's time): the values falling in it (or the times themselves when ``values``
    is None). Samples before 0 go to the first interval, samples at or after ``end`` to
    the last.
    """
    if end is None:
        end = max(times, default=0.0)
    nbins = max(1, math.ceil(end / interval - 1e-9))
    bins: list[list[float]] = [[] for _ in range(nbins)]
    vals = times if values is None else values
    for t, v in zip(times, vals, strict=True):
        i = int(t / interval) if t > 0 else 0
        if i >= nbins:
            i = nbins - 1
        bins[i].append(v)
    return bins


def fmt_ms(v: float | None) -> str:
    """Milliseconds with a precision that fits the magnitude; '-' for None."""
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"
