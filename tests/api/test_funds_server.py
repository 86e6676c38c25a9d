"""Funds through a real server (``--auth on``): one account's many concurrent
clients can never overspend, and balances, locks and fees survive a SIGKILL
exactly as acknowledged."""

from __future__ import annotations

import http.client
import json
import threading
from decimal import Decimal

import pytest

from tests.serverproc import ServerProcess
from tests.sio_client import in_arrival_order

pytestmark = pytest.mark.server

D = Decimal
SYMBOLS = ("BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT")


def _call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        h = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def _token(server) -> dict:
    with open(f"{server.data_dir}/admin.token") as f:
        return {"X-Admin-Token": f.read().strip()}


def _open(server, name, deposits):
    status, answer = _call(
        server.port, "POST", "/admin/accounts", {"name": name, "deposits": deposits}, _token(server)
    )
    assert status == 201, answer
    return answer


def _balances(server, key) -> dict:
    status, answer = _call(server.port, "GET", "/account", headers={"X-API-Key": key})
    assert status == 200, answer
    return {b["asset"]: (D(b["available"]), D(b["locked"])) for b in answer["balances"]}


def test_concurrent_clients_of_one_account_never_overspend(tmp_path):
    """16 threads of one account place orders in four symbols at once under
    ``--async-mode threading``. Every buy locks 1,000 x 1 x 1.002 = 1,002 USDT, so
    10,000 USDT cover exactly nine of them whatever the interleaving; the sells
    lock base (0.1 BTC of 0.3, 1 ETH of 3). Nothing crosses: what is accepted
    rests and stays locked."""
    with ServerProcess(tmp_path / "data", "--auth", "on", "--async-mode", "threading") as server:
        whale = _open(server, "whale", {"USDT": "10000", "BTC": "0.3", "ETH": "3"})
        key = {"X-API-Key": whale["api_key"]}
        outcomes: list[tuple[str, int, dict]] = []
        start = threading.Barrier(16)

        def client(n: int) -> None:
            start.wait()
            for i in range(8):
                if (n + i) % 4 == 3:
                    symbol, qty = ("BTC-USDT", "0.1") if n % 2 else ("ETH-USDT", "1")
                    body = {
                        "symbol": symbol,
                        "side": "sell",
                        "order_type": "limit",
                        "price": "100000.00",
                        "quantity": qty,
                    }
                    kind = "sell " + symbol
                else:
                    symbol = SYMBOLS[(n + i) % 4]
                    body = {
                        "symbol": symbol,
                        "side": "buy",
                        "order_type": "limit",
                        "price": "1000.00",
                        "quantity": "1",
                    }
                    kind = "buy"
                status, answer = _call(server.port, "POST", "/order", body, key)
                outcomes.append((kind, status, answer))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(outcomes) == 128
        for _kind, status, answer in outcomes:
            assert status == 200 or (status == 400 and answer["error"]["code"] == "INSUFFICIENT_FUNDS"), (
                answer
            )
        accepted = {}
        for kind, status, _answer in outcomes:
            if status == 200:
                accepted[kind] = accepted.get(kind, 0) + 1
        assert accepted == {"buy": 9, "sell BTC-USDT": 3, "sell ETH-USDT": 3}
        balances = _balances(server, whale["api_key"])
        assert balances["USDT"] == (D("982"), D("9018"))  # accepted locks <= deposits
        assert balances["BTC"] == (0, D("0.3")) and balances["ETH"] == (0, D("3"))
        assert all(a >= 0 and b >= 0 for a, b in balances.values())
        _status, stats = _call(server.port, "GET", "/statistics")
        assert stats["funds"]["ok"] is True
        assert all(entry["ok"] for entry in stats["funds"]["assets"].values())
        _status, listed = _call(server.port, "GET", "/orders?status=all&limit=1000", headers=key)
        assert len(listed["orders"]) == 15


def _state(server, keys) -> dict:
    _status, listed = _call(server.port, "GET", "/admin/accounts", headers=_token(server))
    _status, stats = _call(server.port, "GET", "/statistics")
    funds = dict(stats["funds"])
    funds.pop("streaming", None)
    return {
        "accounts": [(a["account_id"], a["name"], a["balances"]) for a in listed["accounts"]],
        "fees": listed["fees"],
        "mine": {
            name: _call(server.port, "GET", "/account", headers={"X-API-Key": k})[1]
            for name, k in keys.items()
        },
        "funds": funds,
    }


