"""A table of malformed requests: each is answered with the right 4xx and the
contract's envelope, and changes nothing (every book, every sequence, the
engine's order count stay as they were)."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import BTC

SYMBOLS = ("BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT")
DROP = object()


class Lit:
    """A JSON literal written verbatim (numbers in exponent form, NaN, ...)."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value) -> bytes:
    lits = []

    def default(o):
        if isinstance(o, Lit):
            lits.append(o.text)
            return f"__LIT{len(lits) - 1}__"
        raise TypeError(o)

    text = json.dumps(value, default=default)
    for i, lit in enumerate(lits):
        text = text.replace(f'"__LIT{i}__"', lit)
    return text.encode()


class Raw:
    def __init__(self, data: bytes, content_type: str | None = "application/json") -> None:
        self.data = data
        self.content_type = content_type


# Marketable against the resting sell at 100.00 set up below: accepting it would trade.
VALID = {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "100.00"}


def o(**changes):
    body = dict(VALID)
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def case(body, status, code, field=None, *, path="/order", method="POST", id=None):
    return pytest.param(method, path, body, status, code, field, id=id)


V, J, U = "VALIDATION_ERROR", "INVALID_JSON", "UNKNOWN_SYMBOL"
BIG = b'{"symbol":"BTC-USDT","pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'

