"""``Exchange.place_order_json`` / ``place_orders_json`` (what REST sends): the
same bytes as encoding ``place_order`` / ``place_orders``'s answers, and the
audit log gets the same lines from the shared encoding."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from api.audit import Audit
from api.service import Exchange
from engine.errors import ValidationError
from engine.matcher import MatchingEngine

SELL = {"symbol": "BTC-USDT", "side": "sell", "order_type": "limit", "quantity": "0.5", "price": "100.00"}
BUY = dict(SELL, side="buy", client_order_id='q"x')


def _pair(tmp_path, name):
    engine = MatchingEngine(None)
    audit = Audit(str(tmp_path / f"{name}.log"))
    return Exchange(engine, audit=audit), audit


def _strip_times(obj):
    text = json.dumps(obj)
    return re.sub(r'"\d{4}-\d\d-\d\dT[^"]*Z"', '"T"', text)


def test_json_answers_equal_the_encoded_dict_answers(tmp_path):
    a, audit_a = _pair(tmp_path, "a")
    b, audit_b = _pair(tmp_path, "b")
    bodies = [SELL, BUY, dict(SELL, price="1.001"), dict(BUY, order_type="market", price=None)]
    for body in bodies[:2]:
        raw = a.place_order_json(dict(body))
        report = b.place_order(dict(body))
        assert type(raw) is bytes
        assert _strip_times(json.loads(raw)) == _strip_times(report)
        assert raw.startswith(b'{"order_id":') and b" " not in raw.split(b'"client_order_id"')[0]
    raw = a.place_orders_json([dict(x) for x in bodies])
    out = b.place_orders([dict(x) for x in bodies])
    assert _strip_times(json.loads(raw)) == _strip_times(out)
    assert raw == msgspec.json.encode(json.loads(raw))  # compact, as msgspec encodes the list
    assert [("error" in o) for o in json.loads(raw)] == [False, False, True, False]
    with pytest.raises(ValidationError):
        a.place_order_json(dict(SELL, side="up"))
    with pytest.raises(ValidationError):
        b.place_order(dict(SELL, side="up"))
    with pytest.raises(ValidationError):
        a.place_orders_json({"orders": "x"})
    audit_a.close()
    audit_b.close()
    lines_a = (tmp_path / "a.log").read_text().splitlines()
    lines_b = (tmp_path / "b.log").read_text().splitlines()
    assert len(lines_a) == len(lines_b) > 4
    assert [_strip_times(json.loads(x)) for x in lines_a] == [_strip_times(json.loads(x)) for x in lines_b]
