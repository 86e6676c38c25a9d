"""The engine process publishes through Redis; two edges serve /market and the
public reads with the engine's answers and sequences; nginx routes by path."""

from __future__ import annotations

import pytest
import requests
import socketio

from tests.cluster.helpers import (
    Subscriber,
    crossing_orders,
    non_decreasing,
    post_order,
    wait_for,
    without_timestamps,
)

pytestmark = pytest.mark.server

BOOK_SUBS = [
    {"type": "trades", "symbol": "BTC-USDT"},
    {"type": "bbo", "symbol": "BTC-USDT"},
    {"type": "l2_updates", "symbol": "BTC-USDT", "depth": 5},
]


def test_a_subscriber_on_each_edge_gets_every_trade_in_order_and_sequences_never_go_back(cluster):
    subs = [Subscriber(edge.url, BOOK_SUBS, transports=["websocket"]).start() for edge in cluster.edges]
    try:
        trade_ids = []
        for body in crossing_orders(80):
            report = post_order(cluster.engine.url, body)
            trade_ids += [int(t["trade_id"]) for t in report["trades"]]
        assert len(trade_ids) == 40
        engine_bbo = requests.get(cluster.engine.url + "/bbo/BTC-USDT", timeout=5).json()
        for sub in subs:
            wait_for(lambda s=sub: s.trade_ids()[-1:] == trade_ids[-1:], what="the last trade")
            wait_for(lambda s=sub: s.sequences("bbo")[-1] == engine_bbo["sequence"], what="the latest bbo")
            wait_for(
                lambda s=sub: s.sequences("l2_update")[-1] == engine_bbo["sequence"], what="the latest l2"
            )
            got = [t for t in sub.trade_ids() if t in set(trade_ids)]
            assert got == trade_ids  # every trade, once, in order
            assert non_decreasing(sub.sequences("bbo"))
            assert non_decreasing(sub.sequences("l2_update"))
            last_bbo = sub.of("bbo")[-1]
            assert without_timestamps(last_bbo) == without_timestamps(engine_bbo)
            assert all(len(d["bids"]) <= 5 and len(d["asks"]) <= 5 for d in sub.of("l2_update"))
        for edge in cluster.edges:  # the edges wrote them through the direct fan-out (api/fanout.py)
            fanout = requests.get(edge.url + "/statistics", timeout=5).json()["fanout"]
            assert fanout["direct_frames"] > 40 and fanout["direct_writes"] > 0, fanout
    finally:
        for sub in subs:
            sub.stop()


def _rest(url: str, path: str):
    r = requests.get(url + path, timeout=5)
    return r.status_code, without_timestamps(r.json())


def test_edge_rest_reads_equal_the_engines(cluster):
    # a book with more than 100 levels a side, and trades
    bids = [
        {
            "symbol": "ETH-USDT",
            "side": "buy",
            "order_type": "limit",
            "quantity": "0.1",
            "price": f"{2000 - i}.00",
        }
        for i in range(120)
    ]
    asks = [
        {
            "symbol": "ETH-USDT",
            "side": "sell",
            "order_type": "limit",
            "quantity": "0.2",
            "price": f"{2001 + i}.00",
        }
        for i in range(120)
    ]
    for body in (bids, asks):
        r = requests.post(cluster.engine.url + "/orders", json=body, timeout=10)
        assert r.status_code == 200
    post_order(
        cluster.engine.url, {"symbol": "ETH-USDT", "side": "buy", "order_type": "market", "quantity": "0.3"}
    )
    seq = requests.get(cluster.engine.url + "/bbo/ETH-USDT", timeout=5).json()["sequence"]
    for edge in cluster.edges:
        wait_for(
            lambda e=edge: requests.get(e.url + "/bbo/ETH-USDT", timeout=5).json()["sequence"] == seq,
            what="the edge's mirror to catch up",
        )
    paths = [
        "/symbols",
        "/bbo/ETH-USDT",
        "/bbo/BTC-USDT",
        "/book/ETH-USDT",
        "/book/ETH-USDT?levels=1",
        "/book/ETH-USDT?levels=100",
        "/trades/ETH-USDT",
        "/trades/ETH-USDT?limit=1",
        "/trades/ETH-USDT?limit=1000",
        "/book/NOPE-USDT",
        "/bbo/NOPE-USDT",
        "/trades/NOPE-USDT",
        "/book/ETH-USDT?levels=abc",
        "/book/ETH-USDT?levels=0",
        "/trades/ETH-USDT?limit=-1",
    ]
    for path in paths:
        expected = _rest(cluster.engine.url, path)
        for url in [e.url for e in cluster.edges] + [cluster.url]:
            assert _rest(url, path) == expected, (url, path)
    # deeper than the mirror: nginx sends it to the engine, which answers all 120 levels
    deep = _rest(cluster.url, "/book/ETH-USDT?levels=500")
    assert deep == _rest(cluster.engine.url, "/book/ETH-USDT?levels=500")
    assert len(deep[1]["bids"]) == 120


