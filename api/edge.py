"""The edge role: a market-data server fed by the message queue.

    python api/app.py --role edge --message-queue redis://127.0.0.1:6379/0 --port 5001

An edge has no engine and no journal. It keeps a *mirror* of every symbol --
the top ``MIRROR_DEPTH`` (100) levels a side with their ``sequence``, and the
last ``MIRROR_TRADES`` (1000) trades -- from the engine's feed (``api/mq.py``),
and serves from it, with the same answers and sequences as the engine:

* ``/market``: ``l2_updates`` (depth 1..100), ``bbo``, ``trades`` and
  ``order_events`` (with accounts, each account's own: *Private events* below),
  by the engine's ``Publisher`` code itself (``EdgePublisher``
  subclasses it with the mirror in place of the engine): the same rooms,
  validation, snapshot-on-subscribe and conflation rules (with the book rooms'
  interval capped at ``EDGE_MIN_INTERVAL``, 50 ms, instead of 5 ms: an edge
  is there for thousands of watchers); trades and order events go out in the
  feed's order, never conflated, in the next pass (passes at most
  ``EDGE_STREAM_INTERVAL``, 10 ms, apart), together with the due book states:
  one write per client per pass, through the direct fan-out
  (``api/fanout.py``) in eventlet mode;
* REST: ``GET /health``, ``/symbols``, ``/book/<symbol>`` (up to 100 levels:
  nginx sends deeper reads to the engine), ``/bbo/<symbol>``,
  ``/trades/<symbol>``, by ``api/rest.py``'s own views over ``EdgeService``
  (so errors and limits are the engine's), and ``/statistics`` (the edge's).

Order entry and private reads (``/order``, ``/orders``, ``/cancel``, ``/amend``,
``/cancel_all``, ``/account``, ``/fills``, ``/admin/...``, ``/assets``) answer
``421 EDGE_READ_ONLY``, and ``/trade`` (Socket.IO order entry) refuses the
connection with the same words: the cluster's nginx routes all of them to the
engine, so only a client that bypasses nginx sees this.

Consistency (``FeedReceiver``)
    A feed message whose ``n`` does not follow the last one, or from another
    engine ``run``, means messages were lost (a Redis restart, the engine
    restarted, this edge just started): the edge marks itself unsynced and asks
    the engine for a ``sync`` (every ``sync_retry`` until one arrives). While
    unsynced, books are still applied (a higher ``sequence`` only) but trades
    and order events are held; the sync's trade list then replays, in order,
    the trades this edge's subscribers missed (those above the last delivered
    ``trade_id`` of the symbol, within the last 1000), then the held events
    follow, each trade at most once. The first sync after start replays
    nothing (nobody here has seen anything yet). A book subscription on an
    edge that has never synced waits up to ``sync_wait`` for it, so its
    snapshot is the engine's state, not an empty book. The sequence a room
    sees never decreases: the mirror only moves forward and
    ``Publisher``'s room rule applies.

Private events (the engine runs ``--auth on``)
    A ``/market`` connection brings its key at connect, ``auth={"api_key":
    KEY}``, as on the engine (``MarketNamespace`` with ``EdgeAuth`` in place
    of ``api.auth.Auth``). ``EdgeAuth`` hashes it (SHA-256) and looks the hash
    up in its mirror of the engine's registry (hash -> account id, from the
    feed's ``keys`` and every sync); a key it does not know refuses the
    connection (``UNAUTHENTICATED``), after waiting for the next feed message
    (a key issued a moment ago may be on its way) or, before the first sync,
    for the sync. Subscribing to ``order_events`` without a key is
    ``UNAUTHENTICATED``; with one, the rooms are the account's own
    (``order_events:<account_id>:<symbol>``). The feed's owner-addressed
    events (``[event, symbol, 0, payload, account_id]``) go to that account's
    rooms only: ``order_event`` to its ``order_events`` subscriptions, any
    other event (a ``balance``, ...) to every connection that brought one of
    its keys (room ``account:<account_id>``, joined at connect). A revocation
    on the feed -- or a key missing from a sync -- takes the key's
    connections out of their private rooms at once, as the engine does.

Staleness
    The engine sends a message at least every 0.5 s. With none for
    ``stale_after`` (2 s), or while unsynced, ``/health`` answers
    ``"status": "stale"`` (HTTP 200: the edge still serves the last state it
    has) and names what it knows in ``"feed"``; it turns back to ``"ok"`` with
    the next sync.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque

import msgspec
from flask import Flask, request
from flask_socketio import SocketIO
from socketio import Namespace as _SioNamespace
from socketio.exceptions import ConnectionRefusedError as _Refused

from api import errors, formatting, rest
from api.auth import UNAUTHENTICATED_KEY, key_hash, well_formed
from api.errors import ApiError, Unauthenticated, envelope
from api.fanout import FanOut, install_direct_fanout
from api.market import (
    MARKET_NAMESPACE,
    TRADE_NAMESPACE,
    LatencyWindow,
    MarketNamespace,
    Publisher,
    install_frame_coalescing,
)
from api.mq import (
    DEFAULT_CHANNEL,
    ENGINE_ROOM,
    FEED_EVENT,
    MIRROR_DEPTH,
    MIRROR_TRADES,
    SYNC_EVENT,
    QueueManager,
    start_listening,
)
from api.parsing import MAX_BULK_BODY, SOCKET_JSON
from api.sessions import CONFIG_DEFAULTS as SESSION_DEFAULTS
from api.sessions import guard_from_config
from engine.errors import UnknownSymbol
from engine.symbols import default_symbols, load_symbols

log = logging.getLogger(__name__)

_perf_ns = time.perf_counter_ns
# First path segments the engine serves and an edge never does.
ENGINE_ONLY = frozenset(
    ("order", "orders", "cancel", "cancel_all", "amend", "account", "fills", "admin", "assets")
)
KEY_WAIT = 1.0  # how long a connection with a key the edge does not know waits for the feed (s)
READ_ONLY_MESSAGE = (
    "this is a market-data edge: it serves public reads and /market only; "
    "orders and private requests go to the engine process (the cluster's nginx routes them there)"
)
# The book rooms' and passes' interval grows with the clients (0.1 ms each, as on the
# engine) up to this: 50 ms from 500 clients on, so that an edge with thousands of
# watchers writes to each at most 20 times a second (trades and book states of a pass
# in one write), still well within the contract's 100 ms.
EDGE_MIN_INTERVAL = 0.05
# Trades and order events do not wait for that: a pass goes out at most this long after
# the previous one when the feed brought any (the book rooms keep the cadence above).
EDGE_STREAM_INTERVAL = 0.01
HELD_EVENTS = 200_000  # events held while unsynced; beyond this the oldest go (the sync replays trades)


def account_room(owner: int) -> str:
    """The room of every keyed connection of an account (owner-addressed events
    other than order events)."""
    return f"account:{owner}"


class EdgeReadOnly(ApiError):
    code = "EDGE_READ_ONLY"
    status_code = 421  # Misdirected Request: this server does not produce that answer


# -- the mirror -------------------------------------------------------------------
class MirrorMarket:
    """One symbol's mirrored state: ``state`` is ``(sequence, bids, asks)``,
    replaced whole (readers take it once), levels ``[price_ticks, lots]`` best
    first; ``trades`` the last trades, formatted, oldest first."""

    __slots__ = ("spec", "state", "trades", "last_trade_id")

    def __init__(self, spec, trades: int = MIRROR_TRADES) -> None:
        self.spec = spec
        self.state: tuple = (0, [], [])
        self.trades: deque = deque(maxlen=trades)
        self.last_trade_id = 0

    @property
    def sequence(self) -> int:
        return self.state[0]


class Mirror:
    """The read interface of ``engine.MatchingEngine`` that ``Publisher``
    uses (``markets[s].sequence``, ``spec``, ``depth``, ``bbo``), over the
    mirrored state. Each read is O(levels)."""

    def __init__(self, specs, trades: int = MIRROR_TRADES) -> None:
        self.markets = {spec.symbol: MirrorMarket(spec, trades) for spec in specs}

    def spec(self, symbol: str):
        return self.markets[symbol].spec

    def depth(self, symbol: str, levels: int = 10):
        seq, bids, asks = self.markets[symbol].state
        return seq, bids[:levels], asks[:levels]

    def bbo(self, symbol: str):
        seq, bids, asks = self.markets[symbol].state
        return seq, bids[0] if bids else None, asks[0] if asks else None

    def apply_book(self, symbol: str, sequence: int, bids: list, asks: list) -> bool:
        """Take a book state if it is newer than the mirror's. O(1)."""
        market = self.markets.get(symbol)
        if market is None or sequence <= market.state[0]:
            return False
        market.state = (sequence, bids, asks)
        return True

    def add_trade(self, symbol: str, trade_id: int, trade: dict) -> bool:
        """Append a trade newer than the last one kept. O(1)."""
        market = self.markets.get(symbol)
        if market is None or trade_id <= market.last_trade_id:
            return False
        market.trades.append(trade)
        market.last_trade_id = trade_id
        return True

    def replace_trades(self, symbol: str, trades: list[dict]) -> None:
        """The engine's last trades (a sync), oldest first."""
        market = self.markets.get(symbol)
        if market is None:
            return
        market.trades.clear()
        market.trades.extend(trades)
        if trades:
            market.last_trade_id = max(market.last_trade_id, int(trades[-1]["trade_id"]))


