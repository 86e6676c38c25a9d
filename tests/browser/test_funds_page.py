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

import json
import os
from decimal import Decimal

import pytest

if os.environ.get("CI", "").strip().lower() not in ("1", "true", "yes"):
    # Outside CI a machine without playwright skips; in CI the import error fails the run.
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")

from browser_helpers import Api, TradingPage, admin_client  # noqa: E402
from conftest import VIEWPORT, PageWatch  # noqa: E402
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
    expect(page.locator("#order-available")).to_have_text("—")
    page.click("#order-max")
    expect(page.locator("#quantity-error")).to_contain_text("no balances to go by")
    report = ui.place("buy", "limit", "0.50000", price="30000.00")
    assert report["status"] == "new"
    assert not page.watch.console_errors and not page.watch.page_errors


# -- two funded accounts trade from the page ---------------------------------------------------
def create_funded(admin, name: str, deposits: dict) -> dict:
    """POST /admin/accounts with deposits (the admin command of the contract)."""
    return admin.request("POST", "/admin/accounts", {"name": name, "deposits": deposits})


def panel(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#balances .balance-row",
        "rows => rows.map(r => ({asset: r.dataset.asset, available: r.dataset.available, locked: r.dataset.locked}))",
    )


def expect_balance(page, asset: str, available: str, locked: str) -> None:
    row = page.locator(f'#balances .balance-row[data-asset="{asset}"]')
    expect(row).to_have_attribute("data-available", available)
    expect(row).to_have_attribute("data-locked", locked)
    # shown exactly as the server sent it (the dimmed zeros are part of the text)
    expect(row.locator(".available")).to_have_text(available)
    expect(row.locator(".locked")).to_have_text(locked)


def events(page) -> int:
    return int(page.locator("#balances").get_attribute("data-events"))


