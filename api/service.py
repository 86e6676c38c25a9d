"""``Exchange``: the one place orders enter, shared by REST (``POST /order``,
``POST /orders``, ``POST /cancel``) and Socket.IO order entry (``/trade``).

Order path (``place_order``)::

    parse + validate (api.parsing)          no lock; a mistake changes nothing
    with engine.lock(symbol):               the symbol's critical section
        result = engine.submit(...)
        ticket = store.log_submit(result)   journal in book order; no IO here
    store.wait(ticket)                      durable before anyone hears of it
    publisher.on_submit(result)             cheap hand-off to the streaming task
    audit.submit(spec, result)              a deque append; written in the background
    return formatting.submit_report(...)

Collaborators are duck-typed and optional (``None`` = absent):

- ``store``: ``log_submit(result) -> ticket``, ``log_cancel(result) -> ticket``
  (called under the symbol lock), ``wait(ticket)`` (tickets become durable in
  ticket order: a batch waits for its last one), optionally
  ``maybe_snapshot(engine)`` (called after each wait),
  ``find_order(order_id) -> Order | dict | None`` for orders no longer in memory
  and ``stats() -> dict``.
- ``publisher``: ``on_submit(result, received_ns=...)``, ``on_cancel(result, received_ns=...)``
  (``received_ns``: ``time.perf_counter_ns()`` when the request entered the
  exchange, for the order-in -> event-out latency), optionally ``stats() -> dict``.
- ``audit``: ``api.audit.Audit``.

Accounts: every command and query takes the caller's ``account``
(``engine.accounts.Account``; None for the shared account of ``--auth off``,
the default for callers that do not pass one). The order gets the account as
its owner (and the body's ``stp``); another account's order is
``OrderNotFound``, exactly as if it did not exist. ``self.index``
(``api.account_index``) answers "my orders" and "my fills".

Errors are ``EngineError`` values (see ``api/errors.py`` for their HTTP codes);
``place_order_or_error`` / ``cancel_order_or_error`` return the error envelope
instead, for callers without HTTP (Socket.IO acknowledgements, bulk elements).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from decimal import Decimal
from time import perf_counter_ns

import msgspec

from api import formatting
from api.account_index import AccountIndex
from api.errors import call_or_envelope, internal_error_envelope
from api.parsing import OrderCommand, parse_cancel, parse_order, parse_order_id
from engine.errors import EngineError, OrderNotFound, OrderNotOpen, UnknownSymbol, ValidationError
from engine.matcher import MatchingEngine
from engine.order import Order

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # orders per POST /orders
MAX_BOOK_LEVELS = 1000  # ?levels above this are capped
MAX_TRADES = 1000  # ?limit above this is capped
MAX_LIST = 1000  # GET /orders and GET /fills: ?limit above this is capped
DEFAULT_LIST = 100
LATENCY_WINDOW = 10_000  # samples kept per latency figure

_encode = msgspec.json.encode  # compact, key order as built: what errors.json_response sends


class LatencyRecorder:
    """The last ``window`` durations (ns) and the all-time count and maximum.

    ``add`` is O(1) (a bounded deque append); ``summary`` sorts the window,
    O(w log w), and runs only when ``/statistics`` is asked.
    """

    __slots__ = ("samples", "count", "max_ns")

    def __init__(self, window: int = LATENCY_WINDOW) -> None:
        self.samples: deque[int] = deque(maxlen=window)
        self.count = 0
        self.max_ns = 0

    def add(self, ns: int) -> None:
        self.samples.append(ns)
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def summary(self) -> dict:
        """``{"count", "window", "p50_us", "p90_us", "p99_us", "max_us", "mean_us",
        "max_all_time_us"}``; percentiles and mean over the window, nearest rank."""
        data = sorted(self.samples)
        n = len(data)
        out = {"count": self.count, "window": n}
        if not n:
            out.update(p50_us=None, p90_us=None, p99_us=None, max_us=None, mean_us=None)
        else:

            def pct(p: float) -> float:
                return round(data[min(n - 1, int(p * n))] / 1000, 1)

            out.update(
                p50_us=pct(0.50),
                p90_us=pct(0.90),
                p99_us=pct(0.99),
                max_us=round(data[-1] / 1000, 1),
                mean_us=round(sum(data) / n / 1000, 1),
            )
        out["max_all_time_us"] = round(self.max_ns / 1000, 1)
        return out


class Exchange:
    """The service core: validated commands in, contract reports out."""

    def __init__(self, engine: MatchingEngine, *, store=None, publisher=None, audit=None) -> None:
        self.engine = engine
        self.store = store
        self.publisher = publisher
        self.audit = audit
        self.auth = None  # api.auth.Auth, set by the app factory (statistics only)
        self.index = AccountIndex(engine)
        self.started_at = time.time()
        self._started = time.monotonic()
        # Optional store hook: a snapshot when one is due, after acknowledging work.
        self._maybe_snapshot = getattr(store, "maybe_snapshot", None)
        self.rejections = 0  # every refused order or cancel, also those without a valid symbol
        self.journaled = 0  # records handed to the store (the group-commit yield watches it)
        self.latency = {
            "order_processing": LatencyRecorder(),
            "matching": LatencyRecorder(),
            "trade_report": LatencyRecorder(),
            "cancel_processing": LatencyRecorder(),
            "bulk_request": LatencyRecorder(),
        }

    # -- orders -----------------------------------------------------------------
    def place_order(self, body, account=None) -> dict:
        """Validate, match and report one order of ``account``.

        Runtime complexity: O(fields) + the engine's O(log L + fills).

        Raises:
            ValidationError, UnknownSymbol: the order is refused; nothing changed.
        """
        return self._place_order(body, False, account)

    def place_order_json(self, body, account=None) -> bytes:
        """``place_order``, its report as compact JSON (msgspec): encoded once, for
        the answer and for the audit log. Same errors."""
        return self._place_order(body, True, account)

    def _place_order(self, body, encode: bool, account=None):
        t0 = perf_counter_ns()
        cmd = self._parse(body)
        result, ticket = self._submit(cmd, None if account is None else account.account_id)
        if ticket is not None:
            self._durable(ticket)
        latency = self.latency
        if result.trades:
            t1 = perf_counter_ns()
            report = formatting.submit_report(cmd.spec, result)
            latency["trade_report"].add(perf_counter_ns() - t1)
        else:
            report = formatting.submit_report(cmd.spec, result)
        encoded = _encode(report) if encode else None
        self._after_submit(result, report, t0, encoded)
        latency["order_processing"].add(perf_counter_ns() - t0)
        return encoded if encode else report

    def place_orders(self, orders, account=None) -> list:
        """Bulk entry: each element is processed in order as by ``place_order``;
        the answer has one element per order, its report or its error envelope.
        Durability is awaited once for the batch, before anything is published.

        Raises:
            ValidationError (field ``orders``): not a list, or more than ``MAX_BATCH``.
        """
        return self._place_orders(orders, False, account)

    def place_orders_json(self, orders, account=None) -> bytes:
        """``place_orders``, the answer array as compact JSON (msgspec); each report
        is encoded once, for the answer and for the audit log. Same errors."""
        return self._place_orders(orders, True, account)

    def _place_orders(self, orders, encode: bool, account=None):
        if isinstance(orders, dict) and "orders" in orders:
            orders = orders["orders"]
        if not isinstance(orders, list):
            raise ValidationError("the body must be a JSON array of orders", "orders")
        if len(orders) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} orders per request, got {len(orders)}", "orders")
        t0 = perf_counter_ns()
        owner = None if account is None else account.account_id
        out: list = [None] * len(orders)
        accepted = []
        ticket = None
        for i, body in enumerate(orders):
            try:
                cmd = self._parse(body)
                result, logged = self._submit(cmd, owner)
            except EngineError as e:
                out[i] = e.to_dict()
                continue
            except Exception:
                log.exception("unexpected error in a bulk order")
                out[i] = internal_error_envelope()
                continue
            if logged is not None:
                ticket = logged
            accepted.append((i, cmd.spec, result))
        if ticket is not None:
            # Tickets are durable in order: waiting for the last covers the batch.
            self._durable(ticket)
        submit_report = formatting.submit_report
        publisher = self.publisher
        on_submit = publisher.on_submit if publisher is not None else None
        audit_submit = self.audit.submit if self.audit is not None else None
        index_add = self.index.add
        encoded = None
        for i, spec, result in accepted:
            index_add(result)
            out[i] = report = submit_report(spec, result)
            if encode:
                out[i] = encoded = _encode(report)
            if on_submit is not None:
                try:
                    on_submit(result, received_ns=t0)
                except Exception:
                    log.exception("publisher.on_submit failed")
            if audit_submit is not None:
                audit_submit(report, result.sequence, encoded, result.order.account_id)
                if result.cancelled:
                    self._audit_stp(spec, result)
        if encode:
            # msgspec encodes a list as "[" + ",".join(items) + "]": the same bytes
            out = b"[" + b",".join([o if type(o) is bytes else _encode(o) for o in out]) + b"]"
        self.latency["bulk_request"].add(perf_counter_ns() - t0)
        return out

    def cancel_order(self, body, account=None) -> dict:
        """Cancel a resting order of ``account``; the report has status ``cancelled``.

        Raises:
            ValidationError: no or a malformed ``order_id``.
            OrderNotFound: no order has this id (or another account's has).
            OrderNotOpen: it is already filled or cancelled.
        """
        t0 = perf_counter_ns()
        try:
            order_id = parse_cancel(body)
            order = self.engine.orders.get(order_id)
            if order is None or (account is not None and order.account_id != account.account_id):
                stored = self._stored_report(order_id, account) if order is None else None
                if stored is None:
                    raise OrderNotFound(order_id)
                raise OrderNotOpen(order_id, stored.get("status", "closed"))
            result, ticket = self._cancel_locked(order)
        except EngineError as e:
            self._reject("cancel", body, e)
            raise
        if ticket is not None:
            self._durable(ticket)
        report = self._after_cancel(result, t0)
        self.latency["cancel_processing"].add(perf_counter_ns() - t0)
        return report

    def cancel_all(self, body, account=None) -> dict:
        """``POST /cancel_all``: cancel every open order of ``account`` (in
        ``body["symbol"]`` if given); ``{"cancelled": [report, ...]}``, oldest
        first. Orders that fill or close meanwhile are left out. Each cancel is
        journaled as one; durability is awaited once, for the last.

        Runtime complexity: O(account's remembered orders + cancels).

        Raises:
            ValidationError: not an object, or a symbol that is not a string.
            UnknownSymbol: the symbol is not traded here (HTTP 400).
        """
        t0 = perf_counter_ns()
        if not isinstance(body, dict):
            raise ValidationError('the body must be {"symbol": "..."} or {}')
        symbol = body.get("symbol")
        if symbol is not None:
            if type(symbol) is not str:
                raise ValidationError("symbol must be a string", "symbol")
            if symbol not in self.engine.markets:
                raise UnknownSymbol(symbol, "symbol")
        owner = None if account is None else account.account_id
        results = []
        ticket = None
        for order in self.index.open_orders(owner, symbol):
            try:
                result, logged = self._cancel_locked(order)
            except OrderNotOpen:  # filled or cancelled since it was listed
                continue
            results.append(result)
            if logged is not None:
                ticket = logged
        if ticket is not None:
            self._durable(ticket)
        return {"cancelled": [self._after_cancel(result, t0) for result in results]}

    def _cancel_locked(self, order: Order):
        """Cancel ``order`` and journal it in its symbol's critical section:
        ``(CancelResult, ticket or None)``. Raises OrderNotOpen."""
        engine = self.engine
        store = self.store
        with engine.lock(order.symbol):
            result = engine.cancel(order.order_id)
            if store is not None:
                ticket = store.log_cancel(result)
                self.journaled += 1
            else:
                ticket = None
        return result, ticket

    def _after_cancel(self, result, received_ns: int) -> dict:
        """Report, publish and audit a durable cancel."""
        report = formatting.cancel_report(self.engine.markets[result.order.symbol].spec, result)
        publisher = self.publisher
        if publisher is not None:
            try:
                publisher.on_cancel(result, received_ns=received_ns)
            except Exception:
                log.exception("publisher.on_cancel failed")
        if self.audit is not None:
            self.audit.cancel(report, result.sequence, result.timestamp, result.order.account_id)
        return report

    def place_order_or_error(self, body, account=None) -> dict:
        """``place_order``, with any failure as an error envelope (never raises)."""
        return call_or_envelope(lambda b: self.place_order(b, account), body, "placing an order")

    def cancel_order_or_error(self, body, account=None) -> dict:
        """``cancel_order``, with any failure as an error envelope (never raises)."""
        return call_or_envelope(lambda b: self.cancel_order(b, account), body, "cancelling an order")

    def reject(self, request: str, body, error: EngineError) -> None:
        """Count and audit a request refused before it reached ``place_order``
        (e.g. a body that is not JSON)."""
        self._reject(request, body, error)

    # -- internals of the order path ---------------------------------------------
    def _parse(self, body) -> OrderCommand:
        try:
            return parse_order(self.engine, body)
        except EngineError as e:
            self._reject("order", body, e)
            raise

    def _submit(self, cmd: OrderCommand, owner: int | None = None):
        engine = self.engine
        store = self.store
        t0 = perf_counter_ns()
        with engine.markets[cmd.symbol].lock:  # engine.lock(symbol); parsing checked the symbol
            result = engine.submit(
                cmd.symbol,
                cmd.side,
                cmd.order_type,
                cmd.quantity,
                cmd.price,
                cmd.client_order_id,
                account_id=owner,
                stp=cmd.stp,
            )
            if store is not None:
                ticket = store.log_submit(result)
                self.journaled += 1
            else:
                ticket = None
        self.latency["matching"].add(perf_counter_ns() - t0)
        return result, ticket

    def _durable(self, ticket) -> None:
        self.store.wait(ticket)
        if self._maybe_snapshot is not None:
            self._maybe_snapshot(self.engine)

    def _after_submit(self, result, report: dict, received_ns: int, encoded: bytes | None = None) -> None:
        self.index.add(result)
        publisher = self.publisher
        if publisher is not None:
            try:
                publisher.on_submit(result, received_ns=received_ns)
            except Exception:
                log.exception("publisher.on_submit failed")
        if self.audit is not None:
            self.audit.submit(report, result.sequence, encoded, result.order.account_id)
            if result.cancelled:
                self._audit_stp(self.engine.markets[result.order.symbol].spec, result)

    def _audit_stp(self, spec, result) -> None:
        """A cancel line for each resting order self-trade prevention cancelled."""
        cancel = self.audit.cancel
        for order in result.cancelled:
            cancel(
                formatting.order_report(spec, order),
                result.sequence,
                result.order.timestamp,
                order.account_id,
            )

    def _reject(self, request: str, body, error: EngineError) -> None:
        self.rejections += 1
        if request == "order" and isinstance(body, dict):
            self.engine.record_rejection(body.get("symbol"))
        if self.audit is not None:
            self.audit.rejection(request, body, error)

    def _stored_report(self, order_id: int, account=None) -> dict | None:
        """The report of an order the engine has forgotten, from the store
        (only an ``Order`` of ``account`` when there is an account)."""
        find = getattr(self.store, "find_order", None)
        if find is None:
            return None
        found = find(order_id)
        if found is None:
            return None
        if isinstance(found, Order):
            market = self.engine.markets.get(found.symbol)
            if market is None or (account is not None and found.account_id != account.account_id):
                return None
            return formatting.order_report(market.spec, found)
        if isinstance(found, dict) and account is None:
            return found
        return None

    # -- queries ------------------------------------------------------------------
    def check_symbol(self, symbol: str):
        """The market of a symbol named in a URL path.

        Raises:
            UnknownSymbol: with no field, which maps to 404.
        """
        market = self.engine.markets.get(symbol)
        if market is None:
            raise UnknownSymbol(symbol, None)  # a path: 404
        return market

    def get_order(self, order_id: str, account=None) -> dict:
        """The order report as it stands now (``trades`` is empty).

        Raises:
            OrderNotFound: not an id, or no such order of ``account`` (in memory
            or in the store).
        """
        try:
            oid = parse_order_id(order_id)
        except ValidationError:
            raise OrderNotFound(order_id) from None
        order = self.engine.orders.get(oid)
        if order is not None and account is not None and order.account_id != account.account_id:
            raise OrderNotFound(order_id)
        if order is None:
            stored = self._stored_report(oid, account)
            if stored is None:
                raise OrderNotFound(order_id)
            return stored
        market = self.engine.markets[order.symbol]
        with market.lock:  # a consistent status/filled/notional triple
            return formatting.order_report(market.spec, order)

    def list_orders(self, account, symbol: str | None, status: str | None, limit: int) -> dict:
        """``GET /orders``: the account's orders, newest first.

        Raises:
            UnknownSymbol: (field ``symbol``, 400). ValidationError: a status
            other than ``open`` or ``all`` (field ``status``).
        """
        self._query_symbol(symbol)
        if status is None:
            status = "open"
        if status not in ("open", "all"):
            raise ValidationError("status must be 'open' or 'all'", "status")
        owner = None if account is None else account.account_id
        return {"orders": self.index.order_reports(owner, symbol, status == "open", limit)}

    def list_fills(self, account, symbol: str | None, limit: int) -> dict:
        """``GET /fills``: the account's fills, newest first. Raises UnknownSymbol."""
        self._query_symbol(symbol)
        owner = None if account is None else account.account_id
        return {"fills": self.index.fill_reports(owner, symbol, limit)}

    def _query_symbol(self, symbol) -> None:
        if symbol is not None and symbol not in self.engine.markets:
            raise UnknownSymbol(symbol, "symbol")

    def symbols(self) -> dict:
        return {"symbols": [m.spec.to_dict() for m in self.engine.markets.values()]}

    def book(self, symbol: str, levels: int = 10) -> dict:
        market = self.check_symbol(symbol)
        sequence, bids, asks = self.engine.depth(symbol, levels)
        return formatting.book_dict(market.spec, sequence, bids, asks, time.time_ns())

    def bbo(self, symbol: str) -> dict:
        market = self.check_symbol(symbol)
        sequence, bid, ask = self.engine.bbo(symbol)
        return formatting.bbo_dict(market.spec, sequence, bid, ask, time.time_ns())

    def trades(self, symbol: str, limit: int = 50) -> dict:
        market = self.check_symbol(symbol)
        spec = market.spec
        trades = self.engine.recent_trades(symbol, limit)
        return {"symbol": symbol, "trades": [formatting.trade_dict(spec, t) for t in trades]}

    def uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def health(self) -> dict:
        return {"status": "ok", "uptime_seconds": self.uptime()}

    def statistics(self) -> dict:
        """Counters, latency figures and collaborator stats (see Documentation/API.md)."""
        raw = self.engine.statistics()
        symbols = {}
        notional_by_quote: dict[str, Decimal] = {}
        for symbol, counters in raw["symbols"].items():
            spec = self.engine.markets[symbol].spec
            entry = dict(counters)
            entry["volume"] = spec.format_quantity(counters["volume"])
            entry["notional"] = spec.format_notional(counters["notional"])
            notional_by_quote[spec.quote] = notional_by_quote.get(spec.quote, Decimal(0)) + Decimal(
                entry["notional"]
            )
            symbols[symbol] = entry
        engine_totals = {k: v for k, v in raw["engine"].items() if k not in ("volume", "notional")}
        engine_totals["notional_by_quote"] = {q: f"{v:f}" for q, v in notional_by_quote.items()}
        engine_totals["rejections_all"] = self.rejections

        streaming = None
        publisher = self.publisher
        if publisher is not None and hasattr(publisher, "stats"):
            try:
                streaming = publisher.stats()
            except Exception:
                log.exception("publisher.stats failed")
        storage = None
        if self.store is not None and hasattr(self.store, "stats"):
            try:
                storage = self.store.stats()
            except Exception:
                log.exception("store.stats failed")
        connected = 0
        if isinstance(streaming, dict):
            connected = streaming.get("connected_clients", 0)
        accounts = None
        if self.auth is not None:
            accounts = self.auth.statistics()
        audit = None
        if self.audit is not None:
            audit = {"lines_written": self.audit.lines_written, "pending": len(self.audit._pending)}
        return {
            "timestamp": formatting.iso(time.time_ns()),
            "uptime_seconds": self.uptime(),
            "engine": engine_totals,
            "symbols": symbols,
            "latency": {name: rec.summary() for name, rec in self.latency.items()},
            "connected_clients": connected,
            "streaming": streaming,
            "storage": storage,
            "audit": audit,
            "accounts": accounts,
        }