# -- keys ---------------------------------------------------------------------------
class EdgeKey:
    """A key the engine issued, as the feed names it: its hash, its account and
    whether it was revoked. It is also the account handle ``MarketNamespace``
    reads (``account_id``)."""

    __slots__ = ("key_hash", "account_id", "revoked")

    def __init__(self, key_hash: str, account_id: int, revoked: bool = False) -> None:
        self.key_hash = key_hash
        self.account_id = account_id
        self.revoked = True if revoked else None  # MarketNamespace tests ``revoked is not None``


class EdgeAuth:
    """``api.auth.Auth``'s Socket.IO side over the feed's registry (see the
    module docstring, *Private events*): ``on``, ``session`` and
    ``revoke_listeners`` as ``MarketNamespace`` uses them.

    ``private()`` -> bool: the engine runs ``--auth on`` (the feed says so).
    ``ready()`` -> bool: the registry is the engine's (synced once).
    ``messages()`` -> int: feed messages applied so far (a key may be in the next).
    ``sleep(seconds)``: the server's cooperative sleep."""

    def __init__(self, private, ready, messages, sleep, *, wait: float = KEY_WAIT) -> None:
        self._private = private
        self.ready = ready
        self.messages = messages
        self.sleep = sleep
        self.wait = wait
        self.keys: dict[str, EdgeKey] = {}
        self.revoke_listeners: list = []
        self.failures = 0
        self.revocations = 0

    @property
    def on(self) -> bool:
        return self._private()

    # -- the feed's side (the queue listener's task) -------------------------------
    def apply(self, changes) -> None:
        """Keys issued or revoked: ``[[key_hash, account_id, revoked], ...]``, in order."""
        for entry in changes:
            digest, account_id, revoked = entry[0], entry[1], entry[2]
            key = self.keys.get(digest)
            if key is None:
                self.keys[digest] = EdgeKey(digest, account_id, revoked)
            elif revoked:
                self._revoke(key)

    def replace(self, active) -> None:
        """A sync: ``[[key_hash, account_id], ...]`` is every active key. A key
        held here and not in it is revoked (its connections leave their
        private rooms); the others are kept (same objects: open sessions hold them)."""
        fresh = {}
        for digest, account_id in active:
            key = self.keys.get(digest)
            if key is None or key.revoked is not None:
                key = EdgeKey(digest, account_id)
            fresh[digest] = key
        for digest, key in self.keys.items():
            if digest not in fresh and key.revoked is None:
                self._revoke(key)
        self.keys = fresh

    def _revoke(self, key: EdgeKey) -> None:
        if key.revoked is not None:
            return
        key.revoked = True
        self.revocations += 1
        log.info("feed: key %s of account %s revoked", key.key_hash[:16], key.account_id)
        for listener in self.revoke_listeners:
            try:
                listener(key)
            except Exception:
                log.exception("a revocation listener failed")

    # -- a connection's side ----------------------------------------------------------
    def _lookup(self, digest: str) -> EdgeKey | None:
        key = self.keys.get(digest)
        if key is None or key.revoked is not None or not hmac.compare_digest(key.key_hash, digest):
            return None
        return key

    def session(self, auth, environ) -> tuple[EdgeKey, EdgeKey] | None:
        """A connection's key, as ``Auth.session``: ``(account, key)`` (here one
        object), None when it brings none or the engine runs ``--auth off``.

        Raises:
            Unauthenticated: it brings a key that is not an active key of the engine.
        """
        if not self.on:
            return None
        if isinstance(auth, dict) and "api_key" in auth:
            key = auth["api_key"]
        elif environ is not None and "HTTP_X_API_KEY" in environ:
            key = environ["HTTP_X_API_KEY"]
        else:
            return None
        found = None
        if well_formed(key):
            digest = key_hash(key)
            found = self._lookup(digest)
            if found is None:
                found = self._wait_for(digest)
        if found is None:
            self.failures += 1
            raise Unauthenticated(UNAUTHENTICATED_KEY)
        return found, found

    def _wait_for(self, digest: str) -> EdgeKey | None:
        """A well-formed key not known here: wait (at most ``wait``, cooperatively)
        for the first sync, or for two more feed messages -- a key issued just
        before this connection is in one of them."""
        deadline = time.monotonic() + self.wait
        seen = self.messages()
        while time.monotonic() < deadline:
            if self.ready() and self.messages() >= seen + 2:
                break
            self.sleep(0.01)
        return self._lookup(digest)

    def stats(self) -> dict:
        keys = self.keys.values()
        return {
            "keys_active": sum(1 for k in keys if k.revoked is None),
            "revocations": self.revocations,
            "refused_credentials": self.failures,
        }


