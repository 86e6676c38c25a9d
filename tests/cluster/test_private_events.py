"""Private ``order_events`` on the edges (``--auth on``, the command line's
default): a ``/market`` connection brings its key at connect, an edge checks it
against the key hashes the engine's feed carries and sends each account only
its own order events, as the engine process does (API.md, "Order reports and
events for accounts"). Real redis-server, engine and edges (``Cluster``)."""

from __future__ import annotations

import os

import pytest
import requests
import socketio

from deploy.cluster import App, Cluster, free_port
from tests.cluster.helpers import Subscriber, need_cluster_tools, wait_for, without_timestamps

MARKET = "/market"
ORDER_EVENTS = [{"type": "order_events"}]
# With funds (issue #13) an order needs a balance; before that, deposits are refused.
DEPOSITS = {"USDT": "10000000", "BTC": "1000", "ETH": "10000"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need_cluster_tools()
    base = tmp_path_factory.mktemp("private")
    with Cluster(str(base / "run"), str(base / "data")) as c:  # the default: --auth on
        c.admin = open(os.path.join(c.data_dir, "admin.token")).read().strip()
        yield c


def _admin(cluster, path: str, body: dict | None = None) -> dict:
    r = requests.post(
        cluster.engine.url + path, json=body or {}, headers={"X-Admin-Token": cluster.admin}, timeout=10
    )
    assert r.status_code in (200, 201), (r.status_code, r.text)
    return r.json()


def _account(cluster, name: str) -> dict:
    r = requests.post(
        cluster.engine.url + "/admin/accounts",
        json={"name": name, "deposits": DEPOSITS},
        headers={"X-Admin-Token": cluster.admin},
        timeout=10,
    )
    if r.status_code == 400 and r.json()["error"].get("field") == "deposits":  # no funds yet
        return _admin(cluster, "/admin/accounts", {"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def _order(cluster, key: str, side: str, order_type: str, price: str, quantity: str = "0.01") -> dict:
    body = {
        "symbol": "BTC-USDT",
        "side": side,
        "order_type": order_type,
        "quantity": quantity,
        "price": price,
    }
    r = requests.post(cluster.engine.url + "/order", json=body, headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _order_ids(sub: Subscriber) -> set[str]:
    return {e["order"]["order_id"] for e in sub.of("order_event")}


def test_keyed_subscribers_on_edges_get_their_own_order_events_in_order_and_no_others(cluster):
    alice, bob = _account(cluster, "alice"), _account(cluster, "bob")
    # the reference: alice's own stream from the engine process
    on_engine = Subscriber(cluster.engine.url, ORDER_EVENTS, ["websocket"], {"api_key": alice["api_key"]})
    alice_subs = [
        Subscriber(edge.url, ORDER_EVENTS, ["websocket"], {"api_key": alice["api_key"]})
        for edge in cluster.edges
    ]
    bob_sub = Subscriber(cluster.edges[1].url, ORDER_EVENTS, ["websocket"], {"api_key": bob["api_key"]})
    subs = [on_engine, *alice_subs, bob_sub]
    for sub in subs:
        sub.start()
    try:
        mine, theirs = set(), set()
        for i in range(5):
            price = f"{30000 + i}.00"
            mine.add(_order(cluster, alice["api_key"], "sell", "limit", price)["order_id"])
            theirs.add(_order(cluster, bob["api_key"], "buy", "ioc", price)["order_id"])  # trades with alice
        resting = _order(cluster, alice["api_key"], "buy", "limit", "20000.00")["order_id"]
        mine.add(resting)
        r = requests.post(
            cluster.engine.url + "/cancel",
            json={"order_id": resting},
            headers={"X-API-Key": alice["api_key"]},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        theirs.add(_order(cluster, bob["api_key"], "buy", "limit", "20001.00")["order_id"])
        # alice: accepted + maker fill per sell, accepted + cancelled of the resting buy
        wait_for(lambda: len(on_engine.of("order_event")) == 12, what="alice's events on the engine")
        expected = without_timestamps(on_engine.of("order_event"))
        for sub in alice_subs:
            wait_for(lambda sub=sub: len(sub.of("order_event")) >= 12, what="alice's events on an edge")
            assert without_timestamps(sub.of("order_event")) == expected  # the same events, in order
            assert _order_ids(sub) == mine
        wait_for(lambda: len(bob_sub.of("order_event")) >= 11, what="bob's events on the edge")
        assert _order_ids(bob_sub) == theirs  # bob's own only (his IOCs' and his limit's)
        assert [e["event"] for e in bob_sub.of("order_event") if e["order"]["order_id"] in theirs][:2] == [
            "accepted",
            "filled",
        ]
    finally:
        for sub in subs:
            sub.stop()


def test_without_a_key_order_events_are_unauthenticated_and_a_bad_key_is_refused(cluster):
    edge = cluster.edges[0]
    sio = socketio.Client(reconnection=False)
    sio.connect(edge.url, namespaces=[MARKET], transports=["websocket"], wait_timeout=10)
    try:
        ack = sio.call("subscribe", {"type": "order_events"}, namespace=MARKET, timeout=10)
        assert ack["error"]["code"] == "UNAUTHENTICATED"
        assert sio.call(
            "subscribe", {"type": "trades", "symbol": "BTC-USDT"}, namespace=MARKET, timeout=10
        ) == {"ok": True}
    finally:
        sio.disconnect()
    for bad in ("mek_" + "A" * 43, "not a key"):
        assert "UNAUTHENTICATED" in str(_refusal(edge.url, bad))


def _refusal(url: str, key: str) -> dict:
    """The ``connect_error`` of a ``/market`` connection with ``key``."""
    sio = socketio.Client(reconnection=False)
    errors = []
    sio.on("connect_error", errors.append, namespace=MARKET)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(
            url, namespaces=[MARKET], transports=["websocket"], wait_timeout=10, auth={"api_key": key}
        )
    sio.disconnect()
    assert errors, "no connect_error"
    return errors[0]


def test_a_revoked_key_stops_at_once_on_the_edge(cluster):
    carol = _account(cluster, "carol")
    second = _admin(cluster, f"/admin/accounts/{carol['account_id']}/keys")["api_key"]
    edge = cluster.edges[0]
    revoked = Subscriber(edge.url, ORDER_EVENTS, ["websocket"], {"api_key": carol["api_key"]}).start()
    control = Subscriber(edge.url, ORDER_EVENTS, ["websocket"], {"api_key": second}).start()
    try:
        first = _order(cluster, second, "buy", "limit", "10000.00")["order_id"]
        wait_for(lambda: first in _order_ids(revoked), what="the event before the revocation")
        assert _admin(cluster, "/admin/keys/revoke", {"api_key": carol["api_key"]}) == {"revoked": True}
        after = _order(cluster, second, "buy", "limit", "10001.00")["order_id"]
        wait_for(lambda: after in _order_ids(control), what="the control's event after the revocation")
        assert after not in _order_ids(revoked)  # cut in its open socket before the next event
        ack = revoked.sio.call("subscribe", ORDER_EVENTS[0], namespace=MARKET, timeout=10)
        assert ack["error"]["code"] == "UNAUTHENTICATED"
        assert "UNAUTHENTICATED" in str(_refusal(edge.url, carol["api_key"]))
        stats = requests.get(edge.url + "/statistics", timeout=5).json()
        assert stats["auth"]["revocations"] >= 1
    finally:
        revoked.stop()
        control.stop()


def test_an_edge_started_after_the_keys_were_created_authenticates_them(cluster):
    dave = _account(cluster, "dave")
    late = App(
        cluster.run_dir,
        "edge-late-keys",
        free_port(),
        ["--role", "edge", "--message-queue", cluster.redis.url],
    )
    late.start()
    try:
        sub = Subscriber(late.url, ORDER_EVENTS, ["websocket"], {"api_key": dave["api_key"]}).start()
        try:
            oid = _order(cluster, dave["api_key"], "sell", "limit", "90000.00")["order_id"]
            wait_for(lambda: oid in _order_ids(sub), what="dave's event on the late edge")
            assert _order_ids(sub) == {oid}
        finally:
            sub.stop()
    finally:
        late.stop()


def test_balances_on_an_edge_are_refused_and_name_the_engine(cluster):
    """An edge has no balances (they are not on the feed): a keyed subscription
    to ``balances`` is refused, never answered with an empty account (the page
    then reads ``GET /account`` from the engine, through nginx)."""
    alice = _account(cluster, "edge-balances")
    sio = socketio.Client(reconnection=False)
    sio.connect(
        cluster.edges[0].url,
        namespaces=[MARKET],
        transports=["websocket"],
        wait_timeout=10,
        auth={"api_key": alice["api_key"]},
    )
    got = []
    sio.on("balance", got.append, namespace=MARKET)
    try:
        ack = sio.call("subscribe", {"type": "balances"}, namespace=MARKET, timeout=10)
        assert ack["error"]["code"] == "UNAUTHENTICATED"
        assert "engine process" in ack["error"]["message"]
        sio.sleep(0.3)
        assert got == []
    finally:
        sio.disconnect()
