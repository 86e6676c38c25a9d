"""Public reads stay cheap however much state is behind them (issue 16, point 6):
their cost is bounded by construction, checked here by counting the work, not by
timing it (the figures are in Documentation/PERFORMANCE.md, from
``tests/api/bench_endpoints.py``)."""

from __future__ import annotations

import builtins

from api import formatting
from tests.api.conftest import BTC


def _fill_windows(exchange, n: int = 10_000) -> None:
    windows = list(exchange.latency.values())
    if exchange.publisher is not None:
        windows += list(exchange.publisher.latency.values())
    for window in windows:
        for i in range(n):
            window.add(1000 + i * 37 % 5000)


def test_statistics_never_sorts_a_latency_window(api, app, monkeypatch):
    """Sorting nine windows of 10,000 samples cost ~10 ms a call: one client polling
    /statistics within its rate limit stalled everyone's orders."""
    exchange = app.extensions["exchange"]
    _fill_windows(exchange)
    real_sorted = builtins.sorted
    big_sorts = []

    def watching_sorted(iterable, *args, **kwargs):
        data = real_sorted(iterable, *args, **kwargs)
        if len(data) >= 1000:
            big_sorts.append(len(data))
        return data

    monkeypatch.setattr(builtins, "sorted", watching_sorted)
    stats = api.get("/statistics")
    assert big_sorts == []
    figure = stats["latency"]["order_processing"]
    assert figure["window"] == 10_000 and 0 < figure["p50_us"] <= figure["p99_us"] <= figure["max_us"]
    assert stats["streaming"]["latency"]["bbo_update"]["window"] == 10_000


def test_trades_are_formatted_once(api, app, monkeypatch):
    """/trades?limit=1000 formatted 1,000 trades at every call (~1.7 ms)."""
    api.limit("sell", "50", "100.00")
    api.post("/orders", [{"symbol": BTC, "side": "buy", "order_type": "market", "quantity": "0.01"}] * 1000)
    first = api.get(f"/trades/{BTC}?limit=1000")["trades"]
    assert len(first) == 1000
    formatted = []
    real = formatting.trade_dict
    monkeypatch.setattr(
        formatting, "trade_dict", lambda spec, trade: formatted.append(trade) or real(spec, trade)
    )
    assert api.get(f"/trades/{BTC}?limit=1000")["trades"] == first
    assert formatted == []
    # a new trade is formatted once, and appears last
    api.order("buy", "market", "0.01")
    again = api.get(f"/trades/{BTC}?limit=1000")["trades"]
    assert (
        len(formatted) == 1
        and again[:-1] == first[1:]
        and again[-1]["trade_id"] == str(int(first[-1]["trade_id"]) + 1)
    )


def test_book_levels_are_formatted_once(api, app, monkeypatch):
    """/book?levels=1000 formatted 2,000 prices and quantities at every call (~0.7 ms)."""
    bids = [{"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": f"{100 + i}.00"}
            for i in range(1000)]  # fmt: skip
    api.post("/orders", bids)
    first = api.get(f"/book/{BTC}?levels=1000")
    exchange = app.extensions["exchange"]
    spec = exchange.engine.markets[BTC].spec
    calls = []
    f = formatting.formatter(spec)
    real_price = f.price
    monkeypatch.setattr(f, "price", lambda units: calls.append(units) or real_price(units))
    second = api.get(f"/book/{BTC}?levels=1000")
    assert calls == [] and second["bids"] == first["bids"] and len(second["bids"]) == 1000
    api.limit("buy", "2", "100.00")  # one level's total changes: that level only is formatted again
    calls.clear()  # (the order's own report)
    third = api.get(f"/book/{BTC}?levels=1000")
    assert (
        calls == [10000]
        and third["bids"][-1] == ["100.00", "3.00000"]
        and third["bids"][:-1] == first["bids"][:-1]
    )


def test_trades_json_is_the_trades_answer_and_its_cache_stays_bounded(api, app):
    import msgspec

    exchange = app.extensions["exchange"]
    api.limit("sell", "50", "100.00")
    market = [{"symbol": BTC, "side": "buy", "order_type": "market", "quantity": "0.01"}] * 1000
    for _ in range(3):
        api.post("/orders", market)
        for limit in (1, 50, 1000):
            assert exchange.trades_json(BTC, limit) == msgspec.json.encode(exchange.trades(BTC, limit))
        assert len(exchange._trade_json[BTC]) <= 2000  # what /trades can return, and at most as much again
    assert exchange.trades_json("ETH-USDT", 5) == b'{"symbol":"ETH-USDT","trades":[]}'
