"""Accounts over REST (``--auth on``): admin endpoints and their token, API keys,
ownership on every private endpoint, the account's lists, self-trade
prevention through ``POST /order``, rate limits per key, and ``--auth off``
unchanged."""

from __future__ import annotations

import json
import os
import stat

import pytest

from api.auth import KEY_LENGTH, KEY_PREFIX, key_hash
from tests.api.conftest import BTC, FUNDED

ETH = "ETH-USDT"
UNAUTH = {"error": {"code": "UNAUTHENTICATED", "message": "a valid X-API-Key header is required"}}


class Trader:
    """A test client with one account's key on every request."""

    def __init__(self, client, key: str | None) -> None:
        self.client = client
        self.key = key

    def headers(self):
        return {} if self.key is None else {"X-API-Key": self.key}

    def post(self, path, body, expect=200):
        r = self.client.post(path, json=body, headers=self.headers())
        assert r.status_code == expect, (r.status_code, r.data[:400])
        return r.get_json()

    def get(self, path, expect=200):
        r = self.client.get(path, headers=self.headers())
        assert r.status_code == expect, (r.status_code, r.data[:400])
        return r.get_json()

    def limit(self, side, quantity, price, symbol=BTC, expect=200, **extra):
        body = {"symbol": symbol, "side": side, "order_type": "limit", "quantity": quantity, "price": price}
        body.update(extra)
        return self.post("/order", body, expect)


@pytest.fixture
def on_app(make_app):
    return make_app(auth="on")


@pytest.fixture
def admin(on_app):
    token = open(on_app.extensions["auth"].token_path).read().strip()
    client = on_app.test_client()

    class Admin:
        def __init__(self):
            self.token = token

        def post(self, path, body=None, expect=200, token=token, headers=None):
            h = {"X-Admin-Token": token} if token is not None else {}
            h.update(headers or {})
            r = client.post(path, json=body, headers=h) if body is not None else client.post(path, headers=h)
            assert r.status_code == expect, (r.status_code, r.data[:400])
            return r.get_json()

        def get(self, path, expect=200, token=token):
            r = client.get(path, headers={"X-Admin-Token": token} if token is not None else {})
            assert r.status_code == expect, (r.status_code, r.data[:400])
            return r.get_json()

        def account(self, name, deposits=FUNDED):
            body = {"name": name} if deposits is None else {"name": name, "deposits": deposits}
            return self.post("/admin/accounts", body, 201)

        def trader(self, name):
            return Trader(client, self.account(name)["api_key"])

    return Admin()


@pytest.fixture
def alice(admin):
    return admin.trader("alice")


@pytest.fixture
def bob(admin):
    return admin.trader("bob")


def state(on_app):
    engine = on_app.extensions["exchange"].engine
    return {s: (m.sequence, len(m.book.orders)) for s, m in engine.markets.items()}, len(engine.accounts)


# -- the admin token ----------------------------------------------------------------------
def test_the_admin_token_file_is_made_0600_at_first_start(on_app):
    path = on_app.extensions["auth"].token_path
    assert path == os.path.join(on_app.config["DATA_DIR"], "admin.token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(open(path).read().strip()) >= 22


def test_an_admin_token_file_elsewhere_is_created_and_data_dir_has_none(make_app, tmp_path):
    path = tmp_path / "secrets" / "token"
    path.parent.mkdir()
    app = make_app(auth="on", admin_token_file=str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(os.path.join(app.config["DATA_DIR"], "admin.token"))
    token = path.read_text().strip()
    r = app.test_client().post("/admin/accounts", json={"name": "x"}, headers={"X-Admin-Token": token})
    assert r.status_code == 201


def test_a_weak_admin_token_file_refuses_to_start(make_app, tmp_path):
    path = tmp_path / "weak"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="not a usable admin token"):
        make_app(auth="on", admin_token_file=str(path))


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 600])
def test_admin_endpoints_need_the_token(on_app, admin, token):
    before = state(on_app)
    for method, path in [
        ("post", "/admin/accounts"),
        ("get", "/admin/accounts"),
        ("post", "/admin/accounts/1/keys"),
        ("post", "/admin/keys/revoke"),
    ]:
        if method == "get":
            answer = admin.get(path, 401, token=token)
        else:
            answer = admin.post(path, {"name": "eve", "api_key": "x"}, 401, token=token)
        assert answer["error"]["code"] == "UNAUTHENTICATED"
    assert state(on_app) == before