# -- delivery -----------------------------------------------------------------------
class EdgePublisher(Publisher):
    """``Publisher`` over the mirror: subscriptions, snapshots and book-room
    conflation are the engine's code; trades and order events come from the
    feed in order (``deliver``) instead of the sequencer.

    ``ready()`` -> bool: the mirror holds the engine's state (a book
    subscription waits up to ``sync_wait`` for it)."""

    def __init__(
        self,
        socketio,
        mirror: Mirror,
        *,
        ready=None,
        sync_wait: float = 3.0,
        min_interval: float = EDGE_MIN_INTERVAL,
        stream_interval: float = EDGE_STREAM_INTERVAL,
        **options,
    ) -> None:
        super().__init__(socketio, mirror, min_interval=min_interval, **options)
        self.ready = ready or (lambda: True)
        self.sync_wait = sync_wait
        self.stream_interval_ns = int(stream_interval * 1e9)
        self._stream: deque = deque()
        self.written = LatencyWindow(10_000)  # direct fan-out: a trade's arrival -> written to every member
        self._written: list[int] = []

    def stats(self) -> dict:
        out = super().stats()
        if isinstance(self.socketio, FanOut):
            out["latency"]["trade_written"] = self.written.summary()
        return out

    def _init_baselines(self) -> None:
        return None  # no sequencer here: the feed is already in order

    def _book_pace_ns(self) -> int:
        """The book rooms' interval: ``interval_per_member`` per ``/market``
        client, at most ``min_interval`` (50 ms from 500 clients on)."""
        return super()._pace_ns()

    def _pace_ns(self) -> int:
        """Passes: as the book rooms, but at least every ``stream_interval``
        (trades and order events wait at most that for their pass)."""
        return min(super()._pace_ns(), self.stream_interval_ns)

    def _publish_books(self, now: int) -> int | None:
        """``Publisher._publish_books`` with every book room at the interval
        ``_book_pace_ns`` (the passes may be more frequent, for the trades:
        the book rooms keep the cadence of at most 20 writes a second per
        client from 500 clients on)."""
        saved = self.min_interval_ns, self.interval_per_member_ns
        self.min_interval_ns = self.interval_per_member_ns = self._book_pace_ns()
        try:
            return super()._publish_books(now)
        finally:
            self.min_interval_ns, self.interval_per_member_ns = saved

    def deliver(self, event: str, symbol: str | None, payload: dict, owner: int | None = None) -> None:
        """Queue a trade or order event (``owner``: addressed to that account
        only) for the next pass, which emits it to the rooms that want it, in
        arrival order, together with the due book states: one write per client
        per pass. O(1)."""
        if not self.members:
            return
        self._stream.append((event, symbol, payload, owner, _perf_ns()))
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    @staticmethod
    def private_rooms(event: str, owner: int, symbol: str | None) -> tuple:
        """Where an owner-addressed event goes: the account's ``order_events``
        subscriptions for an ``order_event``, every keyed connection of the
        account (``account:<id>``) for any other event."""
        if event == "order_event":
            return (f"order_events:{owner}:{symbol}", f"order_events:{owner}:*")
        return (account_room(owner),)

    def _pass(self) -> float:
        fanout = self.socketio if isinstance(self.socketio, FanOut) else None
        if fanout is None:
            try:
                return self._pass_body()
            finally:
                self._written.clear()  # timed only for the direct fan-out
        fanout.begin()  # each client's frames of the pass: one write (api/fanout.py)
        try:
            return self._pass_body()
        finally:
            fanout.end()
            written, self._written = self._written, []
            if written:  # a trade's arrival here -> the pass's last write
                now = _perf_ns()
                add = self.written.add
                for received in written:
                    add(now - received)

    def _pass_body(self) -> float:
        stream = self._stream
        members = self.members
        written = self._written
        while stream:
            event, symbol, payload, owner, received = stream.popleft()
            if owner is not None:
                names = self.private_rooms(event, owner, symbol)
            elif event == "trade":
                names = (f"trades:{symbol}", "trades:*")
            else:
                names = (f"order_events:{symbol}", "order_events:*")
            rooms = [r for r in names if members.get(r)]
            if rooms:
                if event == "trade":
                    written.append(received)
                if event not in self.events:  # an owner-addressed event of another name: count it too
                    self.events[event] = 0
                    self.latency[event] = LatencyWindow(1000)
                self._emit_stream(event, payload, rooms, received)
        return super()._pass()

    def join_account(self, sid: str, owner: int) -> None:
        """A connection with a live key of ``owner``: it receives the account's
        owner-addressed events other than order events (room ``account:<id>``)."""
        name = account_room(owner)
        with self._lock:
            self.socketio.server.enter_room(sid, name, namespace=MARKET_NAMESPACE)
            self.members.setdefault(name, set()).add(sid)
            self.by_sid.setdefault(sid, set()).add(name)

    def leave_private(self, sid: str, owner: int) -> None:
        """Its key was revoked: out of the account's order-event rooms and its account room."""
        super().leave_private(sid, owner)
        name = account_room(owner)
        with self._lock:
            if name in self.by_sid.get(sid, ()):
                self.socketio.server.leave_room(sid, name, namespace=MARKET_NAMESPACE)
                self._drop(sid, name)

    def books_changed(self) -> None:
        """The mirror moved: wake the task that sends the due book rooms."""
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def subscribe(self, sid: str, data, owner: int | None = None) -> dict:
        if not self.ready() and isinstance(data, dict) and data.get("type") in ("l2_updates", "bbo"):
            deadline = time.monotonic() + self.sync_wait
            while not self.ready() and time.monotonic() < deadline:
                self.socketio.sleep(0.05)
        return super().subscribe(sid, data, owner)


