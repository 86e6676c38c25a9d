"""The edge's feed handling without Redis: gaps, syncs, replay, the mirror's
monotony, and which emits the queue manager sends through Redis."""

from __future__ import annotations

import pytest

from api.edge import EdgeService, FeedReceiver, Mirror
from api.mq import ENGINE_ROOM, FEED_ROOM, QueueManager
from engine.symbols import default_symbols


class FakePublisher:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, str, dict]] = []
        self.woken = 0

    def deliver(self, event, symbol, payload) -> None:
        self.delivered.append((event, symbol, payload))

    def books_changed(self) -> None:
        self.woken += 1

    def trade_ids(self) -> list[int]:
        return [int(p["trade_id"]) for e, _, p in self.delivered if e == "trade"]


def trade(tid: int, symbol: str = "BTC-USDT") -> dict:
    return {"symbol": symbol, "trade_id": str(tid), "price": "1.00", "quantity": "1.00000"}


def tev(tid: int, symbol: str = "BTC-USDT") -> list:
    return ["trade", symbol, tid, trade(tid, symbol)]


def msg(n: int, events=(), books=(), sync=None, run: str = "r1") -> dict:
    m = {"run": run, "n": n, "time_ns": 0, "events": list(events), "books": list(books)}
    if sync is not None:
        m["sync"] = sync
    return m


def sync_of(tids, seq: int = 1) -> dict:
    return {
        "books": [["BTC-USDT", seq, [[100, 1]], [[101, 2]]]],
        "trades": {"BTC-USDT": [trade(t) for t in tids]},
    }


@pytest.fixture
def edge():
    mirror = Mirror(default_symbols())
    publisher = FakePublisher()
    requests = []
    receiver = FeedReceiver(mirror, publisher, lambda: requests.append(1), sync_retry=0.0)
    return mirror, publisher, receiver, requests


def test_events_before_the_first_sync_are_held_and_the_first_sync_replays_nothing(edge):
    mirror, publisher, receiver, requests = edge
    receiver.on_feed(msg(5, [tev(3)]))
    assert publisher.delivered == [] and requests and not receiver.synced
    receiver.on_feed(msg(6, sync=sync_of([1, 2, 3])))
    assert receiver.synced
    assert publisher.trade_ids() == []  # history is not news; trade 3 was in the sync already
    receiver.on_feed(msg(7, [tev(4)]))
    assert publisher.trade_ids() == [4]
    assert [t["trade_id"] for t in mirror.markets["BTC-USDT"].trades] == ["1", "2", "3", "4"]


def test_a_gap_holds_events_until_the_sync_which_replays_the_missed_trades_in_order_once(edge):
    mirror, publisher, receiver, requests = edge
    receiver.on_feed(msg(1, sync=sync_of([1])))
    receiver.on_feed(msg(2, [tev(2)]))
    requests.clear()
    receiver.on_feed(msg(5, [tev(5), ["order_event", "BTC-USDT", 0, {"event": "accepted"}]]))  # 3, 4 lost
    assert not receiver.synced and requests
    assert publisher.trade_ids() == [2]
    receiver.on_feed(msg(6, [tev(6)], sync=sync_of([1, 2, 3, 4, 5, 6], seq=9)))
    assert publisher.trade_ids() == [2, 3, 4, 5, 6]
    assert [e for e, _, _ in publisher.delivered].count("order_event") == 1
    receiver.on_feed(msg(7, [tev(7)]))
    assert publisher.trade_ids() == [2, 3, 4, 5, 6, 7]
    assert mirror.markets["BTC-USDT"].sequence == 9


def test_a_new_engine_run_asks_for_a_sync(edge):
    _, _, receiver, requests = edge
    receiver.on_feed(msg(1, sync=sync_of([1])))
    requests.clear()
    receiver.on_feed(msg(2, run="r2"))  # n would follow, but another run
    assert not receiver.synced and requests


