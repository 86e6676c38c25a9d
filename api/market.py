"""Socket.IO market data (namespace ``/market``) and its publisher.

``init_socketio(socketio, exchange)`` registers the ``/market`` namespace and the
``/trade`` order-entry namespace (``api/trade_ws.py``) and returns the
``Publisher`` the exchange calls after every command.

Subscriptions (``/market``)
    ``subscribe`` / ``unsubscribe`` with ``{"type", "symbol"[, "depth"]}``; the
    acknowledgement is ``{"ok": true}`` or the contract's error envelope (and then
    nothing changed). Each subscription is a room:

    ==================  =============================  ===========================
    type                room                           symbol
    ==================  =============================  ===========================
    ``l2_updates``      ``l2_updates:<symbol>:<N>``    required; ``depth`` N 1..100
    ``bbo``             ``bbo:<symbol>``               required
    ``trades``          ``trades:<symbol>``            missing/null: ``trades:*``
    ``order_events``    ``order_events:<symbol>``      missing/null: ``order_events:*``
    ==================  =============================  ===========================

    Private order events (``--auth on``): a client that connected with
    ``auth={"api_key": KEY}`` subscribes to its own account's order events,
    in ``order_events:<account_id>:<symbol>`` (or ``:*``); each order's events
    go to its owner's rooms only (a trade's maker and taker may be two
    accounts). Without a key -- or once its key is revoked -- subscribing to
    ``order_events`` is answered ``UNAUTHENTICATED``; revoking a key also
    takes its connections out of their private rooms at once. A connection
    with a key that is not valid is refused. ``--auth off``: the rooms above,
    as before (one shared account).

    Subscribing to ``l2_updates`` or ``bbo`` sends the current state to the client
    before the acknowledgement (see *Snapshots* below).

    Private balances: ``{"type": "balances"}`` (no symbol) subscribes a keyed
    connection to its account's ``balance`` events (``api.funds.BalanceFeed``,
    room ``balances:<account_id>``): one at once with the account as ``GET
    /account`` shows it (before the acknowledgement), then one after every
    durable command that changed its balances, in the ledger's order. Without
    a key (or once it is revoked) the answer is ``UNAUTHENTICATED``; revoking
    the key ends the events at once. ``--auth off``: one event with the shared
    account and its empty balances list. Everything private is sent through
    one hook, ``Publisher.publish_private(event, account_id, payload)``.

Events a command produces (liquibook style: collected by the engine while the book
changes, delivered here afterwards, in this order)
    submit: ``order_event accepted`` (the taker as accepted: status ``new``,
            nothing filled); then for each fill, in ``trade_id`` order, ``trade``
            and the maker's ``order_event`` (``partially_filled`` or ``filled``);
            then the taker's final ``order_event`` unless it simply rests with
            nothing filled: ``filled``, ``partially_filled`` (rests, part filled)
            or ``cancelled`` (market/IOC/FOK remainder removed; a killed FOK and a
            market order against an empty side too). That final report is exactly
            the ``POST /order`` answer, ``trades`` included. A stop or
            take-profit is accepted with status ``pending`` and has no final
            event until it triggers.
            Then, for each stop the command's trades triggered, in the order
            they entered: ``order_event triggered`` (the order as it enters:
            status ``new``, its ``order_type`` and ``stop_price`` kept), its
            trades and makers' events, and its final event as above.
    amend:  the trades (and makers' events) of a new price that crossed, then
            ``order_event amended`` (the ``POST /amend`` answer), then the
            stops it triggered, as above.
    cancel: ``order_event cancelled`` (the ``POST /cancel`` answer); an
            expired good-till-time order likewise, ``cancel_reason``
            ``expired``.
    Either, when it changed the book: ``l2_update`` / ``bbo`` (conflated, below).
    A client in both ``trades:BTC-USDT`` and ``trades:*`` gets each trade once.

Ordering
    The exchange calls ``on_submit``/``on_cancel`` after the symbol lock is
    released, so two threads can report in the other order than the book
    executed. The publisher restores book order: per symbol it releases
    book-changing results in ``sequence`` order, and results with trades in
    global ``trade_id`` order, holding an out-of-order result for at most
    ``hold`` seconds (a result that never arrives must not stall the stream).
    Results that changed nothing (a killed FOK) have no place in that order and
    go out at once.

Conflation (``l2_update``, ``bbo``)
    The book events are not built from the results but read from the engine:
    after each batch the background task compares every book room's last sent
    ``sequence`` with the symbol's current one and, if it advanced, sends the
    current state (top N levels, or BBO) -- at most once per interval per
    room, the interval growing with the room's size (``interval_per_member``
    per member, at most ``min_interval``: 0.1 ms for one subscriber, 5 ms from
    50 on), which bounds the deliveries a busy symbol costs. Intermediate states may be skipped; the ``sequence`` a room sees
    never decreases (the room state and the subscribe snapshot are computed and
    sent under one lock); the latest state goes out within ``min_interval`` plus
    one batch of the last change (well under 100 ms), also if a result was never
    reported, because the engine's sequence is polled every ``tick`` seconds.
    ``bbo`` is sent after every book change of its symbol (its ``sequence``
    advanced), also when the best prices did not move: the latest ``bbo`` a
    subscriber holds then always equals ``GET /bbo``.

Durability (Documentation/DURABILITY.md, "What a client can see")
    Nothing is published before the journal record it reflects is durable.
    Results arrive here after ``store.wait``. A book state read from the
    engine carries the ticket of its symbol's last journaled record
    (``store.ticket_of``, read after the state); it goes out only once that
    record is durable (``store.durable``, an int compare): a pass that reads
    a state whose record is not durable yet holds it (``_held_books``) and
    sends it in a later pass, when it is, instead of reading again (under
    constant load the newest state is rarely durable: reading again could
    starve the rooms). A subscription whose snapshot is not durable waits for
    it (at most ``read_timeout``; then it is refused with
    ``SERVICE_UNAVAILABLE`` and nothing changed).

Snapshots
    On subscribing to a book room the handler computes the current state and,
    when the room's other members are behind it (or it has none), sends it to the
    whole room (so nobody receives a duplicate or an older state later); otherwise
    only to the new member. It always arrives before the acknowledgement.

Cost on the order path
    ``on_submit``/``on_cancel`` append to a deque and set an event: a few
    microseconds, independent of the number of subscribers. Everything else --
    formatting, fan-out, slow clients -- happens in one background task
    (``socketio.start_background_task``, started lazily), which drains results
    for at most about ``pass_budget`` (5 ms) per pass and yields between passes
    (eventlet serves requests in between). Passes are paced like the book rooms
    (``interval_per_member`` per ``/market`` client, at most ``min_interval``), so
    that under load one pass -- one write per client -- carries many results.
    Rooms without members cost nothing beyond bookkeeping; while no room has a
    member, results are dropped unformatted (only the sequencer's baselines move).

Slow consumers
    Delivery to a client is buffered by Engine.IO per client; ``api.sessions``
    caps what one client (and one client address) may have waiting (bytes
    queued or being written, ``--send-queue-bytes``) and disconnects a client that falls that far
    behind, rather than dropping anything from its stream: trades are never
    dropped or conflated for a client that stays connected. ``stats`` merges
    the guard's counters (``slow_consumers_disconnected`` ...).

Known limits
    The publisher's own result queue is unbounded: it is drained by one task
    that never waits for a client.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque

from flask import request
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room

from api import formatting
from api.errors import envelope, internal_error_envelope
from api.latency import LatencyWindow as _LatencyWindow
from api.parsing import BadPayload
from engine.events import AmendResult, CancelResult
from engine.order import NEW, PENDING

log = logging.getLogger(__name__)

MARKET_NAMESPACE = "/market"
TRADE_NAMESPACE = "/trade"
TYPES = ("l2_updates", "bbo", "trades", "order_events")
BALANCES = "balances"  # the private balances subscription (MarketNamespace, api.funds)
# private event -> the prefix of its owner's room (``private_room``)
PRIVATE_ROOMS = {"balance": BALANCES}
DEFAULT_DEPTH = 10
MAX_DEPTH = 100
ALL = "*"

_OK = {"ok": True}
_perf_ns = time.perf_counter_ns
_EPOCH_NS = 10**17  # a receive time above this is epoch ns (time.time_ns), not perf_counter_ns


class LatencyWindow(_LatencyWindow):
    """The last ``size`` latency samples (ns) and their percentiles.

    A bounded window rather than a lifetime histogram: ``/statistics`` is for
    watching a running server, and recent figures are what moves. ``add`` is
    O(1) and ``summary`` O(buckets), ~30 us (``api/latency.py``; sorting the
    window cost ~1 ms per summary).
    """

    __slots__ = ()

    def summary(self) -> dict:
        """``count`` (lifetime), ``window`` and p50/p90/p99/p99.9/max in ms
        (nearest rank, to within 0.8%)."""
        n = len(self.samples)
        out = {"count": self.count, "window": n}
        values = self.percentiles((0.50, 0.90, 0.99, 0.999, 1.0)) if n else [None] * 5
        for name, value in zip(("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"), values, strict=True):
            out[name] = round(value / 1e6, 3) if value is not None else None
        return out


class BookRoom:
    """State of one ``l2_updates`` or ``bbo`` room: what it last received, when,
    and the receive times of reported changes it has not been sent yet."""

    __slots__ = ("name", "kind", "symbol", "depth", "last_seq", "last_emit_ns", "waiting")

    def __init__(self, name: str, kind: str, symbol: str, depth: int) -> None:
        self.name = name
        self.kind = kind  # "l2_updates" | "bbo"
        self.symbol = symbol
        self.depth = depth  # 0 for bbo
        self.last_seq = -1
        self.last_emit_ns = 0
        self.waiting: list[int] = []


def room_name(kind: str, symbol: str | None, depth: int = 0, owner: int | None = None) -> str:
    if kind == "l2_updates":
        return f"l2_updates:{symbol}:{depth}"
    if owner is not None and kind == "order_events":
        return f"order_events:{owner}:{symbol if symbol is not None else ALL}"
    return f"{kind}:{symbol if symbol is not None else ALL}"


def private_room(event: str, account_id: int) -> str:
    """The room of ``account_id``'s keyed connections that receive ``event``."""
    return f"{PRIVATE_ROOMS[event]}:{account_id}"


