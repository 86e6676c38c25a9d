"""Accounts on Socket.IO (``--auth on``): keys at connect on ``/trade`` and
``/market``, private ``order_events`` (each order's events reach its owner
only), and a key revoked during an open session."""

from __future__ import annotations

import time

import pytest

from api.app import close_app, create_app
from api.market import MARKET_NAMESPACE, TRADE_NAMESPACE
from tests.api.conftest import FUNDED
from tests.sio_client import in_arrival_order
from tests.stream.helpers import Inbox, limit, subscribe, unsubscribe


@pytest.fixture
def on(tmp_path):
    app, socketio = create_app(
        {
            "async_mode": "threading",
            "data_dir": str(tmp_path / "d"),
            "rate_limit": 0,
            "auth": "on",
            "store": False,
        }
    )
    auth = app.extensions["auth"]
    keys = {name: auth.create_account(name, deposits=FUNDED)[1] for name in ("alice", "bob")}
    clients = []

    def connect(namespace, key=None, **kw):
        c = socketio.test_client(
            app, namespace=namespace, auth=None if key is None else {"api_key": key}, **kw
        )
        clients.append(c)
        return c

    yield app, socketio, keys, connect
    for c in clients:
        for ns in (MARKET_NAMESPACE, TRADE_NAMESPACE):
            if c.is_connected(ns):
                c.disconnect(namespace=ns)
    close_app(app)


def order(client, body):
    return client.emit("order", body, namespace=TRADE_NAMESPACE, callback=True)


def test_trade_needs_a_valid_key_at_connect(on):
    app, socketio, keys, connect = on
    assert not connect(TRADE_NAMESPACE).is_connected(TRADE_NAMESPACE)
    assert not connect(TRADE_NAMESPACE, "mek_" + "A" * 43).is_connected(TRADE_NAMESPACE)
    assert not connect(TRADE_NAMESPACE, 42).is_connected(TRADE_NAMESPACE)
    assert connect(TRADE_NAMESPACE, keys["alice"]).is_connected(TRADE_NAMESPACE)
    header = connect(TRADE_NAMESPACE, headers={"X-API-Key": keys["bob"]})
    assert header.is_connected(TRADE_NAMESPACE)


def test_trade_acts_for_the_sessions_account(on):
    app, socketio, keys, connect = on
    alice = connect(TRADE_NAMESPACE, keys["alice"])
    bob = connect(TRADE_NAMESPACE, keys["bob"])
    mine = order(alice, limit("sell", "100.00", "1"))
    assert mine["status"] == "new"
    theirs = bob.emit("cancel", {"order_id": mine["order_id"]}, namespace=TRADE_NAMESPACE, callback=True)
    assert theirs["error"]["code"] == "ORDER_NOT_FOUND"
    own = order(alice, limit("buy", "100.00", "1"))
    assert own["cancel_reason"] == "self_trade" and own["trades"] == []
    bulk = bob.emit("orders", [limit("buy", "100.00", "0.5")], namespace=TRADE_NAMESPACE, callback=True)
    assert bulk[0]["status"] == "filled"
    rest = app.test_client()
    r = rest.get(f"/order/{mine['order_id']}", headers={"X-API-Key": keys["alice"]})
    assert r.get_json()["filled_quantity"] == "0.50000"
    assert rest.get(f"/order/{mine['order_id']}", headers={"X-API-Key": keys["bob"]}).status_code == 404


def test_a_revoked_key_stops_in_an_open_trade_session(on):
    app, socketio, keys, connect = on
    alice = connect(TRADE_NAMESPACE, keys["alice"])
    resting = order(alice, limit("buy", "1.00", "1"))
    app.extensions["auth"].revoke({"api_key": keys["alice"]})
    before = app.extensions["exchange"].engine.markets["BTC-USDT"].sequence
    for event, body in (
        ("order", limit("buy", "1.00", "1")),
        ("cancel", {"order_id": resting["order_id"]}),
        ("orders", [limit("buy", "1.00", "1")]),
    ):
        answer = alice.emit(event, body, namespace=TRADE_NAMESPACE, callback=True)
        assert answer["error"]["code"] == "UNAUTHENTICATED", event
    assert app.extensions["exchange"].engine.markets["BTC-USDT"].sequence == before


def test_order_events_need_a_key_and_public_data_does_not(on):
    app, socketio, keys, connect = on
    anonymous = connect(MARKET_NAMESPACE)
    assert anonymous.is_connected(MARKET_NAMESPACE)
    answer = subscribe(anonymous, type="order_events")
    assert answer["error"]["code"] == "UNAUTHENTICATED"
    assert subscribe(anonymous, type="trades") == {"ok": True}
    assert subscribe(anonymous, type="bbo", symbol="BTC-USDT") == {"ok": True}
    assert not connect(MARKET_NAMESPACE, "mek_" + "B" * 43).is_connected(MARKET_NAMESPACE)


