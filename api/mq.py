"""The message queue between the engine process and the market-data edges.

Flask-SocketIO's documented way to run more than one Socket.IO server: every
process gets ``message_queue=`` (python-socketio's ``RedisManager``), nginx
keeps each client on one process (``ip_hash``), and an ``emit`` in any process
reaches the clients of all of them through Redis pub/sub. Here the processes
are not alike (one engine, the single writer of the books and the journal;
edges that only serve market data), so the queue carries one thing the engine
publishes and every edge needs: the *feed*.

::

    engine process                         Redis (channel)          edge process (xN)
    Exchange -> PublisherTee                                         QueueManager listener
                 +- Publisher (local /market clients, as before)       -> FeedReceiver
                 +- QueueFeed --emit("feed", to="_feed")-->  PUBLISH  -->   Mirror (books, trades)
                                                                            EdgePublisher -> its clients
    QueueManager listener <-- emit("sync", to="_engine") <-- PUBLISH <--  (after a gap)

Why a feed and not the client events themselves: rooms are local to a process
(``l2_updates:<symbol>:<N>`` exists only where a client asked for depth N), so
the engine cannot know which book rooms the edges have, and emitting every
depth 1..100 of every symbol to the queue would cost the engine what the
edges are there to take off it. The feed carries, per publisher pass (at most
every ``interval``, 5 ms):

* ``events``: every trade and order event, in the order the local publisher
  would send them (the same sequencer: book order per symbol, trade ids in
  order), already formatted: ``[event, symbol, trade_id or 0, payload]``;
  with accounts (``private``), order events are *owner-addressed*:
  ``[event, symbol or None, 0, payload, account_id]`` (``publish_private``),
  and an edge sends them only to that account's keyed connections;
* ``keys`` (with accounts): the keys issued or revoked since the last message,
  ``[key_hash, account_id, revoked]`` -- SHA-256 hashes, never a key (see
  *Keys on the feed* below);
* ``books``: for each symbol whose ``sequence`` moved, its state read once
  (conflated), top ``MIRROR_DEPTH`` (100) levels a side, integer ticks and lots;
* ``sync`` (on request): every symbol's state and its last ``MIRROR_TRADES``
  (1000) trades, and with accounts every active key (``[key_hash,
  account_id]``), for an edge that starts, missed messages or saw the engine
  restart;
* ``run`` (a random id per engine start) and ``n`` (1, 2, ... per run): an edge
  that sees ``n`` jump or ``run`` change asks for a ``sync``.

A message goes out at least every ``heartbeat`` (0.5 s), so an edge knows the
engine is alive (``/health``) and notices lost messages within a heartbeat.

Keys on the feed (``--auth on``)
    An edge authenticates a ``/market`` connection's ``auth={"api_key": KEY}``
    as the engine does: it hashes the key (SHA-256) and looks the hash up, here
    in its mirror of the registry (hash -> account id). So the feed carries
    what the journal already holds: key *hashes*, never a key. A hash is not
    usable as a key (a connection's key is hashed again), and finding a key
    for a hash is a preimage search over 2**256 keys. New keys are found by
    the registry's size (keys are only ever added: O(1) per pass, O(new) when
    it grew); revocations come from ``Auth.revoke_listeners``, after the
    revocation is durable, and go out in the next message (an edge then takes
    the key's connections out of their private rooms, as the engine does).
    A sync carries every active key: an edge that starts late, or missed
    messages, replaces its registry before it delivers anything held.

``QueueManager`` is a ``RedisManager`` with four changes:

* ``emit`` goes through the queue only to the feed's rooms (``_feed``,
  ``_engine``); every other emit -- a process's own ``/market`` and ``/trade``
  deliveries -- stays local (``ignore_queue``), because each process serves its
  own clients from its own state (the engine from its books, an edge from its
  mirror) and must not reach the other processes' clients a second time;
* emits to the feed rooms are handed to ``handlers[event]`` in the processes
  that receive them, never delivered to clients;
* publishing never blocks or fails its caller for long: one attempt with short
  timeouts and no retries; after a failure, messages are dropped (counted)
  for ``retry_max`` before the next attempt, and an outage is logged once. It is
  only ever called from the feed's background task, never from the order path;
* the listener reconnects and resubscribes every ``retry_max`` at most (the
  stock one backs off to 60 s), then calls ``on_subscribed``.

The codec on the queue is msgspec JSON (the server's exact-decimal codec is
for client input; the feed carries only strings and integers).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque

import msgspec
from socketio import RedisManager

from api import formatting
from api.market import MARKET_NAMESPACE, MAX_DEPTH, LatencyWindow, Publisher
from api.service import MAX_TRADES
from engine.events import AmendResult
from engine.order import NEW, PENDING

log = logging.getLogger(__name__)

FEED_EVENT = "feed"
FEED_ROOM = "_feed"
SYNC_EVENT = "sync"
ENGINE_ROOM = "_engine"
QUEUE_ROOMS = (FEED_ROOM, ENGINE_ROOM)
MIRROR_DEPTH = MAX_DEPTH
MIRROR_TRADES = MAX_TRADES
DEFAULT_CHANNEL = "matchbook"
# How a feed message starts on the wire (PubSubManager.emit builds the dict in
# this key order): the engine's listener skips its own feed without parsing it.
FEED_PREFIX = b'{"method":"emit","event":"feed"'


class QueueJSON:
    """msgspec JSON for the queue's messages (``RedisManager``'s ``json``)."""

    _decode = msgspec.json.Decoder().decode
    _encode = msgspec.json.Encoder().encode

    @classmethod
    def loads(cls, text, *args, **kwargs):
        return cls._decode(text)

    @classmethod
    def dumps(cls, obj, *args, **kwargs):
        return cls._encode(obj)


class QueueManager(RedisManager):
    """python-socketio's ``RedisManager`` for the engine and the edges (see the
    module docstring for what differs and why).

    ``handlers``: event name -> ``callable(data)`` for emits to the feed rooms
    received from the queue. ``on_subscribed``: called (in the listener's
    task) each time the listener has (re)subscribed. ``skip_prefix``: raw
    messages that start with it are dropped unparsed (the engine's own feed).
    """

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        *,
        retry_max: float = 1.0,
        timeout: float = 1.0,
        skip_prefix: bytes | None = None,
    ) -> None:
        super().__init__(url, channel=channel)
        self.handlers: dict = {}
        self.on_subscribed = None
        self.retry_max = retry_max
        self.timeout = timeout
        self.skip_prefix = skip_prefix
        self.published = 0
        self.publish_failures = 0
        self.dropped = 0
        self.subscriptions = 0
        self.listening = False
        self._pub = None
        self._publish_after = 0.0
        self._publish_ok = True

    def set_server(self, server) -> None:
        super().set_server(server)
        self.json = QueueJSON

    # -- emitting -----------------------------------------------------------
    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        target = to or room
        if not isinstance(target, str) or target not in QUEUE_ROOMS:
            kwargs["ignore_queue"] = True
        return super().emit(
            event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
        )

    def _handle_emit(self, message) -> None:
        if message.get("room") in QUEUE_ROOMS:
            handler = self.handlers.get(message.get("event"))
            if handler is not None and message.get("host_id") != self.host_id:
                data = message.get("data")
                handler(data[0] if isinstance(data, list) and len(data) == 1 else data)
            return
        super()._handle_emit(message)

    def _client(self, **options):
        module = self._get_redis_module()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return module.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            **options,
        )

    def _publish(self, data):
        """One attempt, short timeouts; drop (and count) for ``retry_max`` after a failure."""
        now = time.monotonic()
        if now < self._publish_after:
            self.dropped += 1
            return None
        try:
            if self._pub is None:
                self._pub = self._client(socket_timeout=self.timeout)
            receivers = self._pub.publish(self.channel, self.json.dumps(data))
        except Exception as exc:
            self.publish_failures += 1
            self.dropped += 1
            self._publish_after = now + self.retry_max
            pub, self._pub = self._pub, None
            if pub is not None:
                try:
                    pub.close()
                except Exception:
                    pass
            if self._publish_ok:
                log.warning("message queue: cannot publish (%s); dropping messages until it is back", exc)
                self._publish_ok = False
            return None
        self.published += 1
        if not self._publish_ok:
            log.info("message queue: publishing again")
            self._publish_ok = True
        return receivers

    # -- listening ------------------------------------------------------------
    def _redis_listen_with_retries(self):
        retry = 0.1
        warned = False
        while True:
            pubsub = None
            try:
                pubsub = self._client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.pubsub = pubsub
                self.listening = True
                self.subscriptions += 1
                retry = 0.1
                warned = False
                log.info("message queue: subscribed to %r", self.channel)
                if self.on_subscribed is not None:
                    try:
                        self.on_subscribed()
                    except Exception:
                        log.exception("message queue: on_subscribed failed")
                yield from pubsub.listen()
            except Exception as exc:
                if not warned:
                    what = "lost the subscription" if self.listening else "cannot subscribe"
                    log.warning("message queue: %s (%s); retrying", what, exc)
                    warned = True
                self.listening = False
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
                self.server.sleep(retry)
                retry = min(retry * 2, self.retry_max)

    def _listen(self):
        skip = self.skip_prefix
        for data in super()._listen():
            if skip is not None and data[: len(skip)] == skip:
                continue
            yield data

    def stats(self) -> dict:
        return {
            "channel": self.channel,
            "listening": self.listening,
            "subscriptions": self.subscriptions,
            "published": self.published,
            "publish_failures": self.publish_failures,
            "dropped": self.dropped,
        }


class QueueFeed(Publisher):
    """The engine's side of the queue: a ``Publisher`` whose only "client" is
    the feed. It inherits the sequencer (book order per symbol, trade ids in
    order, ``hold``) and the background task; instead of emitting to rooms it
    collects each pass's events and changed book states and publishes them as
    one feed message (see the module docstring).

    ``request_sync`` (an edge asked, through the queue) adds every symbol's
    full state and last trades to the next message, at most once per
    ``sync_interval``.

    ``registry`` (``engine.accounts.AccountRegistry``, with ``private``): the
    keys the edges authenticate against; ``key_revoked`` is the
    ``Auth.revoke_listeners`` hook. ``publish_private`` is the one way an
    owner-addressed event gets on the feed.
    """

    def __init__(
        self,
        socketio,
        engine,
        *,
        interval: float = 0.005,
        heartbeat: float = 0.5,
        sync_interval: float = 0.5,
        depth: int = MIRROR_DEPTH,
        trades: int = MIRROR_TRADES,
        private: bool = False,
        registry=None,
        **options,
    ) -> None:
        super().__init__(socketio, engine, min_interval=interval, **options)
        # --auth on: order events are private (api.auth); the feed carries them
        # owner-addressed, with the key hashes an edge needs to route them
        self.private = private
        self.registry = registry if private else None
        # Somebody (the edges) always listens: nothing is skipped unformatted.
        self.members = {FEED_ROOM: {"queue"}}
        self.run_id = uuid.uuid4().hex
        self.n = 0
        self.depth = depth
        self.trade_limit = trades
        self.heartbeat_ns = int(heartbeat * 1e9)
        self.sync_interval_ns = int(sync_interval * 1e9)
        self._events: list = []
        self._books: list = []
        # key changes for the next message; appended by request threads (revocations)
        self._keys: list = []
        self._keys_seen = 0  # how many of the registry's keys (insertion order) went out
        self._lock_out = threading.Lock()  # events/keys appended outside the feed's task vs. _flush
        self._held_feed_books: dict[str, tuple] = {}  # symbol -> (state, ticket) not durable yet
        self._book_seq = {symbol: -1 for symbol in engine.markets}
        self._sync_requested = True  # edges already up get the state of a (re)started engine
        self._last_sync_ns = 0
        self._last_message_ns = 0
        self.messages = 0
        self.syncs = 0
        self.private_events = 0
        # a result's receipt (the order's) -> the feed message that carries it is published
        self.publish_latency = LatencyWindow(10_000)
        self._receipts: list[int] = []
        # The last ``trades`` trades per symbol as published, formatted: a sync is then
        # a copy, not 4,000 trades to format (~100 ms the order path would wait for).
        self._trades = {}
        for symbol in engine.markets:
            spec = engine.spec(symbol)
            recent = engine.recent_trades(symbol, trades)
            self._trades[symbol] = deque((formatting.trade_dict(spec, t) for t in recent), maxlen=trades)

    def start(self) -> None:
        """Start the background task now (heartbeats flow before the first order)."""
        if self._task is None:
            self._start()

    def request_sync(self, data=None) -> None:
        """An edge asks for the full state (queue handler; cheap, never blocks)."""
        self._sync_requested = True
        wake = self._wake
        if wake is not None:
            wake.set()

    # -- private events and keys ---------------------------------------------------
    def publish_private(self, event: str, account_id: int, payload: dict, symbol: str | None = None) -> None:
        """Put an owner-addressed event on the feed: the edges send ``event``
        with ``payload`` to ``account_id``'s keyed connections only
        (``order_event`` to its ``order_events`` subscriptions of ``symbol``;
        any other event to each of its keyed connections). In order with the
        feed's other events. O(1); callable from any thread (the feed's own
        task appends in sequencer order). Without accounts (not ``private``),
        nothing: there is no owner to address."""
        if not self.private or account_id is None:
            return
        self.private_events += 1
        with self._lock_out:
            self._events.append([event, symbol, 0, payload, account_id])
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def key_revoked(self, key) -> None:
        """``Auth.revoke_listeners`` hook: the edges learn it in the next message."""
        if not self.private:
            return
        with self._lock_out:
            self._keys.append([key.key_hash, key.account_id, True])
        wake = self._wake
        if wake is not None:
            wake.set()

    def _new_keys(self) -> None:
        """Keys issued since the last pass (the registry only ever adds keys, in
        order: a size compare per pass, a copy when it grew)."""
        keys = self.registry.keys
        if len(keys) == self._keys_seen:
            return
        issued = list(keys.values())[self._keys_seen :]  # one C-level copy: safe beside an admin thread
        self._keys_seen += len(issued)
        with self._lock_out:
            self._keys.extend([k.key_hash, k.account_id, k.revoked is not None] for k in issued)

    def _active_keys(self) -> list:
        """Every active key, ``[key_hash, account_id]`` (a sync)."""
        keys = list(self.registry.keys.values())
        self._keys_seen = max(self._keys_seen, len(keys))
        return [[k.key_hash, k.account_id] for k in keys if k.revoked is None]

    def _pace_ns(self) -> int:
        return self.min_interval_ns

    def _send(self, result, received: int, is_cancel: bool) -> None:
        """Collect the trades and order events of one result, in the order
        ``Publisher._send`` emits them (an amend's ``amended``, the stops it
        triggered with their ``triggered`` events and fills included); with
        ``private`` (``--auth on``) each order event addressed to its order's
        owner (``publish_private``)."""
        self._receipts.append(received)
        order = result.order
        symbol = order.symbol
        spec = self.engine.spec(symbol)
        if is_cancel:
            report = formatting.cancel_report(spec, result)
            self._order_event(order, symbol, {"event": "cancelled", "order": report})
            return
        if type(result) is AmendResult:
            self._fills(spec, result)
            report = formatting.submit_report(spec, result)
            self._order_event(order, symbol, {"event": "amended", "order": report})
        else:
            status = result.status if result.status is PENDING else NEW
            accepted = formatting.order_report(spec, order, status, 0, 0)
            self._order_event(order, symbol, {"event": "accepted", "order": accepted})
            self._fills(spec, result)
            if result.status is not NEW and result.status is not PENDING:
                report = formatting.submit_report(spec, result)
                self._order_event(order, symbol, {"event": report["status"], "order": report})
        for entry in result.triggered:
            entered = formatting.order_report(spec, entry.order, NEW, 0, 0)
            self._order_event(entry.order, symbol, {"event": "triggered", "order": entered})
            self._fills(spec, entry)
            if entry.status is not NEW:
                report = formatting.submit_report(spec, entry)
                self._order_event(entry.order, symbol, {"event": report["status"], "order": report})

    def _order_event(self, order, symbol: str, payload: dict) -> None:
        """An order event: public (``--auth off``) or its owner's."""
        if self.private:
            self.publish_private("order_event", order.account_id, payload, symbol)
        else:
            self._events.append(["order_event", symbol, 0, payload])

    def _fills(self, spec, result) -> None:
        """The trades of ``result``, each followed by its maker's order event,
        then those of the makers self-trade prevention cancelled."""
        symbol = spec.symbol
        published = self._trades[symbol]
        events = self._events
        for trade in result.trades:
            payload = formatting.trade_dict(spec, trade)
            published.append(payload)
            events.append(["trade", symbol, trade.trade_id, payload])
            report = formatting.maker_report(spec, trade)
            self._order_event(trade.maker, symbol, {"event": report["status"], "order": report})
        self.events["trade"] += len(result.trades)
        for maker in result.cancelled:
            report = formatting.order_report(spec, maker)
            self._order_event(maker, symbol, {"event": "cancelled", "order": report})

    def _note_book_change(self, symbol: str, seq: int, received: int) -> None:
        return None

    def _book_state(self, symbol: str) -> tuple[list, int]:
        """``([symbol, sequence, bids, asks], ticket)``: the state and, read after
        it, the journal ticket of the last record it reflects (0 without a store)."""
        seq, bids, asks = self.engine.depth(symbol, self.depth)
        ticket = self._ticket_of(symbol) if self._ticket_of is not None else 0
        return [symbol, seq, [list(level) for level in bids], [list(level) for level in asks]], ticket

    def _durable_ticket(self, ticket: int) -> bool:
        return self._durable is None or self._durable(ticket)

    def _publish_books(self, now: int) -> int | None:
        """Each symbol whose sequence moved since the last message: its state,
        read once, and only once its record is durable (the read barrier: a state
        read too early is held and goes out in a later pass, when it is)."""
        book_seq = self._book_seq
        held = self._held_feed_books
        for symbol, market in self.engine.markets.items():
            waiting = held.get(symbol)
            if waiting is not None:
                if not self._durable_ticket(waiting[1]):
                    continue
                del held[symbol]
                book_seq[symbol] = waiting[0][1]
                self._books.append(waiting[0])
            if market.sequence != book_seq[symbol]:
                state, ticket = self._book_state(symbol)
                if self._durable_ticket(ticket):
                    book_seq[symbol] = state[1]
                    self._books.append(state)
                else:
                    held[symbol] = (state, ticket)
        return None

    def _pass(self) -> float:
        wait = super()._pass()
        now = time.perf_counter_ns()
        self._flush(now)
        return min(wait, max(0.0, (self._last_message_ns + self.heartbeat_ns - now) / 1e9))

    def _full_state(self) -> dict | None:
        """Every book and the recent trades, for a sync; None when the books'
        records did not become durable within ``read_timeout`` (the sync then
        goes out in a later pass). Waiting here (one fsync, usually) rather than
        retrying: under steady load the newest state of every symbol is rarely
        durable at the moment it is read, and an edge would never sync."""
        engine = self.engine
        books = []
        last = 0
        for symbol in engine.markets:
            state, ticket = self._book_state(symbol)
            books.append(state)
            last = max(last, ticket)
        if not self._durable_ticket(last):
            try:
                self.store.wait(last, self.read_timeout)
            except Exception as exc:  # DurabilityTimeout, or a failed store (fail-stop)
                log.warning("feed: the sync's book states are not durable yet: %s", exc)
                return None
        self._held_feed_books.clear()
        for state in books:
            self._book_seq[state[0]] = state[1]
        trades = {symbol: list(published) for symbol, published in self._trades.items()}
        state = {
            "books": books,
            "trades": trades,
            "symbols": [m.spec.to_dict() for m in engine.markets.values()],
        }
        if self.registry is not None:
            state["keys"] = self._active_keys()
        return state

    def _flush(self, now: int) -> None:
        if self.registry is not None:
            self._new_keys()
        books = self._books
        sync = None
        if self._sync_requested and now - self._last_sync_ns >= self.sync_interval_ns:
            sync = self._full_state()
            if sync is not None:
                self._sync_requested = False
                self._last_sync_ns = now
                books = []  # the sync has every book, read after these
                self.syncs += 1
        with self._lock_out:
            events, keys = self._events, self._keys
            if not events and not books and not keys and sync is None:
                if now - self._last_message_ns < self.heartbeat_ns:
                    return
            self._events, self._keys = [], []
        self._books = []
        self.n += 1
        message = {
            "run": self.run_id,
            "n": self.n,
            "time_ns": time.time_ns(),
            "private": self.private,
            "events": events,
            "books": books,
        }
        if keys:
            message["keys"] = keys
        if sync is not None:
            message["sync"] = sync
        self._last_message_ns = now
        self.messages += 1
        self.deliveries += len(events) + len(books)
        self.socketio.emit(FEED_EVENT, message, namespace=MARKET_NAMESPACE, to=FEED_ROOM)
        received, self._receipts = self._receipts, []
        if received:
            published = time.perf_counter_ns()
            add = self.publish_latency.add
            for r in received:
                add(published - r)

    def feed_stats(self) -> dict:
        return {
            "run": self.run_id,
            "messages": self.messages,
            "last_n": self.n,
            "syncs": self.syncs,
            "queue_depth": len(self._queue),
            "trades": self.events["trade"],
            "private_events": self.private_events,
            "publish_latency": self.publish_latency.summary(),
        }


