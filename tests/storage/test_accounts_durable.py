"""Accounts, keys, revocations and order owners are journaled: a clean
restart, a snapshot and a SIGKILL keep every key working (and every revoked
key revoked), and ``make verify`` replays them."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request

import pytest

from api.app import close_app, create_app
from storage.journal import as_dict
from storage.verify import verify
from tests.api.conftest import FUNDED
from tests.serverproc import ServerProcess

BTC = "BTC-USDT"


def _app(data_dir, **extra):
    config = {"async_mode": "threading", "data_dir": str(data_dir), "rate_limit": 0, "auth": "on"}
    config.update(extra)
    return create_app(config)[0]


def _key(app, name):
    return app.extensions["auth"].create_account(name, deposits=FUNDED)[1]


def _order(client, key, side, price, quantity="1", **extra):
    body = {"symbol": BTC, "side": side, "order_type": "limit", "price": price, "quantity": quantity, **extra}
    return client.post("/order", json=body, headers={"X-API-Key": key})


def _records(data_dir):
    out = []
    for name in sorted(os.listdir(data_dir)):
        if name.startswith("journal-"):
            with open(os.path.join(data_dir, name)) as f:
                out += [as_dict(json.loads(line)) for line in f]
    return out


@pytest.mark.parametrize("snapshot", [False, True])
def test_a_restart_keeps_accounts_keys_revocations_and_owners(tmp_path, snapshot):
    data = tmp_path / "data"
    app = _app(data)
    alice, bob = _key(app, "alice"), _key(app, "bob")
    _account, alice2 = app.extensions["auth"].issue_key(1)
    app.extensions["auth"].revoke({"api_key": alice2})
    client = app.test_client()
    mine = _order(client, alice, "sell", "100.00").get_json()["order_id"]
    _order(client, alice, "buy", "100.00", stp="cancel_maker")  # STP cancels alice's own ask
    resting = _order(client, bob, "sell", "101.00").get_json()["order_id"]
    if snapshot:
        app.extensions["store"].snapshot(app.extensions["exchange"].engine)
    before = app.extensions["exchange"].engine.snapshot()
    close_app(app)

    records = _records(data)
    deposits = len(FUNDED)  # each account's deposits follow its o and k records
    assert [r["op"] for r in records[: 5 + 2 * deposits]] == ["o", "k"] + ["d"] * deposits + [
        "o",
        "k",
    ] + ["d"] * deposits + ["k"]
    assert records[5 + 2 * deposits]["op"] == "r"
    assert all(alice not in json.dumps(r) and alice2 not in json.dumps(r) for r in records)
    submits = [r for r in records if r["op"] == "s"]
    assert [(s["account_id"], s["stp"]) for s in submits] == [
        (1, "cancel_taker"),
        (1, "cancel_maker"),
        (2, "cancel_taker"),
    ]

    again = _app(data)
    after = again.extensions["exchange"].engine.snapshot()
    assert after["accounts"] == before["accounts"]
    client = again.test_client()
    assert client.get("/account", headers={"X-API-Key": alice}).get_json()["name"] == "alice"
    assert client.get("/account", headers={"X-API-Key": alice2}).status_code == 401
    assert (
        client.get(f"/order/{mine}", headers={"X-API-Key": alice}).get_json()["cancel_reason"] == "self_trade"
    )
    assert client.get(f"/order/{mine}", headers={"X-API-Key": bob}).status_code == 404
    listed = client.get("/orders", headers={"X-API-Key": bob}).get_json()["orders"]
    assert [o["order_id"] for o in listed] == [resting]
    r = client.post("/admin/accounts", json={"name": "alice"}, headers={"X-Admin-Token": _token(data)})
    assert r.status_code == 409
    r = client.post("/admin/accounts", json={"name": "carol"}, headers={"X-Admin-Token": _token(data)})
    assert r.get_json()["account_id"] == "3"  # ids continue
    close_app(again)
    report = verify(str(data), out=lambda *a: None)
    assert report["ok"], report["problems"]


def _token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def _call(url, method="GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.server
def test_sigkill_keeps_every_acknowledged_account_and_key(tmp_path):
    data = tmp_path / "data"
    with ServerProcess(data, "--auth", "on") as server:
        assert "demo.key" in server.output() or os.path.exists(data / "demo.key")
        demo = (data / "demo.key").read_text().strip()
        assert stat.S_IMODE(os.stat(data / "demo.key").st_mode) == 0o600
        assert demo not in server.output()  # the key itself is never printed
        token = _token(data)
        assert token not in server.output()
        status, alice = _call(
            server.url + "/admin/accounts",
            "POST",
            {"name": "alice", "deposits": FUNDED},
            {"X-Admin-Token": token},
        )
        assert status == 201
        status, extra = _call(server.url + "/admin/accounts/2/keys", "POST", {}, {"X-Admin-Token": token})
        assert status == 201
        status, _ = _call(
            server.url + "/admin/keys/revoke", "POST", {"api_key": extra["api_key"]}, {"X-Admin-Token": token}
        )
        assert status == 200
        body = {"symbol": BTC, "side": "buy", "order_type": "limit", "price": "100.00", "quantity": "1"}
        status, order = _call(server.url + "/order", "POST", body, {"X-API-Key": alice["api_key"]})
        assert status == 200
        status, _ = _call(server.url + "/order", "POST", body)
        assert status == 401
        server.kill()
    with ServerProcess(data, "--auth", "on") as server:
        status, me = _call(server.url + "/account", headers={"X-API-Key": alice["api_key"]})
        assert (status, me["name"]) == (200, "alice")
        status, _ = _call(server.url + "/account", headers={"X-API-Key": demo})
        assert status == 200
        status, _ = _call(server.url + "/account", headers={"X-API-Key": extra["api_key"]})
        assert status == 401
        status, got = _call(
            server.url + f"/order/{order['order_id']}", headers={"X-API-Key": alice["api_key"]}
        )
        assert (status, got["status"]) == (200, "new")
        status, _ = _call(server.url + f"/order/{order['order_id']}", headers={"X-API-Key": demo})
        assert status == 404
        status, listed = _call(server.url + "/admin/accounts", headers={"X-Admin-Token": token})
        assert [a["name"] for a in listed["accounts"]] == ["demo", "alice"]
    report = verify(str(data), out=lambda *a: None)
    assert report["ok"], report["problems"]


def test_admin_changes_racing_orders_and_snapshots_replay_exactly(tmp_path):
    """Account records are taken under every symbol lock: a snapshot never falls
    between a change and its record, whatever runs beside it (real threads)."""
    import threading

    from storage import Store

    data = tmp_path / "data"
    store = Store(str(data), fsync="off", snapshot_every=25)
    app = _app(data, store=store)
    auth = app.extensions["auth"]
    exchange = app.extensions["exchange"]
    alice, bob = (
        auth.create_account("alice", deposits=FUNDED)[0],
        auth.create_account("bob", deposits=FUNDED)[0],
    )
    errors = []

    def trade(account, symbol):
        try:
            for i in range(200):
                body = {
                    "symbol": symbol,
                    "side": "buy" if i % 2 else "sell",
                    "order_type": "limit",
                    "price": "100.00",
                    "quantity": "1",
                    "stp": "cancel_maker" if i % 3 else "cancel_taker",
                }
                exchange.place_order(body, account)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def administer():
        try:
            for i in range(30):
                _account, key = auth.create_account(f"user{i}")
                if i % 2:
                    auth.revoke({"api_key": key})
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [
        threading.Thread(target=trade, args=(alice, BTC)),
        threading.Thread(target=trade, args=(bob, "ETH-USDT")),
        threading.Thread(target=administer),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    before = exchange.engine.snapshot()
    # Snapshots were taken while the threads ran. How many depends on the scheduling: one
    # is skipped while another is being written (4 of ~17 due ones is seen under load, so
    # more than 2 is not a claim this test can make without flaking).
    assert store.stats()["snapshots"] >= 2
    close_app(app)
    report = verify(str(data), out=lambda *a: None)
    assert report["ok"], report["problems"]
    assert report["accounts"] == {"accounts": 32, "keys": 32, "revoked": 15}
    again = _app(data)
    after = again.extensions["exchange"].engine.snapshot()
    assert after["accounts"] == before["accounts"]
    assert sorted(after["orders"]) == sorted(before["orders"])
    close_app(again)
