"""REST endpoints of the contract, one blueprint per resource; each view is a
thin adapter: read the request, call ``Exchange`` (``app.extensions["exchange"]``),
return JSON. Errors are raised and mapped once, by ``api/errors.py``.

=========  ====================  ==========================================
blueprint  route                 answer
=========  ====================  ==========================================
service    GET  /health          ``{"status": "ok", "uptime_seconds"}``; 503
                                 ``{"status": "halted", "reason", ...}`` after
                                 a journal fault
service    GET  /statistics      counters and latency figures
service    POST /ping            ``{"status": "ok"}``: a JSON body read, nothing done
orders     POST /order           order report (200 whatever its status)
orders     POST /orders          array: report or error envelope per order
orders     POST /cancel          order report, status ``cancelled``
orders     POST /amend           order report after the amend
orders     GET  /order/<id>      order report as it stands now
market     GET  /symbols         ``{"symbols": [...]}``
market     GET  /book/<symbol>   ``?levels=N`` (default 10, capped at 1000)
market     GET  /bbo/<symbol>
market     GET  /trades/<symbol> ``?limit=N`` (default 50, capped at 1000)
=========  ====================  ==========================================

The ``orders`` routes are private: with ``--auth on`` each needs the caller's
``X-API-Key`` (``_caller``, checked before the body is read) and acts on that
account's orders only. ``api/accounts_rest.py`` has the account routes
(``GET /account``, ``GET /orders``, ``GET /fills``, ``POST /cancel_all``) and
the admin routes.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, request

from api.errors import json_bytes_response, json_response
from api.parsing import MAX_BULK_BODY, MAX_ORDER_BODY, parse_count, read_json_body
from api.service import MAX_BOOK_LEVELS, MAX_TRADES, Exchange
from engine.errors import EngineError

service = Blueprint("service", __name__)
orders = Blueprint("orders", __name__)
market = Blueprint("market", __name__)


def _exchange() -> Exchange:
    return current_app.extensions["exchange"]


def _caller():
    """The calling account (None with ``--auth off``). Raises Unauthenticated."""
    return current_app.extensions["auth"].caller(request)


def _body(request_kind: str, max_bytes: int):
    """The JSON body; a framing error is counted and audited as a rejection."""
    try:
        return read_json_body(request, max_bytes)
    except EngineError as e:
        _exchange().reject(request_kind, None, e)
        raise


# -- service -----------------------------------------------------------------
@service.get("/health")
def health():
    body = _exchange().health()
    return json_response(body, 200 if body["status"] == "ok" else 503)


@service.post("/ping")
def ping():
    """A trivial JSON POST: the body is read and parsed exactly as for ``POST /order``
    (same limits and errors) and nothing else is done. The framework's own ceiling
    for a JSON POST, which the load runner's ``--baseline`` compares orders with."""
    read_json_body(request, MAX_ORDER_BODY)
    return json_response(_PONG)


_PONG = {"status": "ok"}


@service.get("/statistics")
def statistics():
    return json_response(_exchange().statistics())


# -- orders ------------------------------------------------------------------
@orders.post("/order")
def place_order():
    account = _caller()
    return json_bytes_response(_exchange().place_order_json(_body("order", MAX_ORDER_BODY), account))


@orders.post("/orders")
def place_orders():
    account = _caller()
    return json_bytes_response(_exchange().place_orders_json(_body("order", MAX_BULK_BODY), account))


@orders.post("/cancel")
def cancel_order():
    account = _caller()
    return json_response(_exchange().cancel_order(_body("cancel", MAX_ORDER_BODY), account))


@orders.post("/amend")
def amend_order():
    account = _caller()
    return json_response(_exchange().amend_order(_body("amend", MAX_ORDER_BODY), account))


@orders.get("/order/<order_id>")
def get_order(order_id: str):
    account = _caller()
    return json_response(_exchange().get_order(order_id, account))


# -- market data ---------------------------------------------------------------
@market.get("/symbols")
def symbols():
    return json_response(_exchange().symbols())


@market.get("/book/<symbol>")
def book(symbol: str):
    exchange = _exchange()
    exchange.check_symbol(symbol)  # an unknown symbol is a 404 before a bad ?levels is a 400
    levels = parse_count(request.args, "levels", 10, MAX_BOOK_LEVELS)
    return json_response(exchange.book(symbol, levels))


@market.get("/bbo/<symbol>")
def bbo(symbol: str):
    return json_response(_exchange().bbo(symbol))


@market.get("/trades/<symbol>")
def trades(symbol: str):
    exchange = _exchange()
    exchange.check_symbol(symbol)
    limit = parse_count(request.args, "limit", 50, MAX_TRADES)
    return json_bytes_response(exchange.trades_json(symbol, limit))


def register(app: Flask) -> None:
    """Register every REST blueprint on ``app``."""
    app.register_blueprint(service)
    app.register_blueprint(orders)
    app.register_blueprint(market)