class PublisherTee:
    """The exchange's publisher in queue mode: every result goes to the local
    ``Publisher`` (clients connected to the engine itself) and to the
    ``QueueFeed``. Anything else is the local publisher's."""

    def __init__(self, local: Publisher, feed: QueueFeed, manager: QueueManager) -> None:
        self.local = local
        self.feed = feed
        self.manager = manager

    def on_submit(self, result, received_ns: int | None = None) -> None:
        self.local.on_submit(result, received_ns)
        self.feed.on_submit(result, received_ns)

    def on_cancel(self, result, received_ns: int | None = None) -> None:
        self.local.on_cancel(result, received_ns)
        self.feed.on_cancel(result, received_ns)

    def on_amend(self, result, received_ns: int | None = None) -> None:
        self.local.on_amend(result, received_ns)
        self.feed.on_amend(result, received_ns)

    def publish_private(self, event: str, account_id: int, payload: dict, symbol: str | None = None) -> None:
        """An owner-addressed event for the edges' keyed connections of
        ``account_id`` (``QueueFeed.publish_private``). The engine's own
        ``/market`` clients are the local publisher's business."""
        self.feed.publish_private(event, account_id, payload, symbol)

    def stats(self) -> dict:
        out = self.local.stats()
        out["message_queue"] = {**self.feed.feed_stats(), **self.manager.stats()}
        return out

    def close(self) -> None:
        self.local.close()
        self.feed.close()

    def __getattr__(self, name):
        return getattr(self.local, name)