class Publisher:
    """Fans engine results out to ``/market`` rooms from one background task.

    The exchange calls ``on_submit``/``on_cancel`` (cheap, never blocks); the
    namespace calls ``subscribe``/``unsubscribe``/``forget``; ``/statistics``
    calls ``stats``. See the module docstring for order and conflation rules.
    """

    def __init__(
        self,
        socketio,
        engine,
        *,
        min_interval: float = 0.005,
        interval_per_member: float = 0.0001,
        hold: float = 0.02,
        tick: float = 0.05,
        pass_budget: float = 0.005,
        chunk: int = 16,
        latency_window: int = 10_000,
        sessions=None,
        store=None,
        read_timeout: float = 2.0,
    ) -> None:
        self.socketio = socketio
        self.sessions = sessions  # api.sessions.SessionGuard, for its counters
        self.engine = engine
        # The durability gate (None without a store: every state is final).
        self.store = store
        self.read_timeout = read_timeout
        self._ticket_of = getattr(store, "ticket_of", None)
        self._durable = getattr(store, "durable", None)
        # symbol -> a book state read before its record was durable, sent when it is
        self._held_books: dict[str, tuple] = {}
        self.min_interval_ns = int(min_interval * 1e9)
        self.interval_per_member_ns = int(interval_per_member * 1e9)
        self.hold_ns = int(hold * 1e9)
        self.tick = tick
        self.pass_budget_ns = int(pass_budget * 1e9)
        self.chunk = chunk
        self._queue: deque = deque()
        self._wake = None
        self._task = None
        self._stopped = False
        self._start_lock = threading.Lock()
        # Guards room membership and book-room state: the subscribe handler and
        # the background task both send book states, and their order must be the
        # order in which they were read from the engine.
        self._lock = threading.RLock()
        # The sequencer's state below: held by every pass, and by a first
        # subscription, which drops what is queued before it joins (``_skip``).
        # Taken before ``_lock`` where both are held.
        self._seq_lock = threading.Lock()
        self.members: dict[str, set[str]] = {}
        self.by_sid: dict[str, set[str]] = {}
        self.book_rooms: dict[str, dict[str, BookRoom]] = {s: {} for s in engine.markets}
        self.clients = {MARKET_NAMESPACE: 0, TRADE_NAMESPACE: 0}
        # sequencer state (passes of the background task; see _seq_lock)
        self._pending: dict[str, list] = {s: [] for s in engine.markets}
        self._last_seq: dict[str, int] = {}
        self._last_trade_id = 0
        self._tie = itertools.count()
        # counters
        self.events: dict[str, int] = {"trade": 0, "order_event": 0, "l2_update": 0, "bbo": 0}
        self.deliveries = 0
        self.results = 0
        self.reordered = 0
        self.late = 0
        self.latency = {
            "bbo": LatencyWindow(latency_window),
            "l2_update": LatencyWindow(latency_window),
            "trade": LatencyWindow(latency_window),
            "order_event": LatencyWindow(latency_window),
        }

    # -- the exchange's side ----------------------------------------------------
    def on_submit(self, result, received_ns: int | None = None) -> None:
        """Queue a ``SubmitResult`` for publication. O(1); never blocks on clients.

        ``received_ns`` (or ``result.received_ns``) is when the order was received,
        ``time.perf_counter_ns()`` preferred (``time.time_ns()`` is recognised);
        without it the time of this call is used.
        """
        self._queue.append((result, self._received(result, received_ns)))
        if self._task is None:
            self._start()
        if not self.members:
            # Nobody subscribed: the pass every ``tick`` drops the queue. No
            # wake-up per order (a switch to this task and a pass each: ~5% of
            # a REST order's CPU flat out).
            return
        wake = self._wake
        if not wake.is_set():  # set() takes a lock and notifies: ~2 us a call under eventlet
            wake.set()

    on_cancel = on_submit  # a CancelResult travels the same queue
    on_amend = on_submit  # and an AmendResult

    @staticmethod
    def _received(result, received_ns) -> int:
        if received_ns is None:
            received_ns = getattr(result, "received_ns", None)
            if received_ns is None:
                return _perf_ns()
        if received_ns > _EPOCH_NS:
            return _perf_ns() - (time.time_ns() - received_ns)
        return received_ns

    def _start(self) -> None:
        with self._start_lock:
            if self._task is not None:
                return
            self._wake = self.socketio.server.eio.create_event()
            self._init_baselines()
            self._task = self.socketio.start_background_task(self._run)

    def _init_baselines(self) -> None:
        """Results at or below the engine's state now are released at once."""
        last_trade = getattr(self.engine, "_last_trade_id", 0) or 0
        for symbol, market in self.engine.markets.items():
            self._last_seq[symbol] = market.sequence
            if market.trades:
                last_trade = max(last_trade, market.trades[-1].trade_id)
        self._last_trade_id = last_trade

    def publish_private(self, event: str, account_id: int, payload: dict) -> None:
        """Send a private event to ``account_id``'s subscribed keyed
        connections (``private_room``): the one hook of owner-addressed events
        (``balance``). Called in the order the events must arrive."""
        self.socketio.emit(event, payload, to=private_room(event, account_id), namespace=MARKET_NAMESPACE)

    def close(self) -> None:
        """Stop the background task (tests; a server just exits)."""
        self._stopped = True
        if self._wake is not None:
            self._wake.set()

    # -- the background task -------------------------------------------------
    def _run(self) -> None:
        sleep = self.socketio.sleep
        while not self._stopped:
            started = _perf_ns()
            timeout = self._pass_safely()
            # Pacing: with many subscribers, let results gather for the rest of
            # the pace interval so that one pass -- one write per client --
            # carries them all. A pass after a quiet spell starts at once.
            rest = (started + self._pace_ns() - _perf_ns()) / 1e9
            if rest > 0:
                sleep(rest)
                timeout = max(0.0, timeout - rest)
            if timeout > 0 and not self._queue:
                self._wake.wait(timeout)
                self._wake.clear()
            else:
                sleep(0)
        log.debug("market publisher stopped")

    def _pace_ns(self) -> int:
        """The least time between two passes: ``interval_per_member`` per
        ``/market`` client, at most ``min_interval`` (the book rooms' rule)."""
        return min(self.min_interval_ns, self.clients[MARKET_NAMESPACE] * self.interval_per_member_ns)

    def _pass_safely(self) -> float:
        try:
            with self._seq_lock:
                return self._pass()
        except Exception:  # one bad result must not end market data for everyone
            log.exception("market publisher pass failed")
            return self.tick

    def _pass(self) -> float:
        """Drain queued results in chunks -- send what is in book order after
        each chunk -- until the queue is empty or ``pass_budget`` is spent, then
        send the book rooms that are due. Returns how long to wait before the
        next pass (0: more work queued; the caller yields first).

        The budget matters in eventlet mode: the pass runs without yielding,
        and at 50 subscribers a few hundred results take long enough to stall
        every request."""
        self._wake.clear()
        queue = self._queue
        if not self.members:
            self.results += self._skip()
            return self.tick
        budget_end = _perf_ns() + self.pass_budget_ns
        chunk = self.chunk
        while True:
            now = _perf_ns()
            n = min(len(queue), chunk)
            for _ in range(n):
                result, received = queue.popleft()
                self._admit(result, received, now)
            self.results += n
            deadline = self._release(_perf_ns())
            if not queue or _perf_ns() >= budget_end:
                break
        book_deadline = self._publish_books(_perf_ns())
        if queue:
            return 0.0
        now = _perf_ns()
        wait = self.tick
        for d in (deadline, book_deadline):
            if d is not None:
                wait = min(wait, max(0.0, (d - now) / 1e9))
        return wait

    def _skip(self) -> int:
        """Nobody is subscribed to anything: drop the queued and held results,
        only moving the sequencer's baselines to where they would have got, so
        that the results after a first subscription go out in order at once.
        Called holding ``_seq_lock``: by a pass, and by the first subscription
        before it joins (so that nothing from before it reaches it; results
        are queued without waking the task while nobody listens). Returns how
        many results were queued."""
        queue, last_seq = self._queue, self._last_seq
        last_trade = self._last_trade_id
        results = [entry[3] for heap in self._pending.values() for entry in heap]
        for heap in self._pending.values():
            heap.clear()
        n = len(queue)
        results += [queue.popleft()[0] for _ in range(n)]
        for result in results:
            if type(result) is not CancelResult:
                if not result.book_changed:
                    continue  # a killed FOK: no place in the book's order
                trades = result.all_trades()
                if trades and trades[-1].trade_id > last_trade:
                    last_trade = trades[-1].trade_id
            symbol = result.order.symbol
            if result.sequence > last_seq.get(symbol, -1):
                last_seq[symbol] = result.sequence
        self._last_trade_id = last_trade
        return n

    def _admit(self, result, received: int, now: int) -> None:
        order = result.order
        symbol = order.symbol
        is_cancel = isinstance(result, CancelResult)
        if not result.book_changed:  # a killed FOK, a pending stop accepted or cancelled
            self._send(result, received, is_cancel)
            return
        seq = result.sequence
        self._note_book_change(symbol, seq, received)
        if seq <= self._last_seq.get(symbol, -1):
            self.late += 1  # behind what was already sent (a gap given up on, or before the task started)
            trades = None if is_cancel else result.all_trades()
            if trades and trades[-1].trade_id > self._last_trade_id:
                self._last_trade_id = trades[-1].trade_id
            self._send(result, received, is_cancel)
            return
        heapq.heappush(self._pending[symbol], (seq, next(self._tie), now, result, received, is_cancel))

    def _release(self, now: int) -> int | None:
        """Send the pending results that are next in book order, or have waited
        ``hold``. Returns the earliest time a held result will be released."""
        hold = self.hold_ns
        last_seq = self._last_seq
        progress = True
        while progress:
            progress = False
            for symbol, heap in self._pending.items():
                while heap:
                    seq, _, arrived, result, received, is_cancel = heap[0]
                    expired = now - arrived >= hold
                    if seq != last_seq.get(symbol, -1) + 1 and not expired:
                        break
                    trades = None if is_cancel else result.all_trades()
                    if trades and trades[0].trade_id > self._last_trade_id + 1 and not expired:
                        break
                    if expired and (seq != last_seq.get(symbol, -1) + 1):
                        self.reordered += 1
                    heapq.heappop(heap)
                    last_seq[symbol] = seq
                    if trades and trades[-1].trade_id > self._last_trade_id:
                        self._last_trade_id = trades[-1].trade_id
                    self._send(result, received, is_cancel)
                    progress = True
        deadline = None
        for heap in self._pending.values():
            if heap:
                due = heap[0][2] + hold
                deadline = due if deadline is None else min(deadline, due)
        return deadline

    def _send(self, result, received: int, is_cancel: bool) -> None:
        """Emit the trades and order events of one result, in the documented order."""
        members = self.members
        if not members:  # nobody subscribed to anything: nothing to format
            return
        order = result.order
        symbol = order.symbol
        owner = order.account_id
        oe_rooms = self._oe_rooms(owner, symbol)
        if is_cancel:
            if oe_rooms:
                spec = self.engine.spec(symbol)
                self._emit_stream(
                    "order_event",
                    {"event": "cancelled", "order": formatting.cancel_report(spec, result)},
                    oe_rooms,
                    received,
                )
            return
        tr_rooms = [r for r in (f"trades:{symbol}", "trades:*") if members.get(r)]
        triggered = result.triggered
        # Order events go to each order's owner: a maker's, a triggered stop's
        # may be another's rooms.
        rooms_of = {owner: oe_rooms}
        for entry in (result, *triggered) if triggered else (result,):
            others = [t.maker for t in entry.trades]
            others += entry.cancelled
            if entry is not result:
                others.append(entry.order)
            for other in others:
                if other.account_id not in rooms_of:
                    rooms_of[other.account_id] = self._oe_rooms(other.account_id, symbol)
        if not tr_rooms and not any(rooms_of.values()):
            return
        spec = self.engine.spec(symbol)
        if type(result) is AmendResult:
            self._send_fills(spec, result, rooms_of, tr_rooms, received)
            if oe_rooms:
                report = formatting.submit_report(spec, result)
                self._emit_stream("order_event", {"event": "amended", "order": report}, oe_rooms, received)
        else:
            if oe_rooms:
                accepted = formatting.order_report(
                    spec, order, result.status if result.status is PENDING else NEW, 0, 0
                )
                self._emit_stream("order_event", {"event": "accepted", "order": accepted}, oe_rooms, received)
            self._send_fills(spec, result, rooms_of, tr_rooms, received)
            if oe_rooms and result.status is not NEW and result.status is not PENDING:
                report = formatting.submit_report(spec, result)
                self._emit_stream(
                    "order_event", {"event": report["status"], "order": report}, oe_rooms, received
                )
        for entry in triggered:
            entry_rooms = rooms_of[entry.order.account_id]
            if entry_rooms:
                entered = formatting.order_report(spec, entry.order, NEW, 0, 0)
                self._emit_stream(
                    "order_event", {"event": "triggered", "order": entered}, entry_rooms, received
                )
            self._send_fills(spec, entry, rooms_of, tr_rooms, received)
            if entry_rooms and entry.status is not NEW:
                report = formatting.submit_report(spec, entry)
                self._emit_stream(
                    "order_event", {"event": report["status"], "order": report}, entry_rooms, received
                )

    def _send_fills(self, spec, result, rooms_of: dict, tr_rooms: list[str], received: int) -> None:
        """Each trade of ``result`` and its maker's ``order_event``, in execution
        order; then the resting orders self-trade prevention cancelled."""
        for trade in result.trades:
            if tr_rooms:
                self._emit_stream("trade", formatting.trade_dict(spec, trade), tr_rooms, received)
            maker_rooms = rooms_of[trade.maker.account_id]
            if maker_rooms:
                report = formatting.maker_report(spec, trade)
                self._emit_stream(
                    "order_event", {"event": report["status"], "order": report}, maker_rooms, received
                )
        for maker in result.cancelled:
            maker_rooms = rooms_of[maker.account_id]
            if maker_rooms:
                report = formatting.order_report(spec, maker)
                self._emit_stream(
                    "order_event", {"event": "cancelled", "order": report}, maker_rooms, received
                )

    def _oe_rooms(self, owner: int | None, symbol: str) -> list[str]:
        """The order-event rooms with members that an order of ``owner`` in
        ``symbol`` goes to."""
        members = self.members
        if owner is None:
            names = (f"order_events:{symbol}", "order_events:*")
        else:
            names = (f"order_events:{owner}:{symbol}", f"order_events:{owner}:*")
        return [r for r in names if members.get(r)]

    def _emit_stream(self, event: str, payload: dict, rooms: list[str], received: int) -> None:
        self.socketio.emit(
            event, payload, to=rooms if len(rooms) > 1 else rooms[0], namespace=MARKET_NAMESPACE
        )
        self.events[event] += 1
        self.deliveries += sum(len(self.members.get(r, ())) for r in rooms)
        self.latency[event].add(_perf_ns() - received)

    # -- book rooms (l2_update, bbo) -----------------------------------------
    def _note_book_change(self, symbol: str, seq: int, received: int) -> None:
        """Attribute a reported change to the book rooms' latency figures."""
        rooms = self.book_rooms[symbol]
        if not rooms:
            return
        with self._lock:
            for room in rooms.values():
                if not self.members.get(room.name):
                    continue
                if room.last_seq >= seq:  # already sent (the state was read before the report came)
                    self.latency[_EVENT[room.kind]].add(room.last_emit_ns - received)
                elif len(room.waiting) < 100_000:
                    room.waiting.append(received)

    def _publish_books(self, now: int) -> int | None:
        """Send the current state to every book room whose symbol's sequence
        moved past what the room last got, at most once per the room's interval.
        Returns when the next throttled room falls due."""
        deadline = None
        markets = self.engine.markets
        held_books = self._held_books
        for symbol, rooms in self.book_rooms.items():
            if not rooms:
                continue
            held = held_books.get(symbol)
            if held is not None:
                if not self._is_durable(held):
                    continue  # nothing of this symbol before its record is durable
                if not any(r.last_seq < held[0] and self.members.get(r.name) for r in list(rooms.values())):
                    del held_books[symbol]  # every room has it or a later one
                    held = None
            current = markets[symbol].sequence if held is None else held[0]
            due = []
            for room in list(rooms.values()):  # a subscribe (another thread) may add a room
                members = self.members.get(room.name)
                if room.last_seq >= current or not members:
                    continue
                interval = min(self.min_interval_ns, len(members) * self.interval_per_member_ns)
                ready_at = room.last_emit_ns + interval
                if ready_at > now:
                    deadline = ready_at if deadline is None else min(deadline, ready_at)
                else:
                    due.append(room)
            if due:
                with self._lock:
                    if held is None:
                        held = self._read_book_state(symbol, max(r.depth for r in due))
                        if not self._is_durable(held):
                            held_books[symbol] = held  # sent by a later pass, once durable
                            continue
                    else:
                        del held_books[symbol]
                    self._send_book_state(symbol, due, None, held)
        return deadline

    def _read_book_state(self, symbol: str, depth: int) -> tuple:
        """``(sequence, ticket, depth, bids, asks, bid, ask)``: the symbol's
        top ``depth`` levels (0: the BBO only) and, read after them, the
        ticket of its last journaled record (0 without a store)."""
        engine = self.engine
        if depth:
            seq, bids, asks = engine.depth(symbol, depth)
            bid = bids[0] if bids else None
            ask = asks[0] if asks else None
        else:
            seq, bid, ask = engine.bbo(symbol)
            bids = asks = None
        ticket = self._ticket_of(symbol) if self._ticket_of is not None else 0
        return (seq, ticket, depth, bids, asks, bid, ask)

    def _is_durable(self, state: tuple) -> bool:
        """Whether a state from ``_read_book_state`` may be shown: its record is durable."""
        return self._durable is None or self._durable(state[1])

    def _send_book_state(
        self, symbol: str, rooms: list[BookRoom], only_sid: str | None, state: tuple
    ) -> None:
        """Send ``state`` (``_read_book_state``, durable) to ``rooms`` (or,
        with ``only_sid``, to that client alone). A room deeper than the
        state was read skips it (the next state covers it). Caller holds
        ``self._lock``."""
        seq, _ticket, depth, bids, asks, bid, ask = state
        spec = self.engine.spec(symbol)
        ts = time.time_ns()
        for room in rooms:
            if only_sid is None and seq <= room.last_seq:
                continue
            if room.depth > depth:
                continue
            if room.kind == "bbo":
                event, payload = "bbo", formatting.bbo_dict(spec, seq, bid, ask, ts)
            else:
                n = room.depth
                event, payload = "l2_update", formatting.book_dict(spec, seq, bids[:n], asks[:n], ts)
            self.socketio.emit(event, payload, to=only_sid or room.name, namespace=MARKET_NAMESPACE)
            self.events[event] += 1
            if only_sid is not None:
                self.deliveries += 1
                continue
            self.deliveries += len(self.members.get(room.name, ()))
            sent = _perf_ns()
            room.last_seq = seq
            room.last_emit_ns = sent
            if room.waiting:
                window = self.latency[event]
                for received in room.waiting:
                    window.add(sent - received)
                room.waiting.clear()

    # -- subscriptions ---------------------------------------------------------
    def subscribe(self, sid: str, data, owner: int | None = None) -> dict:
        """Validate ``data``, join the room, send the snapshot of a book room.
        ``owner``: the account whose order events the client may receive (None:
        the shared rooms of ``--auth off``). Returns the acknowledgement."""
        parsed = self._parse(data, subscribing=True)
        if "error" in parsed:
            return parsed
        kind, symbol, depth = parsed["type"], parsed["symbol"], parsed["depth"]
        name = room_name(kind, symbol, depth, owner)
        pending = None
        with self._seq_lock, self._lock:
            if not self.members:
                self.results += self._skip()
            members = self.members.setdefault(name, set())
            others_before = bool(members - {sid})
            join_room(name, sid=sid, namespace=MARKET_NAMESPACE)
            members.add(sid)
            self.by_sid.setdefault(sid, set()).add(name)
            if kind in ("l2_updates", "bbo"):
                room = self.book_rooms[symbol].get(name)
                if room is None:
                    room = self.book_rooms[symbol][name] = BookRoom(name, kind, symbol, depth)
                state = self._read_book_state(symbol, room.depth)
                if not self._is_durable(state):
                    pending = (room, state, room.last_seq)
                elif not others_before or room.last_seq < state[0]:
                    # everybody in the room gets the new state: no duplicate later
                    room.last_seq = -1
                    self._send_book_state(symbol, [room], None, state)
                else:
                    self._send_book_state(symbol, [room], sid, state)
        if self._task is None:
            self._start()
        if pending is not None:
            return self._send_when_durable(sid, data, name, symbol, *pending)
        return _OK

    def _send_when_durable(self, sid: str, data, name: str, symbol: str, room, state, joined_seq) -> dict:
        """A subscription's snapshot whose record is not durable yet: wait
        for it (at most ``read_timeout``), outside the locks, then send it
        unless the room has already sent the client as new a state since it
        joined. On timeout or a failed store, leave the room and refuse."""
        try:
            self.store.wait(state[1], self.read_timeout)
        except Exception as exc:  # DurabilityTimeout, JournalWriteError
            log.warning("/market subscribe: the book state is not durable: %s", exc)
            self.unsubscribe(sid, data)
            return envelope(
                "SERVICE_UNAVAILABLE", "the book state is not durable yet (the journal is slow); retry"
            )
        with self._seq_lock, self._lock:
            if name not in self.by_sid.get(sid, ()):
                return _OK  # unsubscribed meanwhile
            if room.last_seq < state[0]:
                self._send_book_state(symbol, [room], None, state)
            elif room.last_seq == joined_seq:
                self._send_book_state(symbol, [room], sid, state)
        return _OK

    def unsubscribe(self, sid: str, data, owner: int | None = None) -> dict:
        """Leave the room(s) ``data`` names; ``l2_updates`` without ``depth``
        leaves every depth of the symbol. Unsubscribing from a room one is not
        in is not an error."""
        parsed = self._parse(data, subscribing=False)
        if "error" in parsed:
            return parsed
        kind, symbol, depth = parsed["type"], parsed["symbol"], parsed["depth"]
        with self._lock:
            mine = self.by_sid.get(sid, set())
            if kind == "l2_updates" and depth is None:
                prefix = f"l2_updates:{symbol}:"
                names = [n for n in mine if n.startswith(prefix)]
            else:
                names = [room_name(kind, symbol, depth, owner)]
            for name in names:
                if name in mine:
                    leave_room(name, sid=sid, namespace=MARKET_NAMESPACE)
                    self._drop(sid, name)
        return _OK

    def leave_private(self, sid: str, owner: int) -> None:
        """Take a client out of ``owner``'s order-event rooms (its key was revoked)."""
        prefix = f"order_events:{owner}:"
        with self._lock:
            for name in [n for n in self.by_sid.get(sid, ()) if n.startswith(prefix)]:
                self.socketio.server.leave_room(sid, name, namespace=MARKET_NAMESPACE)
                self._drop(sid, name)

    def forget(self, sid: str) -> None:
        """A client disconnected: drop its memberships (Socket.IO drops the rooms)."""
        with self._lock:
            for name in list(self.by_sid.get(sid, ())):
                self._drop(sid, name)
            self.by_sid.pop(sid, None)

    def _drop(self, sid: str, name: str) -> None:
        members = self.members.get(name)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.members[name]
        mine = self.by_sid.get(sid)
        if mine is not None:
            mine.discard(name)

    def _parse(self, data, subscribing: bool) -> dict:
        """``{"type", "symbol", "depth"}`` with defaults applied, or an error envelope."""
        verb = "subscribe" if subscribing else "unsubscribe"
        if type(data) is BadPayload:  # not valid JSON (api.parsing.SocketJSON): as REST would say
            return data.error.to_dict()
        if not isinstance(data, dict):
            return envelope("VALIDATION_ERROR", f'{verb} takes an object {{"type", "symbol"[, "depth"]}}')
        kind = data.get("type")
        if kind not in TYPES:
            if kind is None:
                return envelope("VALIDATION_ERROR", "type is required: " + ", ".join(TYPES), "type")
            return envelope("VALIDATION_ERROR", "type must be one of " + ", ".join(TYPES), "type")
        symbol = data.get("symbol")
        if symbol is None:
            if kind in ("l2_updates", "bbo"):
                return envelope("VALIDATION_ERROR", f"symbol is required for {kind}", "symbol")
        elif not isinstance(symbol, str):
            return envelope("VALIDATION_ERROR", "symbol must be a string", "symbol")
        elif symbol not in self.engine.markets:
            return envelope("UNKNOWN_SYMBOL", f"unknown symbol {symbol[:40]!r}", "symbol")
        depth = 0
        if kind == "l2_updates":
            raw = data.get("depth")
            if raw is None:
                depth = DEFAULT_DEPTH if subscribing else None
            elif type(raw) is not int or not 1 <= raw <= MAX_DEPTH:
                return envelope(
                    "VALIDATION_ERROR", f"depth must be an integer from 1 to {MAX_DEPTH}", "depth"
                )
            else:
                depth = raw
        return {"type": kind, "symbol": symbol, "depth": depth}

    # -- statistics ------------------------------------------------------------
    def client_connected(self, namespace: str, delta: int) -> None:
        with self._lock:
            self.clients[namespace] = max(0, self.clients.get(namespace, 0) + delta)

    def stats(self) -> dict:
        """Clients per namespace, members per room, events sent, queue depth and
        latency percentiles (receive -> emit, ms) over the last samples."""
        with self._lock:
            rooms = {name: len(sids) for name, sids in sorted(self.members.items())}
            clients = dict(self.clients)
        stats = {
            "connected_clients": sum(clients.values()),
            "clients": clients,
            "subscriptions": rooms,
            "events_emitted": dict(self.events),
            "deliveries": self.deliveries,
            "results_published": self.results,
            "queue_depth": len(self._queue),
            "held_out_of_order": sum(len(h) for h in self._pending.values()),
            "released_after_hold": self.reordered,
            "reported_late": self.late,
            "latency": {
                "bbo_update": self.latency["bbo"].summary(),
                "l2_update": self.latency["l2_update"].summary(),
                "trade_publication": self.latency["trade"].summary(),
                "order_event": self.latency["order_event"].summary(),
            },
            "background_task": self._task is not None and not self._stopped,
        }
        if self.sessions is not None:
            stats.update(self.sessions.stats())
        return stats


