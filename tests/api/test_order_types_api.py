"""The order types beyond the four through REST and bulk entry: each type from
its JSON body, ``POST /amend``, expiry, and every kind of bad input refused
with the envelope naming the field and nothing changed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import BTC

NEW_FIELDS = ("stop_price", "display_quantity", "post_only", "expire_time", "quote_quantity", "cancel_reason")


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trade_at(api, price, quantity="0.001"):
    api.limit("sell", quantity, price)
    return api.limit("buy", quantity, price)


def test_plain_order_reports_carry_the_new_fields_null(api):
    report = api.limit("buy", "0.1", "100.00")
    assert {k: report[k] for k in NEW_FIELDS} == {
        "stop_price": None,
        "display_quantity": None,
        "post_only": False,
        "expire_time": None,
        "quote_quantity": None,
        "cancel_reason": None,
    }
    assert api.cancel(report["order_id"])["cancel_reason"] == "user"
    assert api.order("buy", "market", "0.1")["cancel_reason"] == "unfilled"


def test_stop_loss_pending_then_triggered(api):
    trade_at(api, "100.00")
    stop = api.order("sell", "stop_loss", "0.5", stop_price="95.00")
    assert stop["status"] == "pending" and stop["stop_price"] == "95.00" and stop["price"] is None
    assert api.get(f"/order/{stop['order_id']}")["status"] == "pending"
    before = api.state()
    assert before[1:] == ([], [])  # not in the book
    api.limit("buy", "1", "94.00")
    trade_at(api, "95.00")
    now = api.get(f"/order/{stop['order_id']}")
    assert now["status"] == "filled" and now["order_type"] == "stop_loss" and now["average_price"] == "94.00"
    api.check()


def test_stop_limit_and_take_profit_limit_need_a_price(api):
    trade_at(api, "100.00")
    sl = api.order("sell", "stop_limit", "0.5", "90.00", stop_price="95.00")
    tp = api.order("sell", "take_profit_limit", "0.5", "111.00", stop_price="110.00")
    assert sl["price"] == "90.00" and tp["status"] == "pending"


def test_iceberg_shows_only_its_display_in_book_bbo_and_statistics(api):
    report = api.limit("sell", "1", "101.00", display_quantity="0.1")
    assert report["display_quantity"] == "0.10000"
    assert api.book()["asks"] == [["101.00", "0.10000"]]
    assert api.get(f"/bbo/{BTC}")["best_ask"] == {"price": "101.00", "quantity": "0.10000"}
    stats = str(api.get("/statistics"))
    assert "1.00000" not in stats and "0.90000" not in stats
    taker = api.order("buy", "market", "0.25")
    assert [t["quantity"] for t in taker["trades"]] == ["0.10000", "0.10000", "0.05000"]
    assert api.book()["asks"] == [["101.00", "0.05000"]]


def test_post_only_that_would_take_is_cancelled(api):
    api.limit("sell", "1", "100.00")
    report = api.limit("buy", "1", "100.00", post_only=True)
    assert report["status"] == "cancelled" and report["cancel_reason"] == "post_only"
    assert report["trades"] == [] and report["post_only"] is True
    assert api.book()["asks"] == [["100.00", "1.00000"]]


def test_market_by_quote_quantity(api):
    api.limit("sell", "0.01", "100.00")
    api.limit("sell", "0.01", "110.00")
    report = api.order("buy", "market", None, quote_quantity="1.5")
    assert report["status"] == "filled" and report["quote_quantity"] == "1.5000000"
    assert report["quantity"] == "0.01454"  # 0.01 at 100 (1.00) + 0.00454 at 110 (0.4994)
    assert report["filled_quantity"] == report["quantity"]


def test_gtd_order_is_expired_when_its_time_comes(api):
    report = api.limit("buy", "1", "99.00", expire_time=iso_in(0.3))
    assert report["expire_time"].endswith("Z") and report["status"] == "new"
    deadline = time.monotonic() + 5
    while api.get(f"/order/{report['order_id']}")["status"] != "cancelled":
        assert time.monotonic() < deadline, "never expired"
        time.sleep(0.05)
    expired = api.get(f"/order/{report['order_id']}")
    assert expired["cancel_reason"] == "expired"
    assert api.book()["bids"] == []


def test_a_due_order_is_expired_before_the_next_command_trades_with_it(api, app):
    exchange = app.extensions["exchange"]
    exchange.start_expiry_task = None  # no task: only the command path expires it
    exchange._expiry_task_started = True
    report = api.limit("buy", "1", "99.00", expire_time=iso_in(0.2))
    time.sleep(0.3)
    taker = api.order("sell", "market", "1")
    assert taker["trades"] == [] and taker["cancel_reason"] == "unfilled"
    assert api.get(f"/order/{report['order_id']}")["cancel_reason"] == "expired"


# -- amend ----------------------------------------------------------------------------------
def test_amend_quantity_down_keeps_priority(api):
    first = api.limit("sell", "1", "100.00")
    second = api.limit("sell", "1", "100.00")
    amended = api.post("/amend", {"order_id": first["order_id"], "quantity": "0.5"})
    assert amended["quantity"] == "0.50000" and amended["status"] == "new"
    taker = api.order("buy", "market", "0.5")
    assert [t["maker_order_id"] for t in taker["trades"]] == [first["order_id"]]
    assert api.get(f"/order/{second['order_id']}")["filled_quantity"] == "0.00000"


def test_amend_price_that_crosses_trades_at_once(api):
    api.limit("sell", "1", "101.00")
    bid = api.limit("buy", "1", "99.00")
    amended = api.post("/amend", {"order_id": bid["order_id"], "price": "101.00"})
    assert amended["status"] == "filled" and amended["trades"][0]["taker_order_id"] == bid["order_id"]


def test_amend_pending_stop_price(api):
    trade_at(api, "100.00")
    stop = api.order("sell", "stop_loss", "1", stop_price="95.00")
    amended = api.post("/amend", {"order_id": stop["order_id"], "stop_price": "96.00"})
    assert amended["stop_price"] == "96.00" and amended["status"] == "pending"


@pytest.mark.parametrize(
    "change, field",
    [({"quantity": "0.2"}, "quantity"), ({"quantity": "0.3"}, "quantity"), ({"price": "99.001"}, "price")],
)
def test_bad_amend_is_refused_and_changes_nothing(api, change, field):
    order = api.limit("sell", "1", "100.00")
    api.order("buy", "market", "0.3")
    before = api.state()
    error = api.post("/amend", {"order_id": order["order_id"], **change}, expect=400)["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["field"] == field
    assert api.state() == before


def test_amend_of_filled_or_cancelled_order_is_409(api):
    order = api.limit("sell", "1", "100.00")
    api.order("buy", "market", "1")
    error = api.post("/amend", {"order_id": order["order_id"], "quantity": "2"}, expect=409)["error"]
    assert error["code"] == "ORDER_NOT_OPEN"
    other = api.limit("sell", "1", "100.00")
    api.cancel(other["order_id"])
    api.post("/amend", {"order_id": other["order_id"], "price": "1.00"}, expect=409)


def test_amend_of_unknown_order_is_404(api):
    assert api.post("/amend", {"order_id": "987654", "quantity": "1"}, expect=404)["error"]["code"] == (
        "ORDER_NOT_FOUND"
    )


# -- bad input --------------------------------------------------------------------------------
BAD = [
    ({"order_type": "market", "quantity": "1", "stop_price": "95.00"}, "stop_price"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "stop_price": "95.00"}, "stop_price"),
    ({"order_type": "stop_loss", "quantity": "1"}, "stop_price"),
    ({"order_type": "stop_loss", "quantity": "1", "stop_price": "95.001"}, "stop_price"),
    ({"order_type": "stop_loss", "quantity": "1", "stop_price": "95.00", "price": "95.00"}, "price"),
    ({"order_type": "stop_limit", "quantity": "1", "stop_price": "95.00"}, "price"),
    ({"order_type": "take_profit", "quantity": "1", "stop_price": "95.00", "expire_time": "2099-01-01T00:00:00Z"},
     "expire_time"),
    ({"order_type": "ioc", "quantity": "1", "price": "1.00", "display_quantity": "0.1"}, "display_quantity"),
    ({"order_type": "market", "quantity": "1", "display_quantity": "0.1"}, "display_quantity"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "display_quantity": "1"}, "display_quantity"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "display_quantity": "2"}, "display_quantity"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "display_quantity": "0.000001"}, "display_quantity"),
    ({"order_type": "fok", "quantity": "1", "price": "1.00", "post_only": True}, "post_only"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "post_only": "yes"}, "post_only"),
    ({"order_type": "market", "quantity": "1", "expire_time": "2099-01-01T00:00:00Z"}, "expire_time"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "expire_time": "2001-01-01T00:00:00Z"}, "expire_time"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "expire_time": "tomorrow"}, "expire_time"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "expire_time": "2099-02-30T00:00:00Z"}, "expire_time"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "expire_time": "2099-01-01T00:00:00+02:00"},
     "expire_time"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "expire_time": 4102444800}, "expire_time"),
    ({"order_type": "market", "quantity": "1", "quote_quantity": "100"}, "quote_quantity"),
    ({"order_type": "market"}, "quantity"),
    ({"order_type": "limit", "quantity": "1", "price": "1.00", "quote_quantity": "100"}, "quote_quantity"),
    ({"order_type": "market", "quote_quantity": "0.00000001"}, "quote_quantity"),
    ({"order_type": "market", "quote_quantity": "-5"}, "quote_quantity"),
    ({"order_type": "stop", "quantity": "1"}, "order_type"),
]  # fmt: skip


@pytest.mark.parametrize("fields, field", BAD)
def test_bad_input_is_refused_naming_the_field(api, fields, field):
    trade_at(api, "100.00")
    before = api.state()
    orders_before = api.get("/statistics")["engine"]["orders"]
    error = api.post("/order", {"symbol": BTC, "side": "sell", **fields}, expect=400)["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["field"] == field, error
    assert api.state() == before
    assert api.get("/statistics")["engine"]["orders"] == orders_before


def test_stop_that_would_trigger_at_once_is_400(api):
    trade_at(api, "100.00")
    error = api.order("sell", "stop_loss", "1", stop_price="100.00", expect=400)["error"]
    assert error["field"] == "stop_price"
    error = api.order("buy", "take_profit", "1", stop_price="100.00", expect=400)["error"]
    assert error["field"] == "stop_price"


def test_bulk_orders_take_the_new_types(api):
    trade_at(api, "100.00")
    body = [
        {"symbol": BTC, "side": "sell", "order_type": "stop_loss", "quantity": "1", "stop_price": "90.00"},
        {"symbol": BTC, "side": "sell", "order_type": "limit", "quantity": "1", "price": "120.00",
         "display_quantity": "0.2"},
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "80.00", "post_only": True},
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "70.00",
         "expire_time": iso_in(3600)},
        {"symbol": BTC, "side": "buy", "order_type": "market", "quote_quantity": "12"},
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "70.00",
         "display_quantity": "5"},
    ]  # fmt: skip
    answer = api.post("/orders", body)
    assert [a.get("status") for a in answer[:5]] == ["pending", "new", "new", "new", "filled"]
    assert answer[4]["quantity"] == "0.10000"  # 12 / 120
    assert answer[5]["error"]["field"] == "display_quantity"
    api.check()
