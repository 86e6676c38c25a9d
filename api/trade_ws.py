"""Socket.IO order entry (namespace ``/trade``).

Events (client -> server), each answered through the acknowledgement with
exactly what the REST endpoint answers for the same body (its JSON; the HTTP
status is implied by the envelope's ``code``):

==========  ===============================  =====================================
event       payload                          acknowledgement
==========  ===============================  =====================================
``order``   the ``POST /order`` body         order report, or ``{"error": {...}}``
``cancel``  ``{"order_id": "..."}``          order report, or ``{"error": {...}}``
``orders``  the ``POST /orders`` array       the ``POST /orders`` answer (a list of
                                             order reports and error envelopes),
                                             or ``{"error": {...}}`` for the whole
==========  ===============================  =====================================

Accounts (``--auth on``): the connection brings its key at connect,
``auth={"api_key": KEY}`` (or an ``X-API-Key`` header on the handshake);
without a valid one the connection is refused (``connect_error`` with the
``UNAUTHENTICATED`` envelope's ``code`` and ``message``). Every event acts for
that key's account, and is answered ``UNAUTHENTICATED`` once the key is
revoked (checked per event: one attribute read).

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

from api.auth import UNAUTHENTICATED_KEY
from api.errors import call_or_envelope, envelope

TRADE_NAMESPACE = "/trade"


class TradeNamespace(_socketio.Namespace):
    """``/trade``: ``order``, ``cancel`` and ``orders`` with acknowledgements."""

    def __init__(self, exchange, publisher=None, auth=None) -> None:
        super().__init__(TRADE_NAMESPACE)
        self.exchange = exchange
        self.publisher = publisher
        self.auth = auth if auth is not None and auth.on else None
        self.sessions: dict = {}  # sid -> (account, key), --auth on

    def on_connect(self, sid, environ=None, auth=None):
        if self.auth is not None:
            try:
                found = self.auth.session(auth, environ)  # counts a refused key itself
            except Exception:
                found = False
            if not found:
                if found is None:  # no key at all
                    self.auth.failures += 1
                raise _socketio.exceptions.ConnectionRefusedError(
                    {"code": "UNAUTHENTICATED", "message": UNAUTHENTICATED_KEY}
                )
            self.sessions[sid] = found
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, 1)

    def on_disconnect(self, sid, reason=None):
        self.sessions.pop(sid, None)
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, -1)

    def _account(self, sid):
        """``(account, None)``, or ``(None, error)`` when the session's key was
        revoked. ``(None, None)`` with ``--auth off``."""
        if self.auth is None:
            return None, None
        found = self.sessions.get(sid)
        if found is None or found[1].revoked is not None:
            return None, envelope("UNAUTHENTICATED", UNAUTHENTICATED_KEY)
        return found[0], None

    def on_order(self, sid, data=None, *extra):
        account, error = self._account(sid)
        if error is not None:
            return error
        place_order = self.exchange.place_order
        if account is not None:
            return call_or_envelope(lambda body: place_order(body, account), data, "in /trade order")
        return call_or_envelope(place_order, data, "in /trade order")

    def on_cancel(self, sid, data=None, *extra):
        account, error = self._account(sid)
        if error is not None:
            return error
        cancel_order = self.exchange.cancel_order
        if account is not None:
            return call_or_envelope(lambda body: cancel_order(body, account), data, "in /trade cancel")
        return call_or_envelope(cancel_order, data, "in /trade cancel")

    def on_orders(self, sid, data=None, *extra):
        place_orders = getattr(self.exchange, "place_orders", None)
        if place_orders is None:
            return envelope("NOT_SUPPORTED", "bulk order entry is not available")
        account, error = self._account(sid)
        if error is not None:
            return error
        if account is not None:
            return call_or_envelope(lambda body: place_orders(body, account), data, "in /trade orders")
        return call_or_envelope(place_orders, data, "in /trade orders")