_EVENT = {"bbo": "bbo", "l2_updates": "l2_update"}


class MarketNamespace(Namespace):
    """``/market``: ``subscribe`` and ``unsubscribe``, answered through the ack.

    ``auth`` (``api.auth.Auth``, optional): with ``--auth on`` a connection may
    bring a key (``auth={"api_key": ...}``); ``sessions`` maps its sid to
    ``(account, key)``. A key that is not valid refuses the connection.
    ``exchange`` and ``feed`` (``api.funds.BalanceFeed``, with funds): the
    ``balances`` subscription."""

    def __init__(self, publisher: Publisher, auth=None, exchange=None, feed=None) -> None:
        super().__init__(MARKET_NAMESPACE)
        self.publisher = publisher
        self.auth = auth
        self.exchange = exchange
        self.feed = feed
        self.sessions: dict = {}
        if auth is not None:
            auth.revoke_listeners.append(self._revoked)

    def on_connect(self, auth=None):
        if self.auth is not None and self.auth.on:
            try:
                found = self.auth.session(auth, request.environ)
            except Exception as e:  # Unauthenticated: refuse, with the contract's envelope
                raise ConnectionRefusedError(_refusal(e)) from None
            if found is not None:
                self.sessions[request.sid] = found
        self.publisher.client_connected(MARKET_NAMESPACE, 1)

    def on_disconnect(self, reason=None):
        sid = request.sid
        self.sessions.pop(sid, None)
        self.publisher.client_connected(MARKET_NAMESPACE, -1)
        self.publisher.forget(sid)
        if self.feed is not None:
            self.feed.unsubscribe(sid)

    def _owner(self, sid: str, data):
        """``(owner, None)`` for a subscription, or ``(None, error envelope)``:
        ``order_events`` and ``balances`` with ``--auth on`` need a connection
        with a live key."""
        if self.auth is None or not self.auth.on:
            return None, None
        if not (isinstance(data, dict) and data.get("type") in ("order_events", BALANCES)):
            return None, None
        found = self.sessions.get(sid)
        if found is None or found[1].revoked is not None:
            return None, envelope(
                "UNAUTHENTICATED",
                f'{data.get("type")} needs a valid API key at connect: auth={{"api_key": KEY}}',
            )
        return found[0].account_id, None

    def on_subscribe(self, data=None, *extra):
        sid = request.sid
        owner, error = self._owner(sid, data)
        if error is not None:
            return error
        if isinstance(data, dict) and data.get("type") == BALANCES:
            return _guard("subscribe", self._subscribe_balances, sid, owner)
        return _guard("subscribe", self.publisher.subscribe, sid, data, owner)

    def on_unsubscribe(self, data=None, *extra):
        sid = request.sid
        owner, error = self._owner(sid, data)
        if error is not None:
            return error
        if isinstance(data, dict) and data.get("type") == BALANCES:
            if self.feed is not None:
                _guard("unsubscribe", self.feed.unsubscribe, sid)
            return _OK
        return _guard("unsubscribe", self.publisher.unsubscribe, sid, data, owner)

    def _subscribe_balances(self, sid: str, owner: int | None) -> dict:
        """Send the account's balances now, then after every change (``api.funds``)."""
        feed = self.feed
        if self.auth is None:  # no accounts here (a market-data edge): the engine has the balances
            return envelope(
                "UNAUTHENTICATED",
                "balances are private and served by the engine process: subscribe there with your API key",
            )
        if owner is None or feed is None:  # --auth off: the shared account, no balances
            from api.auth import account_dict

            self.socketio.emit("balance", account_dict(None), to=sid, namespace=MARKET_NAMESPACE)
            return _OK
        exchange = self.exchange
        capture, ticket = feed.subscribe(sid, owner, exchange.funds_ticket)
        try:
            exchange._visible_funds(ticket)
        except BaseException as e:  # ServiceUnavailable: the snapshot is not durable (yet)
            feed.release(capture, deliver=False)  # never leave a capture unreleased: it would hold the rest
            feed.unsubscribe(sid)
            if not isinstance(e, Exception):
                raise
            to_dict = getattr(e, "to_dict", None)
            return to_dict() if to_dict is not None else internal_error_envelope()
        feed.release(capture)
        return _OK

    def _revoked(self, key) -> None:
        """A key was revoked: its connections leave their private rooms now."""
        for sid, (account, held) in list(self.sessions.items()):
            if held is key:
                self.publisher.leave_private(sid, account.account_id)
                if self.feed is not None:
                    self.feed.unsubscribe(sid)