def test_the_mirror_never_goes_back_to_an_older_book(edge):
    mirror, publisher, receiver, _ = edge
    receiver.on_feed(msg(1, sync=sync_of([], seq=5)))
    receiver.on_feed(msg(2, books=[["BTC-USDT", 4, [[1, 1]], []]]))
    assert mirror.depth("BTC-USDT", 10) == (5, [[100, 1]], [[101, 2]])
    receiver.on_feed(msg(3, books=[["BTC-USDT", 6, [[99, 3]], []]]))
    assert mirror.bbo("BTC-USDT") == (6, [99, 3], None)
    assert publisher.woken >= 2


def test_staleness_follows_the_last_message(edge, monkeypatch):
    _, _, receiver, _ = edge
    assert receiver.stale()  # never heard from the engine
    receiver.on_feed(msg(1, sync=sync_of([])))
    assert not receiver.stale()
    receiver.last_message -= receiver.stale_after + 1
    assert receiver.stale()


def test_edge_service_answers_like_the_exchange(edge):
    mirror, publisher, receiver, _ = edge
    receiver.on_feed(msg(1, sync=sync_of([1, 2, 3], seq=7)))
    service = EdgeService(mirror, receiver, publisher, None)
    assert [t["trade_id"] for t in service.trades("BTC-USDT", 2)["trades"]] == ["2", "3"]
    book = service.book("BTC-USDT", 1000)
    assert (book["sequence"], book["bids"], book["asks"]) == (7, [["1.00", "0.00001"]], [["1.01", "0.00002"]])
    assert service.bbo("BTC-USDT")["spread"] == "0.01"
    with pytest.raises(Exception) as unknown:
        service.book("NOPE", 10)
    assert unknown.value.code == "UNKNOWN_SYMBOL"


class RecordingManager(QueueManager):
    """A QueueManager whose Redis is a list."""

    def __init__(self) -> None:
        super().__init__("redis://127.0.0.1:1/0")
        self.sent: list[dict] = []
        self.local: list[tuple] = []

    def _publish(self, data):
        self.sent.append(data)

    def _handle_emit(self, message):
        if message.get("room") in (FEED_ROOM, ENGINE_ROOM):
            return super()._handle_emit(message)
        self.local.append(message)


def test_only_the_feed_rooms_go_through_the_queue(monkeypatch):
    manager = RecordingManager()
    base_emits = []
    monkeypatch.setattr(
        "socketio.manager.Manager.emit",
        lambda self, event, data, namespace, room=None, **kw: base_emits.append(room),
    )
    manager.emit("bbo", {}, namespace="/market", room="bbo:BTC-USDT")
    manager.emit("trade", {}, namespace="/market", to=["trades:BTC-USDT", "trades:*"])
    assert manager.sent == [] and base_emits == ["bbo:BTC-USDT", ["trades:BTC-USDT", "trades:*"]]
    manager.emit("feed", {"n": 1}, namespace="/market", to=FEED_ROOM)
    manager.emit("sync", {}, namespace="/market", to=ENGINE_ROOM)
    assert [m["event"] for m in manager.sent] == ["feed", "sync"]


def test_feed_messages_are_handled_not_delivered():
    manager = QueueManager("redis://127.0.0.1:1/0")
    got = []
    manager.handlers["feed"] = got.append
    manager._handle_emit({"event": "feed", "room": FEED_ROOM, "data": [{"n": 1}], "host_id": "other"})
    manager._handle_emit({"event": "feed", "room": FEED_ROOM, "data": [{"n": 2}], "host_id": manager.host_id})
    assert got == [{"n": 1}]  # a process never handles its own message


def test_publishing_to_a_dead_redis_drops_quickly_and_never_raises():
    manager = QueueManager("redis://127.0.0.1:1/0", timeout=0.5, retry_max=60)
    manager.set_server(type("S", (), {"packet_class": type("P", (), {"json": None})})())
    assert manager._publish({"method": "emit"}) is None
    assert manager._publish({"method": "emit"}) is None  # dropped without trying again
    assert (manager.publish_failures, manager.dropped) == (1, 2)


