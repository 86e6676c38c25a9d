"""Funds over the API (``--auth on``): the admin's deposits and withdrawals, balances
in ``GET /account`` and ``GET /admin/accounts``, orders refused with
``INSUFFICIENT_FUNDS`` (REST, bulk, ``/amend``, ``/trade``) changing nothing, the
contract's settlement scenario with hand-computed amounts, ``/statistics`` funds,
and the private ``balance`` event.

Defaults: BTC-USDT, tick 0.01, lot 0.00001, maker fee 0.001, taker fee 0.002; BTC
is held to 5 decimals, USDT to 10 (``GET /assets``)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from api.market import MARKET_NAMESPACE, TRADE_NAMESPACE
from tests.api.conftest import BTC

D = Decimal
ETH = "ETH-USDT"
MAKER, TAKER = D("0.001"), D("0.002")


# -- fixtures ---------------------------------------------------------------------------------------
class Client:
    """The Flask test client with one set of headers."""

    def __init__(self, client, headers: dict) -> None:
        self.client = client
        self.h = headers

    def post(self, path, body=None, expect=200):
        r = self.client.post(path, json=body, headers=self.h)
        assert r.status_code == expect, (path, body, r.status_code, r.data[:400])
        return r.get_json()

    def get(self, path, expect=200):
        r = self.client.get(path, headers=self.h)
        assert r.status_code == expect, (path, r.status_code, r.data[:400])
        return r.get_json()


class Trader(Client):
    def __init__(self, client, key: str, account_id: str) -> None:
        super().__init__(client, {"X-API-Key": key})
        self.key = key
        self.account_id = account_id

    def order(self, side, quantity, price=None, order_type="limit", symbol=BTC, expect=200, **extra):
        body = {"symbol": symbol, "side": side, "order_type": order_type, "quantity": quantity, **extra}
        if price is not None:
            body["price"] = price
        return self.post("/order", body, expect)

    def balances(self) -> dict:
        """``asset -> (available, locked)`` as Decimals."""
        return {b["asset"]: (D(b["available"]), D(b["locked"])) for b in self.get("/account")["balances"]}

    def of(self, asset: str) -> tuple[Decimal, Decimal]:
        return self.balances()[asset]


@pytest.fixture
def app(make_app):
    return make_app(auth="on")


@pytest.fixture
def admin(app):
    token = open(app.extensions["auth"].token_path).read().strip()
    return Client(app.test_client(), {"X-Admin-Token": token})


@pytest.fixture
def open_account(app, admin):
    def make(name, **deposits):
        body = {"name": name}
        if deposits:
            body["deposits"] = deposits
        answer = admin.post("/admin/accounts", body, 201)
        return Trader(app.test_client(), answer["api_key"], answer["account_id"])

    return make


def fees(admin) -> dict:
    return {b["asset"]: D(b["available"]) for b in admin.get("/admin/accounts")["fees"]}


def funds_state(app):
    """Everything funds: balances of every account, fees, deposits, the books' sequences."""
    engine = app.extensions["exchange"].engine
    ledger = engine.ledger
    return (
        {a: ledger.balances_of(a) for a in list(ledger.balances)},
        dict(ledger.fees),
        dict(ledger.deposited),
        dict(ledger.withdrawn),
        {s: m.sequence for s, m in engine.markets.items()},
        len(engine.orders),
    )


# -- admin: deposit and withdraw ----------------------------------------------------------------------
def test_deposit_and_withdraw_move_the_available_balance(open_account, admin):
    alice = open_account("alice")
    answer = admin.post(
        "/admin/deposit", {"account_id": alice.account_id, "asset": "USDT", "amount": "1000.5"}
    )
    assert answer["account_id"] == alice.account_id
    usdt = next(b for b in answer["balances"] if b["asset"] == "USDT")
    assert usdt == {"asset": "USDT", "available": "1000.5000000000", "locked": "0.0000000000"}
    answer = admin.post(
        "/admin/withdraw", {"account_id": int(alice.account_id), "asset": "USDT", "amount": 0.5}
    )
    assert alice.of("USDT") == (D("1000"), 0)
    assert answer["balances"] == alice.get("/account")["balances"]
    admin.post("/admin/deposit", {"account_id": alice.account_id, "asset": "BTC", "amount": "0.00001"})
    assert alice.of("BTC") == (D("0.00001"), 0)