class FeedReceiver:
    """Applies the engine's feed to the mirror and delivers it (see the module
    docstring, *Consistency* and *Staleness*). ``on_feed`` runs in the queue
    listener's task, one message at a time."""

    def __init__(
        self,
        mirror: Mirror,
        publisher: EdgePublisher,
        request_sync,
        *,
        auth: EdgeAuth | None = None,
        stale_after: float = 2.0,
        sync_retry: float = 1.0,
    ) -> None:
        self.mirror = mirror
        self.publisher = publisher
        self.request_sync = request_sync
        self.auth = auth  # the registry of keys the feed carries
        self.stale_after = stale_after
        self.sync_retry = sync_retry
        self.run: str | None = None
        self.n = 0
        self.synced = False
        self.ever_synced = False
        self.private = True  # until the feed says otherwise: order events are private
        self.last_message: float | None = None
        self.last_request = 0.0
        self.delivered = dict.fromkeys(mirror.markets, 0)  # last trade_id delivered, per symbol
        self.held: deque = deque(maxlen=HELD_EVENTS)
        self.messages = 0
        self.gaps = 0
        self.syncs = 0
        self.replayed = 0
        self.lag_ns = 0
        self.lag = LatencyWindow(10_000)  # the engine's publish (its time_ns) -> this edge's receipt
        self._lock = threading.Lock()

    def on_feed(self, message) -> None:
        try:
            with self._lock:
                self._on_feed(message)
        except Exception:  # one bad message must not end the listener
            log.exception("feed message failed")

    def _on_feed(self, message: dict) -> None:
        now = time.monotonic()
        self.last_message = now
        self.messages += 1
        sent = message.get("time_ns")
        if isinstance(sent, int):
            self.lag_ns = time.time_ns() - sent
            self.lag.add(self.lag_ns)
        run, n = message.get("run"), message.get("n")
        if run != self.run or n != self.n + 1:
            if self.run is not None:
                self.gaps += 1
                log.info(
                    "feed: %s (n %s after %s); asking for a sync",
                    "engine restarted" if run != self.run else "gap",
                    n,
                    self.n,
                )
            self.synced = False
        self.run, self.n = run, n
        self.private = message.get("private", True) is not False
        mirror = self.mirror
        moved = False
        for symbol, seq, bids, asks in message.get("books") or ():
            moved |= mirror.apply_book(symbol, seq, bids, asks)
        sync = message.get("sync")
        if sync is not None:
            self._apply_sync(sync)
            moved = True
        keys = message.get("keys")
        if keys and self.auth is not None:
            self.auth.apply(keys)  # after the sync (it was read before these changes), before any event
        events = message.get("events") or ()
        if self.synced:
            self._deliver(events)
        else:
            self.held.extend(events)
            self.maybe_request_sync(now)
        if moved:
            self.publisher.books_changed()

    def _apply_sync(self, sync: dict) -> None:
        mirror = self.mirror
        if self.auth is not None and "keys" in sync:
            self.auth.replace(sync["keys"])  # before anything held is delivered
        for symbol, seq, bids, asks in sync.get("books") or ():
            mirror.apply_book(symbol, seq, bids, asks)
        first = not self.ever_synced
        for symbol, trades in (sync.get("trades") or {}).items():
            if symbol not in mirror.markets:
                continue
            mirror.replace_trades(symbol, trades)
            last = self.delivered[symbol]
            for trade in trades:
                tid = int(trade["trade_id"])
                if tid <= last:
                    continue
                last = tid
                if not first:
                    self.replayed += 1
                    self.publisher.deliver("trade", symbol, trade)
            self.delivered[symbol] = last
        self._check_symbols(sync.get("symbols"))
        self.synced = self.ever_synced = True
        self.syncs += 1
        held, self.held = list(self.held), deque(maxlen=HELD_EVENTS)
        self._deliver(held)

    def _check_symbols(self, symbols) -> None:
        if not symbols:
            return
        mine = [m.spec.to_dict() for m in self.mirror.markets.values()]
        if symbols != mine:
            log.error("feed: the engine's symbols differ from this edge's (--symbols-config): %s", symbols)

    def _deliver(self, events) -> None:
        mirror, delivered, deliver = self.mirror, self.delivered, self.publisher.deliver
        for entry in events:
            event, symbol, tid, payload = entry[0], entry[1], entry[2], entry[3]
            if len(entry) > 4:  # owner-addressed: [event, symbol or None, 0, payload, account_id]
                if symbol is None or symbol in delivered:
                    deliver(event, symbol, payload, entry[4])
                continue
            if symbol not in delivered:
                continue
            if event == "trade":
                if tid <= delivered[symbol]:
                    continue  # replayed by a sync already
                delivered[symbol] = tid
                mirror.add_trade(symbol, tid, payload)
            deliver(event, symbol, payload)

    def maybe_request_sync(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self.last_request >= self.sync_retry:
            self.last_request = now
            try:
                self.request_sync()
            except Exception:
                log.exception("feed: asking for a sync failed")

    def resubscribed(self) -> None:
        """The queue listener (re)subscribed: messages may have been missed."""
        self.synced = False
        self.last_request = 0.0
        self.maybe_request_sync()

    def stale(self) -> bool:
        last = self.last_message
        return not self.synced or last is None or time.monotonic() - last > self.stale_after

    def stats(self) -> dict:
        last = self.last_message
        return {
            "synced": self.synced,
            "engine_run": self.run,
            "last_n": self.n,
            "last_message_age_seconds": None if last is None else round(time.monotonic() - last, 3),
            "messages": self.messages,
            "gaps": self.gaps,
            "syncs": self.syncs,
            "trades_replayed": self.replayed,
            "held_events": len(self.held),
            "last_lag_ms": round(self.lag_ns / 1e6, 3),
            "lag": self.lag.summary(),
        }


class EdgeService:
    """What ``api/rest.py``'s views call on ``app.extensions["exchange"]``, over
    the mirror: the same answers, errors and limits as ``api.service.Exchange``."""

    def __init__(self, mirror: Mirror, receiver: FeedReceiver, publisher: EdgePublisher, manager) -> None:
        self.mirror = mirror
        self.receiver = receiver
        self.publisher = publisher
        self.manager = manager
        self._started = time.monotonic()

    def check_symbol(self, symbol: str):
        market = self.mirror.markets.get(symbol)
        if market is None:
            raise UnknownSymbol(symbol, None)  # a path: 404
        return market

    def symbols(self) -> dict:
        return {"symbols": [m.spec.to_dict() for m in self.mirror.markets.values()]}

    def book(self, symbol: str, levels: int = 10) -> dict:
        market = self.check_symbol(symbol)
        sequence, bids, asks = self.mirror.depth(symbol, min(levels, MIRROR_DEPTH))
        return formatting.book_dict(market.spec, sequence, bids, asks, time.time_ns())

    def bbo(self, symbol: str) -> dict:
        market = self.check_symbol(symbol)
        sequence, bid, ask = self.mirror.bbo(symbol)
        return formatting.bbo_dict(market.spec, sequence, bid, ask, time.time_ns())

    def trades(self, symbol: str, limit: int = 50) -> dict:
        market = self.check_symbol(symbol)
        trades = list(market.trades)
        return {"symbol": symbol, "trades": trades[-limit:] if limit > 0 else []}

    def trades_json(self, symbol: str, limit: int = 50) -> bytes:
        """``trades`` as compact JSON (what ``GET /trades`` sends, as the engine's)."""
        return msgspec.json.encode(self.trades(symbol, limit))

    def uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def health(self) -> dict:
        return {
            "status": "stale" if self.receiver.stale() else "ok",
            "uptime_seconds": self.uptime(),
            "role": "edge",
            "feed": self.receiver.stats(),
        }

    def statistics(self) -> dict:
        return {
            "timestamp": formatting.iso(time.time_ns()),
            "uptime_seconds": self.uptime(),
            "role": "edge",
            "symbols": {s: {"sequence": m.sequence} for s, m in self.mirror.markets.items()},
            "feed": self.receiver.stats(),
            "message_queue": self.manager.stats() if self.manager is not None else None,
            "streaming": self.publisher.stats(),
            "fanout": self.publisher.socketio.stats()
            if isinstance(self.publisher.socketio, FanOut)
            else None,
            "auth": self.receiver.auth.stats() if self.receiver.auth is not None else None,
            "connected_clients": self.publisher.stats()["connected_clients"],
        }


class EdgeMarketNamespace(MarketNamespace):
    """``/market`` on an edge: the engine's namespace with ``EdgeAuth``; a
    connection with a live key also joins its account's room (owner-addressed
    events other than order events)."""

    def on_connect(self, auth=None):
        super().on_connect(auth)
        found = self.sessions.get(request.sid)
        if found is not None:
            self.publisher.join_account(request.sid, found[0].account_id)

    def _subscribe_balances(self, sid: str, owner: int | None) -> dict:
        """Balances are not on the feed (SCALING.md): with accounts, the engine
        process serves them, and an edge says so rather than answer with an
        empty account; under ``--auth off`` it answers as the engine does there."""
        if self.auth.on:
            return envelope(
                "UNAUTHENTICATED",
                "balances are private and served by the engine process: subscribe there with your API key",
            )
        return super()._subscribe_balances(sid, owner)


class ReadOnlyTradeNamespace(_SioNamespace):
    """``/trade`` on an edge: every connection is refused, saying where to go."""

    def __init__(self) -> None:
        super().__init__(TRADE_NAMESPACE)

    def on_connect(self, sid, environ=None, auth=None):
        raise _Refused(
            f"EDGE_READ_ONLY: {READ_ONLY_MESSAGE}",
            {"error": {"code": "EDGE_READ_ONLY", "message": READ_ONLY_MESSAGE}},
        )


# -- the application ---------------------------------------------------------------
EDGE_DEFAULTS = {
    "message_queue": None,
    "queue_channel": DEFAULT_CHANNEL,
    "async_mode": "threading",
    "symbols": None,
    "symbols_config": None,
    "cors_origins": "*",
    "rate_limit": 10_000,
    "rate_limiter": "builtin",
    "stale_after": 2.0,
    "sync_wait": 3.0,
    "proxy_hops": 0,
    "client_manager": None,  # tests: a manager object instead of one built from message_queue
    "stream_interval": EDGE_STREAM_INTERVAL,  # s: trades and order events wait at most this for a pass
    "direct_fanout": True,  # api/fanout.py (eventlet only); False: Engine.IO's writer for every packet
    # the engine's per-client limits (api/sessions.py): an edge is where most clients are
    **SESSION_DEFAULTS,
}


def create_edge_app(config: dict | None = None) -> tuple[Flask, SocketIO]:
    """Build an edge: Flask app, Socket.IO server on the queue, mirror, feed."""
    from api.app import _cors, _LastResort, _rate_limiter, trust_proxies  # the engine's own setup helpers

    cfg = dict(EDGE_DEFAULTS)
    cfg.update(config or {})
    manager = cfg["client_manager"]
    if manager is None:
        if not cfg["message_queue"]:
            raise ValueError("an edge needs a message queue (--message-queue redis://HOST:PORT/DB)")
        manager = QueueManager(cfg["message_queue"], cfg["queue_channel"])
    symbols = cfg["symbols"]
    if symbols is None:
        symbols = load_symbols(cfg["symbols_config"]) if cfg["symbols_config"] else default_symbols()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BULK_BODY
    app.json.sort_keys = False
    origins = cfg["cors_origins"]
    socketio = SocketIO(
        app,
        async_mode=cfg["async_mode"],
        cors_allowed_origins=origins,
        json=SOCKET_JSON,
        client_manager=manager,
        logger=False,
        engineio_logger=False,
        ping_interval=cfg["ping_interval"],
        ping_timeout=cfg["ping_timeout"],
    )
    sessions = guard_from_config(socketio, cfg)
    mirror = Mirror(symbols)
    receiver_box: list[FeedReceiver] = []
    # The publisher writes through the direct fan-out (api/fanout.py) when it is installed.
    direct = cfg["direct_fanout"] and install_direct_fanout(socketio)
    if direct:
        log.debug("direct WebSocket fan-out installed")
    elif install_frame_coalescing(socketio):
        log.debug("WebSocket frame coalescing installed")
    publisher = EdgePublisher(
        FanOut(socketio, MARKET_NAMESPACE) if direct else socketio,
        mirror,
        ready=lambda: receiver_box[0].ever_synced,
        sync_wait=float(cfg["sync_wait"]),
        stream_interval=float(cfg["stream_interval"]),
        sessions=sessions,
    )
    auth = EdgeAuth(
        private=lambda: receiver_box[0].private,
        ready=lambda: receiver_box[0].ever_synced,
        messages=lambda: receiver_box[0].messages,
        sleep=socketio.sleep,
        wait=max(float(cfg["sync_wait"]), KEY_WAIT),
    )

    def request_sync() -> None:
        socketio.emit(SYNC_EVENT, {"host": manager.host_id}, namespace=MARKET_NAMESPACE, to=ENGINE_ROOM)

    receiver = FeedReceiver(mirror, publisher, request_sync, auth=auth, stale_after=float(cfg["stale_after"]))
    receiver_box.append(receiver)
    manager.handlers[FEED_EVENT] = receiver.on_feed
    manager.on_subscribed = receiver.resubscribed
    service = EdgeService(mirror, receiver, publisher, manager)
    app.extensions["exchange"] = service
    app.extensions["edge"] = {"mirror": mirror, "receiver": receiver, "publisher": publisher, "auth": auth}

    errors.register(app)
    _cors(app, origins)
    if cfg["rate_limit"]:
        _rate_limiter(app, int(cfg["rate_limit"]), cfg["rate_limiter"])

    @app.before_request
    def _engine_only():
        first = request.path.split("/", 2)[1] if request.path.count("/") else ""
        if first in ENGINE_ONLY:
            raise EdgeReadOnly(READ_ONLY_MESSAGE)

    rest.register(app)
    socketio.on_namespace(EdgeMarketNamespace(publisher, auth))
    socketio.server.register_namespace(ReadOnlyTradeNamespace())
    app.extensions["sessions"] = sessions
    app.wsgi_app = sessions.wsgi(app.wsgi_app)
    # outside the session guard, so that its per-address limits see the client behind the proxy
    trust_proxies(app, int(cfg["proxy_hops"]))
    app.wsgi_app = _LastResort(app.wsgi_app)

    def watch() -> None:
        # Ask again while unsynced (the engine may be down, or the request lost).
        while not app.extensions.get("closed"):
            if not receiver.synced:
                receiver.maybe_request_sync()
            socketio.sleep(0.25)

    start_listening(socketio)
    socketio.start_background_task(watch)
    publisher._start()  # book rooms are served as soon as the mirror moves
    return app, socketio


def close_edge_app(app: Flask) -> None:
    if app.extensions.get("closed"):
        return
    app.extensions["closed"] = True
    app.extensions["edge"]["publisher"].close()
