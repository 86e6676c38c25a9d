"""Faults: an edge killed, Redis restarted, the engine restarted. Order entry and
the journal are never affected; the edges heal and their subscribers get a fresh
snapshot."""

from __future__ import annotations

import time

import pytest
import requests

from tests.cluster.helpers import Subscriber, crossing_orders, non_decreasing, post_order, wait_for

pytestmark = pytest.mark.server

SUBS = [{"type": "trades", "symbol": "BTC-USDT"}, {"type": "bbo", "symbol": "BTC-USDT"}]


def _sequence(url: str, symbol: str = "BTC-USDT") -> int:
    return requests.get(f"{url}/bbo/{symbol}", timeout=5).json()["sequence"]


def _trade(url: str, base: int) -> list[int]:
    ids = []
    for body in crossing_orders(2, base=base):
        ids += [int(t["trade_id"]) for t in post_order(url, body)["trades"]]
    return ids


def test_edge_killed_its_clients_reconnect_through_nginx_to_another_edge_with_a_fresh_snapshot(own_cluster):
    cluster = own_cluster
    sub = Subscriber(cluster.url, SUBS, transports=["websocket"]).start()
    try:
        first = _trade(cluster.url, 30000)
        wait_for(lambda: sub.trade_ids()[-1:] == first[-1:], what="a trade before the kill")

        def serving():
            for edge in cluster.edges:
                stats = requests.get(edge.url + "/statistics", timeout=5).json()
                if stats["connected_clients"]:
                    return edge
            return None

        victim = wait_for(serving, what="the edge that serves the client")
        seen = sub.sequences("bbo")[-1]
        victim.kill()
        during = _trade(cluster.url, 30100)  # the engine does not notice
        wait_for(lambda: sub.connects >= 2, what="the reconnect through nginx")
        wait_for(lambda: sub.acks and all(a == {"ok": True} for a in sub.acks), what="the resubscription")
        engine_seq = _sequence(cluster.engine.url)
        wait_for(lambda: sub.sequences("bbo")[-1] == engine_seq, what="a fresh snapshot")
        assert engine_seq > seen
        assert non_decreasing(sub.sequences("bbo"))
        after = _trade(cluster.url, 30200)
        wait_for(lambda: sub.trade_ids()[-1:] == after[-1:], what="trades on the new edge")
        assert during[-1] < after[0]
        other = next(e for e in cluster.edges if e is not victim)
        assert requests.get(other.url + "/statistics", timeout=5).json()["connected_clients"] == 1
    finally:
        sub.stop()


def test_redis_restart_order_entry_goes_on_and_edges_heal_with_every_trade(own_cluster):
    cluster = own_cluster
    subs = [Subscriber(edge.url, SUBS, transports=["websocket"]).start() for edge in cluster.edges]
    try:
        before = _trade(cluster.engine.url, 30000)
        for sub in subs:
            wait_for(lambda s=sub: s.trade_ids()[-1:] == before[-1:], what="trades before the restart")
        seen = _sequence(cluster.edges[0].url)

        cluster.redis.stop()
        order_ids, during = [], []
        for body in crossing_orders(20, base=30100):
            started = time.monotonic()
            report = post_order(cluster.engine.url, body)  # 200, at once
            assert time.monotonic() - started < 1.0
            order_ids.append(report["order_id"])
            during += [int(t["trade_id"]) for t in report["trades"]]
        assert len(during) == 10
        for oid in order_ids:  # acknowledged, journaled, answerable
            assert requests.get(f"{cluster.engine.url}/order/{oid}", timeout=5).status_code == 200
        wait_for(
            lambda: all(
                requests.get(e.url + "/health", timeout=5).json()["status"] == "stale" for e in cluster.edges
            ),
            what="the edges to say they are stale",
        )

        cluster.redis.start()
        engine_seq = _sequence(cluster.engine.url)
        assert engine_seq > seen
        for sub in subs:
            wait_for(lambda s=sub: s.sequences("bbo")[-1] == engine_seq, timeout=15, what="a fresh snapshot")
            # the trades made while Redis was down are replayed, in order, once
            wait_for(lambda s=sub: s.trade_ids()[-1:] == during[-1:], what="the missed trades")
            assert sub.trade_ids() == before + during
            assert non_decreasing(sub.sequences("bbo"))
        for edge in cluster.edges:
            wait_for(
                lambda e=edge: requests.get(e.url + "/health", timeout=5).json()["status"] == "ok", what="ok"
            )
        after = _trade(cluster.engine.url, 30200)
        for sub in subs:
            wait_for(lambda s=sub: s.trade_ids() == before + during + after, what="trades after the restart")
    finally:
        for sub in subs:
            sub.stop()


def test_engine_restart_edges_serve_the_last_state_marked_stale_then_resume(own_cluster):
    cluster = own_cluster
    edge = cluster.edges[0]
    sub = Subscriber(edge.url, SUBS, transports=["websocket"]).start()
    try:
        before = _trade(cluster.engine.url, 30000)
        wait_for(lambda: sub.trade_ids()[-1:] == before[-1:], what="trades before the restart")
        book = requests.get(edge.url + "/book/BTC-USDT", timeout=5).json()
        run = requests.get(edge.url + "/health", timeout=5).json()["feed"]["engine_run"]

        cluster.engine.stop()
        health = wait_for(
            lambda: (h := requests.get(edge.url + "/health", timeout=5).json())["status"] == "stale" and h,
            what="stale",
        )
        assert health["role"] == "edge"
        last = requests.get(edge.url + "/book/BTC-USDT", timeout=5).json()
        assert (last["sequence"], last["bids"], last["asks"]) == (
            book["sequence"],
            book["bids"],
            book["asks"],
        )

        cluster.engine.start()
        wait_for(
            lambda: (
                (h := requests.get(edge.url + "/health", timeout=5).json())["status"] == "ok"
                and h["feed"]["engine_run"] != run
            ),
            what="the edge to follow the restarted engine",
        )
        after = _trade(cluster.engine.url, 30300)
        wait_for(lambda: sub.trade_ids()[-1:] == after[-1:], what="trades after the restart")
        assert sub.trade_ids() == before + after
        engine_seq = _sequence(cluster.engine.url)
        wait_for(lambda: sub.sequences("bbo")[-1] == engine_seq, what="the new state")
        assert engine_seq > book["sequence"]
        assert non_decreasing(sub.sequences("bbo"))
    finally:
        sub.stop()
