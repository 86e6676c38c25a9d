"""A subscriber of an edge that never reads, against the direct fan-out
(api/fanout.py): once the kernel takes no more, what waits for it goes through
Engine.IO's queue and counts against ``--send-queue-bytes``; it is disconnected,
the edge's memory stays bounded, and a reader on the same edge gets every trade."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from deploy.cluster import Cluster
from tests.cluster.helpers import need_cluster_tools
from tests.loadlib.rawsio import RawSio
from tests.stream.rawclients import SUBSCRIPTIONS, Reader, flow_orders, post_ladder, rss_kib

pytestmark = pytest.mark.server


def test_an_edge_disconnects_a_subscriber_that_does_not_read_and_readers_get_every_trade(tmp_path):
    need_cluster_tools()
    limit = 256 * 1024
    with Cluster(
        str(tmp_path / "run"),
        str(tmp_path / "data"),
        edges=1,
        engine_args=["--auth", "off"],
        edge_args=["--send-queue-bytes", str(limit)],
    ) as cluster:
        edge = cluster.edges[0]
        post_ladder(cluster.engine.port)  # every l2_update of depth 100 is then a few KB
        reader = Reader(edge.port)
        reader.start()
        silent = RawSio("127.0.0.1", edge.port)
        silent.connect()
        for sub in SUBSCRIPTIONS:
            assert silent.call("subscribe", sub) == {"ok": True}
        silent.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        rss_before = rss_kib(edge.pid)
        stop, orders_stop = threading.Event(), threading.Event()
        result: dict = {}

        def send():
            result["trade_ids"] = flow_orders(cluster.engine.port, 30.0, orders_stop)

        def pong():  # answers pings without reading what is sent to it
            while not stop.wait(1.0):
                try:
                    silent.send_text("3")
                except OSError:
                    pass

        sender = threading.Thread(target=send)
        ponger = threading.Thread(target=pong, daemon=True)
        sender.start()
        ponger.start()
        started = time.monotonic()
        while sender.is_alive():
            sender.join(0.5)
            if time.monotonic() - started >= 8:
                streaming = requests.get(edge.url + "/statistics", timeout=5).json()["streaming"]
                if streaming.get("slow_consumers_disconnected", 0) >= 1:
                    orders_stop.set()
        sender.join(30)
        rss_after = rss_kib(edge.pid)
        stop.set()
        ponger.join(10)
        trade_ids = result["trade_ids"]
        assert len(trade_ids) > 300
        deadline = time.monotonic() + 10
        while len(reader.trade_ids) < len(trade_ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.stop.set()
        reader.join(5)
        stats = requests.get(edge.url + "/statistics", timeout=5).json()
        log = edge.output()

    assert reader.trade_ids == trade_ids  # every trade, once, in order
    assert stats["fanout"]["direct_writes"] > 0  # through the direct path
    assert stats["streaming"]["slow_consumers_disconnected"] == 1, stats["streaming"]
    assert stats["streaming"]["clients"]["/market"] == 1
    assert log.count("slow consumer disconnected") == 1
    grown = rss_after - rss_before
    assert grown < 8 * 1024, f"the edge's RSS grew by {grown} KiB"
    silent.sock.settimeout(5)
    try:
        while silent.sock.recv(1 << 20):  # the edge closed it: what it holds ends in EOF
            pass
    except ConnectionResetError:
        pass
    silent.sock.close()