def test_a_withdrawal_beyond_available_is_insufficient_funds_and_changes_nothing(app, open_account, admin):
    alice = open_account("alice", USDT="100")
    before = funds_state(app)
    error = admin.post(
        "/admin/withdraw", {"account_id": alice.account_id, "asset": "USDT", "amount": "100.0000000001"}, 400
    )
    assert error["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert funds_state(app) == before
    admin.post("/admin/withdraw", {"account_id": alice.account_id, "asset": "USDT", "amount": "100"})
    assert alice.of("USDT") == (0, 0)


@pytest.mark.parametrize("path", ["/admin/deposit", "/admin/withdraw"])
@pytest.mark.parametrize(
    "body,status,code,field",
    [
        ({"account_id": "1", "asset": "USDT", "amount": "0"}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "USDT", "amount": "-1"}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "BTC", "amount": "0.000001"}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "USDT", "amount": "1e3"}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "USDT", "amount": "abc"}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "USDT", "amount": True}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "USDT", "amount": [1]}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "USDT"}, 400, "VALIDATION_ERROR", "amount"),
        ({"account_id": "1", "asset": "XRP", "amount": "1"}, 400, "VALIDATION_ERROR", "asset"),
        ({"account_id": "1", "asset": 5, "amount": "1"}, 400, "VALIDATION_ERROR", "asset"),
        ({"account_id": "1", "amount": "1"}, 400, "VALIDATION_ERROR", "asset"),
        ({"asset": "USDT", "amount": "1"}, 400, "VALIDATION_ERROR", "account_id"),
        ({"account_id": "99", "asset": "USDT", "amount": "1"}, 404, "ACCOUNT_NOT_FOUND", "account_id"),
        ({"account_id": "x", "asset": "USDT", "amount": "1"}, 404, "ACCOUNT_NOT_FOUND", "account_id"),
        ({"account_id": 1.0, "asset": "USDT", "amount": "1"}, 404, "ACCOUNT_NOT_FOUND", "account_id"),
        ([1, 2], 400, "VALIDATION_ERROR", None),
    ],
)
def test_bad_transfers_are_refused_and_change_nothing(
    app, open_account, admin, path, body, status, code, field
):
    open_account("alice", USDT="10")
    before = funds_state(app)
    error = admin.post(path, body, status)["error"]
    assert error["code"] == code and error.get("field") == field, error
    assert funds_state(app) == before


