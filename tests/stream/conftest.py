"""Fixtures for the streaming tests: a fresh app per test (threading mode), its
Socket.IO test clients, and helpers that wait for background-task events.

The app comes from ``api.app.create_app`` when it exists; otherwise from a
minimal factory here (Flask + Flask-SocketIO + ``api.service.Exchange`` +
``api.market.init_socketio``), so the namespaces can be tested on their own.
"""

from __future__ import annotations

import pytest

from api.market import MARKET_NAMESPACE, TRADE_NAMESPACE
from tests.stream.helpers import Inbox


def _minimal_app(data_dir: str):
    from flask import Flask
    from flask_socketio import SocketIO

    from api import rest
    from api.market import init_socketio
    from api.parsing import SOCKET_JSON
    from api.service import Exchange
    from engine.matcher import MatchingEngine

    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading", json=SOCKET_JSON)
    exchange = Exchange(MatchingEngine())
    exchange.publisher = init_socketio(socketio, exchange)
    app.extensions["exchange"] = exchange
    rest.register(app)
    return app, socketio


def make_app(data_dir) -> tuple:
    """``(app, socketio, exchange, publisher)`` for a fresh service in threading mode."""
    try:
        from api.app import create_app
    except ImportError:
        app, socketio = _minimal_app(str(data_dir))
    else:
        app, socketio = create_app({"async_mode": "threading", "data_dir": str(data_dir), "rate_limit": 0})
    exchange = app.extensions["exchange"]
    return app, socketio, exchange, exchange.publisher


@pytest.fixture
def service(tmp_path):
    app, socketio, exchange, publisher = make_app(tmp_path / "data")
    yield app, socketio, exchange, publisher
    try:
        from api.app import close_app
    except ImportError:
        publisher.close()
    else:
        close_app(app)


@pytest.fixture
def app(service):
    return service[0]


@pytest.fixture
def socketio(service):
    return service[1]


@pytest.fixture
def exchange(service):
    return service[2]


@pytest.fixture
def publisher(service):
    return service[3]


@pytest.fixture
def rest(app):
    return app.test_client()


@pytest.fixture
def market_client(app, socketio):
    """A factory of connected ``/market`` test clients (disconnected at teardown)."""
    clients = []

    def connect():
        client = socketio.test_client(app, namespace=MARKET_NAMESPACE)
        assert client.is_connected(MARKET_NAMESPACE)
        client.get_received(MARKET_NAMESPACE)  # whatever connect sent
        clients.append(client)
        return client

    yield connect
    for client in clients:
        if client.is_connected(MARKET_NAMESPACE):
            client.disconnect(namespace=MARKET_NAMESPACE)


@pytest.fixture
def trade_client(app, socketio):
    client = socketio.test_client(app, namespace=TRADE_NAMESPACE)
    assert client.is_connected(TRADE_NAMESPACE)
    yield client
    if client.is_connected(TRADE_NAMESPACE):
        client.disconnect(namespace=TRADE_NAMESPACE)


@pytest.fixture
def inbox(market_client, socketio):
    """A factory: a new ``/market`` client wrapped in an ``Inbox``."""

    def make():
        return Inbox(market_client(), socketio)

    return make