def _refusal(error) -> dict:
    to_dict = getattr(error, "to_dict", None)
    return to_dict()["error"] if to_dict is not None else {"code": "UNAUTHENTICATED", "message": str(error)}


def _guard(name: str, fn, *args) -> dict:
    """Call a handler body; never let an exception out of a Socket.IO handler."""
    try:
        return fn(*args)
    except Exception:
        log.exception("/market %s failed", name)
        return internal_error_envelope()


# -- transport: one send per batch of frames (eventlet) ---------------------------
_FRAME = "_ws_frame"  # attribute of an Engine.IO packet: its WebSocket frame, packed once


def _sending_poll(connection, ws):
    """Return a replacement for ``connection.poll`` that sends, for Engine.IO's
    WebSocket writer.

    The writer calls ``poll()`` for the packets queued for its client and then
    sends each as its own frame. The replacement instead packs them and writes
    them with one ``sendall``, then waits for more; it returns to the writer
    only when the connection ends (``[]``, or the queue-timeout exception), so
    the writer then closes the socket as before.

    A packet emitted to a room is one object queued for every member, so its
    frame is packed once and kept on the packet (``_FRAME``) for the other
    members -- unless this connection compresses (permessage-deflate: frames
    then differ per client) or masks. Until the connection is upgraded (the
    writer only starts after that) this is the original ``poll``: a failed
    upgrade goes on polling untouched.
    """
    poll = connection.poll
    pack = ws._pack_message
    write = ws._send
    shared = not ws.client and ws._get_permessage_deflate_enc() is None

    def poll_and_send():
        if not connection.upgraded:
            return poll()
        while True:
            packets = poll()
            if not packets:
                return packets
            frames = []
            for pkt in packets:
                frame = pkt.__dict__.get(_FRAME) if shared else None
                if frame is None:
                    frame = pack(pkt.encode())
                    if shared:
                        setattr(pkt, _FRAME, frame)
                frames.append(frame)
            try:
                write(frames[0] if len(frames) == 1 else b"".join(frames))
            except Exception:  # the writer then closes the connection, as on a send error
                return []

    return poll_and_send


