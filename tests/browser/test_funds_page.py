"""The page with funds (issue 13), in headless Chromium against a real server.

The balances panel shows the logged-in account's available and locked balances
exactly as the server sends them (GET /account, then the private ``balance``
events on ``/market``); the order form's "Max" fills the amount from the available
balance and its cost line shows what a buy locks (proceeds for a sell), exact;
an order the account cannot cover shows the server's INSUFFICIENT_FUNDS message;
a market buy stopped by its funds reads "insufficient funds".

Every expected figure is worked out by hand (``decimal.Decimal`` at most) from the
default fees: maker 0.001, taker 0.002; BTC-USDT tick 0.01, lot 0.00001; BTC held
to 5 decimals, USDT to 10 (GET /assets).
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

if os.environ.get("CI", "").strip().lower() not in ("1", "true", "yes"):
    # Outside CI a machine without playwright skips; in CI the import error fails the run.
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")

from browser_helpers import Api, TradingPage  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser


# -- the rules, run in the page (ui/funds.js, ui/decimal.js) ----------------------------------
# (function, form state without the spec, expected answer), BTC-USDT unless "spec" says otherwise.
RULES = [
    # limit buy: 1000 / (30000 x 0.00001 x 1.002) = 3326.67...: 3326 lots
    (
        "max",
        {"side": "buy", "type": "limit", "price": "30000.00", "available": {"USDT": "1000.0000000000"}},
        {"quantity": "0.03326", "estimate": False, "basis": "price", "price": "30000.00"},
    ),
    # ... and what those lots lock: 30000 x 0.03326 x 1.002
    (
        "cost",
        {"side": "buy", "type": "limit", "price": "30000.00", "quantity": "0.03326"},
        {"label": "Cost incl. fees", "value": "999.7956000000", "asset": "USDT", "estimate": False},
    ),
    # IOC and FOK buys lock the same way
    (
        "max",
        {"side": "buy", "type": "fok", "price": "29999.99", "available": {"USDT": "0.3005999899"}},
        {"quantity": "0.00001", "estimate": False, "basis": "price", "price": "29999.99"},
    ),
    (
        "max",
        {"side": "buy", "type": "ioc", "price": "30000.00", "available": {"USDT": "0.3005999999"}},
        {"error": "Max: not enough USDT available for one lot at this price"},
    ),
    (
        "max",
        {"side": "buy", "type": "limit", "price": "", "available": {"USDT": "1000"}},
        {"error": "Max: enter a price first"},
    ),
    # sell: the available base, whole lots
    (
        "max",
        {"side": "sell", "type": "limit", "price": "", "available": {"BTC": "0.12345", "USDT": "5"}},
        {"quantity": "0.12345", "estimate": False, "basis": "balance", "price": None},
    ),
    (
        "max",
        {"side": "sell", "type": "market", "available": {"BTC": "0.00000"}},
        {"error": "Max: less than one lot (0.00001) of BTC available"},
    ),
    # sell proceeds: 30000 x 0.12345 x (1 - 0.002), at least (it fills at the price or better)
    (
        "cost",
        {"side": "sell", "type": "limit", "price": "30000.00", "quantity": "0.12345"},
        {"label": "Proceeds after fees", "value": "3696.0930000000", "asset": "USDT", "estimate": False},
    ),
    # market buy: estimated at the best ask, 1000 / (25000 x 0.00001 x 1.002) = 3992.01...
    (
        "max",
        {"side": "buy", "type": "market", "bestAsk": "25000.00", "available": {"USDT": "1000"}},
        {"quantity": "0.03992", "estimate": True, "basis": "best ask", "price": "25000.00"},
    ),
    (
        "cost",
        {"side": "buy", "type": "market", "bestAsk": "25000.00", "quantity": "0.03992"},
        {"label": "Cost incl. fees", "value": "999.9960000000", "asset": "USDT", "estimate": True},
    ),
    (
        "max",
        {"side": "buy", "type": "market", "bestAsk": None, "available": {"USDT": "1000"}},
        {"error": "Max: no best ask in the book to estimate from"},
    ),
    (
        "cost",
        {"side": "sell", "type": "market", "bestBid": "24999.99", "quantity": "1.00000"},
        {"label": "Proceeds after fees", "value": "24949.9900200000", "asset": "USDT", "estimate": True},
    ),
    # market buy by quote amount: 1000 / 1.002 on the 0.0000001 grid, fee on top
    (
        "max",
        {"side": "buy", "type": "market", "byQuote": True, "available": {"USDT": "1000"}},
        {"quantity": "998.0039920", "estimate": False, "basis": "balance", "price": None},
    ),
    (
        "cost",
        {"side": "buy", "type": "market", "byQuote": True, "quantity": "998.0039920"},
        {"label": "Cost incl. fees", "value": "999.9999999840", "asset": "USDT", "estimate": False},
    ),
    # a stop-loss buy becomes a market buy: estimated at its stop price
    (
        "cost",
        {"side": "buy", "type": "stop_loss", "stopPrice": "31000.00", "quantity": "0.01000"},
        {"label": "Cost incl. fees", "value": "310.6200000000", "asset": "USDT", "estimate": True},
    ),
    # a stop-limit buy locks like a limit buy at its price
    (
        "cost",
        {
            "side": "buy",
            "type": "stop_limit",
            "price": "31000.00",
            "stopPrice": "30500.00",
            "quantity": "0.01000",
        },
        {"label": "Cost incl. fees", "value": "310.6200000000", "asset": "USDT", "estimate": False},
    ),
    # nothing is rounded away: off-grid text keeps every digit
    (
        "cost",
        {"side": "buy", "type": "limit", "price": "0.001", "quantity": "0.00001"},
        {"label": "Cost incl. fees", "value": "0.00000001002", "asset": "USDT", "estimate": False},
    ),
    # a symbol whose maker rate is the higher locks by it (the server does: ui/funds.js, lockRate)
    (
        "cost",
        {
            "spec": {"maker_fee": "0.003"},
            "side": "buy",
            "type": "limit",
            "price": "100.00",
            "quantity": "1.00000",
        },
        {"label": "Cost incl. fees", "value": "100.3000000000", "asset": "USDT", "estimate": False},
    ),
    ("cost", {"side": "buy", "type": "limit", "price": "100.00", "quantity": ""}, None),
]


def test_funds_rules_are_exact(page, server):
    """Max and cost, run in the page: BigInt arithmetic, hand-computed answers."""
    TradingPage(page, server.url).open()
    spec = Api(server.url).symbols()["BTC-USDT"]
    results = page.evaluate(
        """async ([spec, cases]) => {
            const f = await import("/ui/funds.js");
            return cases.map(([fn, o]) => {
                const state = { byQuote: false, scale: 10, ...o, spec: { ...spec, ...(o.spec || {}) } };
                if (fn === "max") {
                    const r = f.maxQuantity(state);
                    return r.error ? { error: r.error } : { quantity: r.quantity, estimate: r.estimate, basis: r.basis, price: r.price };
                }
                const r = f.costOf(state);
                return r && { label: r.label, value: r.value, asset: r.asset, estimate: r.estimate };
            });
        }""",
        [spec, [[fn, state] for fn, state, _ in RULES]],
    )
    for (fn, state, expected), got in zip(RULES, results, strict=True):
        assert got == expected, (fn, state)
    # The figures above, by Decimal: the lots of the first case are the most that fit.
    lot_cost = Decimal("30000.00") * Decimal("0.00001") * Decimal("1.002")
    assert 3326 * lot_cost <= Decimal("1000") < 3327 * lot_cost


def test_exact_value_helpers(page, server):
    TradingPage(page, server.url).open()
    got = page.evaluate(
        """async () => {
            const d = await import("/ui/decimal.js");
            return [
                String(d.floorDiv("1000", "0.3006")),
                String(d.floorDiv("0.3006", "0.3006")),
                String(d.floorDiv("0.3005999999", "0.3006")),
                d.format(d.times("0.1", "0.2"), 2),
                d.format({ int: 12300n, scale: 4 }, 2),
                d.format("1.5", 3),
                d.format(d.minus("1", "0.002"), 0),
                d.format(d.plus("0.1", "0.2"), 10),
                d.format(d.minus("0.1", "0.2"), 1),
            ];
        }"""
    )
    assert got == ["3326", "1", "0", "0.02", "1.23", "1.500", "0.998", "0.3000000000", "-0.1"]


def test_with_auth_off_the_balances_panel_stays_hidden(page, server):
    """--auth off: the shared account has no balances; the panel hides, the form trades."""
    ui = TradingPage(page, server.url).open("BTC-USDT")
    expect(page.locator("#account")).to_have_attribute("data-state", "off")
    expect(page.locator("#balances")).to_have_attribute("data-state", "empty")
    expect(page.locator("#balances")).to_be_hidden()
    # Max has no balance to go by and says so; the cost line still shows the exact figure.
    ui.fill_order("buy", "limit", "0.50000", price="30000.00")
    expect(page.locator("#order-cost-value")).to_have_text("15030.0000000000 USDT")
    page.click("#order-max")
    expect(page.locator("#quantity-error")).to_contain_text("no balances to go by")
    report = ui.place("buy", "limit", "0.50000", price="30000.00")
    assert report["status"] == "new"
    assert not page.watch.console_errors and not page.watch.page_errors
