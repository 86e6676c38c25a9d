"""Audit lines are spliced from the report's encoding: the same JSON as building
``{"event", "ts", "sequence", **report without "trades"}`` (and one line per
trade), also for client order ids that contain the splice marker."""

from __future__ import annotations

import json

import pytest

from api import formatting
from api.audit import Audit
from engine.matcher import MatchingEngine
from engine.order import BUY, LIMIT, SELL


def _expected(report: dict, sequence: int) -> list[dict]:
    line = {"event": "order", "ts": report["timestamp"], "sequence": sequence}
    line.update(report)
    trades = line.pop("trades")
    return [line] + [{"event": "trade", "ts": t["timestamp"], **t} for t in trades]


@pytest.mark.parametrize("other_time", [False, True])
@pytest.mark.parametrize(
    "coid", [None, "plain", ',"trades":[', 'x","trades":[1]}', 'ü\\"\n', '},{"event":', '{"timestamp":']
)
def test_submit_lines_equal_the_dict_built_lines(tmp_path, coid, other_time):
    engine = MatchingEngine(None)
    spec = engine.markets["BTC-USDT"].spec
    first = engine.submit("BTC-USDT", SELL, LIMIT, 100, 3000000, coid)
    engine.submit("BTC-USDT", SELL, LIMIT, 100, 3000001, None)
    taker = engine.submit("BTC-USDT", BUY, LIMIT, 150, 3000001, coid)
    path = tmp_path / "audit.log"
    audit = Audit(str(path))
    expected = []
    for result in (first, taker):
        report = formatting.submit_report(spec, result)
        if other_time and report["trades"]:  # a trade not timed as its order (not a taker's own fill)
            report["trades"][0]["timestamp"] = formatting.iso(1)
        audit.submit(report, result.sequence)
        expected += _expected(report, result.sequence)
    assert audit.flush() == len(expected) == 4
    audit.close()
    text = path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == expected
    assert [list(line) for line in lines] == [list(line) for line in expected]  # key order too
    assert (
        "\n".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in expected) + "\n" == text
    )


def test_amend_and_expire_have_their_own_lines(tmp_path):
    """An amend that crossed is an "amend" line and its trade lines; an expiry an
    "expire" line with cancel_reason "expired"; new report fields are kept."""
    engine = MatchingEngine(None)
    spec = engine.markets["BTC-USDT"].spec
    engine.submit("BTC-USDT", SELL, LIMIT, 100, 3000000)
    bid = engine.submit("BTC-USDT", BUY, LIMIT, 50, 2990000).order
    amended = engine.amend(bid.order_id, price=3000000, timestamp=5)
    gtd = engine.submit_extended("BTC-USDT", BUY, LIMIT, 10, 2000000, timestamp=10, expire_time=20).order
    expired = engine.expire(gtd.order_id, timestamp=30)
    path = tmp_path / "audit.log"
    audit = Audit(str(path))
    audit.event("amend", formatting.submit_report(spec, amended), amended.sequence, amended.timestamp)
    audit.event("expire", formatting.cancel_report(spec, expired), expired.sequence, expired.timestamp)
    assert audit.flush() == 3
    audit.close()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["event"] for line in lines] == ["amend", "trade", "expire"]
    assert lines[0]["order_id"] == str(bid.order_id) and lines[0]["status"] == "filled"
    assert lines[1]["taker_order_id"] == str(bid.order_id)
    assert lines[2]["cancel_reason"] == "expired" and lines[2]["expire_time"] == formatting.iso(20)