def install_frame_coalescing(socketio) -> bool:
    """Write each WebSocket client's queued Engine.IO packets with one system
    call, packing each room-wide packet's frame once.

    Why: Engine.IO's per-client writer dequeues every packet waiting for the
    client and sends each as its own frame, one ``sendall`` each, packing the
    same frame again for every member of a room. Fanning market data out to
    many subscribers is dominated by those system calls and that packing
    (measured: ~80% of the server's time at 50 subscribers x 500 orders/s, ~5
    packets per wake-up). Here the frames of one wake-up are written together
    (the same bytes on the wire, in the same order, ~5x fewer calls), and a
    frame is packed once per packet, not once per member (``_sending_poll``).

    How: the eventlet WebSocket class of this server's Engine.IO instance is
    replaced by a subclass whose handler replaces the connection's ``poll``
    before Engine.IO's handler runs. Only eventlet mode with the expected
    internals (python-engineio 4.x, eventlet's RFC 6455 ``WebSocket`` with
    ``_pack_message``/``_send``); otherwise nothing changes and this returns False.
    """

    def attach(connection, ws) -> None:
        connection.poll = _sending_poll(connection, ws)

    return install_websocket_hook(socketio, attach)


def install_websocket_hook(socketio, attach, detach=None) -> bool:
    """Call ``attach(connection, ws)`` for each WebSocket client of this
    (eventlet) server before Engine.IO's handler runs, and ``detach(connection)``
    when it ends: the eventlet WebSocket class of the server's Engine.IO
    instance is replaced by a subclass whose handler does so. Once per server
    (the frame coalescing here, or ``api.fanout``'s direct writer instead).
    Returns False, changing nothing, outside eventlet mode, with other
    internals than expected, or when a hook is installed already."""
    eio = getattr(getattr(socketio, "server", None), "eio", None)
    if eio is None or eio.async_mode != "eventlet":
        return False
    base = eio._async.get("websocket")
    if base is None or getattr(base, "coalescing", False):
        return False

    class HookedWebSocketWSGI(base):
        coalescing = True  # (the marker of an installed hook)

        def __init__(self, handler, server) -> None:
            # the engineio Socket: the handler is its bound method, or api.sessions' wrapper of it
            connection = getattr(handler, "connection", None) or getattr(handler, "__self__", None)

            def hooked_handler(ws):
                if connection is not None and all(
                    hasattr(ws, a)
                    for a in ("_pack_message", "_send", "_get_permessage_deflate_enc", "client")
                ):
                    attach(connection, ws)
                try:
                    return handler(ws)
                finally:
                    if detach is not None and connection is not None:
                        detach(connection)

            super().__init__(hooked_handler, server)

    eio._async = dict(eio._async, websocket=HookedWebSocketWSGI)
    return True