CASES = [
    # -- framing ------------------------------------------------------------------------
    case(Raw(b"hello"), 400, J, id="not-json"),
    case(Raw(b'{"symbol": "BTC-USDT",'), 400, J, id="truncated-json"),
    case(Raw(b""), 400, J, id="empty-body"),
    case(Raw(b"   "), 400, J, id="blank-body"),
    case(Raw(b'{"symbol":"BTC-USDT"} trailing'), 400, J, id="trailing-garbage"),
    case(Raw(b"\xff\xfe{}"), 400, J, id="not-utf8"),
    case(Raw(b"[" * 30000 + b"]" * 30000), 400, J, id="deeply-nested"),
    case([], 400, V, id="array-body"),
    case([VALID], 400, V, id="array-of-an-order"),
    case("order", 400, V, id="string-body"),
    case(5, 400, V, id="number-body"),
    case(None, 400, V, id="null-body"),
    case(o(quantity=Lit("NaN")), 400, J, id="quantity-NaN-literal"),
    case(o(price=Lit("Infinity")), 400, J, id="price-Infinity-literal"),
    case(o(price=Lit("-Infinity")), 400, J, id="price-minus-Infinity-literal"),
    case(Raw(BIG), 413, "PAYLOAD_TOO_LARGE", id="2MB-body"),
    case(Raw(encode(o(pad="x" * 70_000))), 413, "PAYLOAD_TOO_LARGE", id="70KB-body"),
    case(Raw(encode(VALID), "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE", id="text-plain"),
    case(Raw(encode(VALID), None), 415, "UNSUPPORTED_MEDIA_TYPE", id="no-content-type"),
    case(Raw(b"symbol=BTC-USDT&side=buy", "application/x-www-form-urlencoded"), 415,
         "UNSUPPORTED_MEDIA_TYPE", id="form-encoded"),
    case(Raw(encode(VALID), "application/jsonx"), 415, "UNSUPPORTED_MEDIA_TYPE", id="almost-json-type"),
    # -- required fields ----------------------------------------------------------------
    *[case(o(**{f: DROP}), 400, V, f, id=f"missing-{f}") for f in ("symbol", "side", "order_type", "quantity")],
    *[case(o(**{f: None}), 400, V, f, id=f"null-{f}") for f in ("symbol", "side", "order_type", "quantity")],
    case(o(price=DROP), 400, V, "price", id="limit-without-price"),
    case(o(price=None), 400, V, "price", id="limit-null-price"),
    case(o(order_type="ioc", price=DROP), 400, V, "price", id="ioc-without-price"),
    case(o(order_type="fok", price=DROP), 400, V, "price", id="fok-without-price"),
    case(o(order_type="market"), 400, V, "price", id="market-with-price"),
    case(o(order_type="market", price="0"), 400, V, "price", id="market-with-zero-price"),
    case({}, 400, V, "symbol", id="empty-object"),
    # -- symbol -----------------------------------------------------------------------
    case(o(symbol="DOGE-USDT"), 400, U, "symbol", id="unknown-symbol"),
    case(o(symbol="btc-usdt"), 400, U, "symbol", id="lowercase-symbol"),
    case(o(symbol=""), 400, U, "symbol", id="empty-symbol"),
    case(o(symbol=123), 400, V, "symbol", id="symbol-number"),
    case(o(symbol=["BTC-USDT"]), 400, V, "symbol", id="symbol-list"),
    # -- side / order_type ----------------------------------------------------------------
    *[case(o(side=v), 400, V, "side", id=f"side-{i}") for i, v in enumerate(["BUY", "long", "", 1, True, [], {}])],
    *[case(o(order_type=v), 400, V, "order_type", id=f"type-{i}")
      for i, v in enumerate(["stop", "LIMIT", "Limit", "", 0, ["limit"], {"t": 1}])],
    # -- quantity ---------------------------------------------------------------------
    *[case(o(quantity=v), 400, V, "quantity", id=f"quantity-{name}") for name, v in [
        ("negative-str", "-1"), ("negative-num", -1), ("zero-str", "0"), ("zero-num", 0),
        ("zero-decimals", "0.00000"), ("negative-zero", Lit("-0.0")), ("text", "abc"), ("empty", ""),
        ("leading-space", " 1"), ("trailing-space", "1 "), ("plus", "+1"), ("exp-str", "1e3"),
        ("exp-str-upper", "1E-5"), ("exp-num", Lit("1e3")), ("exp-num-frac", Lit("1.5E2")),
        ("NaN-str", "NaN"), ("Infinity-str", "Infinity"), ("inf-str", "inf"), ("hex", "0x10"),
        ("underscore", "1_000"), ("comma", "1,5"), ("true", True), ("false", False), ("list", ["1"]),
        ("object", {"v": 1}), ("off-grid", "0.000001"), ("off-grid-2", "0.000015"),
        ("off-grid-num", Lit("0.123456")), ("huge-digit-string", "1" + "0" * 30),
        ("huge-number", Lit("1" + "0" * 30)), ("huge-number-5000-digits", Lit("1" + "0" * 5000)),
        ("too-many-decimals", "1." + "0" * 40), ("exp-overflow", Lit("1e400")),
        ("arabic-digit", "\u0663"), ("double-dot", "1.0.0"), ("too-large", "99999999999999999999"),
    ]],
    # -- price ------------------------------------------------------------------------
    *[case(o(price=v), 400, V, "price", id=f"price-{name}") for name, v in [
        ("negative", "-100"), ("zero", "0"), ("zero-num", 0), ("off-grid", "0.001"),
        ("off-grid-2", "100.005"), ("off-grid-num", Lit("100.005")), ("exp-str", "1e2"),
        ("exp-num", Lit("1E2")), ("text", "abc"), ("true", True), ("list", []),
        ("huge-digit-string", "1" + "0" * 25), ("double-dot", "100.00.0"), ("NaN-str", "NaN"),
    ]],
    # -- client_order_id --------------------------------------------------------------
    *[case(o(client_order_id=v), 400, V, "client_order_id", id=f"coid-{name}") for name, v in [
        ("number", 123), ("too-long", "x" * 65), ("tab", "a\tb"), ("newline", "a\n"), ("list", ["a"]),
        ("object", {}), ("bool", True),
    ]],
    # -- cancel -----------------------------------------------------------------------
    case({}, 400, V, "order_id", path="/cancel", id="cancel-missing-id"),
    case({"order_id": None}, 400, V, "order_id", path="/cancel", id="cancel-null-id"),
    case({"order_id": Lit("1.5")}, 400, V, "order_id", path="/cancel", id="cancel-id-float"),
    case({"order_id": True}, 400, V, "order_id", path="/cancel", id="cancel-id-bool"),
    case({"order_id": ["1"]}, 400, V, "order_id", path="/cancel", id="cancel-id-list"),
    case([{"order_id": "1"}], 400, V, path="/cancel", id="cancel-array-body"),
    case({"order_id": "999999"}, 404, "ORDER_NOT_FOUND", "order_id", path="/cancel", id="cancel-unknown"),
    case(Raw(b"nope"), 400, J, path="/cancel", id="cancel-not-json"),
    case(Raw(b'{"order_id":"1"}', "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE", path="/cancel",
         id="cancel-text-plain"),
    case(Raw(BIG), 413, "PAYLOAD_TOO_LARGE", path="/cancel", id="cancel-2MB"),
    # -- bulk -------------------------------------------------------------------------
    case({}, 400, V, "orders", path="/orders", id="bulk-object"),
    case("x", 400, V, "orders", path="/orders", id="bulk-string"),
    case([VALID] * 1001, 400, V, "orders", path="/orders", id="bulk-too-many"),
    case(Raw(b"[1,2"), 400, J, path="/orders", id="bulk-truncated"),
    case(Raw(BIG), 413, "PAYLOAD_TOO_LARGE", path="/orders", id="bulk-2MB"),
    case(Raw(encode([VALID]), "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE", path="/orders", id="bulk-text"),
    # -- query parameters -------------------------------------------------------------
    *[case(None, 400, V, "levels", method="GET", path=f"/book/{BTC}?levels={v}", id=f"levels-{i}")
      for i, v in enumerate(["0", "-1", "abc", "1.5", "", "1e3", "%205", "10abc", "+5", "0000", "\u0665"])],
    *[case(None, 400, V, "limit", method="GET", path=f"/trades/{BTC}?limit={v}", id=f"limit-{i}")
      for i, v in enumerate(["0", "-5", "x", "", "2.0"])],
    # -- routes and methods -----------------------------------------------------------
    case(None, 404, "NOT_FOUND", method="GET", path="/nope", id="unknown-path"),
    case(None, 404, "NOT_FOUND", method="GET", path="/book/", id="book-without-symbol"),
    case(VALID, 405, "METHOD_NOT_ALLOWED", method="PUT", path="/order", id="put-order"),
    case(None, 405, "METHOD_NOT_ALLOWED", method="GET", path="/order", id="get-order-collection"),
    case(None, 405, "METHOD_NOT_ALLOWED", method="GET", path="/cancel", id="get-cancel"),
    case(None, 405, "METHOD_NOT_ALLOWED", method="DELETE", path="/order/1", id="delete-order"),
    case(VALID, 405, "METHOD_NOT_ALLOWED", method="POST", path="/health", id="post-health"),
    case(None, 405, "METHOD_NOT_ALLOWED", method="GET", path="/ping", id="get-ping"),
    # -- POST /ping reads its body as POST /order does ----------------------------------
    case(Raw(b"{"), 400, J, path="/ping", id="ping-truncated"),
    case(Raw(b""), 400, J, path="/ping", id="ping-empty"),
    case(Raw(BIG), 413, "PAYLOAD_TOO_LARGE", path="/ping", id="ping-2MB"),
    case(Raw(encode(VALID), "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE", path="/ping", id="ping-text"),
    case(VALID, 405, "METHOD_NOT_ALLOWED", method="POST", path=f"/book/{BTC}", id="post-book"),
]  # fmt: skip


@pytest.fixture
def seeded(api):
    """A book on two symbols; a resting sell at 100.00 makes VALID marketable."""
    api.limit("sell", "5", "100.00")
    api.limit("sell", "1", "101.00")
    api.limit("buy", "2", "99.00")
    api.limit("buy", "1", "2000.00", symbol="ETH-USDT")
    return api


def snapshot(api):
    engine = api.app.extensions["exchange"].engine
    books = {s: api.state(s) for s in SYMBOLS}
    stats = engine.statistics()["engine"]
    return books, stats["orders"], stats["trades"], stats["cancels"], len(engine.orders)


@pytest.mark.parametrize("method,path,body,status,code,field", CASES)
def test_malformed_request_is_refused_and_changes_nothing(seeded, method, path, body, status, code, field):
    api = seeded
    before = snapshot(api)
    kwargs = {}
    if isinstance(body, Raw):
        kwargs["data"] = body.data
        if body.content_type is not None:
            kwargs["content_type"] = body.content_type
    elif method in ("POST", "PUT") and not (body is None and method != "POST"):
        kwargs["data"] = encode(body)
        kwargs["content_type"] = "application/json"
    r = api.client.open(path, method=method, **kwargs)
    assert r.status_code == status, r.data[:300]
    assert r.mimetype == "application/json"
    envelope = r.get_json()
    assert set(envelope) == {"error"}
    error = envelope["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in r.get_data(as_text=True)
    if field is None:
        assert "field" not in error
    else:
        assert error["field"] == field
    assert set(error) <= {"code", "message", "field"}
    assert snapshot(api) == before
    api.check()


def test_the_valid_base_order_would_change_the_book(seeded):
    """Guards the table: its base order is accepted and trades, so 'nothing changed' means something."""
    before = snapshot(seeded)
    report = seeded.post("/order", VALID)
    assert report["status"] == "filled"
    assert snapshot(seeded) != before


def test_rejections_are_counted_per_symbol(seeded):
    for _ in range(3):
        seeded.order("buy", "limit", "1", "0.001", expect=400)
    seeded.order("buy", "limit", "1", "1", symbol="NOPE", expect=400)
    stats = seeded.get("/statistics")
    assert stats["symbols"][BTC]["rejections"] == 3
    assert stats["engine"]["rejections_all"] == 4