def test_two_funded_accounts_trade_from_the_page(browser, auth_server):
    server = auth_server
    admin = admin_client(server)
    alice = create_funded(admin, "alice", {"BTC": "1"})
    bob = create_funded(admin, "bob", {"USDT": "100000"})
    alice_api = Api(server.url, alice["api_key"])

    ctx_a = browser.new_context(viewport=VIEWPORT)
    ctx_b = browser.new_context(viewport=VIEWPORT)
    try:
        page_a = ctx_a.new_page()
        page_a.watch = PageWatch(page_a, server.url)
        page_b = ctx_b.new_page()
        page_b.watch = PageWatch(page_b, server.url)

        # Alice logs in: the panel is GET /account's list, every asset, exactly.
        ui_a = TradingPage(page_a, server.url).open_logged_out("BTC-USDT")
        expect(page_a.locator("#balances")).to_be_hidden()
        ui_a.login(alice["api_key"])
        ui_a.wait_logged_in("alice")
        expect(page_a.locator("#balances")).to_have_attribute("data-state", "shown")
        expect_balance(page_a, "BTC", "1.00000", "0.00000")
        expect_balance(page_a, "USDT", "0.0000000000", "0.0000000000")
        assert panel(page_a) == alice_api.get("/account")["balances"]
        expect(page_a.locator('#balances .balance-row.current[data-asset="USDT"]')).to_have_count(1)
        # This tab is never reloaded from here on: the marker would be gone.
        page_a.evaluate("window.__noReload = true")

        # Max for a sell is the available base; the proceeds line is exact.
        ui_a.fill_order("sell", "limit", "", price="30000.00")
        expect(page_a.locator("#order-available")).to_have_text("1.00000 BTC")
        page_a.click("#order-max")
        expect(page_a.locator("#order-quantity")).to_have_value("1.00000")
        expect(page_a.locator("#order-max-note")).to_have_text("max from the available BTC")
        page_a.fill("#order-quantity", "0.50000")
        expect(page_a.locator("#order-cost-label")).to_have_text("Proceeds after fees")
        # 30000 x 0.5 x (1 - 0.002)
        expect(page_a.locator("#order-cost-value")).to_have_text("14970.0000000000 USDT")
        seen = events(page_a)
        report = ui_a.submit()
        assert report["status"] == "new", report
        alice_order = report["order_id"]
        expect_balance(page_a, "BTC", "0.50000", "0.50000")
        expect(page_a.locator("#balances")).not_to_have_attribute("data-events", str(seen))
        expect(page_a.locator("#order-available")).to_have_text("0.50000 BTC")

        # Bob, in another browser: Max for a limit buy is quote / (price x lot x 1.002):
        # 100000 / 0.3006 = 332667.99...; 0.2 at 30000 locks 6012 = 6000 + the 0.2 % fee.
        ui_b = TradingPage(page_b, server.url).open_logged_out("BTC-USDT")
        ui_b.login(bob["api_key"])
        ui_b.wait_logged_in("bob")
        expect_balance(page_b, "USDT", "100000.0000000000", "0.0000000000")
        ui_b.fill_order("buy", "limit", "", price="30000.00")
        expect(page_b.locator("#order-available")).to_have_text("100000.0000000000 USDT")
        page_b.click("#order-max")
        expect(page_b.locator("#order-quantity")).to_have_value("3.32667")
        page_b.fill("#order-quantity", "0.20000")
        expect(page_b.locator("#order-cost-label")).to_have_text("Cost incl. fees")
        expect(page_b.locator("#order-cost-value")).to_have_text("6012.0000000000 USDT")
        report = ui_b.submit()
        assert report["status"] == "filled" and report["average_price"] == "30000.00", report

        # Bob paid notional + taker fee: 100000 - 6000 - 12; he holds 0.2 BTC.
        expect_balance(page_b, "USDT", "93988.0000000000", "0.0000000000")
        expect_balance(page_b, "BTC", "0.20000", "0.00000")
        # Alice, live: 0.3 BTC still locked, 6000 - 6 (maker fee 0.1 %) received.
        expect_balance(page_a, "BTC", "0.50000", "0.30000")
        expect_balance(page_a, "USDT", "5994.0000000000", "0.0000000000")
        expect(ui_a.my_order(alice_order)).to_have_attribute("data-status", "partially_filled")
        # The fee balance grew by both fees.
        fees = {b["asset"]: b["available"] for b in admin.list_accounts()["fees"]}
        assert fees["USDT"] == "18.0000000000"

        # A deposit by the admin command shows at once.
        admin.request(
            "POST", "/admin/deposit", {"account_id": alice["account_id"], "asset": "USDT", "amount": "100"}
        )
        expect_balance(page_a, "USDT", "6094.0000000000", "0.0000000000")

        # More than the available base: the server's INSUFFICIENT_FUNDS message, nothing changes.
        answer = ui_a.place("sell", "limit", "0.60000", price="31000.00")
        assert answer["error"]["code"] == "INSUFFICIENT_FUNDS", answer
        expect(page_a.locator("#order-error")).to_have_text(answer["error"]["message"])
        expect_balance(page_a, "BTC", "0.50000", "0.30000")
        expect(ui_a.level("asks", "31000.00")).to_have_count(0)

        # Bob logs out (the panel goes), carol logs in on that tab: 3000 USDT buy,
        # at market, more than she can pay: it stops when her funds run out.
        ui_b.logout()
        expect(page_b.locator("#balances")).to_be_hidden()
        carol = create_funded(admin, "carol", {"USDT": "3000"})
        ui_b.login(carol["api_key"])
        ui_b.wait_logged_in("carol")
        expect_balance(page_b, "USDT", "3000.0000000000", "0.0000000000")
        expect_balance(page_b, "BTC", "0.00000", "0.00000")
        ui_b.fill_order("buy", "market", "")
        page_b.click("#order-max")
        # an estimate at the best ask: 3000 / 0.3006 = 9980.03...
        expect(page_b.locator("#order-quantity")).to_have_value("0.09980")
        expect(page_b.locator("#order-max-note")).to_have_attribute("data-estimate", "true")
        expect(page_b.locator("#order-max-note")).to_contain_text("best ask 30000.00")
        page_b.fill("#order-quantity", "0.20000")
        expect(page_b.locator("#order-cost")).to_have_attribute("data-estimate", "true")
        expect(page_b.locator("#order-cost-value")).to_have_text("6012.0000000000 USDT")
        report = ui_b.submit()
        assert report["status"] == "cancelled" and report["cancel_reason"] == "insufficient_funds", report
        assert report["filled_quantity"] == "0.09980", report
        # 0.0998 x 30000 = 2994, + 5.988 taker fee: 0.012 left.
        expect_balance(page_b, "USDT", "0.0120000000", "0.0000000000")
        expect_balance(page_b, "BTC", "0.09980", "0.00000")
        carol_order = report["order_id"]
        ui_b.show_tab("history")
        status = ui_b.my_order(carol_order).locator(".status")
        expect(status).to_have_text("cancelled (insufficient funds)")
        expect(status).to_have_attribute("data-cancel-reason", "insufficient_funds")
        expect(
            page_b.locator(
                f'#event-feed li[data-order-id="{carol_order}"][data-cancel-reason="insufficient_funds"]'
            )
        ).to_contain_text("cancelled (insufficient funds)")

        # Alice, live: 0.0998 more sold as maker, 2994 - 2.994 received.
        expect_balance(page_a, "BTC", "0.50000", "0.20020")
        expect_balance(page_a, "USDT", "9085.0060000000", "0.0000000000")
        assert panel(page_a) == alice_api.get("/account")["balances"]
        assert page_a.evaluate("window.__noReload") is True

        # A change while the private socket is down shows once it is back (GET /account
        # and the subscription's first event, on every reconnect).
        page_a.evaluate("window.__matchbook.session.socket.disconnect()")
        expect(page_a.locator("#account")).to_have_attribute("data-socket", "disconnected")
        admin.request(
            "POST", "/admin/deposit", {"account_id": alice["account_id"], "asset": "USDT", "amount": "1"}
        )
        page_a.evaluate("window.__matchbook.session.socket.connect()")
        expect(page_a.locator("#account")).to_have_attribute("data-socket", "connected")
        expect_balance(page_a, "USDT", "9086.0060000000", "0.0000000000")

        # Conservation, by hand: every unit deposited to the three is in their
        # accounts or the fees (the server's demo account holds its own, untouched).
        listing = admin.list_accounts()
        totals: dict[str, Decimal] = {}
        for account in listing["accounts"]:
            if account["name"] not in ("alice", "bob", "carol"):
                continue
            for b in account["balances"]:
                totals[b["asset"]] = (
                    totals.get(b["asset"], 0) + Decimal(b["available"]) + Decimal(b["locked"])
                )
        fees = {b["asset"]: b["available"] for b in listing["fees"]}
        assert fees["USDT"] == "26.9820000000"  # 18 + 2.994 + 5.988
        assert totals["USDT"] + Decimal(fees["USDT"]) == Decimal("103101")
        assert totals["BTC"] + Decimal(fees["BTC"]) == Decimal("1")
        assert Api(server.url).get("/statistics")["funds"]["ok"] is True

        for page in (page_a, page_b):
            # Chromium logs every 4xx answer: the only ones are the logged-out
            # GET /account (how the page finds out the mode) and the refused order.
            expected = (
                "status of 401 (UNAUTHORIZED) @ {'url': '" + server.url + "/account'",
                "status of 400 (BAD REQUEST) @ {'url': '" + server.url + "/order'",
            )
            unexpected = [e for e in page.watch.console_errors if not any(x in e for x in expected)]
            assert not unexpected, unexpected
            assert not page.watch.page_errors, page.watch.page_errors
            assert not page.watch.foreign_requests()
    finally:
        ctx_a.close()
        ctx_b.close()


