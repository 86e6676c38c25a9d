"""``Exchange``: the one place orders enter, shared by REST (``POST /order``,
``POST /orders``, ``POST /cancel``, ``POST /amend``) and Socket.IO order entry
(``/trade``). Good-till-time orders are expired here too (``expire_due``: at
start, before a command on a symbol with a due order, and by the expiry task
``run_expiries``), each by a journaled ``expire`` command.

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

- ``store``: ``log_submit(result) -> ticket``, ``log_cancel(result) -> ticket``,
  ``log_amend(result) -> ticket``, ``log_expire(result) -> ticket`` (called under
  the symbol lock), ``wait(ticket)`` (tickets become durable in
  ticket order: a batch waits for its last one), optionally
  ``maybe_snapshot(engine)`` (called after each wait),
  ``find_order(order_id) -> Order | dict | None`` for orders no longer in memory
  and ``stats() -> dict``.
- ``publisher``: ``on_submit(result, received_ns=...)``, ``on_cancel(result, received_ns=...)``,
  ``on_amend(result, received_ns=...)``
  (``received_ns``: ``time.perf_counter_ns()`` when the request entered the
  exchange, for the order-in -> event-out latency), optionally ``stats() -> dict``.
- ``audit``: ``api.audit.Audit``.

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
from api.errors import call_or_envelope, internal_error_envelope
from api.parsing import OrderCommand, parse_amend, parse_cancel, parse_order, parse_order_id
from engine.errors import EngineError, OrderNotFound, OrderNotOpen, UnknownSymbol, ValidationError
from engine.matcher import MatchingEngine
from engine.order import Order

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # orders per POST /orders
MAX_BOOK_LEVELS = 1000  # ?levels above this are capped
MAX_TRADES = 1000  # ?limit above this is capped
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
        self.started_at = time.time()
        self._started = time.monotonic()
        # Optional store hook: a snapshot when one is due, after acknowledging work.
        self._maybe_snapshot = getattr(store, "maybe_snapshot", None)
        self.rejections = 0  # every refused order or cancel, also those without a valid symbol
        self.journaled = 0  # records handed to the store (the group-commit yield watches it)
        self.closed = False  # set by close_app: background loops end
        # Starts the expiry task (``run_expiries``); set by the app. Until
        # then (tests without one), good-till-time orders expire only when a
        # command on their symbol finds them due, or by ``expire_due``.
        self.start_expiry_task = None
        self._expiry_task_started = False
        self.latency = {
            "order_processing": LatencyRecorder(),
            "matching": LatencyRecorder(),
            "trade_report": LatencyRecorder(),
            "cancel_processing": LatencyRecorder(),
            "bulk_request": LatencyRecorder(),
            "amend_processing": LatencyRecorder(),
        }

    # -- orders -----------------------------------------------------------------
    def place_order(self, body) -> dict:
        """Validate, match and report one order.

        Runtime complexity: O(fields) + the engine's O(log L + fills).

        Raises:
            ValidationError, UnknownSymbol: the order is refused; nothing changed.
        """
        return self._place_order(body, False)

    def place_order_json(self, body) -> bytes:
        """``place_order``, its report as compact JSON (msgspec): encoded once, for
        the answer and for the audit log. Same errors."""
        return self._place_order(body, True)

    def _place_order(self, body, encode: bool):
        t0 = perf_counter_ns()
        cmd = self._parse(body)
        result, ticket = self._submit(cmd)
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

    def place_orders(self, orders) -> list:
        """Bulk entry: each element is processed in order as by ``place_order``;
        the answer has one element per order, its report or its error envelope.
        Durability is awaited once for the batch, before anything is published.

        Raises:
            ValidationError (field ``orders``): not a list, or more than ``MAX_BATCH``.
        """
        return self._place_orders(orders, False)

    def place_orders_json(self, orders) -> bytes:
        """``place_orders``, the answer array as compact JSON (msgspec); each report
        is encoded once, for the answer and for the audit log. Same errors."""
        return self._place_orders(orders, True)

    def _place_orders(self, orders, encode: bool):
        if isinstance(orders, dict) and "orders" in orders:
            orders = orders["orders"]
        if not isinstance(orders, list):
            raise ValidationError("the body must be a JSON array of orders", "orders")
        if len(orders) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} orders per request, got {len(orders)}", "orders")
        t0 = perf_counter_ns()
        out: list = [None] * len(orders)
        accepted = []
        ticket = None
        for i, body in enumerate(orders):
            try:
                cmd = self._parse(body)
                result, logged = self._submit(cmd)
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
        encoded = None
        for i, spec, result in accepted:
            out[i] = report = submit_report(spec, result)
            if encode:
                out[i] = encoded = _encode(report)
            if on_submit is not None:
                try:
                    on_submit(result, received_ns=t0)
                except Exception:
                    log.exception("publisher.on_submit failed")
            if audit_submit is not None:
                audit_submit(report, result.sequence, encoded)
        if encode:
            # msgspec encodes a list as "[" + ",".join(items) + "]": the same bytes
            out = b"[" + b",".join([o if type(o) is bytes else _encode(o) for o in out]) + b"]"
        self.latency["bulk_request"].add(perf_counter_ns() - t0)
        return out

    def cancel_order(self, body) -> dict:
        """Cancel a resting order; the report has status ``cancelled``.

        Raises:
            ValidationError: no or a malformed ``order_id``.
            OrderNotFound: no order has this id.
            OrderNotOpen: it is already filled or cancelled.
        """
        t0 = perf_counter_ns()
        try:
            order_id = parse_cancel(body)
            order = self.engine.orders.get(order_id)
            if order is None:
                stored = self._stored_report(order_id)
                if stored is None:
                    raise OrderNotFound(order_id)
                raise OrderNotOpen(order_id, stored.get("status", "closed"))
            engine = self.engine
            store = self.store
            with engine.lock(order.symbol):
                result = engine.cancel(order_id)
                if store is not None:
                    ticket = store.log_cancel(result)
                    self.journaled += 1
                else:
                    ticket = None
        except EngineError as e:
            self._reject("cancel", body, e)
            raise
        if ticket is not None:
            self._durable(ticket)
        report = formatting.cancel_report(engine.markets[order.symbol].spec, result)
        publisher = self.publisher
        if publisher is not None:
            try:
                publisher.on_cancel(result, received_ns=t0)
            except Exception:
                log.exception("publisher.on_cancel failed")
        if self.audit is not None:
            self.audit.cancel(report, result.sequence, result.timestamp)
        self.latency["cancel_processing"].add(perf_counter_ns() - t0)
        return report

    def amend_order(self, body) -> dict:
        """Amend an open or pending order in place (``POST /amend``); answers
        its report (``trades``: its fills as a taker when a new price crossed).

        Raises:
            ValidationError: malformed body, nothing to change, off the grid,
            ``quantity`` not above the filled part, a field the order lacks.
            OrderNotFound: no order has this id.
            OrderNotOpen: it is already filled or cancelled.
        """
        t0 = perf_counter_ns()
        engine = self.engine
        try:
            if isinstance(body, dict):
                try:
                    oid = parse_order_id(body.get("order_id"))
                except OrderNotFound:
                    oid = None
                if oid is not None and oid not in engine.orders:
                    stored = self._stored_report(oid)
                    if stored is not None:
                        raise OrderNotOpen(oid, stored.get("status", "closed"))
            order_id, quantity, price, stop_price = parse_amend(engine, body)
            order = engine.orders[order_id]
            store = self.store
            with engine.lock(order.symbol):
                result = engine.amend(order_id, quantity, price, stop_price)
                if store is not None:
                    ticket = store.log_amend(result)
                    self.journaled += 1
                else:
                    ticket = None
        except EngineError as e:
            self._reject("amend", body, e)
            raise
        if ticket is not None:
            self._durable(ticket)
        report = formatting.submit_report(engine.markets[order.symbol].spec, result)
        publisher = self.publisher
        if publisher is not None:
            try:
                publisher.on_amend(result, received_ns=t0)
            except Exception:
                log.exception("publisher.on_amend failed")
        if self.audit is not None:
            self.audit.event("amend", report, result.sequence, result.timestamp)
        self.latency["amend_processing"].add(perf_counter_ns() - t0)
        return report

    def amend_order_or_error(self, body) -> dict:
        """``amend_order``, with any failure as an error envelope (never raises)."""
        return call_or_envelope(self.amend_order, body, "amending an order")

    def expire_due(self, symbol: str | None = None) -> list[dict]:
        """Expire every good-till-time order whose ``expire_time`` has passed
        (of ``symbol``, or of all symbols): one journaled ``expire`` command
        each, published as ``order_event cancelled`` (``cancel_reason``
        ``expired``). Returns their reports. Called at start (before any new
        command), by the expiry task, and before a command on a symbol with a
        due order. O(k log n) for k expired.

        Raises:
            JournalWriteError: the journal cannot be written.
        """
        engine = self.engine
        store = self.store
        symbols = [symbol] if symbol is not None else list(engine.markets)
        done = []
        ticket = None
        for name in symbols:
            now = time.time_ns()
            for order_id in engine.due_expiries(name, now):
                with engine.lock(name):
                    try:
                        result = engine.expire(order_id, timestamp=now)
                    except EngineError:  # closed meanwhile
                        continue
                    if store is not None:
                        ticket = store.log_expire(result)
                        self.journaled += 1
                done.append(result)
        if ticket is not None:
            self._durable(ticket)
        reports = []
        for result in done:
            report = formatting.cancel_report(engine.markets[result.order.symbol].spec, result)
            reports.append(report)
            if self.publisher is not None:
                try:
                    self.publisher.on_cancel(result)
                except Exception:
                    log.exception("publisher.on_cancel failed")
            if self.audit is not None:
                self.audit.event("expire", report, result.sequence, result.timestamp)
        return reports

    def next_expiry(self) -> int | None:
        """The earliest ``expire_time`` (ns) among the open orders, or None. O(symbols)."""
        times = [t for t in map(self.engine.next_expiry, self.engine.markets) if t is not None]
        return min(times) if times else None

    def run_expiries(self, sleep, idle: float = 0.5) -> None:
        """The expiry task: expire what is due, sleep until the next
        ``expire_time`` (at most ``idle`` seconds: an order accepted meanwhile
        may expire sooner), until ``closed``."""
        while not self.closed:
            try:
                self.expire_due()
                nxt = self.next_expiry()
            except Exception:  # keep the task alive; the log says why
                log.exception("expiring good-till-time orders failed")
                nxt = None
            wait = idle if nxt is None else min(idle, max(0.001, (nxt - time.time_ns()) / 1e9))
            sleep(wait)

    def _ensure_expiry_task(self) -> None:
        if not self._expiry_task_started and self.start_expiry_task is not None:
            self._expiry_task_started = True
            self.start_expiry_task()

    def place_order_or_error(self, body) -> dict:
        """``place_order``, with any failure as an error envelope (never raises)."""
        return call_or_envelope(self.place_order, body, "placing an order")

    def cancel_order_or_error(self, body) -> dict:
        """``cancel_order``, with any failure as an error envelope (never raises)."""
        return call_or_envelope(self.cancel_order, body, "cancelling an order")

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

    def _submit(self, cmd: OrderCommand):
        engine = self.engine
        store = self.store
        market = engine.markets[cmd.symbol]  # parsing checked the symbol
        expiries = market.expiries
        if expiries and expiries[0][0] <= time.time_ns():
            # A good-till-time order is due: expire it before this command can trade with it.
            self.expire_due(cmd.symbol)
        t0 = perf_counter_ns()
        extras = cmd.extras
        with market.lock:  # engine.lock(symbol)
            if extras is None:
                result = engine.submit(
                    cmd.symbol, cmd.side, cmd.order_type, cmd.quantity, cmd.price, cmd.client_order_id
                )
            else:
                result = engine.submit_extended(
                    cmd.symbol,
                    cmd.side,
                    cmd.order_type,
                    cmd.quantity,
                    cmd.price,
                    cmd.client_order_id,
                    **extras,
                )
            if store is not None:
                ticket = store.log_submit(result)
                self.journaled += 1
            else:
                ticket = None
        self.latency["matching"].add(perf_counter_ns() - t0)
        if extras is not None and "expire_time" in extras:
            self._ensure_expiry_task()
        return result, ticket

    def _durable(self, ticket) -> None:
        self.store.wait(ticket)
        if self._maybe_snapshot is not None:
            self._maybe_snapshot(self.engine)

    def _after_submit(self, result, report: dict, received_ns: int, encoded: bytes | None = None) -> None:
        publisher = self.publisher
        if publisher is not None:
            try:
                publisher.on_submit(result, received_ns=received_ns)
            except Exception:
                log.exception("publisher.on_submit failed")
        if self.audit is not None:
            self.audit.submit(report, result.sequence, encoded)

    def _reject(self, request: str, body, error: EngineError) -> None:
        self.rejections += 1
        if request == "order" and isinstance(body, dict):
            self.engine.record_rejection(body.get("symbol"))
        if self.audit is not None:
            self.audit.rejection(request, body, error)

    def _stored_report(self, order_id: int) -> dict | None:
        """The report of an order the engine has forgotten, from the store."""
        find = getattr(self.store, "find_order", None)
        if find is None:
            return None
        found = find(order_id)
        if found is None:
            return None
        if isinstance(found, Order):
            market = self.engine.markets.get(found.symbol)
            if market is None:
                return None
            return formatting.order_report(market.spec, found)
        if isinstance(found, dict):
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

    def get_order(self, order_id: str) -> dict:
        """The order report as it stands now (``trades`` is empty).

        Raises:
            OrderNotFound: not an id, or no such order (in memory or in the store).
        """
        try:
            oid = parse_order_id(order_id)
        except ValidationError:
            raise OrderNotFound(order_id) from None
        order = self.engine.orders.get(oid)
        if order is None:
            stored = self._stored_report(oid)
            if stored is None:
                raise OrderNotFound(order_id)
            return stored
        market = self.engine.markets[order.symbol]
        with market.lock:  # a consistent status/filled/notional triple
            return formatting.order_report(market.spec, order)

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
        }
