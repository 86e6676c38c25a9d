"""Helpers for the streaming tests: an inbox that gathers background-task events,
subscribe/unsubscribe with acks, order bodies."""

from __future__ import annotations

import time

from api.market import MARKET_NAMESPACE


class Inbox:
    """Everything a test client received on ``/market``, in order, gathered by polling."""

    def __init__(self, client, socketio) -> None:
        self.client = client
        self.socketio = socketio
        self.events: list[tuple[str, dict]] = []

    def pull(self) -> list[tuple[str, dict]]:
        for packet in self.client.get_received(MARKET_NAMESPACE):
            self.events.append((packet["name"], packet["args"][0]))
        return self.events

    def of(self, name: str) -> list[dict]:
        return [payload for event, payload in self.pull() if event == name]

    def wait(self, predicate, timeout: float = 3.0) -> list[tuple[str, dict]]:
        """Yield to the background task until ``predicate(events)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.socketio.sleep(0.02)
            events = self.pull()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {[e for e, _ in events]}")

    def wait_count(self, name: str, n: int, timeout: float = 3.0) -> list[dict]:
        self.wait(lambda events: sum(1 for e, _ in events if e == name) >= n, timeout)
        return self.of(name)

    def settle(self, seconds: float = 0.2) -> list[tuple[str, dict]]:
        """Let the background task run for a while and return everything."""
        self.socketio.sleep(seconds)
        return self.pull()

    def clear(self) -> None:
        self.pull()
        self.events = []


def subscribe(client, **data) -> dict:
    return client.emit("subscribe", data, namespace=MARKET_NAMESPACE, callback=True)


def unsubscribe(client, **data) -> dict:
    return client.emit("unsubscribe", data, namespace=MARKET_NAMESPACE, callback=True)


def limit(side: str, price: str, quantity: str, symbol: str = "BTC-USDT", order_type: str = "limit") -> dict:
    return {"symbol": symbol, "side": side, "order_type": order_type, "price": price, "quantity": quantity}


def market_order(side: str, quantity: str, symbol: str = "BTC-USDT") -> dict:
    return {"symbol": symbol, "side": side, "order_type": "market", "quantity": quantity}


def without_timestamps(value):
    """A JSON value with every ``timestamp`` removed (they differ between runs)."""
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        return [without_timestamps(v) for v in value]
    return value
