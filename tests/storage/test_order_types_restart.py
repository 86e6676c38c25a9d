"""A real server with pending stops, a partly filled iceberg and good-till-time
orders, stopped cleanly or killed with SIGKILL, then restarted on the same
data dir: everything is as it was, the order that expired while the server
was down is expired at start (before any new command), and the stop and the
iceberg go on working. The data dir then verifies."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from storage.verify import main as verify_main
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.server

BTC = "BTC-USDT"


def call(server, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def order(server, side, order_type, quantity=None, price=None, **extra):
    body = {"symbol": BTC, "side": side, "order_type": order_type, **extra}
    if quantity is not None:
        body["quantity"] = quantity
    if price is not None:
        body["price"] = price
    return call(server, "POST", "/order", body)


def iso_at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize("shutdown", ["sigkill", "clean"])
def test_stops_icebergs_and_gtd_orders_survive_a_restart(tmp_path, shutdown):
    data = tmp_path / "data"
    first = ServerProcess(data, "--fsync", "batch").start()
    try:
        order(first, "sell", "limit", "0.001", "100.00")
        order(first, "buy", "limit", "0.001", "100.00")  # last price 100
        stop = order(first, "sell", "stop_loss", "0.5", stop_price="95.00")
        take = order(first, "buy", "take_profit_limit", "0.2", "89.00", stop_price="90.00")
        iceberg = order(first, "sell", "limit", "1", "101.00", display_quantity="0.1")
        order(first, "buy", "market", "0.15")  # the first slice and half the second
        soon = datetime.now(UTC) + timedelta(seconds=1.0)
        short = order(first, "buy", "limit", "1", "80.00", expire_time=iso_at(soon))
        long = order(first, "buy", "limit", "1", "81.00", expire_time=iso_at(soon + timedelta(hours=1)))
        amended = call(first, "POST", "/amend", {"order_id": take["order_id"], "stop_price": "91.00"})
        assert stop["status"] == take["status"] == amended["status"] == "pending"
        book = call(first, "GET", f"/book/{BTC}")
        assert book["asks"] == [["101.00", "0.05000"]]
        reports = {
            o["order_id"]: call(first, "GET", f"/order/{o['order_id']}") for o in (stop, take, iceberg, long)
        }
    finally:
        first.kill() if shutdown == "sigkill" else first.stop()
    time.sleep(
        max(0.0, (soon - datetime.now(UTC)).total_seconds() + 0.2)
    )  # it expires while the server is down

    second = ServerProcess(data, "--fsync", "batch").start()
    try:
        expired = call(second, "GET", f"/order/{short['order_id']}")
        assert expired["status"] == "cancelled" and expired["cancel_reason"] == "expired"
        for order_id, report in reports.items():
            assert call(second, "GET", f"/order/{order_id}") == report
        book = call(second, "GET", f"/book/{BTC}")
        assert book["asks"] == [["101.00", "0.05000"]] and book["bids"] == [["81.00", "1.00000"]]
        # the stop triggers after the restart
        order(second, "buy", "limit", "1", "94.00")
        order(second, "sell", "limit", "0.001", "95.00")  # rests: no trade yet
        assert call(second, "GET", f"/order/{stop['order_id']}")["status"] == "pending"
        order(second, "buy", "limit", "0.001", "95.00")  # last price 95: the stop sells into the bid at 94
        triggered = call(second, "GET", f"/order/{stop['order_id']}")
        assert triggered["status"] == "filled" and triggered["average_price"] == "94.00"
        # and the iceberg refreshes
        taker = order(second, "buy", "market", "0.1")
        assert [t["quantity"] for t in taker["trades"]] == ["0.05000", "0.05000"]
        assert call(second, "GET", f"/book/{BTC}")["asks"] == [["101.00", "0.05000"]]
    finally:
        second.stop()
    assert verify_main(["--data-dir", str(data)]) == 0