def balance_feed(socketio, exchange, publisher: Publisher):
    """The ``api.funds.BalanceFeed`` of an exchange with funds: private
    ``balance`` events through ``publisher.publish_private``."""
    from api.funds import BalanceFeed

    server = socketio.server
    accounts = exchange.engine.accounts

    def join(sid: str, account_id: int) -> None:
        server.enter_room(sid, private_room("balance", account_id), namespace=MARKET_NAMESPACE)

    def leave(sid: str, account_id: int) -> None:
        server.leave_room(sid, private_room("balance", account_id), namespace=MARKET_NAMESPACE)

    def send(sid: str, event: str, payload: dict) -> None:
        socketio.emit(event, payload, to=sid, namespace=MARKET_NAMESPACE)

    def name(account_id: int):
        return accounts.get(account_id).name

    return BalanceFeed(exchange.engine, publisher.publish_private, join, leave, send, name)


def init_socketio(socketio, exchange, *, coalesce_frames: bool = True, auth=None, **options) -> Publisher:
    """Register ``/market`` and ``/trade`` on ``socketio`` for ``exchange`` and
    return the publisher the exchange reports its results to. ``auth``
    (``api.auth.Auth``): keys at connect, private order events.

    ``options`` go to ``Publisher`` (``min_interval``, ``interval_per_member``, ``hold``, ``tick``,
    ``pass_budget``, ``chunk``, ``latency_window``, ``sessions``: the ``api.sessions.SessionGuard``
    whose counters ``stats`` reports); ``coalesce_frames`` installs
    ``install_frame_coalescing`` (eventlet mode only).
    """
    from api.trade_ws import TradeNamespace

    if coalesce_frames and install_frame_coalescing(socketio):
        log.debug("WebSocket frame coalescing installed")
    options.setdefault("store", getattr(exchange, "store", None))
    options.setdefault("read_timeout", getattr(exchange, "read_timeout", 2.0))
    publisher = Publisher(socketio, exchange.engine, **options)
    feed = None
    if exchange.engine.ledger is not None:
        feed = balance_feed(socketio, exchange, publisher)
        exchange.balance_feed = feed
        if auth is not None:
            auth.balance_feed = feed
    socketio.on_namespace(MarketNamespace(publisher, auth, exchange, feed))
    # a plain python-socketio namespace: no Flask request context per order (see api/trade_ws.py)
    socketio.server.register_namespace(TradeNamespace(exchange, publisher, auth))
    return publisher
