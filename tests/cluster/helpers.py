"""Helpers for the cluster tests: a real Socket.IO subscriber that resubscribes
after a reconnect, REST calls, and waiting."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests
import socketio

from deploy.cluster import missing_tools
from tests.sio_client import in_arrival_order

MARKET = "/market"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need_cluster_tools() -> None:
    """Fail in CI, skip elsewhere, when redis-server or nginx is missing."""
    missing = missing_tools()
    if missing:
        reason = f"missing {', '.join(missing)} (apt-get install -y redis-server nginx)"
        if in_ci():
            pytest.fail(f"cluster tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Subscriber:
    """A python-socketio client on ``/market`` that records every event and,
    after a reconnect, subscribes again to what it had (as the page does)."""

    def __init__(self, url: str, subscriptions: list[dict], transports=None, auth=None) -> None:
        self.url = url
        self.subscriptions = subscriptions
        self.transports = transports
        self.auth = auth  # e.g. {"api_key": KEY}: a keyed connection
        self.events: list[tuple[str, dict]] = []
        self.connects = 0
        self.acks: list[dict] = []
        self._lock = threading.Lock()
        self.sio = in_arrival_order(
            socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
        )
        for name in ("trade", "bbo", "l2_update", "order_event"):
            self.sio.on(name, self._recorder(name), namespace=MARKET)
        self.sio.on("connect", self._on_connect, namespace=MARKET)

    def _recorder(self, name):
        def record(data):
            with self._lock:
                self.events.append((name, data))

        return record

    def _on_connect(self):
        self.connects += 1
        if self.connects > 1:  # a reconnect: the new server knows nothing of us
            for sub in self.subscriptions:
                self.sio.emit("subscribe", sub, namespace=MARKET, callback=self.acks.append)

    def start(self) -> Subscriber:
        self.sio.connect(
            self.url, namespaces=[MARKET], transports=self.transports, wait_timeout=10, auth=self.auth
        )
        for sub in self.subscriptions:
            ack = self.sio.call("subscribe", sub, namespace=MARKET, timeout=10)
            assert ack == {"ok": True}, ack
        return self

    def stop(self) -> None:
        self.sio.disconnect()

    def of(self, name: str) -> list[dict]:
        with self._lock:
            return [d for e, d in self.events if e == name]

    def trade_ids(self) -> list[int]:
        return [int(t["trade_id"]) for t in self.of("trade")]

    def sequences(self, name: str, symbol: str = "BTC-USDT") -> list[int]:
        return [d["sequence"] for d in self.of(name) if d["symbol"] == symbol]


def post_order(url: str, body: dict) -> dict:
    r = requests.post(url + "/order", json=body, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def crossing_orders(n: int, symbol: str = "BTC-USDT", base: int = 30000) -> list[dict]:
    """Alternately a resting limit order and an IOC that takes it: every order
    changes the book and every second one trades."""
    out = []
    for i in range(n):
        price = f"{base + (i % 7)}.00"
        if i % 2 == 0:
            out.append(
                {"symbol": symbol, "side": "sell", "order_type": "limit", "quantity": "0.01", "price": price}
            )
        else:
            prev = f"{base + ((i - 1) % 7)}.00"
            out.append(
                {"symbol": symbol, "side": "buy", "order_type": "ioc", "quantity": "0.01", "price": prev}
            )
    return out


def without_timestamps(value):
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        return [without_timestamps(v) for v in value]
    return value


def non_decreasing(values: list[int]) -> bool:
    return all(a <= b for a, b in zip(values, values[1:], strict=False))