def test_a_key_never_opens_admin_endpoints(on_app, admin, alice):
    r = alice.client.post("/admin/accounts", json={"name": "eve"}, headers={"X-API-Key": alice.key})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "UNAUTHENTICATED"
    r = alice.client.get("/admin/accounts", headers={"X-Admin-Token": alice.key})
    assert r.status_code == 401
    assert len(on_app.extensions["auth"].registry) == 1


def test_the_admin_token_never_trades(on_app, admin):
    r = on_app.test_client().post(
        "/order",
        json={"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "1"},
        headers={"X-Admin-Token": admin.token, "X-API-Key": admin.token},
    )
    assert r.status_code == 401


# -- admin endpoints ------------------------------------------------------------------------------
ZEROS = [
    {"asset": "BTC", "available": "0.00000", "locked": "0.00000"},
    {"asset": "USDT", "available": "0.0000000000", "locked": "0.0000000000"},
    {"asset": "ETH", "available": "0.0000", "locked": "0.0000"},
    {"asset": "BNB", "available": "0.000", "locked": "0.000"},
    {"asset": "SOL", "available": "0.000", "locked": "0.000"},
]


def test_create_account_answers_once_with_a_new_key(on_app, admin):
    answer = admin.account("alice", deposits=None)
    assert list(answer) == ["account_id", "name", "api_key", "balances"]
    assert answer["account_id"] == "1" and answer["name"] == "alice" and answer["balances"] == ZEROS
    key = answer["api_key"]
    assert key.startswith(KEY_PREFIX) and len(key) == KEY_LENGTH
    listed = admin.get("/admin/accounts")
    assert listed["fees"] == ZEROS
    (entry,) = listed["accounts"]
    assert entry["account_id"] == "1" and entry["name"] == "alice" and entry["balances"] == ZEROS
    assert key not in str(listed)  # shown once only
    assert entry["keys"][0]["key_id"] == key_hash(key)[:16]
    registry = on_app.extensions["auth"].registry
    assert key not in str(registry.snapshot()) and key_hash(key) in registry.keys


@pytest.mark.parametrize(
    "body,code,field",
    [
        ({"name": ""}, "VALIDATION_ERROR", "name"),
        ({"name": "x" * 65}, "VALIDATION_ERROR", "name"),
        ({"name": "bad name"}, "VALIDATION_ERROR", "name"),
        ({"name": 12}, "VALIDATION_ERROR", "name"),
        ({}, "VALIDATION_ERROR", "name"),
        ({"name": "ok", "deposits": {"USDT": "100", "XRP": "1"}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": {"USDT": "100", "BTC": "0.000001"}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": {"USDT": "0"}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": {"USDT": "-5"}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": {"USDT": "1e3"}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": {"USDT": True}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": {"USDT": None}}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": "USDT"}, "VALIDATION_ERROR", "deposits"),
        ({"name": "ok", "deposits": ["USDT"]}, "VALIDATION_ERROR", "deposits"),
    ],
)
def test_bad_account_bodies_are_400_and_change_nothing(on_app, admin, body, code, field):
    before = state(on_app)
    answer = admin.post("/admin/accounts", body, 400)
    assert answer["error"]["code"] == code and answer["error"].get("field") == field
    assert state(on_app) == before


def test_empty_deposits_are_accepted(admin):
    assert admin.post("/admin/accounts", {"name": "x", "deposits": {}}, 201)["name"] == "x"


def test_a_duplicate_name_is_409(on_app, admin):
    admin.account("alice")
    answer = admin.post("/admin/accounts", {"name": "alice"}, 409)
    assert answer["error"]["code"] == "ACCOUNT_EXISTS"
    assert len(on_app.extensions["auth"].registry) == 1


def test_another_key_for_an_account(admin, alice):
    answer = admin.post("/admin/accounts/1/keys", expect=201)
    assert answer["account_id"] == "1" and answer["api_key"] != alice.key
    second = Trader(alice.client, answer["api_key"])
    assert second.get("/account")["name"] == "alice" and alice.get("/account")["name"] == "alice"


@pytest.mark.parametrize("account_id", ["9", "0", "01", "abc", "1x", "-1", "9" * 30])
def test_keys_for_an_unknown_account_are_404(admin, alice, account_id):
    answer = admin.post(f"/admin/accounts/{account_id}/keys", expect=404)
    assert answer["error"]["code"] == "ACCOUNT_NOT_FOUND"


def test_revoke_stops_a_key_at_once_and_keeps_its_orders(on_app, admin, alice):
    order = alice.limit("buy", "1", "100.00")
    assert admin.post("/admin/keys/revoke", {"api_key": alice.key}) == {"revoked": True}
    assert alice.get("/account", 401) == UNAUTH
    assert alice.limit("buy", "1", "100.00", expect=401) == UNAUTH
    assert alice.post("/cancel", {"order_id": order["order_id"]}, 401) == UNAUTH
    engine = on_app.extensions["exchange"].engine
    assert engine.orders[int(order["order_id"])].is_open  # the account's open orders stay
    assert admin.post("/admin/keys/revoke", {"api_key": alice.key}) == {"revoked": True}  # idempotent
    assert admin.get("/admin/accounts")["accounts"][0]["keys"][0]["revoked"] is True


def test_revoke_by_key_id(admin, alice):
    key_id = admin.get("/admin/accounts")["accounts"][0]["keys"][0]["key_id"]
    assert admin.post("/admin/keys/revoke", {"key_id": key_id}) == {"revoked": True}
    alice.get("/account", 401)


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({}, 400, "VALIDATION_ERROR"),
        ({"api_key": "nope"}, 400, "VALIDATION_ERROR"),
        ({"api_key": 5}, 400, "VALIDATION_ERROR"),
        ({"api_key": KEY_PREFIX + "A" * 43}, 404, "KEY_NOT_FOUND"),
        ({"key_id": "zz"}, 400, "VALIDATION_ERROR"),
        ({"key_id": "0123456789abcdef"}, 404, "KEY_NOT_FOUND"),
    ],
)
def test_bad_revocations(admin, alice, body, status, code):
    assert admin.post("/admin/keys/revoke", body, status)["error"]["code"] == code
    assert alice.get("/account")["name"] == "alice"


