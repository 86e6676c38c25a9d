"""The read barrier and fail-stop, in process (threading mode, the journal
writer process held with SIGSTOP or killed): a read shows a state only once
the journal records it reflects are durable; a failed journal halts trading
(503 ``SERVICE_UNAVAILABLE``) and ``/health`` says why.

A command "in flight" is made the way ``Exchange`` makes one: ``engine.submit``
and ``store.log_submit`` under the symbol lock, the ``wait`` not yet done.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from api.app import close_app, create_app
from engine.order import BUY, LIMIT, SELL

BTC = "BTC-USDT"
ETH = "ETH-USDT"


@pytest.fixture
def service(tmp_path):
    app, socketio = create_app(
        {
            "async_mode": "threading",
            "data_dir": tmp_path / "data",
            "rate_limit": 0,
            "read_timeout": 0.3,
            "journal_check_interval": 0,
            "audit": False,
        }
    )
    exchange = app.extensions["exchange"]
    writer = exchange.store._proc.pid
    stopped = []

    def stop_writer():
        os.kill(writer, signal.SIGSTOP)
        stopped.append(True)

    def resume_writer():
        os.kill(writer, signal.SIGCONT)
        stopped.clear()

    yield app, socketio, exchange, stop_writer, resume_writer
    if stopped:
        try:
            os.kill(writer, signal.SIGCONT)
        except ProcessLookupError:
            pass  # the test killed it
    close_app(app)


def _in_flight(exchange, side, price: int, symbol: str = BTC):
    """Match and journal a command without waiting for its record (a request
    between its critical section and its ``wait``)."""
    engine, store = exchange.engine, exchange.store
    with engine.lock(symbol):
        result = engine.submit(symbol, side, LIMIT, 100, price)
        ticket = store.log_submit(result)
    return result, ticket


def _unavailable(response) -> None:
    assert response.status_code == 503, (response.status_code, response.data[:300])
    assert response.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_no_read_shows_a_command_before_its_record_is_durable(service):
    app, _socketio, exchange, stop_writer, resume_writer = service
    client = app.test_client()
    maker = client.post(
        "/order",
        json={"symbol": BTC, "side": "sell", "order_type": "limit", "quantity": "0.001", "price": "1.00"},
    ).get_json()
    stop_writer()
    result, ticket = _in_flight(exchange, BUY, 100)  # crosses the maker: a trade
    assert result.trades
    started = time.monotonic()
    for path in (
        f"/book/{BTC}",
        f"/bbo/{BTC}",
        f"/trades/{BTC}",
        "/statistics",
        f"/order/{maker['order_id']}",
    ):
        _unavailable(client.get(path))
    assert time.monotonic() - started < 5 * 0.3 + 1.5, "each read waits about read_timeout, no more"
    assert client.get(f"/order/{result.order.order_id}").status_code == 503
    # another symbol has nothing in flight: it answers at once
    assert client.get(f"/book/{ETH}").status_code == 200
    resume_writer()
    book = client.get(f"/book/{BTC}").get_json()  # the read sends the record and waits for it
    assert book["asks"] == [] and book["sequence"] == result.sequence
    assert exchange.store.durable(ticket)
    assert client.get(f"/trades/{BTC}").get_json()["trades"][0]["trade_id"] == str(result.trades[0].trade_id)


def test_a_read_waits_for_the_record_rather_than_failing(service):
    app, _socketio, exchange, stop_writer, resume_writer = service
    exchange.read_timeout = 5.0
    client = app.test_client()
    stop_writer()
    result, _ticket = _in_flight(exchange, SELL, 200)
    threading.Timer(0.2, resume_writer).start()
    started = time.monotonic()
    book = client.get(f"/book/{BTC}").get_json()
    assert 0.15 < time.monotonic() - started < 4
    assert book["asks"] == [["2.00", "0.00100"]] and book["sequence"] == result.sequence


def test_a_failed_journal_halts_every_command_and_health_says_why(service):
    app, _socketio, exchange, stop_writer, _resume = service
    client = app.test_client()
    order = {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "0.001", "price": "1.00"}
    resting = client.post("/order", json=order).get_json()
    assert client.get("/health").get_json()["status"] == "ok"
    stop_writer()
    result, _ticket = _in_flight(exchange, SELL, 100)  # fills the resting order, never durable
    os.kill(exchange.store._proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not exchange.store.failed and time.monotonic() < deadline:
        time.sleep(0.01)
    health = client.get("/health")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "halted" and "exited unexpectedly" in body["reason"]
    assert body["uptime_seconds"] >= 0 and exchange.store.data_dir not in body["reason"]
    rejections = exchange.rejections
    _unavailable(client.post("/order", json=order))
    _unavailable(client.post("/orders", json=[order]))
    _unavailable(client.post("/cancel", json={"order_id": resting["order_id"]}))
    assert exchange.rejections == rejections + 3
    assert exchange.engine.markets[BTC].sequence == result.sequence, "a refused command reached the engine"
    # reads: only the durable state (ETH), or 503 (BTC, whose last command failed)
    _unavailable(client.get(f"/book/{BTC}"))
    _unavailable(client.get(f"/order/{resting['order_id']}"))
    assert client.get(f"/book/{ETH}").status_code == 200


def test_socket_order_entry_is_refused_when_halted(service):
    app, socketio, exchange, _stop, _resume = service
    os.kill(exchange.store._proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not exchange.store.failed and time.monotonic() < deadline:
        time.sleep(0.01)
    client = socketio.test_client(app, namespace="/trade")
    ack = client.emit(
        "order",
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "0.001", "price": "1.00"},
        namespace="/trade",
        callback=True,
    )
    assert ack["error"]["code"] == "SERVICE_UNAVAILABLE"
    client.disconnect(namespace="/trade")


def test_the_publisher_holds_a_book_state_until_its_record_is_durable(service):
    app, socketio, exchange, stop_writer, resume_writer = service
    client = socketio.test_client(app, namespace="/market")
    for kind in ("l2_updates", "bbo"):
        ack = client.emit("subscribe", {"type": kind, "symbol": BTC}, namespace="/market", callback=True)
        assert ack == {"ok": True}
    client.get_received("/market")
    stop_writer()
    result, _ticket = _in_flight(exchange, BUY, 150)
    exchange.publisher._wake.set()
    time.sleep(0.3)  # several passes and polls of the engine's sequence
    shown = [e for e in client.get_received("/market") if e["name"] in ("l2_update", "bbo")]
    assert all(e["args"][0]["sequence"] < result.sequence for e in shown), shown
    assert BTC in exchange.publisher._held_books
    # a new subscriber's snapshot is not durable either: refused after read_timeout
    other = socketio.test_client(app, namespace="/market")
    ack = other.emit("subscribe", {"type": "bbo", "symbol": BTC}, namespace="/market", callback=True)
    assert ack["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert not [e for e in other.get_received("/market") if e["name"] == "bbo"]
    resume_writer()
    exchange.store.wait(_ticket)
    exchange.publisher.on_submit(result)
    deadline = time.monotonic() + 3
    seen = set()
    while time.monotonic() < deadline and seen != {"l2_update", "bbo"}:
        time.sleep(0.05)
        seen |= {
            e["name"]
            for e in client.get_received("/market")
            if e["args"][0].get("sequence") == result.sequence
        }
    assert seen == {"l2_update", "bbo"}
    ack = other.emit("subscribe", {"type": "bbo", "symbol": BTC}, namespace="/market", callback=True)
    assert ack == {"ok": True}
    client.disconnect(namespace="/market")
    other.disconnect(namespace="/market")


def test_a_subscription_snapshot_waits_for_its_record_then_arrives_before_the_ack(service):
    app, socketio, exchange, stop_writer, resume_writer = service
    exchange.publisher.read_timeout = 5.0
    stop_writer()
    result, _ticket = _in_flight(exchange, SELL, 300)
    threading.Timer(0.2, resume_writer).start()
    client = socketio.test_client(app, namespace="/market")
    started = time.monotonic()
    ack = client.emit("subscribe", {"type": "bbo", "symbol": BTC}, namespace="/market", callback=True)
    assert ack == {"ok": True} and time.monotonic() - started > 0.15
    snapshots = [e["args"][0] for e in client.get_received("/market") if e["name"] == "bbo"]
    assert snapshots and snapshots[0]["sequence"] == result.sequence
    assert snapshots[0]["best_ask"] == {"price": "3.00", "quantity": "0.00100"}
    client.disconnect(namespace="/market")
