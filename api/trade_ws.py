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

The handlers call the same ``Exchange`` methods as REST, so validation, the
journal, the audit log, statistics and market-data publication are identical.
A handler never raises: an ``EngineError`` becomes its envelope; anything else
is logged with its traceback and answered ``INTERNAL_ERROR`` without it.

Where the payload itself is at fault, the answer is also REST's:

- Not valid JSON (malformed, nested too deeply, ``NaN``/``Infinity``, a lone
  surrogate escape): the codec (``api.parsing.SocketJSON``) hands the handler
  a ``BadPayload`` and the answer is REST's ``INVALID_JSON`` envelope, counted
  and audited as a rejection like REST's. Without this python-socketio drops
  such a packet and the client waits for an acknowledgement that never comes.
- Larger than the REST endpoint accepts (64 KiB for ``order`` and ``cancel``,
  1 MiB for ``orders``, measured on the arguments' JSON text):
  ``PAYLOAD_TOO_LARGE``, unparsed.

Rate limit: every command counts against the client address's budget of
``--rate-limit`` requests per minute, the same ``api.ratelimit.RateLimiter``
(and the same count) as its REST requests; over it the acknowledgement is
REST's ``RATE_LIMITED`` envelope and nothing else is done. The address is the
one the Socket.IO connection came from (``REMOTE_ADDR`` of its handshake).

Why a plain python-socketio ``Namespace`` (registered on ``socketio.server``)
rather than Flask-SocketIO's: Flask-SocketIO runs every event inside a Flask
request context, and building and tearing that down cost as much as validating,
matching and reporting the order itself (profiled: ~1.4 s of ~3.0 s handler time
for 6,300 orders). Order entry needs nothing from Flask.
"""

from __future__ import annotations

import logging

import socketio as _socketio

from api.errors import call_or_envelope, envelope
from api.parsing import BadPayload

log = logging.getLogger(__name__)

TRADE_NAMESPACE = "/trade"


class TradeNamespace(_socketio.Namespace):
    """``/trade``: ``order``, ``cancel`` and ``orders`` with acknowledgements."""

    def __init__(self, exchange, publisher=None, limiter=None) -> None:
        super().__init__(TRADE_NAMESPACE)
        self.exchange = exchange
        self.publisher = publisher
        # ``api.ratelimit.RateLimiter`` or None (no limit); see ``limit_commands``.
        self.limiter = limiter
        self._addresses: dict[str, str] = {}  # sid -> client address, the limiter's key

    def on_connect(self, sid, environ=None, auth=None):
        self._addresses[sid] = (environ or {}).get("REMOTE_ADDR") or "-"
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, 1)

    def on_disconnect(self, sid, reason=None):
        self._addresses.pop(sid, None)
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, -1)

    def on_order(self, sid, data=None, *extra):
        refusal = self._refusal(sid, data, "order")
        if refusal is not None:
            return refusal
        return call_or_envelope(self.exchange.place_order, data, "in /trade order")

    def on_cancel(self, sid, data=None, *extra):
        refusal = self._refusal(sid, data, "cancel")
        if refusal is not None:
            return refusal
        return call_or_envelope(self.exchange.cancel_order, data, "in /trade cancel")

    def on_orders(self, sid, data=None, *extra):
        refusal = self._refusal(sid, data, "order")
        if refusal is not None:
            return refusal
        place_orders = getattr(self.exchange, "place_orders", None)
        if place_orders is None:
            return envelope("NOT_SUPPORTED", "bulk order entry is not available")
        return call_or_envelope(place_orders, data, "in /trade orders")

    def _refusal(self, sid, data, request: str) -> dict | None:
        """What REST would answer before reading the body: ``RATE_LIMITED``, or
        the body's framing error (``INVALID_JSON``, ``PAYLOAD_TOO_LARGE``), which
        is counted and audited as a rejection like REST's. None: go ahead."""
        limiter = self.limiter
        if limiter is not None and not limiter.hit(self._addresses.get(sid, "-"))[0]:
            return limiter.refusal_envelope()
        if type(data) is BadPayload:
            try:
                self.exchange.reject(request, None, data.error)
            except Exception:  # the answer matters more than the count
                log.exception("counting a /trade rejection failed")
            return data.error.to_dict()
        return None


def limit_commands(socketio, limiter) -> None:
    """Count ``/trade`` commands against ``limiter`` (the REST one: one budget
    per client address). ``socketio``: the Flask-SocketIO object whose server
    has the namespace (``api.market.init_socketio``)."""
    namespace = socketio.server.namespace_handlers.get(TRADE_NAMESPACE)
    if namespace is not None:
        namespace.limiter = limiter