def start_listening(socketio) -> None:
    """Initialize the server's client manager now: python-socketio does it at
    the first client connection, but a process on the queue must listen (and
    an edge must ask for its first sync) before anyone connects."""
    server = socketio.server
    if not server.manager_initialized:
        server.manager_initialized = True
        server.manager.initialize()


def engine_manager(url: str, channel: str = DEFAULT_CHANNEL) -> QueueManager:
    """The engine's client manager: skips its own feed when listening."""
    return QueueManager(url, channel, skip_prefix=FEED_PREFIX)


def attach_engine(socketio, exchange, local: Publisher, manager: QueueManager, **options) -> PublisherTee:
    """Start publishing ``exchange``'s results on the queue; returns the
    publisher to install as ``exchange.publisher``."""
    auth = getattr(exchange, "auth", None)
    options.setdefault("private", auth is not None and auth.on)
    options.setdefault("store", getattr(exchange, "store", None))  # book states only once durable
    if options["private"]:
        options.setdefault("registry", auth.registry)
    feed = QueueFeed(socketio, exchange.engine, **options)
    if options["private"]:
        auth.revoke_listeners.append(feed.key_revoked)
    manager.handlers[SYNC_EVENT] = feed.request_sync
    start_listening(socketio)
    feed.start()
    return PublisherTee(local, feed, manager)