def test_admin_actions_are_audited_without_secrets(on_app, admin):
    created = admin.account("alice", deposits=None)
    admin.post("/admin/accounts/1/keys", expect=201)
    admin.post("/admin/keys/revoke", {"api_key": created["api_key"]})
    audit = on_app.extensions["audit"]
    audit.flush()
    text = open(audit.path).read()
    actions = [line for line in text.splitlines() if '"event":"admin"' in line]
    assert len(actions) == 3
    assert '"action":"account_created"' in actions[0] and '"name":"alice"' in actions[0]
    assert key_hash(created["api_key"])[:16] in actions[2]
    assert created["api_key"] not in text and admin.token not in text


# -- API keys ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "mek_",
        "mek_" + "A" * 42,  # too short
        "mek_" + "A" * 44,  # too long
        "xyz_" + "A" * 43,  # wrong prefix
        "mek_" + "A" * 42 + "=",  # outside the alphabet
        "mek_" + "A" * 43,  # well formed, never issued
        "mek_" + "é" * 43,
    ],
)
def test_every_bad_key_is_the_same_401(on_app, alice, key):
    before = state(on_app)
    t = Trader(alice.client, key)
    if key is not None and not key.isascii():
        r = t.client.post("/order", json={}, headers={"X-API-Key": key.encode().decode("latin-1")})
        assert r.status_code == 401 and r.get_json() == UNAUTH
        return
    assert t.limit("buy", "1", "100.00", expect=401) == UNAUTH
    for path in ("/account", "/orders", "/fills", "/order/1"):
        assert t.get(path, 401) == UNAUTH
    for path, body in (("/cancel", {"order_id": "1"}), ("/orders", []), ("/cancel_all", {})):
        assert t.post(path, body, 401) == UNAUTH
    assert state(on_app) == before


