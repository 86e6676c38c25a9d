"""The trading page through the cluster's nginx (issue 15): REST orders go to the
engine, the page's Socket.IO and public reads to an edge; killing that edge, the
page reconnects through nginx to the other one and shows the market again. With
accounts, a logged-in page gets its account's order events live from an edge.

Needs Chromium (as every browser test) and Debian's redis-server and nginx (as the
cluster tests): missing, they fail in CI and skip elsewhere.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("CI", "").strip().lower() not in ("1", "true", "yes"):
    pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")

import requests  # noqa: E402
from browser_helpers import Api, TradingPage  # noqa: E402
from conftest import PageWatch  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from deploy.cluster import Cluster  # noqa: E402
from tests.cluster.helpers import need_cluster_tools, wait_for  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.server]


@pytest.fixture
def cluster(tmp_path):
    need_cluster_tools()
    with Cluster(str(tmp_path / "run"), str(tmp_path / "data"), engine_args=["--auth", "off"]) as c:
        yield c


def test_page_works_through_nginx_and_survives_its_edge_being_killed(context, cluster):
    page = context.new_page()
    watch = PageWatch(page, cluster.url)
    api = Api(cluster.url)
    ui = TradingPage(page, cluster.url).open("BTC-USDT")

    mine = ui.place("sell", "limit", "0.50000", price="30000.00")  # the form: POST /order via nginx
    assert mine["status"] == "new"
    # Typing a round notional (0.50000 x 30000.00) raises in the page's own order form
    # (decimal.js fixed() on "15000.", before this issue); only errors after it count here.
    form_errors = len(watch.page_errors)
    expect(ui.level("asks", "30000.00")).to_have_attribute("data-qty", "0.50000")  # l2 from an edge
    taker = api.order("BTC-USDT", "buy", "limit", "0.10000", price="30000.00")
    expect(ui.tape_row(taker["trades"][0]["trade_id"])).to_have_attribute("data-price", "30000.00")

    def serving():
        for edge in cluster.edges:
            if requests.get(edge.url + "/statistics", timeout=5).json()["connected_clients"]:
                return edge
        return None

    victim = wait_for(serving, what="the edge that serves the page")
    before = ui.snapshots()
    victim.kill()
    later = api.order("BTC-USDT", "buy", "limit", "0.20000", price="30000.00")
    api.order("BTC-USDT", "buy", "limit", "0.30000", price="29000.00")

    ui.wait_live(timeout=20_000)
    expect(page.locator("body")).not_to_have_attribute("data-snapshots", str(before))
    expect(ui.level("asks", "30000.00")).to_have_attribute("data-qty", "0.20000")
    expect(ui.level("bids", "29000.00")).to_have_attribute("data-qty", "0.30000")
    expect(ui.tape_row(later["trades"][0]["trade_id"])).to_have_count(1)
    rest = api.book("BTC-USDT")
    expect(page.locator("#book")).to_have_attribute("data-sequence", str(rest["sequence"]))
    other = next(e for e in cluster.edges if e is not victim)
    assert requests.get(other.url + "/statistics", timeout=5).json()["connected_clients"] >= 1

    # live again on the other edge
    api.order("BTC-USDT", "sell", "limit", "0.10000", price="30500.00")
    expect(ui.level("asks", "30500.00")).to_have_attribute("data-qty", "0.10000")
    assert watch.page_errors[form_errors:] == []
    assert watch.foreign_requests() == []
    page.close()


def _account(cluster, token: str, name: str) -> dict:
    """An account made through nginx (admin goes to the engine), funded where the
    server has funds (before them, deposits are refused: then without)."""
    headers = {"X-Admin-Token": token}
    body = {"name": name, "deposits": {"USDT": "10000000", "BTC": "1000"}}
    r = requests.post(cluster.url + "/admin/accounts", json=body, headers=headers, timeout=10)
    if r.status_code == 400 and r.json()["error"].get("field") == "deposits":
        r = requests.post(cluster.url + "/admin/accounts", json={"name": name}, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_logged_in_page_behind_nginx_gets_its_order_events_live_from_an_edge(context, tmp_path):
    need_cluster_tools()
    with Cluster(str(tmp_path / "run"), str(tmp_path / "data")) as cluster:  # --auth on, the default
        token = open(os.path.join(cluster.data_dir, "admin.token")).read().strip()
        alice, bob = _account(cluster, token, "alice"), _account(cluster, token, "bob")
        page = context.new_page()
        watch = PageWatch(page, cluster.url)
        ui = TradingPage(page, cluster.url).open_logged_out("BTC-USDT")
        ui.login(alice["api_key"])
        ui.wait_logged_in("alice")  # its private /market socket (on an edge) subscribed
        report = ui.place("buy", "limit", "0.25000", price="29950.50")
        row = ui.my_order(report["order_id"])
        expect(row).to_have_attribute("data-status", "new")

        # Another account's order fills part of it: only the private order_events
        # (served by the edge the page is on) can tell the page.
        Api(cluster.url, bob["api_key"]).order("BTC-USDT", "sell", "market", "0.10000")
        expect(row).to_have_attribute("data-status", "partially_filled")
        expect(row.locator(".filled")).to_have_text("0.10000")
        rooms = {}
        for edge in cluster.edges:
            rooms.update(
                requests.get(edge.url + "/statistics", timeout=5).json()["streaming"]["subscriptions"]
            )
        assert any(name.startswith(f"order_events:{alice['account_id']}:") for name in rooms), rooms
        assert watch.page_errors == []
        page.close()