def test_a_balance_event_wins_over_an_older_get_account(auth_page, auth_server):
    """Freshness: a GET /account answer that was in flight when a ``balance`` event
    arrived is dropped (the event is at least as new)."""
    page, server = auth_page, auth_server
    admin = admin_client(server)
    dora = create_funded(admin, "dora", {"USDT": "1000"})
    ui = TradingPage(page, server.url).open_logged_out("BTC-USDT")
    ui.login(dora["api_key"])
    ui.wait_logged_in("dora")
    expect_balance(page, "USDT", "1000.0000000000", "0.0000000000")
    stale = Api(server.url, dora["api_key"]).get("/account")

    held = []

    def hold_first(route):
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/account", hold_first)
    page.evaluate("() => { window.__matchbook.session.loadBalances(); }")
    deadline = 50
    while not held and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    assert held, "the page did not ask GET /account"
    # The deposit's event arrives while that read is held back ...
    admin.request(
        "POST", "/admin/deposit", {"account_id": dora["account_id"], "asset": "USDT", "amount": "5"}
    )
    expect_balance(page, "USDT", "1005.0000000000", "0.0000000000")
    # ... and the older answer, released now, changes nothing.
    held[0].fulfill(status=200, content_type="application/json", body=json.dumps(stale))
    page.wait_for_timeout(300)
    row = page.locator('#balances .balance-row[data-asset="USDT"]')
    assert row.get_attribute("data-available") == "1005.0000000000"  # read once: not waited for
    page.unroute("**/account")