def test_two_key_headers_or_an_injected_one_are_refused(on_app, alice):
    r = alice.client.get("/account", headers=[("X-API-Key", alice.key), ("X-API-Key", alice.key)])
    assert r.status_code == 401
    r = alice.client.get("/account", environ_base={"HTTP_X_API_KEY": alice.key + "\r\nX-Admin-Token: x"})
    assert r.status_code == 401


def test_credentials_are_checked_before_the_body(alice):
    r = alice.client.post("/order", data=b"{not json", content_type="application/json")
    assert r.status_code == 401


def test_public_data_needs_no_key(on_app, alice):
    client = on_app.test_client()
    for path in ("/health", "/symbols", f"/book/{BTC}", f"/bbo/{BTC}", f"/trades/{BTC}", "/statistics"):
        assert client.get(path).status_code == 200, path
    assert client.get(f"/book/{BTC}", headers={"X-API-Key": "garbage"}).status_code == 200


# -- ownership ----------------------------------------------------------------------------------
def test_another_accounts_order_does_not_exist_for_you(on_app, alice, bob):
    mine = alice.limit("buy", "1", "100.00")["order_id"]
    assert bob.get(f"/order/{mine}", 404)["error"]["code"] == "ORDER_NOT_FOUND"
    assert bob.post("/cancel", {"order_id": mine}, 404)["error"]["code"] == "ORDER_NOT_FOUND"
    # the answer is the same as for an id nobody has
    missing = bob.get("/order/999999", 404)
    assert bob.get(f"/order/{mine}", 404)["error"]["message"].replace(mine, "X") == missing["error"][
        "message"
    ].replace("999999", "X")
    assert bob.get("/orders")["orders"] == []
    assert bob.post("/cancel_all", {})["cancelled"] == []
    assert alice.get(f"/order/{mine}")["status"] == "new"
    assert alice.post("/cancel", {"order_id": mine})["cancel_reason"] == "user"


def test_bulk_orders_belong_to_the_caller(on_app, alice, bob):
    body = [
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": f"{p}.00"}
        for p in (1, 2)
    ]
    answer = alice.post("/orders", body)
    ids = [r["order_id"] for r in answer]
    assert [o["order_id"] for o in alice.get("/orders")["orders"]] == ids[::-1]
    for order_id in ids:
        bob.get(f"/order/{order_id}", 404)


def test_get_orders_filters_and_limits(alice, bob):
    a = alice.limit("buy", "1", "100.00")["order_id"]
    b = alice.limit("buy", "1", "101.00", symbol=ETH)["order_id"]
    c = alice.limit("buy", "1", "102.00")["order_id"]
    alice.post("/cancel", {"order_id": c})
    bob.limit("buy", "1", "99.00")
    assert [o["order_id"] for o in alice.get("/orders")["orders"]] == [b, a]  # open by default, newest first
    assert [o["order_id"] for o in alice.get("/orders?status=all")["orders"]] == [c, b, a]
    assert [o["order_id"] for o in alice.get(f"/orders?status=all&symbol={BTC}")["orders"]] == [c, a]
    assert [o["order_id"] for o in alice.get("/orders?status=all&limit=1")["orders"]] == [c]
    assert len(alice.get("/orders?status=all&limit=5000")["orders"]) == 3  # capped, not refused
    assert alice.get("/orders?status=closed", 400)["error"]["field"] == "status"
    assert alice.get("/orders?limit=0", 400)["error"]["field"] == "limit"
    assert alice.get("/orders?symbol=NOPE", 400)["error"]["code"] == "UNKNOWN_SYMBOL"


