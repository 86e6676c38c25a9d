"""The trading page with accounts (issue 12), in headless Chromium against a real server.

With ``--auth on`` a trader logs in with an API key (kept in sessionStorage, never in
a URL or localStorage); open orders, history and fills come from the server
(``GET /orders``, ``GET /fills`` with ``X-API-Key``), refreshed by the account's
private ``order_events``; a refused key sends the page back to the login; logging
out forgets the key. With ``--auth off`` the page needs no login.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from urllib.parse import urlsplit

import pytest

if os.environ.get("CI", "").strip().lower() not in ("1", "true", "yes"):
    # Outside CI a machine without playwright skips; in CI the import error fails the run.
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")

from browser_helpers import Api, TradingPage, admin_client  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

PRIVATE_PATHS = ("/order", "/orders", "/fills", "/cancel", "/cancel_all", "/account")
PUBLIC_PREFIXES = ("/symbols", "/book/", "/bbo/", "/trades/", "/health", "/statistics", "/ui/", "/vendor/")


def requests_to(page, path_test):
    return [(m, u, h) for m, u, h in page.watch.sent if path_test(urlsplit(u).path)]


def test_log_in_trade_cancel_and_log_out(auth_page, auth_server):
    page, server = auth_page, auth_server
    admin = admin_client(server)
    alice = admin.create_account("alice")
    bob = admin.create_account("bob")
    bob_api = Api(server.url, bob["api_key"])
    ui = TradingPage(page, server.url).open_logged_out("BTC-USDT")

    # Logged out: market data is there, the orders panel asks for a login, and the
    # form sends nothing.
    expect(page.locator("#my-orders-empty")).to_contain_text("Log in with an API key")
    ui.fill_order("buy", "limit", "0.10000", price="29000.00")
    page.click("#order-submit")
    expect(page.locator("#order-error")).to_contain_text("Log in with an API key to trade")
    assert not requests_to(page, lambda p: p == "/order")

    # A wrong key is refused where the key was typed; nothing is stored.
    ui.login("not-a-key-of-this-server")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    expect(page.locator("#account")).to_have_attribute("data-state", "logged-out")
    assert ui.session_key() is None

    ui.login(alice["api_key"])
    ui.wait_logged_in("alice")
    expect(page.locator("#login-panel")).to_be_hidden()
    assert ui.session_key() == alice["api_key"]
    assert alice["api_key"] not in str(ui.local_storage())
    expect(page.locator("#my-orders-empty")).to_contain_text("No open orders")

    # Another account's resting order is in the book, not in alice's lists.
    theirs = bob_api.order("BTC-USDT", "sell", "limit", "0.20000", price="31000.00")
    expect(ui.level("asks", "31000.00")).to_have_count(1)

    report = ui.place("buy", "limit", "0.25000", price="29950.50")
    assert report["status"] == "new"
    order_id = report["order_id"]
    row = ui.my_order(order_id)
    expect(row).to_have_attribute("data-status", "new")
    expect(page.locator("#open-count")).to_have_text("1")
    expect(ui.my_order(theirs["order_id"])).to_have_count(0)

    # The list is the server's: after a reload (same tab, same session) it is read
    # again with the key kept in sessionStorage; nothing about orders is in localStorage.
    page.reload()
    ui.wait_live()
    ui.wait_logged_in("alice")
    expect(ui.my_order(order_id)).to_have_attribute("data-status", "new")
    assert not any("order" in k.lower() or "fill" in k.lower() for k in ui.local_storage())

    # bob's market sell fills part of it: the private order_events update the row
    # live, and "my fills" shows alice's side of the trade as maker.
    bob_api.order("BTC-USDT", "sell", "market", "0.10000")
    expect(row).to_have_attribute("data-status", "partially_filled")
    expect(row.locator(".filled")).to_have_text("0.10000")
    expect(page.locator("#fills-count")).to_have_text("1")
    ui.show_tab("fills")
    fill = page.locator(f'#my-orders tr.fill-row[data-order-id="{order_id}"]')
    expect(fill).to_contain_text("maker")
    expect(fill).to_contain_text("buy")
    ui.show_tab("open")

    # Cancel from the table: gone from open orders, cancelled in the history.
    with page.expect_response(lambda r: r.url.endswith("/cancel")) as answer:
        page.click(f'[data-testid="cancel-{order_id}"]')
    assert answer.value.status == 200
    expect(ui.my_order(order_id)).to_have_count(0)
    expect(page.locator("#open-count")).to_have_text("0")
    ui.show_tab("history")
    expect(ui.my_order(order_id)).to_have_attribute("data-status", "cancelled")
    expect(ui.my_order(theirs["order_id"])).to_have_count(0)
    assert Api(server.url, alice["api_key"]).get(f"/order/{order_id}")["status"] == "cancelled"

    # Every private call carried alice's key, no public one did, no URL ever held it.
    private = requests_to(page, lambda p: p in PRIVATE_PATHS)
    assert {urlsplit(u).path for _, u, _ in private} >= {"/order", "/orders", "/fills", "/cancel", "/account"}
    for method, url, headers in private:
        if headers.get("x-api-key") in (None, "not-a-key-of-this-server"):
            # The page's GET /account probe of the server's mode, and the refused login.
            assert (method, urlsplit(url).path) == ("GET", "/account"), url
        else:
            assert headers["x-api-key"] == alice["api_key"], url
    for _, url, headers in requests_to(page, lambda p: p.startswith(PUBLIC_PREFIXES)):
        assert "x-api-key" not in headers, url
    assert not [u for u in page.watch.requests if alice["api_key"] in u]

    # Log out: the key is forgotten, the lists are gone, the private socket closed
    # (the server counts one /market client fewer: the public one stays).
    def market_clients():
        return Api(server.url).get("/statistics")["streaming"]["clients"].get("/market", 0)

    assert market_clients() == 2
    ui.logout()
    expect(page.locator("#account")).to_have_attribute("data-state", "logged-out")
    expect(page.locator("#account")).to_have_attribute("data-socket", "off")
    expect(page.locator("#login-panel")).to_be_visible()
    expect(page.locator("#my-orders tr.order-row")).to_have_count(0)
    expect(page.locator("#my-orders-empty")).to_contain_text("Log in with an API key")
    assert ui.session_key() is None
    for _ in range(50):
        if market_clients() == 1:
            break
        page.wait_for_timeout(100)
    assert market_clients() == 1
    page.reload()
    ui.wait_live()
    expect(page.locator("#account")).to_have_attribute("data-state", "logged-out")
    assert page.watch.page_errors == []


def test_a_revoked_key_returns_to_the_login_with_a_message(auth_page, auth_server):
    page, server = auth_page, auth_server
    admin = admin_client(server)
    carol = admin.create_account("carol")
    ui = TradingPage(page, server.url).open_logged_out("ETH-USDT")
    ui.login(carol["api_key"])
    ui.wait_logged_in("carol")

    admin.revoke_key(carol["api_key"])
    # The next private call (here an order from the form) is answered 401.
    ui.fill_order("buy", "limit", "1.0000", price="1500.00")
    page.click("#order-submit")
    expect(page.locator("#login-panel")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("no longer accepted")
    expect(page.locator("#account")).to_have_attribute("data-state", "logged-out")
    expect(page.locator("#account")).to_have_attribute("data-socket", "off")
    assert ui.session_key() is None
    assert Api(server.url).book("ETH-USDT")["bids"] == []  # nothing was placed


def test_a_key_revoked_while_idle_logs_the_page_out_by_itself(auth_page, auth_server):
    """Revocation takes the private socket out of its rooms without a word; the page's
    periodic GET /account (every 10 s) notices and returns to the login."""
    page, server = auth_page, auth_server
    admin = admin_client(server)
    dana = admin.create_account("dana")
    ui = TradingPage(page, server.url).open_logged_out("BTC-USDT")
    ui.login(dana["api_key"])
    ui.wait_logged_in("dana")
    admin.revoke_key(dana["api_key"])
    expect(page.locator("#login-error")).to_contain_text("no longer accepted", timeout=15_000)
    expect(page.locator("#account")).to_have_attribute("data-state", "logged-out")
    assert ui.session_key() is None


def test_two_accounts_in_two_tabs_see_only_their_own_orders(browser, auth_server):
    server = auth_server
    admin = admin_client(server)
    keys = {name: admin.create_account(name)["api_key"] for name in ("dora", "emil")}
    tabs = {}
    contexts = []
    try:
        for name, key in keys.items():
            ctx = browser.new_context(viewport={"width": 1440, "height": 900})
            contexts.append(ctx)
            ui = TradingPage(ctx.new_page(), server.url).open_logged_out("SOL-USDT")
            ui.login(key)
            ui.wait_logged_in(name)
            tabs[name] = ui
        sell = tabs["dora"].place("sell", "limit", "2.000", price="101.00")
        buy = tabs["emil"].place("buy", "limit", "1.000", price="101.00")  # trades with dora's order
        assert buy["status"] == "filled" and buy["trades"][0]["maker_order_id"] == sell["order_id"]
        expect(tabs["dora"].my_order(sell["order_id"])).to_have_attribute("data-status", "partially_filled")
        expect(tabs["dora"].my_order(buy["order_id"])).to_have_count(0)
        tabs["emil"].show_tab("history")
        expect(tabs["emil"].my_order(buy["order_id"])).to_have_attribute("data-status", "filled")
        expect(tabs["emil"].my_order(sell["order_id"])).to_have_count(0)
        # Cancel all (POST /cancel_all) cancels dora's orders only.
        tabs["dora"].page.click("#cancel-all")
        expect(tabs["dora"].page.locator("#cancel-id-result")).to_have_text("cancelled 1 order")
        expect(tabs["dora"].page.locator("#open-count")).to_have_text("0")
    finally:
        for ctx in contexts:
            ctx.close()


def test_with_auth_off_the_page_trades_without_a_login(page, server):
    ui = TradingPage(page, server.url).open("BTC-USDT")
    expect(page.locator("#account")).to_have_attribute("data-state", "off")
    expect(page.locator("#login-panel")).to_be_hidden()
    expect(page.locator("#logout")).to_be_hidden()
    expect(page.locator("#account-name")).to_contain_text(re.compile("no login"))
    report = ui.place("sell", "limit", "0.01000", price="32000.00")
    expect(ui.my_order(report["order_id"])).to_have_attribute("data-status", "new")
    assert not [h for _, _, h in page.watch.sent if "x-api-key" in h]
    assert page.watch.console_errors == []


def first_run_commands(output: str) -> tuple[str, list[str]]:
    """From what the server printed at start: the demo key's file (from the "Page:"
    line) and each printed curl command (continuation lines joined)."""
    key_file = re.search(r"Page: .*\(cat (\S+)\)", output).group(1)
    commands, current = [], None
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("curl "):
            current = [text]
        elif current is not None:
            current.append(text)
        if current is not None and not text.endswith("\\"):
            commands.append(" ".join(part.rstrip("\\").strip() for part in current))
            current = None
    return key_file, commands


def test_a_newcomer_trades_by_following_what_the_server_printed(auth_page, auth_server):
    """Issue 12, first run: the key file and the curl line the server prints on a
    fresh data dir work as printed, and the page logs in with that key."""
    page, server = auth_page, auth_server
    key_file, commands = first_run_commands(server.output())
    order_line = next(c for c in commands if "/order " in c and "X-API-Key" in c)
    run = subprocess.run(["bash", "-c", order_line], capture_output=True, text=True, timeout=30)
    report = json.loads(run.stdout)
    assert report["status"] == "new", run.stdout + run.stderr

    ui = TradingPage(page, server.url).open_logged_out("BTC-USDT")
    with open(key_file) as f:
        ui.login(f.read())  # pasted as `cat` shows it, newline included
    ui.wait_logged_in("demo")
    expect(ui.my_order(report["order_id"])).to_have_attribute("data-status", "new")
    expect(ui.level("bids", report["price"])).to_have_count(1)

    # The printed admin line makes a second trader.
    admin_line = next(c for c in commands if "/admin/accounts" in c)
    created = json.loads(subprocess.run(["bash", "-c", admin_line], capture_output=True, text=True).stdout)
    assert created["name"] == "alice" and created["api_key"]


def test_the_session_survives_a_server_restart(auth_page, auth_server):
    """Keys are journaled: after a restart the tab is still logged in, its private
    socket reconnects with the key, and the account's events stream again."""
    page, server = auth_page, auth_server
    admin = admin_client(server)
    alice = admin.create_account("alice")["api_key"]
    bob = admin.create_account("bob")["api_key"]
    ui = TradingPage(page, server.url).open_logged_out("BTC-USDT")
    ui.login(alice)
    ui.wait_logged_in("alice")
    report = ui.place("buy", "limit", "0.30000", price="29000.00")

    server.stop()
    expect(page.locator("#account")).to_have_attribute("data-socket", "disconnected")
    server.start()
    ui.wait_live(timeout=20_000)
    expect(page.locator("#account")).to_have_attribute("data-socket", "connected", timeout=20_000)
    expect(page.locator("#account")).to_have_attribute("data-state", "logged-in")

    Api(server.url, bob).order("BTC-USDT", "sell", "market", "0.10000")
    row = ui.my_order(report["order_id"])
    expect(row).to_have_attribute("data-status", "partially_filled")
    expect(row.locator(".filled")).to_have_text("0.10000")
    assert ui.session_key() == alice
