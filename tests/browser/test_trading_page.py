"""The trading page at ``/`` in headless Chromium against a real server (issue 4).

Every test gets its own server (fresh data dir and port, ``--auth off``) and a fresh
browser context. With ``--auth off`` the page needs no login and its order lists
are those of the one account everybody shares, so the orders the tests place
through REST are in them too. The page with ``--auth on`` (login, keys, two
accounts) is tested in ``test_accounts_page.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

if os.environ.get("CI", "").strip().lower() not in ("1", "true", "yes"):
    # Outside CI a machine without playwright skips; in CI the import error fails the run.
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")

from browser_helpers import Api, TradingPage  # noqa: E402
from browser_server import ROOT  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser
DEMO = os.path.join(ROOT, "tools", "demo_market.py")


def grid_decimals(step: str) -> int:
    return len(step.split(".")[1].rstrip("0")) if "." in step else 0


def test_page_loads_without_console_errors_or_foreign_requests(page, server):
    api = Api(server.url)
    symbols = api.symbols()
    ui = TradingPage(page, server.url).open()

    options = page.eval_on_selector_all("#symbol-select option", "os => os.map(o => o.value)")
    assert options == list(symbols)
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
    expect(page.locator("#book-asks")).to_contain_text("no asks")
    # The vendor libraries came from this server and did their job.
    assert page.evaluate("typeof window.io === 'function' && typeof window.LightweightCharts === 'object'")
    expect(page.locator("#price-chart canvas").first).to_be_visible()
    time.sleep(0.5)  # let the first /health pings and chart frames happen

    assert page.watch.page_errors == []
    assert page.watch.console_errors == []
    assert page.watch.foreign_requests() == []
    assert any(u.endswith("/vendor/socket.io.min.js") for u in page.watch.requests)
    assert any(u.endswith("/vendor/lightweight-charts.js") for u in page.watch.requests)
    assert ui.snapshots() >= 1


def test_prices_and_quantities_follow_each_symbols_grid(page, server):
    api = Api(server.url)
    symbols = api.symbols()
    ui = TradingPage(page, server.url).open("BTC-USDT")
    for symbol in ("BTC-USDT", "SOL-USDT"):
        if symbol != "BTC-USDT":
            ui.select_symbol(symbol)
            ui.wait_live()
        spec = symbols[symbol]
        # Send the minimal text ("25", "2"): the page must pad it to the grid.
        api.order(symbol, "sell", "limit", "2", price="25")
        pd, qd = grid_decimals(spec["tick_size"]), grid_decimals(spec["lot_size"])
        price, qty = "25." + "0" * pd, "2." + "0" * qd
        expect(ui.level("asks", price)).to_have_attribute("data-qty", qty)
        expect(ui.level("asks", price).locator(".price")).to_have_text(price)
        expect(page.locator("#stat-ask")).to_have_attribute("data-value", price)
        expect(page.locator("#quantity-unit")).to_have_text(spec["base"])
        expect(page.locator("#grid-info")).to_contain_text(spec["lot_size"])
    assert page.watch.console_errors == []


DECIMAL_CASES = [
    # (function, args, expected) for frontend/ui/decimal.js, evaluated in the page
    ("toSteps", ["0.000001", "0.00001"], None),
    ("toSteps", ["0.00002", "0.00001"], "2"),
    ("toSteps", ["30000.01", "0.01"], "3000001"),
    ("toSteps", ["1e3", "0.01"], None),
    ("toSteps", ["-1.00", "0.01"], None),
    ("fromSteps", ["123", "0.01"], "1.23"),
    ("fromSteps", ["5", "0.00001"], "0.00005"),
    ("fromSteps", ["3", "0.50"], "1.5"),
    ("fixed", ["25", 2], "25.00"),
    ("fixed", ["25.1200", 2], "25.12"),
    ("fixed", ["25.123", 2], "25.123"),  # never rounds digits away silently
    ("fixed", ["2900.0000000", 2], "2900.00"),  # a whole total (order form) once threw
    ("fixed", ["2900.5000000", 2], "2900.50"),
    ("multiply", ["30000.00", "0.25000", 7], "7500.0000000"),
    ("multiply", ["0.1", "0.2", 2], "0.02"),  # 0.1 * 0.2 exactly, not 0.020000000000000004
    ("compare", ["1.10", "1.1"], "0"),
    ("group", ["1234567.89"], "1,234,567.89"),
]


def test_decimal_helpers_are_exact(page, server):
    TradingPage(page, server.url).open()
    results = page.evaluate(
        """async (cases) => {
            const d = await import("/ui/decimal.js");
            return cases.map(([fn, args]) => {
                if (fn === "fromSteps") args = [BigInt(args[0]), args[1]];
                const r = d[fn](...args);
                return r === null ? null : String(r);
            });
        }""",
        [[fn, args] for fn, args, _ in DECIMAL_CASES],
    )
    assert results == [expected for _, _, expected in DECIMAL_CASES]


def test_order_placed_through_the_form_appears_in_book_and_my_orders(page, server):
    api = Api(server.url)
    ui = TradingPage(page, server.url).open("BTC-USDT")

    report = ui.place("buy", "limit", "0.25000", price="29950.50")
    assert report["status"] == "new"
    order_id = report["order_id"]

    expect(ui.level("bids", "29950.50")).to_have_attribute("data-qty", "0.25000")
    expect(page.locator("#stat-bid")).to_have_attribute("data-value", "29950.50")
    row = ui.my_order(order_id)
    expect(row).to_have_attribute("data-status", "new")
    expect(row).to_contain_text("29950.50")
    expect(page.locator("#open-count")).to_have_text("1")
    expect(page.locator("#order-result")).to_contain_text(order_id)
    assert api.get(f"/order/{order_id}")["status"] == "new"
    # Clicking a level copies its price into the form.
    page.fill("#order-price", "")
    ui.level("bids", "29950.50").click()
    expect(page.locator("#order-price")).to_have_value("29950.50")

    # A partial fill by a market sell shows up live in the orders and the fills;
    # with --auth off both sides are the shared account's: two fills, maker and taker.
    api.order("BTC-USDT", "sell", "market", "0.10000")
    expect(row).to_have_attribute("data-status", "partially_filled")
    expect(row.locator(".filled")).to_have_text("0.10000")
    expect(ui.level("bids", "29950.50")).to_have_attribute("data-qty", "0.15000")
    expect(page.locator("#fills-count")).to_have_text("2")

    # The lists come from the server (GET /orders): the same after a reload.
    page.reload()
    ui.wait_live()
    expect(ui.my_order(order_id)).to_have_attribute("data-status", "partially_filled")
    assert page.watch.console_errors == []


def test_crossing_rest_order_shows_in_tape_and_moves_bbo(page, server):
    api = Api(server.url)
    ui = TradingPage(page, server.url).open("ETH-USDT")
    api.order("ETH-USDT", "sell", "limit", "1.0000", price="2001.00")
    api.order("ETH-USDT", "sell", "limit", "2.0000", price="2002.50")
    api.order("ETH-USDT", "buy", "limit", "1.5000", price="1999.00")
    expect(page.locator("#stat-ask")).to_have_attribute("data-value", "2001.00")
    expect(page.locator("#stat-spread")).to_contain_text("2.00")

    taker = api.order("ETH-USDT", "buy", "limit", "1.5000", price="2002.50")
    assert [t["price"] for t in taker["trades"]] == ["2001.00", "2002.50"]
    first, second = taker["trades"]

    row = ui.tape_row(first["trade_id"])
    expect(row).to_have_attribute("data-price", "2001.00")
    expect(row).to_have_attribute("data-qty", "1.0000")
    expect(row).to_have_attribute("data-side", "buy")
    expect(row.locator("span").first).to_have_class("up")
    expect(ui.tape_row(second["trade_id"])).to_have_attribute("data-qty", "0.5000")
    # The best ask moved up a level; the spread and statistics followed.
    expect(page.locator("#stat-ask")).to_have_attribute("data-value", "2002.50")
    expect(ui.level("asks", "2001.00")).to_have_count(0)
    expect(ui.level("asks", "2002.50")).to_have_attribute("data-qty", "1.5000")
    expect(page.locator("#stat-spread")).to_contain_text("3.50")
    expect(page.locator("#stat-last")).to_have_attribute("data-value", "2002.50")
    expect(page.locator("#stat-trades")).to_have_text("2")
    expect(page.locator("#stat-volume")).to_have_attribute("data-value", "1.5000")

    # A sell-side aggressor is coloured the other way.
    seller = api.order("ETH-USDT", "sell", "market", "0.5000")
    expect(ui.tape_row(seller["trades"][0]["trade_id"]).locator("span").first).to_have_class("down")
    expect(page.locator("#stat-bid")).to_have_attribute("data-value", "1999.00")
    expect(ui.level("bids", "1999.00")).to_have_attribute("data-qty", "1.0000")
    assert page.watch.console_errors == []


def test_ioc_and_fok_from_the_form_report_what_happened(page, server):
    api = Api(server.url)
    ui = TradingPage(page, server.url).open("ETH-USDT")
    api.order("ETH-USDT", "sell", "limit", "1.0000", price="2001.00")
    expect(ui.level("asks", "2001.00")).to_have_count(1)

    fok = ui.place("buy", "fok", "2.0000", price="2001.00")  # cannot fill in full: nothing happens
    assert fok["status"] == "cancelled" and fok["trades"] == []
    expect(page.locator("#order-result")).to_contain_text("nothing filled, cancelled")
    expect(ui.level("asks", "2001.00")).to_have_attribute("data-qty", "1.0000")

    ioc = ui.place("buy", "ioc", "2.0000", price="2001.00")  # takes what is there, drops the rest
    assert ioc["status"] == "cancelled" and ioc["filled_quantity"] == "1.0000"
    expect(page.locator("#order-result")).to_contain_text("filled 1.0000 @ 2001.00, rest cancelled")
    expect(ui.level("asks", "2001.00")).to_have_count(0)
    ui.show_tab("history")
    expect(ui.my_order(ioc["order_id"])).to_have_attribute("data-status", "cancelled")
    expect(ui.my_order(ioc["order_id"]).locator(".filled")).to_have_text("1.0000")
    expect(page.locator("#fills-count")).to_have_text("2")  # taker and (shared account) maker


def test_cancel_from_the_page_removes_the_order(page, server):
    api = Api(server.url)
    ui = TradingPage(page, server.url).open("SOL-USDT")
    report = ui.place("sell", "limit", "3.000", price="101.50")
    order_id = report["order_id"]
    expect(ui.level("asks", "101.50")).to_have_count(1)

    with page.expect_response(lambda r: r.url.endswith("/cancel")) as answer:
        page.click(f'[data-testid="cancel-{order_id}"]')
    assert answer.value.status == 200
    expect(ui.level("asks", "101.50")).to_have_count(0)
    expect(ui.my_order(order_id)).to_have_count(0)  # gone from "open orders"
    expect(page.locator("#open-count")).to_have_text("0")
    ui.show_tab("history")
    expect(ui.my_order(order_id)).to_have_attribute("data-status", "cancelled")
    assert api.get(f"/order/{order_id}")["status"] == "cancelled"

    # Cancel by id: an order placed elsewhere, then an id the server does not know.
    other = api.order("SOL-USDT", "buy", "limit", "1.000", price="99.00")
    expect(ui.level("bids", "99.00")).to_have_count(1)
    page.fill("#cancel-id-input", other["order_id"])
    page.click("#cancel-id-submit")
    expect(page.locator("#cancel-id-result")).to_contain_text(f"cancelled {other['order_id']}")
    expect(ui.level("bids", "99.00")).to_have_count(0)

    missing = api.post("/cancel", {"order_id": "999999999"})
    assert missing.status_code == 404
    page.fill("#cancel-id-input", "999999999")
    page.click("#cancel-id-submit")
    expect(page.locator("#cancel-id-result")).to_have_text(missing.json()["error"]["message"])
    expect(page.locator("#cancel-id-result")).to_have_class(re.compile("error"))


def test_bad_quantity_shows_the_servers_message_next_to_the_field(page, server):
    api = Api(server.url)
    ui = TradingPage(page, server.url).open("BTC-USDT")
    bad = {
        "symbol": "BTC-USDT",
        "side": "buy",
        "order_type": "limit",
        "price": "30000.00",
        "quantity": "0.000001",
    }
    expected = api.post("/order", bad)
    assert expected.status_code == 400
    error = expected.json()["error"]
    assert error["field"] == "quantity"

    # With the browser's own tick/lot check off, the server judges and the page shows its words.
    page.uncheck("#precheck")
    ui.fill_order("buy", "limit", "0.000001", price="30000.00")
    with page.expect_response(lambda r: r.url.endswith("/order")) as answer:
        page.click("#order-submit")
    assert answer.value.status == 400
    expect(page.locator("#quantity-error")).to_have_text(error["message"])
    expect(page.locator("#quantity-error")).to_have_attribute("data-source", "server")
    expect(page.locator("#field-quantity")).to_have_class(re.compile("invalid"))
    expect(page.locator("#price-error")).to_be_empty()
    expect(page.locator("#open-count")).to_have_text("0")  # not an order: not in "my orders"
    assert api.book("BTC-USDT")["bids"] == []

    # With the check on (the default), the page catches it before sending anything.
    page.check("#precheck")
    posts_before = sum(1 for u in page.watch.requests if u.endswith("/order"))
    page.fill("#order-quantity", "0.000001")
    page.click("#order-submit")
    expect(page.locator("#quantity-error")).to_contain_text("lot size 0.00001")
    expect(page.locator("#quantity-error")).to_have_attribute("data-source", "client")
    page.wait_for_timeout(300)
    assert sum(1 for u in page.watch.requests if u.endswith("/order")) == posts_before

    # Correcting the field clears the message; the order then goes through.
    page.fill("#order-quantity", "0.00001")
    expect(page.locator("#quantity-error")).to_be_empty()
    assert ui.submit()["status"] == "new"


def test_page_recovers_after_the_server_restarts(page, server, tmp_path):
    api = Api(server.url)
    ui = TradingPage(page, server.url).open("BTC-USDT")
    before = ui.snapshots()
    mine = ui.place("buy", "limit", "0.50000", price="29000.00")
    api.order("BTC-USDT", "sell", "limit", "0.30000", price="31000.00")
    expect(ui.level("bids", "29000.00")).to_have_count(1)
    expect(ui.level("asks", "31000.00")).to_have_count(1)

    server.stop()
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "disconnected")
    expect(page.locator("#book-stale")).to_be_visible()

    # Same port, same data dir. Change the market before the page is back, so
    # only a fresh snapshot (not the book it had) can show the truth.
    server.start()
    api = Api(server.url)
    answer = api.post("/cancel", {"order_id": mine["order_id"]})
    assert answer.status_code in (200, 404)  # 404 if the server did not keep the order
    api.order("BTC-USDT", "buy", "limit", "0.20000", price="29500.00")

    ui.wait_live(timeout=20_000)
    expect(page.locator("body")).not_to_have_attribute("data-snapshots", str(before))
    expect(ui.level("bids", "29500.00")).to_have_attribute("data-qty", "0.20000")
    expect(ui.level("bids", "29000.00")).to_have_count(0)
    expect(page.locator("#book-stale")).to_be_hidden()
    rest = api.book("BTC-USDT")
    expect(page.locator("#book")).to_have_attribute("data-sequence", str(rest["sequence"]))
    assert ui.levels("bids") == rest["bids"]
    assert ui.levels("asks") == rest["asks"]
    # The account's open orders caught up with what happened while the page was away.
    expect(ui.my_order(mine["order_id"])).to_have_count(0)

    # And the subscriptions are live again: a new order streams in.
    api.order("BTC-USDT", "sell", "limit", "0.10000", price="30500.00")
    expect(ui.level("asks", "30500.00")).to_have_attribute("data-qty", "0.10000")


def test_full_page_screenshot_of_a_living_market(page, server, artifacts_dir):
    """The demo market moves the market, a person trades from the form; the screenshot
    of the whole page is saved (test-artifacts/ui.png) for people to look at."""
    cmd = [sys.executable, DEMO, "--url", server.url, "--rate", "60", "--duration", "60", "--seed", "5",
           "--symbols", "BTC-USDT,ETH-USDT", "--quiet"]  # fmt: skip
    demo = subprocess.Popen(cmd, cwd=ROOT)
    try:
        ui = TradingPage(page, server.url).open("BTC-USDT")
        page.click('#intervals button[data-interval="1"]')
        page.wait_for_function(
            "document.querySelectorAll('#book-bids .book-row').length >= 6"
            " && document.querySelectorAll('#book-asks .book-row').length >= 6"
            " && document.querySelectorAll('#tape .tape-row').length >= 5",
            timeout=20_000,
        )
        bid = Decimal(page.locator("#stat-bid").get_attribute("data-value"))
        ask = Decimal(page.locator("#stat-ask").get_attribute("data-value"))
        ui.place("buy", "limit", "0.05000", price=str(bid - Decimal("12.00")))
        ui.place("sell", "limit", "0.04000", price=str(ask + Decimal("15.00")))
        ui.place("buy", "market", "0.01000")
        page.wait_for_timeout(6000)  # let the candles and the tape fill up
        path = os.path.join(artifacts_dir, "ui.png")
        page.screenshot(path=path, full_page=True)
        assert os.path.getsize(path) > 50_000
        assert int(page.locator("#stat-trades").get_attribute("data-value")) >= 10
        assert page.locator("#my-orders tr.order-row").count() >= 1
    finally:
        os.kill(demo.pid, signal.SIGTERM)
        assert demo.wait(20) == 0
    assert page.watch.page_errors == []
    assert page.watch.console_errors == []
    assert page.watch.foreign_requests() == []
