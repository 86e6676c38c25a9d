"""Helpers for the browser tests: a REST client for setting up markets and a
page object for the trading page (selectors live here, not in the tests)."""

from __future__ import annotations

import importlib.util
import os
import sys

import requests
from browser_server import ROOT
from playwright.sync_api import Page, expect


def admin_module():
    """``api/admin.py`` by its path (``api`` may mean ``tests/api`` on sys.path)."""
    name = "matchbook_api_admin"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "api", "admin.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def admin_client(server):
    """An ``api.admin.AdminClient`` of ``server`` with the token of its data dir,
    whose ``create_account`` funds the account (``--auth on`` trades with
    balances) unless the test gives ``deposits`` itself."""
    admin = admin_module()

    class FundingAdminClient(admin.AdminClient):
        def create_account(self, name: str, deposits: dict | None = None) -> dict:
            return super().create_account(name, self.load_deposits() if deposits is None else deposits)

    return FundingAdminClient(server.url, admin.read_admin_token(server.data_dir))


class Api:
    """The server's REST interface, for arranging and checking what the page shows
    (as the account of ``key`` when one is given)."""

    def __init__(self, url: str, key: str | None = None) -> None:
        self.url = url
        self.http = requests.Session()
        if key:
            self.http.headers["X-API-Key"] = key

    def get(self, path: str) -> dict:
        r = self.http.get(self.url + path, timeout=5)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=5)

    def order(self, symbol: str, side: str, order_type: str, quantity: str, price: str | None = None) -> dict:
        body = {"symbol": symbol, "side": side, "order_type": order_type, "quantity": quantity}
        if price is not None:
            body["price"] = price
        r = self.post("/order", body)
        assert r.status_code == 200, (body, r.status_code, r.text)
        return r.json()

    def book(self, symbol: str, levels: int = 25) -> dict:
        return self.get(f"/book/{symbol}?levels={levels}")

    def symbols(self) -> dict:
        return {s["symbol"]: s for s in self.get("/symbols")["symbols"]}


class TradingPage:
    """The page at ``/``: what a person sees and does, by stable ids and data attributes."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url

    def open(self, symbol: str = "BTC-USDT") -> TradingPage:
        self.page.goto(f"{self.url}/#{symbol}")
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")
        self.wait_live()
        return self

    def open_logged_out(self, symbol: str = "BTC-USDT") -> TradingPage:
        """Open the page of a ``--auth on`` server: market data live, login asked for."""
        self.open(symbol)
        expect(self.page.locator("#account")).to_have_attribute("data-state", "logged-out")
        expect(self.page.locator("#login-panel")).to_be_visible()
        return self

    def login(self, key: str) -> None:
        self.page.fill("#login-key", key)
        self.page.click("#login-submit")

    def wait_logged_in(self, name: str) -> None:
        expect(self.page.locator("#account")).to_have_attribute("data-state", "logged-in")
        expect(self.page.locator("#account-name")).to_have_text(name)
        # The private socket subscribed to the account's order events.
        expect(self.page.locator("#account")).to_have_attribute("data-socket", "connected")

    def logout(self) -> None:
        self.page.click("#logout")

    def session_key(self) -> str | None:
        return self.page.evaluate("sessionStorage.getItem('matchbook.apiKey')")

    def local_storage(self) -> dict:
        return self.page.evaluate("Object.fromEntries(Object.entries(localStorage))")

    def wait_live(self, timeout: float = 15_000) -> None:
        """Connected, subscribed and holding a fresh snapshot."""
        expect(self.page.locator("#conn-status")).to_have_attribute(
            "data-state", "connected", timeout=timeout
        )
        expect(self.page.locator("body")).not_to_have_attribute("data-snapshots", "0", timeout=timeout)

    def snapshots(self) -> int:
        return int(self.page.locator("body").get_attribute("data-snapshots"))

    def select_symbol(self, symbol: str) -> None:
        self.page.select_option("#symbol-select", symbol)

    # -- order book -----------------------------------------------------------------
    def level(self, side: str, price: str):
        """The ladder row at ``price`` on ``side`` ("bids" | "asks")."""
        return self.page.locator(f'#book-{side} .book-row[data-price="{price}"]')

    def levels(self, side: str) -> list[list[str]]:
        """The ladder's levels, best first, as [[price, quantity], ...]."""
        rows = self.page.eval_on_selector_all(
            f"#book-{side} .book-row", "rows => rows.map(r => [r.dataset.price, r.dataset.qty])"
        )
        return rows[::-1] if side == "asks" else rows

    # -- order entry ------------------------------------------------------------------
    def fill_order(self, side: str, order_type: str, quantity: str, price: str | None = None) -> None:
        self.page.click(f"#side-{side}")
        self.page.click(f"#type-{order_type}")
        if price is not None:
            self.page.fill("#order-price", price)
        self.page.fill("#order-quantity", quantity)

    def submit(self) -> dict:
        """Click the submit button; returns the server's answer to the POST /order it made."""
        with self.page.expect_response(
            lambda r: r.url.endswith("/order") and r.request.method == "POST"
        ) as answer:
            self.page.click("#order-submit")
        return answer.value.json()

    def place(self, side: str, order_type: str, quantity: str, price: str | None = None) -> dict:
        self.fill_order(side, order_type, quantity, price)
        return self.submit()

    # -- my orders ------------------------------------------------------------------------
    def my_order(self, order_id: str):
        return self.page.locator(f'#my-orders tr.order-row[data-order-id="{order_id}"]')

    def show_tab(self, tab: str) -> None:
        self.page.click(f'[data-testid="tab-{tab}"]')

    # -- tape -------------------------------------------------------------------------------
    def tape_row(self, trade_id: str):
        return self.page.locator(f'#tape .tape-row[data-trade-id="{trade_id}"]')
