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

Where the payload itself is at fault, the answer is also REST's:

- Not valid JSON (malformed, nested too deeply, ``NaN``/``Infinity``, a lone
  surrogate escape): the codec (``api.parsing.SocketJSON``) hands the handler
  a ``BadPayload`` and the answer is REST's ``INVALID_JSON`` envelope, counted
  and audited as a rejection like REST's. Without this python-socketio drops
  such a packet and the client waits for an acknowledgement that never comes.
- Larger than the REST endpoint accepts (64 KiB for ``order`` and ``cancel``,
  1 MiB for ``orders``, measured on the arguments' JSON text):
  ``PAYLOAD_TOO_LARGE``, unparsed.

Rate limit: every command counts against the budget of ``--rate-limit``
requests per minute of the connection's API key (``--auth on``) or else its
client address (``REMOTE_ADDR`` of its handshake): the same
``api.ratelimit.RateLimiter`` and the same count as the REST requests with that
key or from that address; over it the acknowledgement is REST's
``RATE_LIMITED`` envelope and nothing else is done.

Why a plain python-socketio ``Namespace`` (registered on ``socketio.server``)
rather than Flask-SocketIO's: Flask-SocketIO runs every event inside a Flask
request context, and building and tearing that down cost as much as validating,
matching and reporting the order itself (profiled: ~1.4 s of ~3.0 s handler time
for 6,300 orders). Order entry needs nothing from Flask.
"""

from __future__ import annotations

import logging

import socketio as _socketio

from api.auth import UNAUTHENTICATED_KEY
from api.errors import call_or_envelope, envelope
from api.parsing import BadPayload

log = logging.getLogger(__name__)

TRADE_NAMESPACE = "/trade"


class TradeNamespace(_socketio.Namespace):
    """``/trade``: ``order``, ``cancel``, ``amend`` and ``orders`` with acknowledgements."""

    def __init__(self, exchange, publisher=None, auth=None, limiter=None) -> None:
        super().__init__(TRADE_NAMESPACE)
        self.exchange = exchange
        self.publisher = publisher
        self.auth = auth if auth is not None and auth.on else None
        self.sessions: dict = {}  # sid -> (account, key), --auth on
        # ``api.ratelimit.RateLimiter`` or None (no limit); see ``limit_commands``.
        self.limiter = limiter
        # sid -> what the limiter counts against: the key (as REST's ``Auth.rate_key``), else the address
        self._rate_keys: dict[str, str] = {}

    def on_connect(self, sid, environ=None, auth=None):
        rate_key = (environ or {}).get("REMOTE_ADDR") or "-"
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
            rate_key = "k:" + found[1].key_hash
        self._rate_keys[sid] = rate_key
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, 1)

    def on_disconnect(self, sid, reason=None):
        self.sessions.pop(sid, None)
        self._rate_keys.pop(sid, None)
        if self.publisher is not None:
            self.publisher.client_connected(TRADE_NAMESPACE, -1)

    def on_order(self, sid, data=None, *extra):
        account, refusal = self._admit(sid, data, "order")
        if refusal is not None:
            return refusal
        place_order = self.exchange.place_order
        if account is not None:
            return call_or_envelope(lambda body: place_order(body, account), data, "in /trade order")
        return call_or_envelope(place_order, data, "in /trade order")

    def on_cancel(self, sid, data=None, *extra):
        account, refusal = self._admit(sid, data, "cancel")
        if refusal is not None:
            return refusal
        cancel_order = self.exchange.cancel_order
        if account is not None:
            return call_or_envelope(lambda body: cancel_order(body, account), data, "in /trade cancel")
        return call_or_envelope(cancel_order, data, "in /trade cancel")

    def on_amend(self, sid, data=None, *extra):
        account, refusal = self._admit(sid, data, "amend")
        if refusal is not None:
            return refusal
        amend_order = self.exchange.amend_order
        if account is not None:
            return call_or_envelope(lambda body: amend_order(body, account), data, "in /trade amend")
        return call_or_envelope(amend_order, data, "in /trade amend")

    def on_orders(self, sid, data=None, *extra):
        account, refusal = self._admit(sid, data, "order")
        if refusal is not None:
            return refusal
        place_orders = getattr(self.exchange, "place_orders", None)
        if place_orders is None:
            return envelope("NOT_SUPPORTED", "bulk order entry is not available")
        if account is not None:
            return call_or_envelope(lambda body: place_orders(body, account), data, "in /trade orders")
        return call_or_envelope(place_orders, data, "in /trade orders")

    def _admit(self, sid, data, request: str) -> tuple:
        """``(account, refusal)``: what REST would answer before reading the body,
        in REST's order: ``RATE_LIMITED``; ``UNAUTHENTICATED`` once the session's
        key is revoked; the body's framing error (``INVALID_JSON``,
        ``PAYLOAD_TOO_LARGE``), counted and audited as a rejection like REST's.
        ``refusal`` None: go ahead, for ``account`` (None with ``--auth off``)."""
        limiter = self.limiter
        if limiter is not None and not limiter.hit(self._rate_keys.get(sid, "-"))[0]:
            return None, limiter.refusal_envelope()
        account = None
        if self.auth is not None:
            found = self.sessions.get(sid)
            if found is None or found[1].revoked is not None:
                return None, envelope("UNAUTHENTICATED", UNAUTHENTICATED_KEY)
            account = found[0]
        if type(data) is BadPayload:
            try:
                self.exchange.reject(request, None, data.error)
            except Exception:  # the answer matters more than the count
                log.exception("counting a /trade rejection failed")
            return None, data.error.to_dict()
        return account, None


def limit_commands(socketio, limiter) -> None:
    """Count ``/trade`` commands against ``limiter`` (the REST one: one budget
    per API key, or per client address without one). ``socketio``: the Flask-SocketIO object whose server
    has the namespace (``api.market.init_socketio``)."""
    namespace = socketio.server.namespace_handlers.get(TRADE_NAMESPACE)
    if namespace is not None:
        namespace.limiter = limiter