@pytest.mark.parametrize("path", ["/admin/deposit", "/admin/withdraw"])
def test_transfers_need_the_admin_token(app, open_account, path):
    alice = open_account("alice", USDT="10")
    body = {"account_id": alice.account_id, "asset": "USDT", "amount": "1"}
    before = funds_state(app)
    for headers in ({}, {"X-Admin-Token": "wrong" * 10}, {"X-API-Key": alice.key}):
        r = app.test_client().post(path, json=body, headers=headers)
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "UNAUTHENTICATED"
    r = app.test_client().post(path, data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401  # credentials before the body
    assert funds_state(app) == before


def test_transfers_are_audited_without_secrets(app, admin):
    created = admin.post("/admin/accounts", {"name": "alice", "deposits": {"USDT": "5", "BTC": "1"}}, 201)
    admin.post("/admin/deposit", {"account_id": "1", "asset": "USDT", "amount": "2.5"})
    admin.post("/admin/withdraw", {"account_id": "1", "asset": "BTC", "amount": "0.25"})
    audit = app.extensions["audit"]
    audit.flush()
    text = open(audit.path).read()
    lines = [line for line in text.splitlines() if '"event":"admin"' in line]
    actions = [
        a for line in lines for a in ("account_created", "deposit", "withdraw") if f'"action":"{a}"' in line
    ]
    assert actions == ["account_created", "deposit", "deposit", "deposit", "withdraw"]
    assert (
        '"amount":"2.5000000000"' in lines[3]
        and '"asset":"BTC"' in lines[4]
        and '"amount":"0.25000"' in lines[4]
    )
    assert created["api_key"] not in text and admin.h["X-Admin-Token"] not in text


def test_journal_records_of_transfers(make_app, tmp_path):
    """``d``/``w`` records as FUNDS.md agrees them: ``[n, op, account_id, asset, units, ts]``,
    an account's deposits right after its ``o`` and ``k``."""

    class Recorder:
        def __init__(self):
            self.rows = []

        def log_command(self, *command):
            self.rows.append(command)
            return None

    app = make_app(auth="on")
    auth = app.extensions["auth"]
    auth.store = recorder = Recorder()
    auth.create_account("alice", deposits={"USDT": "5", "BTC": "1"})
    auth.transfer({"account_id": "1", "asset": "USDT", "amount": "2.5"}, withdraw=False)
    auth.transfer({"account_id": "1", "asset": "BTC", "amount": "0.25"}, withdraw=True)
    ops = [(r[0], *r[1:-1]) for r in recorder.rows]
    assert ops[0][:3] == ("o", 1, "alice") and ops[1][0] == "k"
    assert ops[2:] == [
        ("d", 1, "USDT", 5 * 10**10),
        ("d", 1, "BTC", 10**5),
        ("d", 1, "USDT", 25 * 10**9),
        ("w", 1, "BTC", 25000),
    ]
    assert all(type(r[-1]) is int and r[-1] > 10**18 for r in recorder.rows)  # ns timestamps


def test_auth_off_has_no_balances_and_refuses_transfers(make_app):
    app = make_app(auth="off")
    token = open(app.extensions["auth"].token_path).read().strip()
    admin = Client(app.test_client(), {"X-Admin-Token": token})
    assert app.extensions["exchange"].engine.ledger is None
    created = admin.post("/admin/accounts", {"name": "alice"}, 201)
    assert created["balances"] == []
    error = admin.post("/admin/deposit", {"account_id": "1", "asset": "USDT", "amount": "1"}, 400)
    assert error["error"]["code"] == "VALIDATION_ERROR"
    error = admin.post("/admin/accounts", {"name": "bob", "deposits": {"USDT": "1"}}, 400)
    assert error["error"]["field"] == "deposits"
    assert app.test_client().get("/account").get_json() == {
        "account_id": "0",
        "name": "shared",
        "balances": [],
    }
    listed = admin.get("/admin/accounts")
    assert listed["fees"] == [] and listed["accounts"][0]["balances"] == []
    # orders are never checked against funds
    r = app.test_client().post(
        "/order",
        json={"symbol": BTC, "side": "buy", "order_type": "limit", "price": "30000.00", "quantity": "100"},
    )
    assert r.status_code == 200
    assert app.test_client().get("/statistics").get_json()["funds"] is None


# -- accounts with deposits ---------------------------------------------------------------------------
def test_an_account_created_with_deposits_has_them(open_account, admin):
    alice = open_account("alice", USDT="100000", BTC="1.5", SOL=3)
    assert alice.balances() == {
        "BTC": (D("1.5"), 0),
        "USDT": (D("100000"), 0),
        "ETH": (0, 0),
        "BNB": (0, 0),
        "SOL": (D("3"), 0),
    }
    (entry,) = admin.get("/admin/accounts")["accounts"]
    assert entry["balances"] == alice.get("/account")["balances"]
    assert entry["balances"][1] == {
        "asset": "USDT",
        "available": "100000.0000000000",
        "locked": "0.0000000000",
    }


def test_a_bad_deposit_entry_creates_no_account(app, admin):
    before = (len(app.extensions["auth"].registry), funds_state(app))
    body = {"name": "alice", "deposits": {"USDT": "100", "BTC": "0.000001"}}
    assert admin.post("/admin/accounts", body, 400)["error"]["field"] == "deposits"
    assert (len(app.extensions["auth"].registry), funds_state(app)) == before
    assert admin.post("/admin/accounts", {"name": "alice"}, 201)["account_id"] == "1"  # the name is free


def test_the_demo_account_is_funded_at_first_run(make_app, tmp_path):
    from api.auth import DEMO_DEPOSITS

    app = make_app(auth="on")
    key_path = app.extensions["auth"].first_run(app.config["DATA_DIR"])
    key = open(key_path).read().strip()
    demo = Trader(app.test_client(), key, "1")
    assert {a: b[0] for a, b in demo.balances().items()} == {a: D(v) for a, v in DEMO_DEPOSITS.items()}
    demo.order("buy", "0.01", "30000.00")  # the README's first order
    assert demo.of("USDT")[1] == D("300.6")


def test_first_run_text_names_the_demo_funds():
    from api.auth import first_run_text

    text = first_run_text(
        "http://127.0.0.1:5000", "data/demo.key", "data/admin.token", True, {"USDT": "1000000"}
    )
    assert "funded with 1000000 USDT" in text and "/account" in text


# -- orders: refusals change nothing ----------------------------------------------------------------
def test_an_order_the_account_cannot_cover_is_refused_and_changes_nothing(app, open_account):
    alice = open_account("alice", USDT="30059.99", BTC="0.5")
    before = funds_state(app)
    # 1 BTC at 30,000 locks 30,000 x 1.002 = 30,060 USDT
    error = alice.order("buy", "1", "30000.00", expect=400)["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    error = alice.order("sell", "0.50001", "30000.00", expect=400)["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert funds_state(app) == before
    assert alice.get("/orders?status=all")["orders"] == []
    assert app.extensions["exchange"].rejections == 2
    alice.order("sell", "0.5", "30000.00")
    assert alice.of("BTC") == (0, D("0.5"))


def test_bulk_elements_are_refused_one_by_one(app, open_account):
    alice = open_account("alice", USDT="2004")
    body = [
        {"symbol": BTC, "side": "buy", "order_type": "limit", "price": "1000.00", "quantity": "1"},
        {"symbol": BTC, "side": "buy", "order_type": "limit", "price": "1000.00", "quantity": "1"},
        {"symbol": BTC, "side": "buy", "order_type": "limit", "price": "1000.00", "quantity": "0.00001"},
    ]
    answers = alice.post("/orders", body)
    assert [a.get("status") for a in answers[:2]] == ["new", "new"]
    assert answers[2]["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert alice.of("USDT") == (0, D("2004"))


def test_trade_namespace_answers_insufficient_funds(app, open_account):
    alice = open_account("alice", USDT="10")
    socketio = app.extensions["socketio"]
    client = socketio.test_client(app, namespace=TRADE_NAMESPACE, auth={"api_key": alice.key})
    try:
        before = funds_state(app)
        body = {"symbol": BTC, "side": "buy", "order_type": "limit", "price": "30000.00", "quantity": "1"}
        ack = client.emit("order", body, namespace=TRADE_NAMESPACE, callback=True)
        assert ack["error"]["code"] == "INSUFFICIENT_FUNDS"
        assert funds_state(app) == before
    finally:
        client.disconnect(namespace=TRADE_NAMESPACE)


def test_an_amend_the_account_cannot_cover_is_refused_and_changes_nothing(app, open_account):
    alice = open_account("alice", USDT="3006")
    placed = alice.order("buy", "0.1", "30000.00")  # locks 3006
    before = funds_state(app)
    error = alice.post("/amend", {"order_id": placed["order_id"], "quantity": "0.10001"}, 400)["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    error = alice.post("/amend", {"order_id": placed["order_id"], "price": "30000.01"}, 400)["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert funds_state(app) == before
    assert alice.get(f"/order/{placed['order_id']}")["quantity"] == "0.10000"
    # down is always possible, and releases the difference at once
    alice.post("/amend", {"order_id": placed["order_id"], "quantity": "0.05"})
    assert alice.of("USDT") == (D("1503"), D("1503"))


# -- the contract's scenario ------------------------------------------------------------------------
def test_two_funded_accounts_trade_and_balances_move_exactly_by_notional_and_fees(open_account, admin):
    alice = open_account("alice", USDT="100000")
    bob = open_account("bob", BTC="2")

    # bob rests a sell of 1 BTC at 30,000: 1 BTC locked
    sell = bob.order("sell", "1", "30000.00")
    assert bob.of("BTC") == (D("1"), D("1"))

    # alice buys 1 BTC at up to 30,100: she locks 30,100 x 1.002 and fills at 30,000 as taker
    buy = alice.order("buy", "1", "30100.00")
    assert buy["status"] == "filled" and buy["trades"][0]["price"] == "30000.00"
    notional = D("30000")
    assert D(buy["trades"][0]["taker_fee"]) == 60 and D(buy["trades"][0]["maker_fee"]) == 30
    alice_usdt = D("100000") - notional - notional * TAKER  # the better price's surplus is released
    assert alice.balances()["USDT"] == (alice_usdt, 0) == (D("69940"), 0)
    assert alice.of("BTC") == (D("1"), 0)
    bob_usdt = notional - notional * MAKER
    assert bob.of("USDT") == (bob_usdt, 0) == (D("29970"), 0)
    assert bob.of("BTC") == (D("1"), 0)
    assert fees(admin)["USDT"] == D("90")
    assert bob.get(f"/order/{sell['order_id']}")["status"] == "filled"

    # alice rests a buy (maker): 0.1 at 29,000 locks 29,000 x 0.1 x 1.002 = 2,905.8
    alice.order("buy", "0.1", "29000.00")
    assert alice.of("USDT") == (alice_usdt - D("2905.8"), D("2905.8"))
    # bob sells into it at 28,000 (taker): it fills at 29,000, alice pays the maker fee only
    bob.order("sell", "0.1", "28000.00")
    n2 = D("2900")
    alice_usdt -= n2 + n2 * MAKER  # 2,902.9: the 2.9 of taker rate she had locked comes back
    assert alice.of("USDT") == (alice_usdt, 0)
    assert alice.of("BTC") == (D("1.1"), 0)
    bob_usdt += n2 - n2 * TAKER
    assert bob.of("USDT") == (bob_usdt, 0)
    assert bob.of("BTC") == (D("0.9"), 0)
    assert fees(admin)["USDT"] == D("90") + n2 * (MAKER + TAKER)

    # partial fill then cancel: bob rests 0.5 at 31,000, alice takes 0.2, bob cancels the rest
    rest = bob.order("sell", "0.5", "31000.00")
    alice.order("buy", "0.2", "31000.00")
    n3 = D("6200")
    assert bob.of("BTC") == (D("0.4"), D("0.3"))
    cancelled = bob.post("/cancel", {"order_id": rest["order_id"]})
    assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "user"
    assert bob.of("BTC") == (D("0.7"), 0)
    bob_usdt += n3 - n3 * MAKER
    alice_usdt -= n3 + n3 * TAKER
    assert bob.of("USDT") == (bob_usdt, 0) and alice.of("USDT") == (alice_usdt, 0)
    total_fees = D("90") + n2 * (MAKER + TAKER) + n3 * (MAKER + TAKER)
    assert fees(admin) == {"BTC": 0, "USDT": total_fees, "ETH": 0, "BNB": 0, "SOL": 0}
    # conservation, by hand: USDT deposited = both accounts + fees; BTC too
    assert alice_usdt + bob_usdt + total_fees == D("100000")
    assert alice.of("BTC")[0] + bob.of("BTC")[0] == D("2")


def test_a_market_buy_runs_out_of_funds_and_says_so(open_account, admin):
    seller = open_account("seller", BTC="1")
    seller.order("sell", "1", "30000.00")
    carol = open_account("carol", USDT="100")
    report = carol.order("buy", "0.01", order_type="market")
    # each lot (0.00001 BTC) costs 0.3 USDT + 0.0006 taker fee: 100 USDT cover 332 lots
    lots = int(D("100") / (D("0.3") * (1 + TAKER)))
    assert lots == 332
    bought = D("0.00001") * lots
    assert report["status"] == "cancelled" and report["cancel_reason"] == "insufficient_funds"
    assert D(report["filled_quantity"]) == bought
    assert carol.of("BTC") == (bought, 0)
    assert carol.of("USDT") == (D("100") - bought * 30000 * (1 + TAKER), 0) == (D("0.2008"), 0)
    assert carol.get(f"/order/{report['order_id']}")["cancel_reason"] == "insufficient_funds"


def test_a_market_buy_stopped_by_funds_reports_insufficient_funds_in_events(app, open_account):
    seller = open_account("seller", BTC="1")
    seller.order("sell", "1", "30000.00")
    carol = open_account("carol", USDT="1")
    socketio = app.extensions["socketio"]
    client = socketio.test_client(app, namespace=MARKET_NAMESPACE, auth={"api_key": carol.key})
    try:
        assert client.emit(
            "subscribe", {"type": "order_events"}, namespace=MARKET_NAMESPACE, callback=True
        ) == {"ok": True}
        carol.order("buy", "1", order_type="market")
        final = None
        for _ in range(100):
            socketio.sleep(0.02)
            got = [p["args"][0] for p in client.get_received(MARKET_NAMESPACE) if p["name"] == "order_event"]
            done = [e for e in got if e["event"] == "cancelled"]
            if done:
                final = done[0]
                break
        assert final is not None and final["order"]["cancel_reason"] == "insufficient_funds"
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_locked_funds_cannot_be_withdrawn(open_account, admin):
    alice = open_account("alice", USDT="10000")
    alice.order("buy", "0.1", "30000.00")  # locks 3,006
    assert alice.of("USDT") == (D("6994"), D("3006"))
    body = {"account_id": alice.account_id, "asset": "USDT", "amount": "6994.0000000001"}
    assert admin.post("/admin/withdraw", body, 400)["error"]["code"] == "INSUFFICIENT_FUNDS"
    admin.post("/admin/withdraw", {**body, "amount": "6994"})
    assert alice.of("USDT") == (0, D("3006"))


def test_get_admin_accounts_lists_every_accounts_balances_and_the_fees(open_account, admin):
    alice = open_account("alice", USDT="1000")
    bob = open_account("bob", BTC="1")
    bob.order("sell", "0.01", "30000.00")
    alice.order("buy", "0.01", "30000.00")
    listed = admin.get("/admin/accounts")
    by_name = {a["name"]: a["balances"] for a in listed["accounts"]}
    assert by_name == {"alice": alice.get("/account")["balances"], "bob": bob.get("/account")["balances"]}
    assert listed["fees"][1] == {"asset": "USDT", "available": "0.9000000000", "locked": "0.0000000000"}
    assert all(D(b["locked"]) == 0 for b in listed["fees"])


# -- statistics ------------------------------------------------------------------------------------
def test_statistics_report_conservation_per_asset(open_account, admin, app):
    alice = open_account("alice", USDT="1000")
    bob = open_account("bob", BTC="1")
    bob.order("sell", "0.01", "30000.00")
    alice.order("buy", "0.02", "30000.00")  # 0.01 fills, 0.01 rests
    admin.post("/admin/withdraw", {"account_id": bob.account_id, "asset": "BTC", "amount": "0.5"})
    stats = app.test_client().get("/statistics").get_json()["funds"]
    assert stats["ok"] is True and stats["accounts"] == 2
    # alice locked 0.02 x 30,000 x 1.002 = 601.2, paid 300 + 0.6 for the half that filled;
    # bob received 300 - 0.3
    assert stats["assets"]["USDT"] == {
        "deposits": "1000.0000000000",
        "withdrawals": "0.0000000000",
        "available": "698.5000000000",
        "locked": "300.6000000000",
        "fees": "0.9000000000",
        "ok": True,
    }
    assert stats["assets"]["BTC"] == {
        "deposits": "1.00000",
        "withdrawals": "0.50000",
        "available": "0.50000",
        "locked": "0.00000",
        "fees": "0.00000",
        "ok": True,
    }
    assert stats["streaming"]["balance_events"] == 0


# -- the balance event ------------------------------------------------------------------------------
def _balance_client(app, key=None):
    socketio = app.extensions["socketio"]
    auth = {"api_key": key} if key else None
    return socketio.test_client(app, namespace=MARKET_NAMESPACE, auth=auth)


def _balances_events(client):
    return [p["args"][0] for p in client.get_received(MARKET_NAMESPACE) if p["name"] == "balance"]


def _usdt(event) -> tuple[str, str]:
    b = next(x for x in event["balances"] if x["asset"] == "USDT")
    return b["available"], b["locked"]


def test_balance_events_reach_the_keyed_connection_only_in_order(app, open_account, admin):
    alice = open_account("alice", USDT="1000")
    bob = open_account("bob", BTC="1")
    mine = _balance_client(app, alice.key)
    theirs = _balance_client(app, bob.key)
    anonymous = _balance_client(app)
    try:
        ack = mine.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        assert ack == {"ok": True}
        (first,) = _balances_events(mine)
        assert first == alice.get("/account")  # exactly GET /account
        ack = anonymous.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        assert ack["error"]["code"] == "UNAUTHENTICATED"
        assert theirs.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True) == {
            "ok": True
        }
        _balances_events(theirs)

        admin.post("/admin/deposit", {"account_id": alice.account_id, "asset": "USDT", "amount": "10"})
        alice.order("buy", "0.01", "30000.00")  # locks 300.6
        bob.order("sell", "0.004", "30000.00")  # alice fills as maker: 120 + 0.12 fee from her lock
        alice.post("/cancel", {"order_id": alice.get("/orders")["orders"][0]["order_id"]})
        alice.order("buy", "1", "30000.00", expect=400)  # refused: no event
        events = _balances_events(mine)
        assert [_usdt(e) for e in events] == [
            ("1010.0000000000", "0.0000000000"),
            ("709.4000000000", "300.6000000000"),
            # 0.004 filled as maker: 120.24 unlocked, 120 + 0.12 paid (the taker-rate part returns)
            ("709.5200000000", "180.3600000000"),
            ("889.8800000000", "0.0000000000"),
        ]
        assert events[-1] == alice.get("/account")
        assert all(e["account_id"] == alice.account_id and e["name"] == "alice" for e in events)
        theirs_events = _balances_events(theirs)
        assert [e["account_id"] for e in theirs_events] == [bob.account_id]  # its sell, filled at once
        assert _balances_events(anonymous) == []
    finally:
        for c in (mine, theirs, anonymous):
            c.disconnect(namespace=MARKET_NAMESPACE)


def test_balance_events_stop_on_unsubscribe_and_on_revocation(app, open_account, admin):
    alice = open_account("alice", USDT="1000")
    client = _balance_client(app, alice.key)
    try:
        assert client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True) == {
            "ok": True
        }
        assert client.emit(
            "unsubscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True
        ) == {"ok": True}
        _balances_events(client)
        alice.order("buy", "0.01", "30000.00")
        assert _balances_events(client) == []
        client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        assert len(_balances_events(client)) == 1
        admin.post("/admin/keys/revoke", {"api_key": alice.key})
        admin.post("/admin/deposit", {"account_id": alice.account_id, "asset": "USDT", "amount": "10"})
        assert _balances_events(client) == []
        ack = client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        assert ack["error"]["code"] == "UNAUTHENTICATED"
        feed = app.extensions["exchange"].balance_feed
        assert feed.watchers == {} and feed.subscribed == {}
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_balance_events_of_a_triggered_stop_and_an_stp_cancel(app, open_account):
    alice = open_account("alice", USDT="100000", BTC="1")
    bob = open_account("bob", USDT="100000", BTC="1")
    client = _balance_client(app, bob.key)
    try:
        client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        _balances_events(client)
        bob.order("sell", "0.1", "29000.00", order_type="stop_limit", stop_price="29500.00")  # locks 0.1 BTC
        alice.order("buy", "0.1", "29000.00")  # rests; bob's stop will sell into it
        assert len(_balances_events(client)) == 1
        alice.order("sell", "0.01", "29400.00")  # rests
        alice.order("buy", "0.01", "29400.00", stp="cancel_both")  # self-trade prevented: both cancelled
        assert _balances_events(client) == []  # none of bob's balances changed
        bob.order("buy", "0.01", "29400.00")  # nothing rests at 29,400 any more: bob's buy rests
        alice.order(
            "sell", "0.01", "29400.00"
        )  # trades with bob at 29,400: last price 29,400 -> stop triggers
        events = _balances_events(client)
        assert len(events) == 2
        btc = next(b for b in events[-1]["balances"] if b["asset"] == "BTC")
        assert btc == {"asset": "BTC", "available": "0.91000", "locked": "0.00000"}
        assert events[-1] == bob.get("/account")
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_auth_off_balances_subscription_sends_the_shared_account(make_app):
    app = make_app(auth="off")
    client = _balance_client(app)
    try:
        assert client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True) == {
            "ok": True
        }
        assert _balances_events(client) == [{"account_id": "0", "name": "shared", "balances": []}]
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_a_disconnect_forgets_the_watcher(app, open_account):
    alice = open_account("alice", USDT="1000")
    client = _balance_client(app, alice.key)
    client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
    feed = app.extensions["exchange"].balance_feed
    assert feed.watchers == {int(alice.account_id): 1}
    client.disconnect(namespace=MARKET_NAMESPACE)
    assert feed.watchers == {} and feed.subscribed == {}


def test_the_feed_delivers_in_the_ledgers_order_whatever_order_commands_finish():
    """Two commands captured in the critical section in one order and released
    (after their journal waits) in the other arrive in the first order; a capture
    whose command failed to become durable is skipped, not waited for."""
    from api.funds import BalanceFeed
    from engine.matcher import MatchingEngine

    engine = MatchingEngine(funds=True)
    account = engine.accounts.create("alice", 1).account_id
    sent = []
    feed = BalanceFeed(
        engine,
        lambda event, account_id, payload: sent.append((event, account_id, _usdt(payload))),
        lambda sid, account_id: None,
        lambda sid, account_id: None,
        lambda sid, event, payload: sent.append((event, sid, _usdt(payload))),
        lambda account_id: "alice",
    )
    snapshot, _ticket = feed.subscribe("sid1", account, lambda: 0)
    captures = []
    for amount in (1, 2, 3):
        engine.deposit(account, "USDT", amount * 10**10)
        captures.append(feed.capture_accounts([account]))
    feed.release(captures[2])
    feed.release(captures[1], deliver=False)
    assert sent == []  # the snapshot and the first deposit are not released yet
    feed.release(captures[0])
    assert sent == []
    feed.release(snapshot)
    assert sent == [
        ("balance", "sid1", ("0.0000000000", "0.0000000000")),
        ("balance", account, ("1.0000000000", "0.0000000000")),
        ("balance", account, ("6.0000000000", "0.0000000000")),
    ]
    assert feed.capture_accounts([account]) is None  # nothing changed since the last capture


def test_transfers_are_refused_after_a_journal_fault_and_a_failed_wait_halts(app, open_account, admin):
    """Fail-stop, as for every admin command: a failed store refuses the transfer
    before it changes anything; a transfer whose journal wait fails answers 503."""
    from storage.errors import JournalWriteError

    alice = open_account("alice", USDT="10")
    auth = app.extensions["auth"]
    body = {"account_id": alice.account_id, "asset": "USDT", "amount": "1"}

    class FailedStore:
        failed = True

        def log_command(self, *command):  # pragma: no cover - never reached
            raise AssertionError("journaled after the fault")

    auth.store = FailedStore()
    before = funds_state(app)
    for path in ("/admin/deposit", "/admin/withdraw"):
        assert admin.post(path, body, 503)["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert funds_state(app) == before

    class FailingWait:
        failed = False

        def log_command(self, *command):
            return 1

        def wait(self, ticket, timeout=None):
            raise JournalWriteError("disk gone")

    auth.store = FailingWait()
    assert admin.post("/admin/deposit", body, 503)["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_a_market_namespace_without_accounts_refuses_balances():
    """A ``/market`` without accounts (a market-data edge builds it so) has no
    balances to show: it says so rather than claim an empty shared account."""
    from flask import Flask
    from flask_socketio import SocketIO

    from api.market import MarketNamespace, Publisher
    from engine.matcher import MatchingEngine

    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading")
    socketio.on_namespace(MarketNamespace(Publisher(socketio, MatchingEngine())))
    client = socketio.test_client(app, namespace=MARKET_NAMESPACE)
    try:
        ack = client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        assert ack["error"]["code"] == "UNAUTHENTICATED" and "engine" in ack["error"]["message"]
        assert _balances_events(client) == []
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_a_loop_of_commands_cut_short_never_stalls_the_balance_events(app, open_account, monkeypatch):
    """``cancel_all`` whose second cancel fails unexpectedly: the first cancel's
    event still goes out, and so do later ones (a capture left unreleased would
    hold back every later event of every account)."""
    alice = open_account("alice", USDT="1000")
    alice.order("buy", "0.001", "30000.00")
    alice.order("buy", "0.001", "30000.00")
    client = _balance_client(app, alice.key)
    try:
        client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        _balances_events(client)
        exchange = app.extensions["exchange"]
        real = exchange._cancel_locked
        calls = []

        def flaky(order):
            calls.append(order)
            if len(calls) == 2:
                raise RuntimeError("boom")
            return real(order)

        monkeypatch.setattr(exchange, "_cancel_locked", flaky)
        r = app.test_client().post("/cancel_all", json={}, headers={"X-API-Key": alice.key})
        assert r.status_code == 500
        monkeypatch.setattr(exchange, "_cancel_locked", real)
        assert [_usdt(e) for e in _balances_events(client)] == [("969.9400000000", "30.0600000000")]
        alice.order("buy", "0.001", "30000.00")
        assert [_usdt(e) for e in _balances_events(client)] == [("939.8800000000", "60.1200000000")]
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_balances_not_durable_in_time_are_refused_not_shown(app, open_account):
    """The read barrier: ``GET /account``, ``/statistics`` funds and a balances
    subscription whose state is not durable within the read timeout answer 503
    (the subscription changes nothing) rather than show what a crash could undo."""
    from storage.errors import DurabilityTimeout

    alice = open_account("alice", USDT="10")
    exchange = app.extensions["exchange"]

    class Slow:
        failed = False

        def wait(self, ticket, timeout=None):
            raise DurabilityTimeout(f"record {ticket} not durable in {timeout}s")

    exchange.store, exchange._last_ticket = Slow(), lambda: 7
    assert alice.get("/account", 503)["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert app.test_client().get("/statistics").status_code == 503
    client = _balance_client(app, alice.key)
    try:
        ack = client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
        assert ack["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert _balances_events(client) == []
        feed = exchange.balance_feed
        assert feed.watchers == {} and feed.subscribed == {}
        exchange.store, exchange._last_ticket = None, None
        assert client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True) == {
            "ok": True
        }
        assert len(_balances_events(client)) == 1
    finally:
        client.disconnect(namespace=MARKET_NAMESPACE)


def test_a_fills_exact_fee_is_what_the_balances_moved_by(open_account, admin):
    """A fee below the 8 decimals a trade prints: ``fee`` is rounded, ``fee_exact``
    is what moved (30000.01 x 0.00001 = 0.3000001 of notional; maker 0.001 of it is
    0.0003000001, taker 0.002 is 0.0006000002)."""
    seller = open_account("seller", BTC="1")
    buyer = open_account("buyer", USDT="1")
    seller.order("sell", "0.00001", "30000.01")
    buyer.order("buy", "0.00001", "30000.01")
    (sold,) = seller.get("/fills")["fills"]
    (bought,) = buyer.get("/fills")["fills"]
    assert (sold["fee"], sold["fee_exact"], sold["fee_asset"]) == ("0.00030000", "0.0003000001", "USDT")
    assert (bought["fee"], bought["fee_exact"]) == ("0.00060000", "0.0006000002")
    assert seller.of("USDT") == (D("0.3000001") - D(sold["fee_exact"]), 0)
    assert buyer.of("USDT") == (D("1") - D("0.3000001") - D(bought["fee_exact"]), 0)
    assert fees(admin)["USDT"] == D(sold["fee_exact"]) + D(bought["fee_exact"])
