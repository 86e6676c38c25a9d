"""``Exchange``: the one place orders enter, shared by REST (``POST /order``,
``POST /orders``, ``POST /cancel``, ``POST /amend``) and Socket.IO order entry
(``/trade``). Good-till-time orders are expired here too (``expire_due``: at
start, before a command on a symbol with a due order, and by the expiry task
``run_expiries``), each by a journaled ``expire`` command.

Order path (``place_order``)::

    parse + validate (api.parsing)          no lock; a mistake changes nothing
    with engine.lock(symbol):               the symbol's critical section (with funds:
                                            one lock over every symbol)
        result = engine.submit(...)         may raise InsufficientFunds: nothing changed
        ticket = store.log_submit(result)   journal in book order; no IO here
        capture = balance_feed.capture(result)  only when somebody watches balances
    store.wait(ticket)                      durable before anyone hears of it
    balance_feed.release(capture)           ``balance`` events, in the ledger's order
    publisher.on_submit(result)             cheap hand-off to the streaming task
    audit.submit(spec, result)              a deque append; written in the background
    return formatting.submit_report(...)

What a client can see (Documentation/DURABILITY.md)
    Nothing of a command before its journal record is durable. Answers,
    events and audit lines follow ``store.wait``; every read of engine state
    (``GET /order/<id>``, ``/book``, ``/bbo``, ``/trades``, ``/statistics``)
    passes the *read barrier* after reading: ``store.wait_symbol(symbol)``,
    an int compare when the symbol's last record is durable (the common
    case), else a wait of at most ``read_timeout`` seconds, then
    ``SERVICE_UNAVAILABLE`` (503) rather than a state a crash could undo.

Fail-stop
    Once the store has failed (the journal cannot be written, its writer
    died, its file was deleted or replaced), every command is refused with
    ``SERVICE_UNAVAILABLE`` before it reaches the engine, a command whose
    ``wait`` failed is answered the same way (its record is cut from the
    journal: no trace after a restart), reads show only durable state (or
    503), and ``health()`` reports ``halted`` with the reason.

Collaborators are duck-typed and optional (``None`` = absent):

- ``store``: ``log_submit(result) -> ticket``, ``log_cancel(result) -> ticket``,
  ``log_amend(result) -> ticket``, ``log_expire(result) -> ticket`` (called under
  the symbol lock), ``wait(ticket)`` (tickets become durable in
  ticket order: a batch waits for its last one), ``failed`` / ``failure``,
  ``wait_symbol(symbol, timeout)`` and ``wait(ticket, timeout)`` with
  ``last_ticket()`` (the read barrier; optional: without them reads do not
  wait), optionally
  ``maybe_snapshot(engine)`` (called after each wait),
  ``find_order(order_id) -> Order | dict | None`` for orders no longer in memory
  and ``stats() -> dict``.
- ``publisher``: ``on_submit(result, received_ns=...)``, ``on_cancel(result, received_ns=...)``,
  ``on_amend(result, received_ns=...)``
  (``received_ns``: ``time.perf_counter_ns()`` when the request entered the
  exchange, for the order-in -> event-out latency), optionally ``stats() -> dict``.
- ``audit``: ``api.audit.Audit``.

Accounts: every command and query takes the caller's ``account``
(``engine.accounts.Account``; None for the shared account of ``--auth off``,
the default for callers that do not pass one). The order gets the account as
its owner (and the body's ``stp``); another account's order is
``OrderNotFound``, exactly as if it did not exist. ``self.index``
(``api.account_index``) answers "my orders" and "my fills".

Funds (``--auth on``: ``engine.ledger``): the engine checks and locks each
order's funds; refusals (``INSUFFICIENT_FUNDS``) are counted and audited like
any refused order. ``account`` answers ``GET /account`` and ``admin_accounts``
``GET /admin/accounts`` (balances and fees), both read in the critical
section and behind the read barrier (``funds_ticket``); ``statistics`` adds
``funds`` (conservation per asset, ``api.funds.conservation``). Every command
that journals also hands its result to ``balance_feed`` (``api.funds``).

Errors are ``EngineError`` values (see ``api/errors.py`` for their HTTP codes);
``place_order_or_error`` / ``cancel_order_or_error`` return the error envelope
instead, for callers without HTTP (Socket.IO acknowledgements, bulk elements).
"""

