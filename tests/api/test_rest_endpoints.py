"""Every REST endpoint of the contract, every field of its answer."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import BTC

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
REPORT_FIELDS = {
    "order_id", "client_order_id", "symbol", "side", "order_type", "price", "quantity",
    "filled_quantity", "remaining_quantity", "average_price", "status", "timestamp", "trades",
    "stop_price", "display_quantity", "post_only", "expire_time", "quote_quantity", "cancel_reason",
}  # fmt: skip
TRADE_FIELDS = {
    "timestamp", "symbol", "trade_id", "price", "quantity", "aggressor_side",
    "maker_order_id", "taker_order_id", "maker_fee", "taker_fee",
}  # fmt: skip


def test_health(api):
    body = api.get("/health")
    assert body["status"] == "ok"
    assert isinstance(body["uptime_seconds"], (int, float)) and body["uptime_seconds"] >= 0


def test_ping_reads_a_json_body_and_does_nothing_else(api):
    engine = api.app.extensions["exchange"].engine
    before = engine.statistics()["engine"]
    order = {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "100.00"}
    for body in (order, [1, 2], "text", 0):
        r = api.client.post("/ping", json=body)
        assert r.status_code == 200 and r.get_json() == {"status": "ok"}
        assert r.headers["Content-Type"] == "application/json"
    assert engine.statistics()["engine"] == before  # the order was not placed
    assert api.get(f"/book/{BTC}")["bids"] == []


def test_symbols_lists_the_contract_defaults(api):
    symbols = {s["symbol"]: s for s in api.get("/symbols")["symbols"]}
    assert set(symbols) == {"BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT"}
    assert symbols["BTC-USDT"] == {
        "symbol": "BTC-USDT", "base": "BTC", "quote": "USDT", "tick_size": "0.01",
        "lot_size": "0.00001", "maker_fee": "0.001", "taker_fee": "0.002",
    }  # fmt: skip
    assert symbols["ETH-USDT"]["lot_size"] == "0.0001"
    assert symbols["BNB-USDT"]["lot_size"] == "0.001"
    assert symbols["SOL-USDT"]["tick_size"] == "0.01"


def test_order_report_has_every_field(api):
    report = api.limit("buy", "0.5", "30000", client_order_id="my-1")
    assert set(report) == REPORT_FIELDS
    assert report["order_id"].isdigit()
    assert report["client_order_id"] == "my-1"
    assert report["symbol"] == BTC
    assert report["side"] == "buy"
    assert report["order_type"] == "limit"
    assert report["price"] == "30000.00"
    assert report["quantity"] == "0.50000"
    assert report["filled_quantity"] == "0.00000"
    assert report["remaining_quantity"] == "0.50000"
    assert report["average_price"] is None
    assert report["status"] == "new"
    assert ISO.match(report["timestamp"])
    assert report["trades"] == []


def test_client_order_id_is_optional_and_null_when_absent(api):
    assert api.limit("buy", "1", "1")["client_order_id"] is None


def test_json_numbers_are_accepted_exactly(api):
    report = api.post(
        "/order", {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": 0.1, "price": 30000.1}
    )
    assert (report["quantity"], report["price"]) == ("0.10000", "30000.10")
    # A number that binary floating point cannot hold exactly still lands on the grid.
    raw = b'{"symbol":"BTC-USDT","side":"buy","order_type":"limit","quantity":0.30000,"price":10.07}'
    r = api.client.post("/order", data=raw, content_type="application/json")
    assert r.status_code == 200 and r.get_json()["price"] == "10.07"


def test_content_type_with_charset_is_accepted(api):
    r = api.client.post(
        "/order",
        data=b'{"symbol":"BTC-USDT","side":"buy","order_type":"limit","quantity":"1","price":"1"}',
        content_type="application/json; charset=utf-8",
    )
    assert r.status_code == 200


def test_unknown_fields_are_ignored(api):
    report = api.limit("buy", "1", "1", leverage=100, note={"x": [1, 2]})
    assert report["status"] == "new" and "leverage" not in report


def test_trade_has_every_field(api):
    maker = api.limit("sell", "0.2", "30000.00")
    taker = api.order("buy", "market", "0.2")
    assert taker["status"] == "filled"
    assert taker["price"] is None
    assert len(taker["trades"]) == 1
    trade = taker["trades"][0]
    assert set(trade) == TRADE_FIELDS
    assert trade["symbol"] == BTC
    assert trade["trade_id"].isdigit()
    assert trade["price"] == "30000.00"
    assert trade["quantity"] == "0.20000"
    assert trade["aggressor_side"] == "buy"
    assert trade["maker_order_id"] == maker["order_id"]
    assert trade["taker_order_id"] == taker["order_id"]
    assert trade["maker_fee"] == "6.00000000"  # 6000 * 0.001
    assert trade["taker_fee"] == "12.00000000"  # 6000 * 0.002
    assert ISO.match(trade["timestamp"])


def test_cancel_answers_the_report_with_status_cancelled(api):
    placed = api.limit("buy", "1", "29000")
    cancelled = api.cancel(placed["order_id"])
    assert set(cancelled) == REPORT_FIELDS
    assert cancelled["order_id"] == placed["order_id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["remaining_quantity"] == "1.00000"
    assert api.book()["bids"] == []


def test_cancel_twice_is_order_not_open(api):
    placed = api.limit("buy", "1", "29000")
    api.cancel(placed["order_id"])
    err = api.cancel(placed["order_id"], expect=409)["error"]
    assert err["code"] == "ORDER_NOT_OPEN" and err["field"] == "order_id"


def test_cancel_of_a_filled_order_is_order_not_open(api):
    maker = api.limit("sell", "1", "100")
    api.order("buy", "market", "1")
    assert api.cancel(maker["order_id"], expect=409)["error"]["code"] == "ORDER_NOT_OPEN"


@pytest.mark.parametrize("order_id", ["999999", "abc", "", "0", "-1", "1.5", "007", "1" * 40])
def test_cancel_of_an_unknown_order_is_order_not_found(api, order_id):
    err = api.cancel(order_id, expect=404)["error"]
    assert err["code"] == "ORDER_NOT_FOUND"


def test_get_order_as_it_stands_now(api):
    maker = api.limit("sell", "1", "100")
    assert api.get(f"/order/{maker['order_id']}")["status"] == "new"
    api.order("buy", "market", "0.4")
    now = api.get(f"/order/{maker['order_id']}")
    assert set(now) == REPORT_FIELDS
    assert now["status"] == "partially_filled"
    assert now["filled_quantity"] == "0.40000"
    assert now["remaining_quantity"] == "0.60000"
    assert now["average_price"] == "100.00"
    assert now["trades"] == []
    api.cancel(maker["order_id"])
    assert api.get(f"/order/{maker['order_id']}")["status"] == "cancelled"


@pytest.mark.parametrize("order_id", ["424242", "abc", "0", "%20", "1e3", "-5"])
def test_get_unknown_order_is_404(api, order_id):
    assert api.get(f"/order/{order_id}", expect=404)["error"]["code"] == "ORDER_NOT_FOUND"


def test_book_levels_sorted_and_summed(api):
    for price, qty in [("100.00", "1"), ("101.00", "2"), ("101.00", "3"), ("99.50", "1")]:
        api.limit("buy", qty, price)
    for price, qty in [("103.00", "1"), ("102.00", "0.5"), ("102.00", "0.25")]:
        api.limit("sell", qty, price)
    book = api.get(f"/book/{BTC}")
    assert set(book) == {"timestamp", "symbol", "sequence", "bids", "asks"}
    assert ISO.match(book["timestamp"])
    assert book["symbol"] == BTC
    assert book["sequence"] == 7
    assert book["bids"] == [["101.00", "5.00000"], ["100.00", "1.00000"], ["99.50", "1.00000"]]
    assert book["asks"] == [["102.00", "0.75000"], ["103.00", "1.00000"]]


def test_book_default_depth_is_10_and_levels_limits_it(api):
    for i in range(15):
        api.limit("buy", "1", f"{100 + i}.00")
    assert len(api.get(f"/book/{BTC}")["bids"]) == 10
    two = api.get(f"/book/{BTC}?levels=2")
    assert two["bids"] == [["114.00", "1.00000"], ["113.00", "1.00000"]]
    assert len(api.get(f"/book/{BTC}?levels=100000")["bids"]) == 15  # capped, not refused


@pytest.fixture
def deep_market(api):
    """BTC with 1,005 bid levels and 1,005 trades: more than ``?levels``/``?limit`` return."""
    bids = [{"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": f"{100 + i}.00"}
            for i in range(1005)]  # fmt: skip
    api.post("/orders", bids[:1000])
    api.post("/orders", bids[1000:])
    api.post(
        "/order", {"symbol": BTC, "side": "sell", "order_type": "limit", "quantity": "1005", "price": "5000"}
    )
    sells = [{"symbol": BTC, "side": "buy", "order_type": "market", "quantity": "1"}] * 1005
    api.post("/orders", sells[:1000])
    api.post("/orders", sells[1000:])
    return api


# API.md: "values above 1000 are treated as 1000" -- however many digits they have
# (a value of 13 or more digits, or beyond Python's int conversion limit, was a 400).
@pytest.mark.parametrize("value", ["1000", "1001", "000001001", "9999999999999", "9" * 5000])
def test_levels_and_limit_above_the_maximum_are_treated_as_the_maximum(deep_market, value):
    book = deep_market.get(f"/book/{BTC}?levels={value}")
    assert len(book["bids"]) == 1000
    assert book["bids"][0] == ["1104.00", "1.00000"]  # best first
    trades = deep_market.get(f"/trades/{BTC}?limit={value}")["trades"]
    assert len(trades) == 1000
    assert [int(t["trade_id"]) for t in trades] == list(range(6, 1006))  # the last 1000, oldest first


def test_empty_book(api):
    book = api.get("/book/ETH-USDT")
    assert (book["sequence"], book["bids"], book["asks"]) == (0, [], [])


def test_bbo(api):
    empty = api.get(f"/bbo/{BTC}")
    assert set(empty) == {"timestamp", "symbol", "sequence", "best_bid", "best_ask", "spread"}
    assert (empty["best_bid"], empty["best_ask"], empty["spread"], empty["sequence"]) == (None, None, None, 0)
    api.limit("buy", "1", "100.00")
    api.limit("buy", "2", "100.00")
    one_side = api.get(f"/bbo/{BTC}")
    assert one_side["best_bid"] == {"price": "100.00", "quantity": "3.00000"}
    assert one_side["best_ask"] is None and one_side["spread"] is None
    api.limit("sell", "0.5", "100.25")
    both = api.get(f"/bbo/{BTC}")
    assert both["best_ask"] == {"price": "100.25", "quantity": "0.50000"}
    assert both["spread"] == "0.25"
    assert both["sequence"] == 3
    assert ISO.match(both["timestamp"])


def test_trades_oldest_first_last_n(api):
    api.limit("sell", "10", "100")
    ids = [api.order("buy", "market", "1")["trades"][0]["trade_id"] for _ in range(5)]
    body = api.get(f"/trades/{BTC}")
    assert set(body) == {"symbol", "trades"}
    assert body["symbol"] == BTC
    assert [t["trade_id"] for t in body["trades"]] == ids
    assert set(body["trades"][0]) == TRADE_FIELDS
    assert [t["trade_id"] for t in api.get(f"/trades/{BTC}?limit=2")["trades"]] == ids[-2:]
    assert api.get("/trades/SOL-USDT") == {"symbol": "SOL-USDT", "trades": []}


def test_trades_default_limit_is_50(api):
    api.limit("sell", "100", "100")
    for _ in range(60):
        api.order("buy", "market", "1")
    assert len(api.get(f"/trades/{BTC}")["trades"]) == 50
    assert len(api.get(f"/trades/{BTC}?limit=55")["trades"]) == 55


@pytest.mark.parametrize("path", ["/book/DOGE-USDT", "/bbo/DOGE-USDT", "/trades/DOGE-USDT", "/book/btc-usdt"])
def test_unknown_symbol_on_a_path_is_404(api, path):
    err = api.get(path, expect=404)["error"]
    assert err["code"] == "UNKNOWN_SYMBOL"
    assert "field" not in err


def test_unknown_symbol_in_a_body_is_400(api):
    err = api.order("buy", "limit", "1", "1", symbol="DOGE-USDT", expect=400)["error"]
    assert (err["code"], err["field"]) == ("UNKNOWN_SYMBOL", "symbol")


def test_statistics_documented_fields(api):
    api.limit("sell", "1", "100")
    api.order("buy", "market", "0.5")
    api.order("buy", "market", "0.5", symbol="NOPE", expect=400)
    api.order("buy", "limit", "0.5", price="0.001", expect=400)
    stats = api.get("/statistics")
    for key in ("timestamp", "uptime_seconds", "engine", "symbols", "latency", "connected_clients"):
        assert key in stats
    btc = stats["symbols"][BTC]
    assert (btc["orders"], btc["trades"], btc["rejections"], btc["cancels"]) == (2, 1, 1, 0)
    assert btc["volume"] == "0.50000"
    assert btc["notional"] == "50.0000000"
    assert btc["sequence"] == 2 and btc["resting_orders"] == 1
    engine = stats["engine"]
    assert engine["orders"] == 2 and engine["trades"] == 1
    assert engine["rejections"] == 1  # counted per symbol: the unknown symbol has none
    assert engine["rejections_all"] == 2
    assert engine["notional_by_quote"] == {"USDT": "50.0000000"}

    latency = stats["latency"]
    for name in ("order_processing", "matching", "trade_report", "cancel_processing", "bulk_request"):
        assert {"count", "window", "p50_us", "p90_us", "p99_us", "max_us", "mean_us"} <= set(latency[name])
    assert latency["order_processing"]["count"] == 2
    assert latency["trade_report"]["count"] == 1
    assert latency["order_processing"]["p50_us"] > 0


def test_cors_header_default_star(client):
    r = client.get("/health", headers={"Origin": "http://example.com"})
    assert r.headers["Access-Control-Allow-Origin"] in ("*", "http://example.com")


def test_cors_headers_only_for_cors_requests(client):
    # Without Origin it is not a CORS request: no Access-Control-* headers (and no cost).
    assert "Access-Control-Allow-Origin" not in client.get("/health").headers
    err = client.get("/nowhere", headers={"Origin": "http://example.com"})
    assert err.status_code == 404 and err.headers["Access-Control-Allow-Origin"] in (
        "*",
        "http://example.com",
    )


def test_cors_origins_configurable(make_app):
    client = make_app(cors_origins=["http://good.example"]).test_client()
    good = client.get("/health", headers={"Origin": "http://good.example"})
    assert good.headers.get("Access-Control-Allow-Origin") == "http://good.example"
    bad = client.get("/health", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_page_is_served_at_root(client):
    r = client.get("/")
    # 200 with the page, or the frontend's documented 503 when npm packages are missing.
    assert r.status_code in (200, 503)


def test_statistics_of_an_idle_server_use_plain_decimals(api):
    # Decimal("0E-7") once leaked out as exponent notation
    assert api.get("/statistics")["engine"]["notional_by_quote"] == {"USDT": "0.0000000"}