def test_get_fills_both_sides_newest_first(alice, bob):
    maker = alice.limit("sell", "1", "100.00")["order_id"]
    taker = bob.limit("buy", "0.4", "100.00")
    bob.limit("buy", "0.6", "100.00")
    fills = alice.get("/fills")["fills"]
    assert [f["quantity"] for f in fills] == ["0.60000", "0.40000"]
    first = fills[1]
    assert first == {
        "trade_id": taker["trades"][0]["trade_id"],
        "order_id": maker,
        "symbol": BTC,
        "side": "sell",
        "price": "100.00",
        "quantity": "0.40000",
        "fee": taker["trades"][0]["maker_fee"],
        "fee_exact": "0.0400000000",  # 100.00 x 0.4 x 0.001, to the quote's 10 decimals
        "fee_asset": "USDT",
        "liquidity": "maker",
        "timestamp": taker["trades"][0]["timestamp"],
    }
    bob_fills = bob.get("/fills?limit=1")["fills"]
    assert len(bob_fills) == 1 and bob_fills[0]["liquidity"] == "taker" and bob_fills[0]["side"] == "buy"
    assert bob.get(f"/fills?symbol={ETH}")["fills"] == []
    assert bob.get("/fills?symbol=X", 400)["error"]["code"] == "UNKNOWN_SYMBOL"


def test_cancel_all_cancels_only_own_open_orders(on_app, alice, bob):
    a1 = alice.limit("buy", "1", "100.00")["order_id"]
    a2 = alice.limit("buy", "1", "100.00", symbol=ETH)["order_id"]
    b1 = bob.limit("buy", "1", "100.00")["order_id"]
    answer = alice.post("/cancel_all", {"symbol": ETH})
    assert [o["order_id"] for o in answer["cancelled"]] == [a2]
    answer = alice.post("/cancel_all", {})
    assert [(o["order_id"], o["status"], o["cancel_reason"]) for o in answer["cancelled"]] == [
        (a1, "cancelled", "user")
    ]
    assert bob.get(f"/order/{b1}")["status"] == "new"
    assert alice.post("/cancel_all", {"symbol": "NOPE"}, 400)["error"]["code"] == "UNKNOWN_SYMBOL"
    assert alice.post("/cancel_all", {"symbol": 5}, 400)["error"]["field"] == "symbol"
    assert alice.post("/cancel_all", [], 400)["error"]["code"] == "VALIDATION_ERROR"


def test_get_account(alice):
    assert alice.get("/account") == {
        "account_id": "1",
        "name": "alice",
        "balances": [
            {"asset": "BTC", "available": "100.00000", "locked": "0.00000"},
            {"asset": "USDT", "available": "10000000.0000000000", "locked": "0.0000000000"},
            {"asset": "ETH", "available": "1000.0000", "locked": "0.0000"},
            {"asset": "BNB", "available": "1000.000", "locked": "0.000"},
            {"asset": "SOL", "available": "1000.000", "locked": "0.000"},
        ],
    }


# -- self-trade prevention through REST -----------------------------------------------------------------
def test_self_trade_prevention_through_post_order(on_app, alice, bob):
    own = alice.limit("sell", "1", "100.00")["order_id"]
    r = alice.limit("buy", "1", "100.00")
    assert (r["status"], r["cancel_reason"], r["trades"]) == ("cancelled", "self_trade", [])
    r = alice.limit("buy", "0.5", "100.00", stp="cancel_maker")
    assert r["status"] == "new" and alice.get(f"/order/{own}")["cancel_reason"] == "self_trade"
    assert alice.limit("buy", "1", "1.00", stp="sideways", expect=400)["error"]["field"] == "stp"
    bob_order = bob.limit("sell", "0.5", "100.00")
    assert bob_order["status"] == "filled"  # two accounts trade
    on_app.extensions["exchange"].engine.check()


def test_stp_cancellations_reach_the_audit_log(on_app, alice):
    alice.limit("sell", "1", "100.00")
    alice.limit("buy", "1", "100.00", stp="cancel_maker")
    audit = on_app.extensions["audit"]
    audit.flush()
    text = open(audit.path).read()
    assert '"event":"cancel"' in text and '"cancel_reason":"self_trade"' in text
    lines = [line for line in text.splitlines() if '"event":"order"' in line or '"event":"cancel"' in line]
    assert lines and all('"account_id":"1"' in line for line in lines)  # the owner of each
    assert all(json.loads(line)["account_id"] == "1" for line in lines)