# -- the engine's side: QueueFeed ---------------------------------------------------
class FakeSocketIO:
    """What QueueFeed needs of Flask-SocketIO, recording the feed messages."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def emit(self, event, data, namespace=None, to=None):
        assert (event, namespace, to) == ("feed", "/market", FEED_ROOM)
        self.sent.append(data)


@pytest.fixture
def feed():
    import threading

    from api.mq import QueueFeed
    from engine.matcher import MatchingEngine

    engine = MatchingEngine()
    sio = FakeSocketIO()
    f = QueueFeed(sio, engine)
    f._wake = threading.Event()
    f._task = object()  # the test runs the passes itself
    f._init_baselines()
    return engine, sio, f


def _submit(engine, f, side, order_type, qty, price=None):
    from engine.order import OrderType, Side

    result = engine.submit("BTC-USDT", Side(side), OrderType(order_type), qty, price)
    f.on_submit(result)
    return result


def test_the_feed_carries_events_in_publisher_order_and_one_book_state_per_pass(feed):
    engine, sio, f = feed
    f._pass()  # the first message: the startup sync
    assert "sync" in sio.sent[-1] and sio.sent[-1]["n"] == 1
    _submit(engine, f, "sell", "limit", 5, 3_000_000)
    taker = _submit(engine, f, "buy", "limit", 2, 3_000_000)
    f._pass()
    message = sio.sent[-1]
    assert message["n"] == 2 and "sync" not in message
    kinds = [(e[0], e[3].get("event")) for e in message["events"]]
    assert kinds == [
        ("order_event", "accepted"),  # the maker rests: no final event
        ("order_event", "accepted"),
        ("trade", None),
        ("order_event", "partially_filled"),
        ("order_event", "filled"),
    ]
    assert message["events"][2][2] == taker.trades[0].trade_id
    assert message["books"] == [["BTC-USDT", taker.sequence, [], [[3_000_000, 3]]]]  # conflated: one state


def test_a_requested_sync_carries_books_and_the_published_trades(feed):
    engine, sio, f = feed
    f._pass()
    _submit(engine, f, "sell", "limit", 5, 3_000_000)
    taker = _submit(engine, f, "buy", "market", 1)
    f._pass()
    f._last_sync_ns = 0
    f.request_sync()
    f._pass()
    sync = sio.sent[-1]["sync"]
    assert [t["trade_id"] for t in sync["trades"]["BTC-USDT"]] == [str(taker.trades[0].trade_id)]
    assert {b[0]: b[1] for b in sync["books"]}["BTC-USDT"] == engine.markets["BTC-USDT"].sequence
    assert [s["symbol"] for s in sync["symbols"]] == list(engine.markets)


def test_a_quiet_feed_still_sends_heartbeats(feed):
    _, sio, f = feed
    f._pass()
    f._pass()
    assert len(sio.sent) == 1  # nothing new, heartbeat not due
    f._last_message_ns -= f.heartbeat_ns
    f._pass()
    assert len(sio.sent) == 2 and sio.sent[-1]["events"] == [] and sio.sent[-1]["n"] == 2


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--role", "edge"], "--role edge needs --message-queue"),
        (["--message-queue", "foo://x"], "--message-queue must be a redis://"),
        (["--role", "edge", "--message-queue", "redis://h/0", "--demo"], "--demo runs against the engine"),
    ],
)
def test_command_line_refuses_an_edge_without_a_queue_and_a_queue_that_is_not_redis(argv, says, capsys):
    from api.app import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert says in capsys.readouterr().err


def test_command_line_takes_the_queue_options():
    from api.app import parse_args

    args = parse_args(["--role", "edge", "--message-queue", "redis://10.0.0.2:6379/0", "--proxy-hops", "1"])
    assert (args.role, args.message_queue, args.queue_channel, args.proxy_hops) == (
        "edge",
        "redis://10.0.0.2:6379/0",
        "matchbook",
        1,
    )


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("redis://:s3cret@10.0.0.2:6379/0", "redis://:***@10.0.0.2:6379/0"),
        ("rediss://user:p@ss@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_a_queue_password_never_reaches_the_log(url, logged):
    from api.app import redact_url

    assert redact_url(url) == logged


class _SlowStore:
    """A store whose records become durable only when waited for (or never)."""

    def __init__(self, fail: bool = False) -> None:
        self.durable_n = 0
        self.last = 0
        self.fail = fail
        self.waits = 0

    def ticket_of(self, symbol: str) -> int:
        return self.last

    def durable(self, ticket: int) -> bool:
        return ticket <= self.durable_n

    def wait(self, ticket: int, timeout=None) -> None:
        self.waits += 1
        if self.fail:
            raise TimeoutError("not durable in time")
        self.durable_n = max(self.durable_n, ticket)


@pytest.mark.parametrize("fail", [False, True])
def test_a_sync_waits_for_its_books_to_be_durable_rather_than_starving(fail):
    """Under steady load the newest state of a symbol is rarely durable when read;
    a sync that only retried would never go out (a late edge would never sync). It
    waits for the records its states reflect, and is postponed only when they do
    not become durable in time (then nothing of them is shown)."""
    from api.mq import QueueFeed
    from engine.matcher import MatchingEngine
    from engine.order import LIMIT, SELL

    class _Sio:
        def start_background_task(self, *a, **k):
            return None

        def sleep(self, s):
            return None

    engine = MatchingEngine(default_symbols())
    engine.submit_extended("BTC-USDT", SELL, LIMIT, 100, 3000000)
    store = _SlowStore(fail=fail)
    store.last = 7  # the book state read reflects record 7, not durable yet
    feed = QueueFeed(_Sio(), engine, store=store, read_timeout=0.01)
    state = feed._full_state()
    assert store.waits == 1
    if fail:
        assert state is None
    else:
        assert state is not None and store.durable_n == 7
        btc = [b for b in state["books"] if b[0] == "BTC-USDT"][0]
        assert btc[3] == [[3000000, 100]]  # the ask, durable now


# -- private events and keys (--auth on) -------------------------------------------
@pytest.fixture
def private_feed():
    import threading

    from api.auth import Auth, key_hash
    from api.mq import QueueFeed
    from engine.matcher import MatchingEngine

    engine = MatchingEngine()
    auth = Auth(engine, mode="on")
    alice, alice_key = auth.create_account("alice")
    bob, bob_key = auth.create_account("bob")
    sio = FakeSocketIO()
    f = QueueFeed(sio, engine, private=True, registry=auth.registry)
    auth.revoke_listeners.append(f.key_revoked)
    f._wake = threading.Event()
    f._task = object()
    f._init_baselines()
    ids = {"alice": alice.account_id, "bob": bob.account_id}
    keys = {"alice": alice_key, "bob": bob_key}
    return engine, sio, f, auth, ids, keys, key_hash


def test_a_private_feed_addresses_order_events_to_their_owners_and_carries_key_hashes(private_feed):
    from engine.order import OrderType, Side

    engine, sio, f, auth, ids, keys, key_hash = private_feed
    f._pass()
    sync = sio.sent[-1]["sync"]
    assert sorted(sync["keys"]) == sorted([[key_hash(keys[n]), ids[n]] for n in ("alice", "bob")])
    assert all(keys[n] not in str(sio.sent) for n in keys)  # hashes only, never a key
    maker = engine.submit("BTC-USDT", Side.SELL, OrderType.LIMIT, 5, 3_000_000, account_id=ids["alice"])
    f.on_submit(maker)
    f.on_submit(engine.submit("BTC-USDT", Side.BUY, OrderType.IOC, 2, 3_000_000, account_id=ids["bob"]))
    f._pass()
    events = sio.sent[-1]["events"]
    assert [(e[0], e[3].get("event"), e[4] if len(e) > 4 else None) for e in events] == [
        ("order_event", "accepted", ids["alice"]),
        ("order_event", "accepted", ids["bob"]),
        ("trade", None, None),  # public
        ("order_event", "partially_filled", ids["alice"]),  # the maker's, to its owner
        ("order_event", "filled", ids["bob"]),
    ]
    _, carol_key = auth.issue_key(ids["alice"])
    auth.revoke({"api_key": keys["bob"]})
    f._pass()
    assert sio.sent[-1]["keys"] == [
        [key_hash(keys["bob"]), ids["bob"], True],
        [key_hash(carol_key), ids["alice"], False],
    ]
    f.publish_private("balance", ids["alice"], {"account_id": str(ids["alice"]), "balances": []})
    f._pass()
    assert sio.sent[-1]["events"] == [
        ["balance", None, 0, {"account_id": str(ids["alice"]), "balances": []}, ids["alice"]]
    ]


def test_edge_auth_follows_the_feeds_keys_and_cuts_revoked_sessions():
    from api.auth import key_hash, new_key
    from api.edge import EdgeAuth
    from api.errors import Unauthenticated

    synced = []
    auth = EdgeAuth(lambda: True, lambda: bool(synced), lambda: 0, lambda s: None, wait=0.0)
    cut = []
    auth.revoke_listeners.append(cut.append)
    k1, k2, k3 = new_key(), new_key(), new_key()
    with pytest.raises(Unauthenticated):  # before the sync nothing is known
        auth.session({"api_key": k1}, None)
    auth.replace([[key_hash(k1), 7], [key_hash(k2), 8]])
    synced.append(1)
    account, key = auth.session({"api_key": k1}, None)
    assert account.account_id == 7 and key.revoked is None
    assert auth.session({}, None) is None  # no key: a public connection
    auth.apply([[key_hash(k3), 7, False], [key_hash(k1), 7, True]])
    assert cut == [key] and key.revoked is not None
    with pytest.raises(Unauthenticated):
        auth.session({"api_key": k1}, None)
    assert auth.session({"api_key": k3}, None)[0].account_id == 7
    held = auth.session({"api_key": k2}, None)[1]
    auth.replace([[key_hash(k3), 7]])  # a sync without k2: revoked meanwhile
    assert cut == [key, held]
    with pytest.raises(Unauthenticated):
        auth.session({"api_key": key_hash(k3)}, None)  # a hash is not a key


def test_edge_auth_is_off_when_the_engine_runs_without_accounts():
    from api.edge import EdgeAuth

    auth = EdgeAuth(lambda: False, lambda: True, lambda: 0, lambda s: None)
    assert auth.session({"api_key": "anything"}, None) is None


def test_an_edge_passes_for_trades_every_stream_interval_while_book_rooms_keep_their_cadence():
    from api.edge import EdgePublisher
    from api.market import MARKET_NAMESPACE, BookRoom

    class Recorder:
        def __init__(self) -> None:
            self.sent: list = []

        def emit(self, event, data, namespace=None, to=None):
            self.sent.append((event, to))

    sio = Recorder()
    mirror = Mirror(default_symbols())
    publisher = EdgePublisher(sio, mirror, min_interval=0.05, stream_interval=0.02)
    publisher.clients[MARKET_NAMESPACE] = 1000
    assert publisher._pace_ns() == 20_000_000  # trades wait at most 20 ms for a pass
    assert publisher._book_pace_ns() == 50_000_000
    room = BookRoom("bbo:BTC-USDT", "bbo", "BTC-USDT", 0)
    publisher.book_rooms["BTC-USDT"][room.name] = room
    publisher.members[room.name] = {"a"}  # one member: Publisher's own rule would allow 0.1 ms
    mirror.apply_book("BTC-USDT", 5, [[100, 1]], [[101, 1]])
    now = 10**12
    room.last_emit_ns, room.last_seq = now - 30_000_000, 4
    deadline = publisher._publish_books(now)
    assert sio.sent == [] and deadline == room.last_emit_ns + 50_000_000  # 50 ms after the last
    publisher._publish_books(now + 20_000_000)
    assert sio.sent == [("bbo", "bbo:BTC-USDT")]
    assert (publisher.min_interval_ns, publisher.interval_per_member_ns) == (50_000_000, 100_000)


def test_an_edge_without_the_direct_fan_out_keeps_no_write_times():
    from api.edge import EdgePublisher
    from api.market import MARKET_NAMESPACE

    class Recorder:
        def __init__(self) -> None:
            self.sent: list = []

        def emit(self, event, data, namespace=None, to=None):
            self.sent.append((event, to))

    import threading

    sio = Recorder()
    publisher = EdgePublisher(sio, Mirror(default_symbols()))
    publisher._wake = threading.Event()
    publisher.members["trades:BTC-USDT"] = {"a"}
    publisher.clients[MARKET_NAMESPACE] = 1
    for tid in range(1, 4):
        publisher.deliver("trade", "BTC-USDT", trade(tid))
    publisher._pass()
    assert sio.sent == [("trade", "trades:BTC-USDT")] * 3
    assert publisher._written == []  # (they would pile up: only the direct fan-out reads them)
