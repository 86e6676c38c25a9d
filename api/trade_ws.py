"""Socket.IO order entry (namespace ``/trade``).

Events (client -> server), each answered through the acknowledgement with
exactly what the REST endpoint answers for the same body (its JSON; the HTTP
status is implied by the envelope's ``code``):

==========  ===============================  =====================================
event       payload                          acknowledgement
==========  ===============================  =====================================
``order``   the ``POST /order`` body         order report, or ``{"error": {...}}``
``cancel``  ``{"order_id": "..."}``          order report, or ``{"error": {...}}``
``amend``   the ``POST /amend`` body         order report, or ``{"error": {...}}``
``orders``  the ``POST /orders`` array       the ``POST /orders`` answer (a list of
                                             order reports and error envelopes),
                                             or ``{"error": {...}}`` for the whole
==========  ===============================  =====================================

The handlers call the same ``Exchange`` methods as REST, so validation, the
journal, the audit log, statistics and market-data publication are identical.
A handler never raises: an ``EngineError`` becomes its envelope; anything else
is logged with its traceback and answered ``INTERNAL_ERROR`` without it.

Why a plain python-socketio ``Namespace`` (registered on ``socketio.server``)
rather than Flask-SocketIO's: Flask-SocketIO runs every event inside a Flask
request context, and building and tearing that down cost as much as validating,
matching and reporting the order itself (profiled: ~1.4 s of ~3.0 s handler time
for 6,300 orders). Order entry needs nothing from Flask.
"""

from __future__ import annotations

import socketio as _socketio

from api.errors import call_or_envelope, envelope

TRADE_NAMESPACE = "/trade"


class TradeNamespace(_socketio.Namespace):
    """``/trade``: ``order``, ``cancel``, ``amend`` and ``orders`` with acknowledgements."""

    def __init__(self, exchange, publisher=None) -> None:
        super().__init__(TRADE_NAMESPACE)
        self.exchange = exchange
        self.publisher = publisher

    def on_connect(self, sid, environ=None, auth=None):
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, 1)

    def on_disconnect(self, sid, reason=None):
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, -1)

    def on_order(self, sid, data=None, *extra):
        return call_or_envelope(self.exchange.place_order, data, "in /trade order")

    def on_cancel(self, sid, data=None, *extra):
        return call_or_envelope(self.exchange.cancel_order, data, "in /trade cancel")

    def on_amend(self, sid, data=None, *extra):
        return call_or_envelope(self.exchange.amend_order, data, "in /trade amend")

    def on_orders(self, sid, data=None, *extra):
        place_orders = getattr(self.exchange, "place_orders", None)
        if place_orders is None:
            return envelope("NOT_SUPPORTED", "bulk order entry is not available")
        return call_or_envelope(place_orders, data, "in /trade orders")