def test_each_order_event_reaches_its_owner_only(on):
    app, socketio, keys, connect = on
    inboxes = {}
    for name in ("alice", "bob"):
        client = connect(MARKET_NAMESPACE, keys[name])
        client.get_received(MARKET_NAMESPACE)
        assert subscribe(client, type="order_events") == {"ok": True}
        inboxes[name] = Inbox(client, socketio)
    watcher = Inbox(connect(MARKET_NAMESPACE), socketio)
    assert subscribe(watcher.client, type="trades") == {"ok": True}
    alice = connect(TRADE_NAMESPACE, keys["alice"])
    bob = connect(TRADE_NAMESPACE, keys["bob"])
    maker = order(alice, limit("sell", "100.00", "1"))
    order(alice, limit("sell", "100.00", "1"))
    taker = order(bob, limit("buy", "100.00", "0.4"))
    inboxes["alice"].wait_count("order_event", 3)
    inboxes["bob"].wait_count("order_event", 2)
    watcher.wait_count("trade", 1)
    inboxes["alice"].settle(0.2)
    alice_events = [(e["event"], e["order"]["order_id"]) for e in inboxes["alice"].of("order_event")]
    bob_events = [(e["event"], e["order"]["order_id"]) for e in inboxes["bob"].of("order_event")]
    assert alice_events == [
        ("accepted", maker["order_id"]),
        ("accepted", str(int(maker["order_id"]) + 1)),
        ("partially_filled", maker["order_id"]),
    ]
    assert bob_events == [("accepted", taker["order_id"]), ("filled", taker["order_id"])]
    assert watcher.of("order_event") == []


def test_stp_cancelled_makers_get_a_cancelled_event(on):
    app, socketio, keys, connect = on
    client = connect(MARKET_NAMESPACE, keys["alice"])
    assert subscribe(client, type="order_events", symbol="BTC-USDT") == {"ok": True}
    inbox = Inbox(client, socketio)
    alice = connect(TRADE_NAMESPACE, keys["alice"])
    maker = order(alice, limit("sell", "100.00", "1"))
    body = dict(limit("buy", "100.00", "1"), stp="cancel_maker")
    order(alice, body)
    events = inbox.wait_count("order_event", 3)
    cancelled = [e for e in events if e["event"] == "cancelled"]
    assert cancelled[0]["order"]["order_id"] == maker["order_id"]
    assert cancelled[0]["order"]["cancel_reason"] == "self_trade"


def test_a_revoked_key_loses_its_order_events_at_once(on):
    app, socketio, keys, connect = on
    client = connect(MARKET_NAMESPACE, keys["alice"])
    assert subscribe(client, type="order_events") == {"ok": True}
    assert subscribe(client, type="trades") == {"ok": True}
    inbox = Inbox(client, socketio)
    app.extensions["auth"].revoke({"api_key": keys["alice"]})
    # another key of the same account places an order: nothing reaches the revoked session
    _account, second = app.extensions["auth"].issue_key(1)
    other = connect(TRADE_NAMESPACE, second)
    order(other, limit("sell", "100.00", "1"))
    order(connect(TRADE_NAMESPACE, keys["bob"]), limit("buy", "100.00", "1"))
    inbox.wait_count("trade", 1)  # public data still flows
    assert inbox.of("order_event") == []
    assert subscribe(client, type="order_events")["error"]["code"] == "UNAUTHENTICATED"
    assert unsubscribe(client, type="trades") == {"ok": True}


# -- a real eventlet server and real python-socketio clients ----------------------------------
@pytest.mark.server
def test_real_server_keys_at_connect_and_private_order_events(tmp_path):
    import threading

    import requests
    import socketio

    from tests.serverproc import ServerProcess

    with ServerProcess(tmp_path / "data", "--auth", "on") as server:
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        keys = {}
        for name in ("alice", "bob"):
            r = requests.post(
                server.url + "/admin/accounts",
                json={"name": name, "deposits": FUNDED},
                headers={"X-Admin-Token": token},
            )
            keys[name] = r.json()["api_key"]
        clients = []
        received = {"alice": [], "bob": []}
        arrived = threading.Event()
        try:
            for name in ("alice", "bob"):
                sio = in_arrival_order(socketio.Client(reconnection=False))

                def on_event(data, name=name):
                    received[name].append((data["event"], data["order"]["order_id"]))
                    arrived.set()

                sio.on("order_event", on_event, namespace="/market")
                sio.connect(
                    server.url,
                    namespaces=["/market", "/trade"],
                    transports=["websocket"],
                    auth={"api_key": keys[name]},
                )
                clients.append(sio)
                assert sio.call("subscribe", {"type": "order_events"}, namespace="/market", timeout=5) == {
                    "ok": True
                }
            alice, bob = clients
            body = {
                "symbol": "BTC-USDT",
                "side": "sell",
                "order_type": "limit",
                "price": "100.00",
                "quantity": "1",
            }
            ask = alice.call("order", body, namespace="/trade", timeout=5)
            assert ask["status"] == "new"
            bid = bob.call("order", dict(body, side="buy"), namespace="/trade", timeout=5)
            assert bid["status"] == "filled"
            mine = alice.call("cancel", {"order_id": bid["order_id"]}, namespace="/trade", timeout=5)
            assert mine["error"]["code"] == "ORDER_NOT_FOUND"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (len(received["alice"]) < 2 or len(received["bob"]) < 2):
                arrived.wait(0.1)
                arrived.clear()
            assert received["alice"] == [("accepted", ask["order_id"]), ("filled", ask["order_id"])]
            assert received["bob"] == [("accepted", bid["order_id"]), ("filled", bid["order_id"])]

            anonymous = socketio.Client(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                anonymous.connect(server.url, namespaces=["/trade"], transports=["websocket"], wait_timeout=5)
            public = socketio.Client(reconnection=False)
            public.connect(server.url, namespaces=["/market"], transports=["websocket"], wait_timeout=5)
            clients.append(public)
            answer = public.call("subscribe", {"type": "order_events"}, namespace="/market", timeout=5)
            assert answer["error"]["code"] == "UNAUTHENTICATED"
            assert public.call("subscribe", {"type": "trades"}, namespace="/market", timeout=5) == {
                "ok": True
            }
        finally:
            for sio in clients:
                sio.disconnect()