# -- rate limit per key -----------------------------------------------------------------------------
def test_rate_limits_count_per_key_and_bad_keys_per_address(make_app):
    app = make_app(auth="on", rate_limit=5)
    token = open(app.extensions["auth"].token_path).read().strip()
    client = app.test_client()
    keys = [
        client.post("/admin/accounts", json={"name": n}, headers={"X-Admin-Token": token}).get_json()[
            "api_key"
        ]
        for n in ("a", "b")
    ]
    # the admin requests counted against the address (2 of 5)
    for _ in range(5):
        assert client.get("/account", headers={"X-API-Key": keys[0]}).status_code == 200
    r = client.get("/account", headers={"X-API-Key": keys[0]})
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert client.get("/account", headers={"X-API-Key": keys[1]}).status_code == 200  # its own budget
    # random keys do not buy a fresh budget: they count against the address
    statuses = [
        client.get("/account", headers={"X-API-Key": "mek_" + str(i) * 43}).status_code for i in range(4)
    ]
    assert statuses[-1] == 429 and 401 in statuses


# -- auth off: the original contract -------------------------------------------------------------
def test_auth_off_is_the_keyless_contract(api, app):
    order = api.limit("buy", "1", "100.00")
    assert order["cancel_reason"] is None
    assert api.get(f"/order/{order['order_id']}")["status"] == "new"
    assert api.get("/account") == {"account_id": "0", "name": "shared", "balances": []}
    assert [o["order_id"] for o in api.get("/orders")["orders"]] == [order["order_id"]]
    api.limit("sell", "1", "100.00")  # the shared account trades with itself: no STP in off
    assert [f["liquidity"] for f in api.get("/fills")["fills"]] == ["taker", "maker"]
    assert api.post("/cancel_all", {})["cancelled"] == []
    assert app.extensions["auth"].mode == "off"