from __future__ import annotations

import itertools
import logging
import time
from decimal import Decimal
from time import perf_counter_ns

import msgspec

from api import formatting, funds
from api.account_index import AccountIndex
from api.auth import account_dict, admin_account_dict
from api.errors import HALTED, ServiceUnavailable, call_or_envelope, internal_error_envelope
from api.latency import LatencyWindow
from api.parsing import OrderCommand, parse_amend, parse_cancel, parse_order, parse_order_id
from engine.errors import EngineError, OrderNotFound, OrderNotOpen, UnknownSymbol, ValidationError
from engine.matcher import MatchingEngine
from engine.order import Order
from storage.errors import DurabilityTimeout, StoreError

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # orders per POST /orders
MAX_BOOK_LEVELS = 1000  # ?levels above this are capped
MAX_TRADES = 1000  # ?limit above this is capped
# How long a read waits for the record its state reflects to become durable
# before answering 503: a few fsyncs at the worst, far above the usual one
# (0.1-10 ms here); a writer that is stopped or stuck gets a 503, never the
# state it has not made durable.
READ_TIMEOUT = 2.0
MAX_LIST = 1000  # GET /orders and GET /fills: ?limit above this is capped
DEFAULT_LIST = 100
LATENCY_WINDOW = 10_000  # samples kept per latency figure
_MAX_LEVEL_PAIRS = 4 * MAX_BOOK_LEVELS  # formatted (price, total) pairs kept per symbol; emptied beyond

_encode = msgspec.json.encode  # compact, key order as built: what errors.json_response sends


_NOT_DURABLE = "the state is not durable yet (the journal is slow); retry"


class LatencyRecorder(LatencyWindow):
    """The last ``window`` durations (ns) and the all-time count and maximum.

    ``add`` is O(1) (~0.3 us: the window's histogram moves with it);
    ``summary`` is O(buckets), ~30 us whatever the window (``api/latency.py``):
    ``/statistics`` sorted each window, ~1 ms apiece, ~10 ms a call.
    """

    __slots__ = ()

    def __init__(self, window: int = LATENCY_WINDOW) -> None:
        super().__init__(window)

    def summary(self) -> dict:
        """``{"count", "window", "p50_us", "p90_us", "p99_us", "max_us", "mean_us",
        "max_all_time_us"}``; percentiles (nearest rank, to within 0.8%), maximum
        and mean (exact) over the window."""
        n = len(self.samples)
        out = {"count": self.count, "window": n}
        if not n:
            out.update(p50_us=None, p90_us=None, p99_us=None, max_us=None, mean_us=None)
        else:
            p50, p90, p99, top = self.percentiles((0.50, 0.90, 0.99, 1.0))
            out.update(
                p50_us=round(p50 / 1000, 1),
                p90_us=round(p90 / 1000, 1),
                p99_us=round(p99 / 1000, 1),
                max_us=round(min(top, self.max_ns) / 1000, 1),
                mean_us=round(self.total / n / 1000, 1),
            )
        out["max_all_time_us"] = round(self.max_ns / 1000, 1)
        return out