def test_order_entry_on_an_edge_is_a_clear_error_and_nginx_routes_it_to_the_engine(cluster):
    edge = cluster.edges[0].url
    body = {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.01", "price": "100.00"}
    for method, path in (("post", "/order"), ("post", "/orders"), ("post", "/cancel"), ("get", "/order/1")):
        r = getattr(requests, method)(edge + path, json=body if method == "post" else None, timeout=5)
        assert r.status_code == 421, (path, r.status_code)
        assert r.json()["error"]["code"] == "EDGE_READ_ONLY"
    client = socketio.Client(reconnection=False)
    refused = []
    client.on("connect_error", refused.append, namespace="/trade")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(edge, namespaces=["/trade"], transports=["websocket"], wait_timeout=5)
    wait_for(lambda: refused, what="the refusal")
    assert "EDGE_READ_ONLY" in str(refused[0])
    report = post_order(cluster.url, body)  # through nginx: the engine
    assert report["status"] == "new"
    assert (
        requests.get(f"{cluster.url}/order/{report['order_id']}", timeout=5).json()["order_id"]
        == report["order_id"]
    )
    assert "engine" in requests.get(cluster.url + "/statistics", timeout=5).json()  # the engine's figures


def test_socketio_through_nginx_with_polling_then_websocket(cluster):
    """The page's transport (long-polling, then the upgrade) needs sticky sessions."""
    sub = Subscriber(cluster.url, BOOK_SUBS, transports=["polling", "websocket"]).start()
    try:
        assert sub.of("bbo"), "the snapshot on subscribing"
        report = None
        for body in crossing_orders(2, base=31000):
            report = post_order(cluster.url, body)
        tid = int(report["trades"][0]["trade_id"])
        wait_for(lambda: tid in sub.trade_ids(), what="the trade through nginx")
        assert sub.sio.transport() == "websocket"
    finally:
        sub.stop()


def test_engine_socketio_is_reachable_through_nginx_under_engine_path(cluster):
    client = socketio.Client(reconnection=False)
    client.connect(cluster.url, namespaces=["/trade"], socketio_path="/engine/socket.io", wait_timeout=5)
    try:
        body = {"symbol": "SOL-USDT", "side": "buy", "order_type": "limit", "quantity": "1", "price": "10.00"}
        ack = client.call("order", body, namespace="/trade", timeout=5)
        assert ack["status"] == "new", ack
    finally:
        client.disconnect()


def test_page_and_vendor_files_through_nginx(cluster):
    r = requests.get(cluster.url + "/", timeout=5)
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert requests.get(cluster.url + "/vendor/socket.io.min.js", timeout=5).status_code == 200
    health = requests.get(cluster.url + "/health", timeout=5).json()
    assert health["status"] == "ok" and health["role"] == "edge"


def test_an_edge_started_late_serves_the_engines_state_and_history(cluster):
    from deploy.cluster import App, free_port

    for body in crossing_orders(6, base=32000):
        post_order(cluster.engine.url, body)
    late = App(
        cluster.run_dir, "edge-late", free_port(), ["--role", "edge", "--message-queue", cluster.redis.url]
    )
    late.start()
    try:
        sub = Subscriber(late.url, BOOK_SUBS, transports=["websocket"]).start()
        try:
            engine_bbo = requests.get(cluster.engine.url + "/bbo/BTC-USDT", timeout=5).json()
            assert sub.sequences("bbo")[0] == engine_bbo["sequence"]  # the snapshot is the engine's state
        finally:
            sub.stop()
        for path in ("/trades/BTC-USDT?limit=1000", "/book/BTC-USDT?levels=100", "/bbo/BTC-USDT", "/symbols"):
            assert _rest(late.url, path) == _rest(cluster.engine.url, path), path
    finally:
        late.stop()


def test_with_auth_on_an_edge_refuses_order_events_without_a_key_and_still_serves_trades(tmp_path):
    """Order events are private with --auth on: without a key an edge refuses the
    subscription, as the engine does (keyed ones: test_private_events.py). Trades
    between two accounts still reach the edge's subscribers."""
    import os

    from deploy.cluster import Cluster
    from tests.cluster.helpers import need_cluster_tools

    need_cluster_tools()
    with Cluster(str(tmp_path / "run"), str(tmp_path / "data")) as cluster:  # the default: --auth on
        key = open(os.path.join(str(tmp_path / "data"), "demo.key")).read().strip()
        edge = cluster.edges[0]
        sio = socketio.Client()
        sio.connect(edge.url, namespaces=["/market"], transports=["websocket"], wait_timeout=10)
        try:
            ack = sio.call("subscribe", {"type": "order_events"}, namespace="/market", timeout=10)
            assert ack["error"]["code"] == "UNAUTHENTICATED"
        finally:
            sio.disconnect()
        sub = Subscriber(edge.url, [{"type": "trades", "symbol": "BTC-USDT"}], transports=["websocket"])
        sub.start()
        try:
            admin = open(os.path.join(str(tmp_path / "data"), "admin.token")).read().strip()
            created = requests.post(
                cluster.engine.url + "/admin/accounts",
                json={"name": "bob", "deposits": {"BTC": "1"}},
                headers={"X-Admin-Token": admin},
                timeout=10,
            ).json()
            r = requests.post(
                cluster.engine.url + "/order",
                json={
                    "symbol": "BTC-USDT",
                    "side": "sell",
                    "order_type": "limit",
                    "quantity": "0.01",
                    "price": "30000.00",
                },
                headers={"X-API-Key": created["api_key"]},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            r = requests.post(
                cluster.engine.url + "/order",
                json={
                    "symbol": "BTC-USDT",
                    "side": "buy",
                    "order_type": "ioc",
                    "quantity": "0.01",
                    "price": "30000.00",
                },
                headers={"X-API-Key": key},
                timeout=10,
            )
            tid = int(r.json()["trades"][0]["trade_id"])
            wait_for(lambda: tid in sub.trade_ids(), what="the trade on the edge")
            stats = requests.get(edge.url + "/health", timeout=5).json()
            assert stats["status"] in ("ok", "stale")
        finally:
            sub.stop()


def test_an_edge_applies_the_per_client_socket_io_limits(tmp_path):
    """An edge is where most Socket.IO clients are: it has the engine's per-client
    limits (api/sessions.py), here its sessions per address."""
    from deploy.cluster import Cluster
    from tests.cluster.helpers import need_cluster_tools

    need_cluster_tools()
    with Cluster(
        str(tmp_path / "run"),
        str(tmp_path / "data"),
        edges=1,
        engine_args=["--auth", "off"],
        edge_args=["--sessions-per-ip", "2"],
    ) as cluster:
        edge = cluster.edges[0]
        clients = []
        try:
            for _ in range(2):
                sio = socketio.Client(reconnection=False)
                sio.connect(edge.url, namespaces=["/market"], transports=["polling"], wait_timeout=10)
                clients.append(sio)
            r = requests.get(edge.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
            assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"
            stats = requests.get(edge.url + "/statistics", timeout=5).json()
            assert stats["streaming"]["handshakes_refused_sessions"] >= 1
        finally:
            for sio in clients:
                sio.disconnect()
