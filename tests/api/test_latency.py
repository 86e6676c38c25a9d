"""``api/latency.py``: the sliding window's histogram always counts exactly the
window's samples, and its percentiles are the sorted window's nearest-rank values
to within 0.8%."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.latency import BUCKETS, LatencyWindow, bucket, bucket_bounds, bucket_value
from api.market import LatencyWindow as PublisherWindow
from api.service import LatencyRecorder

QS = (0.5, 0.9, 0.99, 0.999, 1.0)


def _exact(samples, q):
    data = sorted(samples)
    return data[min(len(data) - 1, int(q * len(data)))]


def test_buckets_are_contiguous_and_monotonic():
    previous_high = -1
    for index in range(BUCKETS - 1):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1 and high >= low
        assert bucket(low) == index and bucket(high) == index
        if low >= 128:  # (below: one value per bucket)
            assert (high - low + 1) / low <= 1 / 64
        else:
            assert low == high
        previous_high = high
    assert bucket(10**18) == BUCKETS - 1


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 60),
    st.lists(
        st.one_of(st.integers(-5, 300), st.integers(0, 10**13), st.integers(10**15, 10**17)), max_size=300
    ),
)
def test_histogram_is_the_window(size, samples):
    window = LatencyWindow(size)
    for ns in samples:
        window.add(ns)
        window._check()
    assert window.count == len(samples)
    kept = [max(0, ns) for ns in samples[-size:]] if samples else []
    assert list(window.samples) == kept
    if kept:
        for q, value in zip(QS, window.percentiles(QS), strict=True):
            exact = _exact(kept, q)
            assert exact <= 10**14 or value == bucket_value(BUCKETS - 1)  # (beyond ~39 h: the last bucket)
            if exact <= 10**14:
                assert abs(value - exact) <= exact / 128 + 0.5, (q, value, exact)
        assert window.mean() == sum(kept) / len(kept)
    else:
        assert window.percentiles(QS) == [] and window.mean() is None


def test_percentiles_of_a_realistic_window_are_within_0_8_percent():
    rng = random.Random(7)
    window = LatencyWindow(10_000)
    for _ in range(25_000):
        window.add(int(rng.lognormvariate(12.2, 0.8)))
    window._check()
    kept = list(window.samples)
    for q, value in zip(QS, window.percentiles(QS), strict=True):
        assert value == pytest.approx(_exact(kept, q), rel=0.008)


def test_recorder_summary_over_a_bounded_window():
    rec = LatencyRecorder(window=100)
    for i in range(1, 1001):
        rec.add(i * 1000)  # i us
    s = rec.summary()
    assert s["count"] == 1000 and s["window"] == 100
    assert s["p50_us"] == pytest.approx(951.0, rel=0.008) and s["p99_us"] == pytest.approx(1000.0, rel=0.008)
    assert s["max_us"] == pytest.approx(1000.0, rel=0.008) and s["mean_us"] == 950.5  # exact
    assert s["max_all_time_us"] == 1000.0
    assert LatencyRecorder().summary()["p50_us"] is None


def test_publisher_window_summary_in_ms():
    window = PublisherWindow(1000)
    for i in range(1, 2001):
        window.add(i * 1_000_000)  # i ms
    s = window.summary()
    assert s["count"] == 2000 and s["window"] == 1000
    assert s["p50_ms"] == pytest.approx(1501, rel=0.008) and s["max_ms"] == pytest.approx(2000, rel=0.008)
    assert PublisherWindow().summary() == {
        "count": 0, "window": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None,
    }  # fmt: skip
