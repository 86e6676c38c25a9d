"""The engine's per-symbol locks as the api layer chooses them
(``api.app.symbol_lock_factory``): ``threading.RLock`` with real threads; under
eventlet the OS-level C ``RLock``, which excludes green threads from each other only
because no critical section yields to the hub -- checked here by running every path
that takes a symbol lock in concurrent green threads (a subprocess: this process
never monkey-patches)."""

from __future__ import annotations

import os
import threading

import pytest

from api.app import create_app, symbol_lock_factory
from tests.serverproc import run_script_json

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_threading_mode_uses_threading_rlock(tmp_path):
    assert symbol_lock_factory("threading") is threading.RLock
    app, _ = create_app({"data_dir": str(tmp_path), "store": False, "audit": False})
    engine = app.extensions["exchange"].engine
    assert all(type(m.lock) is type(threading.RLock()) for m in engine.markets.values())


EVENTLET_SCRIPT = r"""
import warnings
warnings.filterwarnings("ignore")
import eventlet
eventlet.monkey_patch()
import json, random, sys, threading
import greenlet
sys.path.insert(0, sys.argv[2])
from api.app import close_app, create_app, symbol_lock_factory
from engine.matcher import MatchingEngine
from storage import Store

factory = symbol_lock_factory("eventlet")
out = {
    "lock_type": f"{type(factory()).__module__}.{type(factory()).__qualname__}",
    "green_type": f"{type(threading.RLock()).__module__}.{type(threading.RLock()).__qualname__}",
}
app, _ = create_app({"data_dir": sys.argv[1] + "/plain", "async_mode": "eventlet", "store": False,
                     "audit": False})
out["app_lock_type"] = type(next(iter(app.extensions["exchange"].engine.markets.values())).lock).__qualname__
close_app(app)

entered_while_held = []


class Checked:
    # The eventlet lock, plus who holds it: another green thread acquiring it
    # while one holds it means a critical section yielded to the hub.
    def __init__(self):
        self.lock = factory()
        self.owner = None
        self.depth = 0

    def acquire(self, blocking=True, timeout=-1):
        me = greenlet.getcurrent()
        if self.owner is not None and self.owner is not me:
            entered_while_held.append(1)
        ok = self.lock.acquire(blocking, timeout)
        self.owner = me
        self.depth += 1
        return ok

    def release(self):
        self.depth -= 1
        if not self.depth:
            self.owner = None
        self.lock.release()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()


# The detector detects: a critical section that sleeps lets another green thread in.
probe = Checked()
def sleeper():
    with probe:
        eventlet.sleep(0.01)
def enterer():
    eventlet.sleep(0.001)
    with probe:
        pass
pool = eventlet.GreenPool()
pool.spawn(sleeper)
pool.spawn(enterer)
pool.waitall()
out["detector"] = len(entered_while_held)
entered_while_held.clear()

# "funds": --auth on with balances (one Checked lock over every symbol), every order an
# account's, deposits and withdrawals beside them, and a keyed watcher of balances
FUNDS = sys.argv[3] == "funds"
engine = MatchingEngine(lock_factory=Checked, funds=FUNDS)
store = Store(sys.argv[1] + "/data", fsync="batch", snapshot_every=150, yield_fn=lambda: eventlet.sleep(0))
app, socketio = create_app({"data_dir": sys.argv[1] + "/data", "async_mode": "eventlet", "engine": engine,
                            "store": store, "auth": "on" if FUNDS else "off"})
exchange = app.extensions["exchange"]
auth = app.extensions["auth"]
DEPOSITS = {"USDT": "100000000", "BTC": "100000", "ETH": "100000"}
accounts = {seed: auth.create_account(f"trader{seed}", deposits=DEPOSITS if FUNDS else None) for seed in range(12)}
watcher = socketio.test_client(app, namespace="/market", auth={"api_key": accounts[0][1]} if FUNDS else None)
for kind in ("l2_updates", "bbo", "trades", "order_events"):
    watcher.emit("subscribe", {"type": kind, "symbol": "BTC-USDT"}, namespace="/market", callback=True)
if FUNDS:
    watcher.emit("subscribe", {"type": "balances"}, namespace="/market", callback=True)


def order(rng):
    body = {"symbol": rng.choice(["BTC-USDT", "ETH-USDT"]), "side": rng.choice(["buy", "sell"]),
            "order_type": rng.choice(["limit", "limit", "ioc", "fok", "market"]), "quantity": "0.01"}
    if body["order_type"] != "market":
        body["price"] = str(rng.randint(995, 1005))
    return body


def client(seed):
    rng = random.Random(seed)
    # admin commands hold every symbol lock around the registry change and its record
    account, _key = accounts[seed]
    for i in range(40):
        owner = account if i % 2 or FUNDS else None  # orders with and without an owner (STP in the loop)
        report = json.loads(exchange.place_order_json(order(rng), owner))
        exchange.place_orders_json([order(rng) for _ in range(5)], owner)
        if report["status"] in ("new", "partially_filled"):
            exchange.cancel_order_or_error({"order_id": report["order_id"]}, owner)
        exchange.get_order(report["order_id"], owner)
        if i % 10 == 5:
            _account, key = auth.issue_key(account.account_id)
            auth.revoke({"api_key": key})
            if FUNDS:
                body = {"account_id": str(account.account_id), "asset": "USDT", "amount": "1"}
                auth.transfer(body, withdraw=False)
                auth.transfer(body, withdraw=True)
                exchange.account(account)
        exchange.book("BTC-USDT", 5)
        exchange.bbo("ETH-USDT")
        exchange.trades("BTC-USDT", 5)
        if i % 7 == 0:
            eventlet.sleep(0.001)


pool = eventlet.GreenPool()
for seed in range(12):
    pool.spawn(client, seed)
pool.waitall()
eventlet.sleep(0.05)  # the publisher's last pass
received = watcher.get_received("/market")
out["entered_while_held"] = len(entered_while_held)
out["snapshots"] = store.statistics()["snapshots"]
out["orders"] = engine.statistics()["engine"]["orders"]
out["keys"] = len(engine.accounts.keys)
out["balance_events"] = sum(1 for p in received if p["name"] == "balance")
out["funds_ok"] = exchange.statistics()["funds"]["ok"] if FUNDS else None
engine.check()
close_app(app)
print(json.dumps(out))
"""


@pytest.mark.parametrize("mode", ["plain", "funds"])
def test_eventlet_critical_sections_never_yield(tmp_path, mode):
    out = run_script_json(EVENTLET_SCRIPT, str(tmp_path), PROJECT, mode, timeout=120)
    assert out["lock_type"] == "_thread.RLock"
    assert out["green_type"] != "_thread.RLock"  # threading is patched: the green lock
    assert out["app_lock_type"] == "RLock"
    assert out["detector"] == 1
    assert out["orders"] == 12 * 40 * 6
    assert out["keys"] == 12 * 5  # each trader's first key and four issued (and revoked) more
    assert out["snapshots"], out  # snapshots were taken while green threads traded
    assert out["entered_while_held"] == 0
    if mode == "funds":  # one lock over every symbol; balances conserved; the watcher was served
        assert out["funds_ok"] is True and out["balance_events"] > 40