class Exchange:
    """The service core: validated commands in, contract reports out."""

    def __init__(
        self,
        engine: MatchingEngine,
        *,
        store=None,
        publisher=None,
        audit=None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.engine = engine
        self.store = store
        self.read_timeout = read_timeout
        self._can_fail = hasattr(store, "failed")  # fail-stop: a store without it never fails
        # The read barrier's hooks (None: a store without them, or none)
        self._wait_symbol = getattr(store, "wait_symbol", None)
        self._last_ticket = getattr(store, "last_ticket", None)
        self.publisher = publisher
        self.audit = audit
        self.auth = None  # api.auth.Auth, set by the app factory (statistics only)
        # api.funds.BalanceFeed (the private ``balance`` event), set by the app; None: no events
        self.balance_feed = None
        self.index = AccountIndex(engine)
        self.started_at = time.time()
        self._started = time.monotonic()
        # Optional store hook: a snapshot when one is due, after acknowledging work.
        self._maybe_snapshot = getattr(store, "maybe_snapshot", None)
        # Query caches (api/rest.py's reads): formatted book levels per symbol,
        # ``(price, total) -> [price, quantity]`` (shared, never mutated), and
        # encoded trades per symbol, ``trade_id -> (trade, bytes)``.
        self._level_pairs: dict[str, dict] = {}
        self._trade_json: dict[str, dict[int, tuple]] = {}
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
        if self._can_fail and self.store.failed:
            self._halted("order", body)
        cmd = self._parse(body)
        try:
            result, ticket, capture = self._submit(cmd, None if account is None else account.account_id)
        except EngineError as e:  # refused by the engine (INSUFFICIENT_FUNDS, a stop that would trigger)
            self._reject("order", body, e)
            raise
        if ticket is not None or capture is not None:
            self._durable_and_release(ticket, capture)
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
        if self._can_fail and self.store.failed:
            self._halted("order", orders)
        t0 = perf_counter_ns()
        owner = None if account is None else account.account_id
        out: list = [None] * len(orders)
        accepted = []
        ticket = None
        captures = []
        try:
            for i, body in enumerate(orders):
                try:
                    cmd = self._parse(body)  # (a refusal here is counted and audited by _parse)
                    try:
                        result, logged, capture = self._submit(cmd, owner)
                    except EngineError as e:  # refused by the engine: INSUFFICIENT_FUNDS, ...
                        self._reject("order", body, e)
                        raise
                except EngineError as e:
                    out[i] = e.to_dict()
                    continue
                except Exception:
                    log.exception("unexpected error in a bulk order")
                    out[i] = internal_error_envelope()
                    continue
                if logged is not None:
                    ticket = logged
                if capture is not None:
                    captures.append(capture)
                accepted.append((i, cmd.spec, result))
        except BaseException:
            self._release_anyway(ticket, captures)
            raise
        if ticket is not None or captures:
            # Tickets are durable in order: waiting for the last covers the batch.
            self._durable_and_release(ticket, captures)
        submit_report = formatting.submit_report
        publish = self._publish if self.publisher is not None else None
        audit_submit = self.audit.submit if self.audit is not None else None
        index_add = self.index.add
        encoded = None
        for i, spec, result in accepted:
            index_add(result)
            out[i] = report = submit_report(spec, result)
            if encode:
                out[i] = encoded = _encode(report)
            if publish is not None:
                publish("on_submit", result, t0)
            if audit_submit is not None:
                audit_submit(report, result.sequence, encoded, result.order.account_id)
                if result.cancelled or result.triggered:
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
        if self._can_fail and self.store.failed:
            self._halted("cancel", body)
        try:
            order_id = parse_cancel(body)
            order = self.engine.orders.get(order_id)
            if order is None or (account is not None and order.account_id != account.account_id):
                stored = self._stored_report(order_id, account) if order is None else None
                if stored is None:
                    raise OrderNotFound(order_id)
                raise OrderNotOpen(order_id, stored.get("status", "closed"))
            result, ticket, capture = self._cancel_locked(order)
        except EngineError as e:
            self._reject("cancel", body, e)
            raise
        if ticket is not None or capture is not None:
            self._durable_and_release(ticket, capture)
        report = self._after_cancel(result, t0)
        self.latency["cancel_processing"].add(perf_counter_ns() - t0)
        return report

    def amend_order(self, body, account=None) -> dict:
        """Amend an open or pending order of ``account`` in place (``POST
        /amend``); answers its report (``trades``: its fills as a taker when a
        new price crossed).

        Raises:
            ValidationError: malformed body, nothing to change, off the grid,
            ``quantity`` not above the filled part, a field the order lacks.
            OrderNotFound: no order has this id (or another account's has).
            OrderNotOpen: it is already filled or cancelled.
            ServiceUnavailable: trading is halted (the journal failed).
        """
        t0 = perf_counter_ns()
        engine = self.engine
        if self._can_fail and self.store.failed:
            self._halted("amend", body)
        try:
            if isinstance(body, dict):
                try:
                    oid = parse_order_id(body.get("order_id"))
                except (OrderNotFound, ValidationError):
                    oid = None
                if oid is not None:
                    known = engine.orders.get(oid)
                    if known is not None and account is not None and known.account_id != account.account_id:
                        raise OrderNotFound(oid)  # another account's: its existence is not revealed
                    if known is None:
                        stored = self._stored_report(oid, account)
                        if stored is not None:
                            raise OrderNotOpen(oid, stored.get("status", "closed"))
            order_id, quantity, price, stop_price = parse_amend(engine, body)
            order = engine.orders[order_id]
            if account is not None and order.account_id != account.account_id:
                raise OrderNotFound(order_id)
            store = self.store
            feed = self.balance_feed
            capture = None
            with engine.lock(order.symbol):
                result = engine.amend(order_id, quantity, price, stop_price)
                if store is not None:
                    ticket = store.log_amend(result)
                    self.journaled += 1
                else:
                    ticket = None
                if feed is not None and feed.watchers:
                    capture = feed.capture(result)
        except EngineError as e:
            self._reject("amend", body, e)
            raise
        if ticket is not None or capture is not None:
            self._durable_and_release(ticket, capture)
        self.index.add(result)
        report = formatting.submit_report(engine.markets[order.symbol].spec, result)
        self._publish("on_amend", result, t0)
        if self.audit is not None:
            self.audit.event("amend", report, result.sequence, result.timestamp, order.account_id)
            if result.cancelled or result.triggered:
                self._audit_stp(engine.markets[order.symbol].spec, result)
        self.latency["amend_processing"].add(perf_counter_ns() - t0)
        return report

    def amend_order_or_error(self, body, account=None) -> dict:
        """``amend_order``, with any failure as an error envelope (never raises)."""
        return call_or_envelope(lambda b: self.amend_order(b, account), body, "amending an order")

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
        if self._can_fail and store.failed:
            return []  # fail-stop: no command any more, expiries included (a restart expires them)
        symbols = [symbol] if symbol is not None else list(engine.markets)
        done = []
        ticket = None
        captures = []
        feed = self.balance_feed
        try:
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
                        if feed is not None and feed.watchers:
                            captures.append(feed.capture(result))
                    done.append(result)
        except BaseException:
            self._release_anyway(ticket, captures)
            raise
        if ticket is not None or captures:
            self._durable_and_release(ticket, captures)
        reports = []
        for result in done:
            report = formatting.cancel_report(engine.markets[result.order.symbol].spec, result)
            reports.append(report)
            self._publish("on_cancel", result)
            if self.audit is not None:
                self.audit.event("expire", report, result.sequence, result.timestamp, result.order.account_id)
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
        if self._can_fail and self.store.failed:
            self._halted("cancel", body)
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
        captures = []
        try:
            for order in self.index.open_orders(owner, symbol):
                try:
                    result, logged, capture = self._cancel_locked(order)
                except OrderNotOpen:  # filled or cancelled since it was listed
                    continue
                results.append(result)
                if logged is not None:
                    ticket = logged
                if capture is not None:
                    captures.append(capture)
        except BaseException:
            self._release_anyway(ticket, captures)
            raise
        if ticket is not None or captures:
            self._durable_and_release(ticket, captures)
        return {"cancelled": [self._after_cancel(result, t0) for result in results]}

    def _cancel_locked(self, order: Order):
        """Cancel ``order`` and journal it in its symbol's critical section:
        ``(CancelResult, ticket or None, balance capture or None)``. Raises OrderNotOpen."""
        engine = self.engine
        store = self.store
        feed = self.balance_feed
        capture = None
        with engine.lock(order.symbol):
            result = engine.cancel(order.order_id)
            if store is not None:
                ticket = store.log_cancel(result)
                self.journaled += 1
            else:
                ticket = None
            if feed is not None and feed.watchers:
                capture = feed.capture(result)
        return result, ticket, capture

    def _after_cancel(self, result, received_ns: int) -> dict:
        """Report, publish and audit a durable cancel."""
        report = formatting.cancel_report(self.engine.markets[result.order.symbol].spec, result)
        self._publish("on_cancel", result, received_ns)
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
                    cmd.symbol,
                    cmd.side,
                    cmd.order_type,
                    cmd.quantity,
                    cmd.price,
                    cmd.client_order_id,
                    None,
                    None,
                    None,
                    owner,
                    cmd.stp,
                )
            else:
                result = engine.submit_extended(
                    cmd.symbol,
                    cmd.side,
                    cmd.order_type,
                    cmd.quantity,
                    cmd.price,
                    cmd.client_order_id,
                    account_id=owner,
                    stp=cmd.stp,
                    **extras,
                )
            if store is not None:
                ticket = store.log_submit(result)
                self.journaled += 1
            else:
                ticket = None
            feed = self.balance_feed
            capture = feed.capture(result) if feed is not None and feed.watchers else None
        self.latency["matching"].add(perf_counter_ns() - t0)
        if extras is not None and "expire_time" in extras:
            self._ensure_expiry_task()
        return result, ticket, capture

    def _durable(self, ticket) -> None:
        try:
            self.store.wait(ticket)
        except StoreError as e:
            # The engine applied the command but its record is not durable and
            # never will be (the store failed; the record is cut from the
            # journal): it is refused like any command from now on, and stays
            # invisible (the read barrier).
            raise ServiceUnavailable(HALTED) from e
        if self._maybe_snapshot is not None:
            self._maybe_snapshot(self.engine)

    def _durable_and_release(self, ticket, captures) -> None:
        """``_durable(ticket)``, then release the commands' balance captures
        (``api.funds.BalanceFeed``): delivered once durable, skipped when the
        wait failed (the commands will never be durable)."""
        try:
            if ticket is not None:
                self._durable(ticket)
        except BaseException:
            if captures:
                self.balance_feed.release(captures, deliver=False)
            raise
        if captures:
            self.balance_feed.release(captures)

    def _release_anyway(self, ticket, captures) -> None:
        """A loop of commands (bulk, ``cancel_all``, expiries) stopped by an
        exception: the balance captures of the commands it made still go out
        once durable (or are skipped), so that the feed never waits for them.
        The loop's own exception is the one the caller re-raises."""
        if captures:
            try:
                self._durable_and_release(ticket, captures)
            except Exception:  # released or skipped inside; the original error is reported
                log.debug("releasing balance captures after a failed loop", exc_info=True)

    def _halted(self, request: str, body) -> None:
        """Refuse a command: the store failed (fail-stop). Nothing reaches the engine."""
        error = ServiceUnavailable(HALTED)
        self._reject(request, body, error)
        raise error

    def _visible_all(self) -> None:
        """The read barrier over every symbol (``_visible`` for a state that
        spans them): return once the last record of any symbol is durable.

        Raises:
            ServiceUnavailable: as ``_visible``.
        """
        if self._last_ticket is not None:
            try:
                self.store.wait(self._last_ticket(), self.read_timeout)
            except DurabilityTimeout as e:
                raise ServiceUnavailable(_NOT_DURABLE) from e
            except StoreError as e:
                raise ServiceUnavailable(HALTED) from e

    def _visible(self, symbol: str) -> None:
        """The read barrier, after reading ``symbol``'s state: return once
        what it reflects is durable (an int compare, usually).

        Raises:
            ServiceUnavailable: not durable within ``read_timeout``, or never
            (the store failed).
        """
        wait_symbol = self._wait_symbol
        if wait_symbol is not None:
            try:
                wait_symbol(symbol, self.read_timeout)
            except DurabilityTimeout as e:
                raise ServiceUnavailable(_NOT_DURABLE) from e
            except StoreError as e:
                raise ServiceUnavailable(HALTED) from e

    def _after_submit(self, result, report: dict, received_ns: int, encoded: bytes | None = None) -> None:
        self.index.add(result)
        self._publish("on_submit", result, received_ns)
        if self.audit is not None:
            self.audit.submit(report, result.sequence, encoded, result.order.account_id)
            if result.cancelled or result.triggered:
                self._audit_stp(self.engine.markets[result.order.symbol].spec, result)

    def _publish(self, event: str, result, received_ns: int | None = None) -> None:
        """Hand a durable result to the publisher (``event``: ``on_submit``,
        ``on_cancel`` or ``on_amend``); a publisher failure is logged, never
        the caller's (the command is done and durable)."""
        publisher = self.publisher
        if publisher is not None:
            try:
                getattr(publisher, event)(result, received_ns=received_ns)
            except Exception:
                log.exception("publisher.%s failed", event)

    def _audit_stp(self, spec, result) -> None:
        """A cancel line for each resting order self-trade prevention cancelled
        (by the command's order, or by a stop it triggered)."""
        cancel = self.audit.cancel
        for entry in (result, *result.triggered):
            for order in entry.cancelled:
                cancel(
                    formatting.order_report(spec, order),
                    result.sequence,
                    entry.order.timestamp,
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
            report = formatting.order_report(market.spec, order)
        self._visible(order.symbol)
        return report

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
        reports = self.index.order_reports(owner, symbol, status == "open", limit)
        if symbol is not None:
            self._visible(symbol)
        else:
            self._visible_all()
        return {"orders": reports}

    def list_fills(self, account, symbol: str | None, limit: int) -> dict:
        """``GET /fills``: the account's fills, newest first. Raises UnknownSymbol."""
        self._query_symbol(symbol)
        owner = None if account is None else account.account_id
        fills = self.index.fill_reports(owner, symbol, limit)
        if symbol is not None:
            self._visible(symbol)
        else:
            self._visible_all()
        return {"fills": fills}

    def funds_ticket(self) -> int:
        """The ticket of the last journaled record that balances may reflect
        (any symbol's command, a deposit or withdrawal: ``store.last_ticket``
        covers both); read it after the balances, in the same critical
        section. 0 without a store."""
        return self._last_ticket() if self._last_ticket is not None else 0

    def _visible_funds(self, ticket: int) -> None:
        """The read barrier for balances: return once ``ticket`` (``funds_ticket``,
        read with them) is durable.

        Raises:
            ServiceUnavailable: not durable within ``read_timeout``, or never.
        """
        if ticket and self.store is not None and hasattr(self.store, "wait"):
            try:
                self.store.wait(ticket, self.read_timeout)
            except DurabilityTimeout as e:
                raise ServiceUnavailable(_NOT_DURABLE) from e
            except StoreError as e:
                raise ServiceUnavailable(HALTED) from e

    def account(self, account=None) -> dict:
        """``GET /account``: ``{"account_id", "name", "balances"}`` (the shared
        account of ``--auth off`` has no balances). O(assets)."""
        engine = self.engine
        if engine.ledger is None or account is None:
            return account_dict(account)
        with engine.all_locks():
            answer = account_dict(account, engine.ledger)
            ticket = self.funds_ticket()
        self._visible_funds(ticket)
        return answer

    def admin_accounts(self, accounts) -> dict:
        """``GET /admin/accounts``: every account with its balances and keys,
        and the exchange's ``fees``. O(accounts x assets)."""
        engine = self.engine
        ledger = engine.ledger
        with engine.all_locks():
            listed = [admin_account_dict(a, ledger) for a in list(accounts)]
            fees = funds.fees_list(ledger)
            ticket = self.funds_ticket()
        self._visible_funds(ticket)
        return {"accounts": listed, "fees": fees}

    def _query_symbol(self, symbol) -> None:
        if symbol is not None and symbol not in self.engine.markets:
            raise UnknownSymbol(symbol, "symbol")

    def symbols(self) -> dict:
        return {"symbols": [m.spec.to_dict() for m in self.engine.markets.values()]}

    def book(self, symbol: str, levels: int = 10) -> dict:
        """``GET /book``. Runtime complexity: O(levels + log L), but each level
        costs a dict lookup when its ``(price, total)`` was formatted before
        (``_level_pairs``, ~1 MB per symbol at most): ~0.4 ms of a request for
        1,000 levels a side, not ~0.7 ms."""
        market = self.check_symbol(symbol)
        sequence, bids, asks = self.engine.depth(symbol, levels)
        pairs = self._level_pairs.get(symbol)
        if pairs is None or len(pairs) > _MAX_LEVEL_PAIRS:
            pairs = self._level_pairs[symbol] = {}
        get = pairs.get
        f = formatting.formatter(market.spec)
        fp, fq = f.price, f.quantity
        out = []
        for side in (bids, asks):
            formatted = []
            for level in side:
                pair = get(level)
                if pair is None:
                    pair = pairs[level] = [fp(level[0]), fq(level[1])]
                formatted.append(pair)
            out.append(formatted)
        self._visible(symbol)
        return {
            "timestamp": formatting.iso(time.time_ns()),
            "symbol": symbol,
            "sequence": sequence,
            "bids": out[0],
            "asks": out[1],
        }

    def bbo(self, symbol: str) -> dict:
        market = self.check_symbol(symbol)
        sequence, bid, ask = self.engine.bbo(symbol)
        self._visible(symbol)
        return formatting.bbo_dict(market.spec, sequence, bid, ask, time.time_ns())

    def trades(self, symbol: str, limit: int = 50) -> dict:
        market = self.check_symbol(symbol)
        spec = market.spec
        trades = self.engine.recent_trades(symbol, limit)
        self._visible(symbol)
        return {"symbol": symbol, "trades": [formatting.trade_dict(spec, t) for t in trades]}

    def trades_json(self, symbol: str, limit: int = 50) -> bytes:
        """``trades`` as compact JSON (the same bytes as encoding its dict). A
        trade never changes, so each is formatted and encoded once and kept for
        as long as ``GET /trades`` can return it (the last ``MAX_TRADES`` of its
        symbol; older ones are dropped in bulk): ``?limit=1000`` cost ~1.7 ms,
        a dict lookup per trade and one join now. Runtime complexity: O(limit).
        """
        market = self.check_symbol(symbol)
        spec = market.spec
        trades = self.engine.recent_trades(symbol, limit)
        self._visible(symbol)
        cache = self._trade_json.get(symbol)
        if cache is None:
            cache = self._trade_json[symbol] = {}
        parts = []
        for trade in trades:
            entry = cache.get(trade.trade_id)
            if entry is None or entry[0] is not trade:  # (the trade itself: ids are per engine)
                entry = cache[trade.trade_id] = (trade, _encode(formatting.trade_dict(spec, trade)))
            parts.append(entry[1])
        if len(cache) > 2 * MAX_TRADES:  # keep the newest MAX_TRADES (insertion order ~ trade order)
            for trade_id in list(itertools.islice(cache, len(cache) - MAX_TRADES)):
                del cache[trade_id]
        return b'{"symbol":%b,"trades":[%b]}' % (_encode(symbol), b",".join(parts))

    def uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def health(self) -> dict:
        """``{"status": "ok", "uptime_seconds"}``; after a journal fault
        ``{"status": "halted", "reason", "uptime_seconds"}`` (HTTP 503)."""
        store = self.store
        if self._can_fail and store.failed:
            return {"status": "halted", "reason": store.failure, "uptime_seconds": self.uptime()}
        return {"status": "ok", "uptime_seconds": self.uptime()}

    def statistics(self) -> dict:
        """Counters, latency figures and collaborator stats (see Documentation/API.md)."""
        raw = self.engine.statistics()
        self._visible_all()
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
            audit = self.audit.stats()
        funds_section = None
        if self.engine.ledger is not None:
            with self.engine.all_locks():
                funds_section = funds.conservation(self.engine.ledger)
                ticket = self.funds_ticket()
            self._visible_funds(ticket)
            if self.balance_feed is not None:
                funds_section["streaming"] = self.balance_feed.stats()
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
            "funds": funds_section,
        }