def test_balances_locks_and_fees_survive_a_sigkill_exactly(tmp_path):
    data = tmp_path / "data"
    with ServerProcess(data, "--auth", "on") as server:
        alice = _open(server, "alice", {"USDT": "100000"})
        bob = _open(server, "bob", {"BTC": "2", "USDT": "10"})
        keys = {"alice": alice["api_key"], "bob": bob["api_key"]}
        admin = _token(server)

        def order(who, side, quantity, price=None, order_type="limit"):
            body = {"symbol": "BTC-USDT", "side": side, "order_type": order_type, "quantity": quantity}
            if price is not None:
                body["price"] = price
            status, answer = _call(server.port, "POST", "/order", body, {"X-API-Key": keys[who]})
            assert status == 200, answer
            return answer

        order("bob", "sell", "1", "30000.00")
        order("alice", "buy", "0.5", "30100.00")  # fills at 30,000: surplus released
        order("alice", "buy", "0.2", "29000.00")  # rests: 5,811.6 locked
        order("bob", "sell", "0.05", "28000.00")  # alice fills as maker
        order("alice", "buy", "0.01", order_type="market")
        resting = order("bob", "sell", "0.3", "31000.00")
        _call(server.port, "POST", "/cancel", {"order_id": resting["order_id"]}, {"X-API-Key": keys["bob"]})
        status, _ = _call(
            server.port,
            "POST",
            "/admin/deposit",
            {"account_id": alice["account_id"], "asset": "BTC", "amount": "0.125"},
            admin,
        )
        assert status == 200
        status, _ = _call(
            server.port,
            "POST",
            "/admin/withdraw",
            {"account_id": bob["account_id"], "asset": "USDT", "amount": "5"},
            admin,
        )
        assert status == 200
        status, refused = _call(
            server.port,
            "POST",
            "/admin/withdraw",
            {"account_id": alice["account_id"], "asset": "USDT", "amount": "1000000"},
            admin,
        )
        assert refused["error"]["code"] == "INSUFFICIENT_FUNDS"
        before = _state(server, keys)
        assert before["funds"]["ok"] is True
        assert D(before["fees"][1]["available"]) > 0  # fees were earned
        assert any(
            D(b["locked"]) > 0 for _id, _name, bs in before["accounts"] for b in bs
        )  # locks outstanding
        server.kill()
    with ServerProcess(data, "--auth", "on") as server:
        after = _state(server, keys)
    assert after == before


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_balance_events_arrive_in_the_ledgers_order_from_concurrent_clients(tmp_path, mode):
    """Four threads place 40 resting buys of one account at once; its keyed
    ``/market`` connection gets the snapshot, then one ``balance`` event per order,
    each locking 10.02 USDT more: the locked amounts arrive strictly in order.
    Another account's connection gets none of them."""
    import socketio

    with ServerProcess(tmp_path / "data", "--auth", "on", "--async-mode", mode) as server:
        alice = _open(server, "alice", {"USDT": "100000"})
        bob = _open(server, "bob", {"USDT": "1"})
        got: dict[str, list] = {"alice": [], "bob": []}
        done = threading.Event()
        clients = []
        for name, key in (("alice", alice["api_key"]), ("bob", bob["api_key"])):
            sio = in_arrival_order(socketio.Client(reconnection=False))

            def on_balance(payload, name=name):
                got[name].append(payload)
                if name == "alice" and len(got["alice"]) == 41:
                    done.set()

            sio.on("balance", on_balance, namespace="/market")
            sio.connect(server.url, namespaces=["/market"], auth={"api_key": key}, wait_timeout=10)
            clients.append(sio)
            assert sio.call("subscribe", {"type": "balances"}, namespace="/market", timeout=10) == {
                "ok": True
            }
        try:

            def place(n):
                for i in range(10):
                    body = {
                        "symbol": SYMBOLS[(n + i) % 4],
                        "side": "buy",
                        "order_type": "limit",
                        "price": "1000.00",
                        "quantity": "0.01",
                    }
                    status, answer = _call(
                        server.port, "POST", "/order", body, {"X-API-Key": alice["api_key"]}
                    )
                    assert status == 200, answer

            threads = [threading.Thread(target=place, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert done.wait(15), len(got["alice"])
            _status, final = _call(server.port, "GET", "/account", headers={"X-API-Key": alice["api_key"]})
        finally:
            for sio in clients:
                sio.disconnect()
    locked = [D(next(b for b in e["balances"] if b["asset"] == "USDT")["locked"]) for e in got["alice"]]
    assert locked == [D("10.02") * i for i in range(41)]
    assert got["alice"][-1] == final
    assert [e["name"] for e in got["bob"]] == ["bob"]  # its snapshot only
