"""``Exchange`` with fake collaborators: the order of journal, durability wait,
publication and audit; bulk semantics; the store fallbacks; the audit log;
the JSON codecs."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest

from api.audit import Audit
from api.parsing import SOCKET_JSON, BadPayload, loads_exact
from api.service import MAX_BATCH, Exchange
from engine.errors import OrderNotFound, OrderNotOpen, ValidationError
from engine.matcher import MatchingEngine
from engine.order import BUY, CANCELLED, LIMIT, Order

BTC = "BTC-USDT"


def body(side="buy", order_type="limit", quantity="1", price="100", **extra):
    b = {"symbol": BTC, "side": side, "order_type": order_type, "quantity": quantity}
    if price is not None:
        b["price"] = price
    b.update(extra)
    return b


class FakeStore:
    """Records calls; checks log_* runs under the symbol lock and wait outside it."""

    def __init__(self, engine, found=None):
        self.engine = engine
        self.calls = []
        self.n = 0
        self.found = found or {}

    def _locked(self, symbol):
        lock = self.engine.lock(symbol)
        # An RLock we hold can be re-acquired without blocking; count our holds.
        return lock._is_owned()

    def log_submit(self, result):
        assert self._locked(result.order.symbol)
        self.n += 1
        self.calls.append(("log_submit", self.n))
        return self.n

    def log_cancel(self, result):
        assert self._locked(result.order.symbol)
        self.n += 1
        self.calls.append(("log_cancel", self.n))
        return self.n

    def wait(self, ticket):
        for market in self.engine.markets.values():
            assert not market.lock._is_owned(), "wait() while holding a symbol lock"
        self.calls.append(("wait", ticket))

    def maybe_snapshot(self, engine):
        self.calls.append(("maybe_snapshot",))

    def find_order(self, order_id):
        return self.found.get(order_id)


class FakePublisher:
    def __init__(self, calls):
        self.calls = calls

    def on_submit(self, result, received_ns=None):
        assert received_ns is not None
        self.calls.append(("on_submit", result.order.order_id))

    def on_cancel(self, result, received_ns=None):
        self.calls.append(("on_cancel", result.order.order_id))

    def stats(self):
        return {"connected_clients": 3, "latency": {}}


@pytest.fixture
def world(tmp_path):
    engine = MatchingEngine()
    store = FakeStore(engine)
    audit = Audit(str(tmp_path / "audit.log"))
    exchange = Exchange(engine, store=store, publisher=FakePublisher(store.calls), audit=audit)
    yield exchange, store, audit
    audit.close()


def test_order_path_journals_under_lock_then_waits_then_publishes(world):
    exchange, store, _ = world
    report = exchange.place_order(body())
    assert report["status"] == "new"
    assert store.calls == [("log_submit", 1), ("wait", 1), ("maybe_snapshot",), ("on_submit", 1)]


def test_cancel_path_same_order(world):
    exchange, store, _ = world
    placed = exchange.place_order(body())
    store.calls.clear()
    report = exchange.cancel_order({"order_id": placed["order_id"]})
    assert report["status"] == "cancelled"
    assert store.calls == [("log_cancel", 2), ("wait", 2), ("maybe_snapshot",), ("on_cancel", 1)]


def test_rejected_order_touches_no_collaborator(world):
    exchange, store, _ = world
    with pytest.raises(ValidationError):
        exchange.place_order(body(price="0.001"))
    assert store.calls == []
    assert exchange.rejections == 1


def test_works_without_store_publisher_or_audit():
    exchange = Exchange(MatchingEngine())
    report = exchange.place_order(body())
    assert exchange.cancel_order({"order_id": report["order_id"]})["status"] == "cancelled"
    assert exchange.place_orders([body()])[0]["status"] == "new"
    assert exchange.statistics()["streaming"] is None


def test_bulk_keeps_order_and_isolates_bad_orders(world):
    exchange, store, _ = world
    results = exchange.place_orders(
        [body("sell", quantity="1"), body(side="hold"), body("buy", quantity="0.4"), "junk", body(symbol="X")]
    )
    assert len(results) == 5
    assert results[0]["status"] == "new"
    assert results[1]["error"]["field"] == "side"
    assert results[2]["status"] == "filled"
    assert results[2]["trades"][0]["maker_order_id"] == results[0]["order_id"]  # sees the earlier element
    assert results[3]["error"]["code"] == "VALIDATION_ERROR"
    assert results[4]["error"]["code"] == "UNKNOWN_SYMBOL"
    # One durability wait for the batch (its last ticket), before anything is published.
    assert store.calls == [
        ("log_submit", 1), ("log_submit", 2), ("wait", 2), ("maybe_snapshot",), ("on_submit", 1), ("on_submit", 2),
    ]  # fmt: skip
    assert exchange.rejections == 3


def test_bulk_accepts_an_orders_envelope_and_empty_lists(world):
    exchange, _, _ = world
    assert exchange.place_orders([]) == []
    assert exchange.place_orders({"orders": [body()]})[0]["status"] == "new"


def test_bulk_limit(world):
    exchange, _, _ = world
    assert len(exchange.place_orders([body(price="1")] * MAX_BATCH)) == MAX_BATCH
    with pytest.raises(ValidationError) as e:
        exchange.place_orders([body()] * (MAX_BATCH + 1))
    assert e.value.field == "orders"


def test_or_error_variants_never_raise(world):
    exchange, _, _ = world
    assert exchange.place_order_or_error(body(quantity="-1"))["error"]["field"] == "quantity"
    assert exchange.cancel_order_or_error({"order_id": "77"})["error"]["code"] == "ORDER_NOT_FOUND"
    assert exchange.place_order_or_error(body())["status"] == "new"
    exchange.engine.submit = None  # any crash
    assert exchange.place_order_or_error(body())["error"]["code"] == "INTERNAL_ERROR"


def test_publisher_failure_does_not_fail_the_order(world, caplog):
    exchange, _, _ = world

    class Broken:
        def on_submit(self, result, received_ns=None):
            raise RuntimeError("subscriber trouble")

    exchange.publisher = Broken()
    assert exchange.place_order(body())["status"] == "new"
    assert "subscriber trouble" in caplog.text


def test_forgotten_order_comes_from_the_store(world):
    exchange, store, _ = world
    old = Order(5, "c", BTC, BUY, LIMIT, 10000, 100000, 1_700_000_000_000_000_000, None, 0, 0, CANCELLED)
    store.found[5] = old
    store.found[6] = {"order_id": "6", "status": "filled"}
    report = exchange.get_order("5")
    assert report["order_id"] == "5" and report["status"] == "cancelled" and report["price"] == "100.00"
    assert exchange.get_order("6") == {"order_id": "6", "status": "filled"}
    with pytest.raises(OrderNotOpen):
        exchange.cancel_order({"order_id": "6"})
    with pytest.raises(OrderNotFound):
        exchange.get_order("7")


def test_statistics_include_publisher_figures(world):
    exchange, _, _ = world
    exchange.place_order(body())
    stats = exchange.statistics()
    assert stats["connected_clients"] == 3
    assert stats["streaming"] == {"connected_clients": 3, "latency": {}}
    assert stats["latency"]["order_processing"]["count"] == 1


def test_audit_lines_for_orders_trades_cancels_rejections(world, tmp_path):
    exchange, _, audit = world
    maker = exchange.place_order(body("sell", quantity="2", client_order_id="m1"))
    exchange.place_order(body("buy", order_type="market", quantity="0.5", price=None))
    exchange.cancel_order({"order_id": maker["order_id"]})
    with pytest.raises(ValidationError):
        exchange.place_order(body(quantity="abc"))
    with pytest.raises(OrderNotFound):
        exchange.cancel_order({"order_id": "99"})
    audit.flush()
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert events == ["order", "order", "trade", "cancel", "rejection", "rejection"]
    assert lines[0]["client_order_id"] == "m1" and lines[0]["sequence"] == 1 and "trades" not in lines[0]
    assert lines[1]["status"] == "filled" and lines[1]["ts"].endswith("Z")
    assert lines[2]["price"] == "100.00" and lines[2]["maker_order_id"] == maker["order_id"]
    assert lines[3]["status"] == "cancelled" and lines[3]["remaining_quantity"] == "1.50000"
    assert (
        lines[4]["request"] == "order"
        and lines[4]["field"] == "quantity"
        and lines[4]["body"]["quantity"] == "abc"
    )
    assert lines[5]["request"] == "cancel" and lines[5]["code"] == "ORDER_NOT_FOUND"


def test_audit_writer_runs_in_the_background_and_rotates(tmp_path):
    audit = Audit(str(tmp_path / "audit.log"), max_bytes=2000, backup_count=2, interval=0.01)

    def start_task(fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()

    import time

    audit.start(start_task, time.sleep)
    exchange = Exchange(MatchingEngine(), audit=audit)
    for _ in range(40):
        exchange.place_order(body(price="1"))
    deadline = time.time() + 5
    while audit.lines_written < 40 and time.time() < deadline:
        time.sleep(0.01)
    audit.close()
    assert audit.lines_written == 40
    assert (tmp_path / "audit.log.1").exists()
    assert not (tmp_path / "audit.log.3").exists()


def test_rest_json_is_exact_and_strict():
    assert loads_exact(b'{"q": 0.1, "n": 7}') == {"q": Decimal("0.1"), "n": 7}
    assert type(loads_exact(b'{"q": 1.10}')["q"]) is Decimal
    assert str(loads_exact(b'{"q": 1.10}')["q"]) == "1.10"  # the text, not a rounded binary value
    big = loads_exact(b'{"q": 1' + b"0" * 5000 + b"}")["q"]  # beyond msgspec's int range
    assert isinstance(big, Decimal)


def test_socket_json_codec_is_exact_and_refuses_what_rest_refuses():
    data = SOCKET_JSON.loads('["order", {"quantity": 0.30000, "n": 3, "big": %s}]' % ("1" * 41))
    assert data[1]["quantity"] == Decimal("0.30000") and str(data[1]["quantity"]) == "0.30000"
    assert data[1]["n"] == 3 and data[1]["big"] == int("1" * 41)  # an int, as REST's msgspec gives
    # an event whose payload REST would refuse reaches its handler as a BadPayload
    bad = SOCKET_JSON.loads('["order", {"quantity": 1, "price": NaN}]')
    assert bad[0] == "order" and type(bad[1]) is BadPayload and bad[1].error.code == "INVALID_JSON"
    deep = SOCKET_JSON.loads('["orders", ' + "[" * 50_000 + "]" * 50_000 + "]")
    assert deep[0] == "orders" and "nested too deeply" in deep[1].error.message
    large = SOCKET_JSON.loads('["cancel", {"x": "%s"}]' % ("y" * 70_000))
    assert large[1].error.code == "PAYLOAD_TOO_LARGE"
    with pytest.raises(ValueError):  # not an event: nothing to answer
        SOCKET_JSON.loads("{nope")
    assert SOCKET_JSON.dumps({"a": [1, "b"]}, separators=(",", ":")) == '{"a":[1,"b"]}'