# -- first run ----------------------------------------------------------------------------------
def test_first_run_opens_the_demo_account_once_and_prints_no_secret(make_app):
    from api.auth import first_run_text

    app = make_app(auth="on")
    auth = app.extensions["auth"]
    data_dir = app.config["DATA_DIR"]
    path = auth.first_run(data_dir)
    assert path == os.path.join(data_dir, "demo.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = open(path).read().strip()
    client = app.test_client()
    assert client.get("/account", headers={"X-API-Key": key}).get_json()["name"] == "demo"
    assert auth.first_run(data_dir) == path and len(auth.registry) == 1  # not again
    text = first_run_text("http://127.0.0.1:5000", path, auth.token_path, True)
    assert f'-H "X-API-Key: $(cat {path})"' in text
    assert "curl -s -X POST http://127.0.0.1:5000/order" in text and "http://127.0.0.1:5000/" in text
    assert key not in text and open(auth.token_path).read().strip() not in text


def test_first_run_does_nothing_with_auth_off_or_existing_accounts(make_app, tmp_path):
    off = make_app()
    assert off.extensions["auth"].first_run(off.config["DATA_DIR"]) is None
    on = make_app(auth="on")
    on.extensions["auth"].create_account("alice")
    assert on.extensions["auth"].first_run(on.config["DATA_DIR"]) is None
    assert not os.path.exists(os.path.join(on.config["DATA_DIR"], "demo.key"))


def test_the_order_index_forgets_what_the_engine_forgot(make_app):
    from api import account_index

    app = make_app(auth="on")
    exchange = app.extensions["exchange"]
    exchange.engine._order_history = 100  # closed orders the engine remembers
    _account, key = app.extensions["auth"].create_account("alice", deposits=FUNDED)
    t = Trader(app.test_client(), key)
    body = {"symbol": BTC, "side": "buy", "order_type": "ioc", "quantity": "1", "price": "1.00"}
    for _ in range(account_index.PRUNE_AT + 50):  # each closes at once (nothing to take)
        t.post("/order", body)
    mine = exchange.index.orders[1]
    # pruned to the 100 the engine remembered then, plus the 50 added since
    assert len(mine) <= 100 + 50
    listed = t.get("/orders?status=all&limit=1000")["orders"]
    assert 100 <= len(listed) <= 101 and all(o["cancel_reason"] == "unfilled" for o in listed)


# -- the order types beyond the four, with owners ------------------------------------------
def test_fills_of_a_triggered_stop_and_of_a_crossing_amend_are_the_accounts(alice, bob):
    """A stop triggered by other accounts' trade, and an amend whose new price
    crossed, fill outside the request that placed them: their fills are still the
    account's (GET /fills), on both sides, and other accounts' orders stay invisible."""
    alice.limit("buy", "0.10000", "30000.00")
    bob.limit("sell", "0.10000", "30000.00")  # the last price is now 30000.00
    stop = alice.post(
        "/order",
        {
            "symbol": BTC,
            "side": "sell",
            "order_type": "stop_loss",
            "quantity": "0.05000",
            "stop_price": "29000.00",
        },
    )
    assert stop["status"] == "pending"
    bob.limit("buy", "0.20000", "28000.00")  # the stop sells into it once triggered
    alice.limit("sell", "0.01000", "29000.00")
    bob.post("/order", {"symbol": BTC, "side": "buy", "order_type": "market", "quantity": "0.01000"})
    assert alice.get(f"/order/{stop['order_id']}")["status"] == "filled"
    stop_fills = [f for f in alice.get("/fills")["fills"] if f["order_id"] == stop["order_id"]]
    assert [(f["liquidity"], f["quantity"], f["price"]) for f in stop_fills] == [
        ("taker", "0.05000", "28000.00")
    ]
    assert any(f["liquidity"] == "maker" and f["price"] == "28000.00" for f in bob.get("/fills")["fills"])

    resting = alice.limit("sell", "0.02000", "31000.00")
    amended = alice.post("/amend", {"order_id": resting["order_id"], "price": "28000.00"})
    assert amended["status"] == "filled" and len(amended["trades"]) == 1
    amend_fills = [f for f in alice.get("/fills")["fills"] if f["order_id"] == resting["order_id"]]
    assert [(f["liquidity"], f["quantity"]) for f in amend_fills] == [("taker", "0.02000")]
    assert (
        bob.post("/amend", {"order_id": resting["order_id"], "quantity": "0.01000"}, 404)["error"]["code"]
        == "ORDER_NOT_FOUND"
    )


# -- GET /assets (public) ------------------------------------------------------------------
@pytest.mark.parametrize("auth", ["on", "off"])
def test_assets_are_public_and_their_scale_makes_every_fee_and_lock_exact(make_app, auth):
    """Every base and quote asset, with the decimals it is held to: a base asset its
    lot's; the quote asset tick x lot x fee rate's (BTC-USDT: 2 + 5 + 3), so that a
    fee or a buy lock of any symbol is exact in it. No key needed, also with --auth on."""
    from decimal import Decimal

    app = make_app(auth=auth)
    r = app.test_client().get("/assets")
    assert r.status_code == 200
    assets = r.get_json()["assets"]
    assert assets == [
        {"asset": "BTC", "scale": 5},
        {"asset": "USDT", "scale": 10},
        {"asset": "ETH", "scale": 4},
        {"asset": "BNB", "scale": 3},
        {"asset": "SOL", "scale": 3},
    ]
    scale = {a["asset"]: a["scale"] for a in assets}
    for market in app.extensions["exchange"].engine.markets.values():
        spec = market.spec
        lock = spec.tick_size * spec.lot_size * (1 + spec.taker_fee)  # the smallest buy lock
        fee = spec.tick_size * spec.lot_size * spec.maker_fee
        for amount in (lock, fee):
            assert amount == amount.quantize(Decimal(1).scaleb(-scale[spec.quote]))
        assert spec.lot_size == spec.lot_size.quantize(Decimal(1).scaleb(-scale[spec.base]))
