"""Audit lines are spliced from the report's encoding: the same JSON as building
``{"event", "ts", "sequence", **report without "trades"}`` (and one line per
trade), also for client order ids that contain the splice marker."""

from __future__ import annotations

import json

import pytest

from api import formatting
from api.audit import Audit
from engine.errors import ValidationError
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


def _lines(path) -> list[dict]:
    # Python's json reads a lone surrogate escape back (strict UTF-8 readers would not)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_line_that_cannot_be_encoded_loses_no_other_line(tmp_path):
    """A lone surrogate (``"side": "\\ud800"``, which Python's json accepts) made
    the batch's encode fail, and the whole batch -- other clients' lines too --
    was dropped."""
    engine = MatchingEngine(None)
    spec = engine.markets["BTC-USDT"].spec
    path = tmp_path / "audit.log"
    audit = Audit(str(path))
    maker = engine.submit("BTC-USDT", SELL, LIMIT, 100, 3000000, "maker")
    audit.submit(formatting.submit_report(spec, maker), maker.sequence)
    poison = {"symbol": "BTC-USDT", "side": "\ud800", "order_type": "limit", "quantity": "1", "price": "1"}
    audit.rejection("order", poison, ValidationError("side must be 'buy' or 'sell'", "side"))
    audit.rejection("order", {"symbol": "\udc00x"}, ValidationError("unknown symbol '\udc00x'", "symbol"))
    taker = engine.submit("BTC-USDT", BUY, LIMIT, 40, 3000000, "taker")
    audit.submit(formatting.submit_report(spec, taker), taker.sequence)
    audit.rejection("cancel", {"order_id": "77"}, ValidationError("order 77 not found", "order_id"))
    assert audit.flush() == 6
    audit.close()
    lines = _lines(path)
    assert [line["event"] for line in lines] == [
        "order",
        "rejection",
        "rejection",
        "order",
        "trade",
        "rejection",
    ]
    assert lines[0]["client_order_id"] == "maker" and lines[3]["client_order_id"] == "taker"
    assert lines[1]["body"]["side"] == "\ud800" and lines[1]["field"] == "side"  # escaped, not lost
    assert lines[2]["body"]["symbol"] == "\udc00x" and lines[2]["message"] == "unknown symbol '\udc00x'"
    assert lines[5]["body"] == {"order_id": "77"}
    assert "\\ud800" in path.read_text(encoding="utf-8")  # as a JSON escape: the file is valid UTF-8
    assert audit.stats()["escaped_lines"] == 2 and audit.stats()["encode_errors"] == 0


def test_an_item_that_cannot_be_written_at_all_becomes_an_audit_error_line(tmp_path, caplog):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no text")

    path = tmp_path / "audit.log"
    audit = Audit(str(path))
    audit.rejection("order", {"symbol": "X"}, ValidationError("first", "symbol"))
    audit.rejection("order", {"symbol": Unprintable()}, ValidationError("bad", "symbol"))
    audit.rejection("order", {"symbol": "Y"}, ValidationError("last", "symbol"))
    assert audit.flush() == 3
    audit.close()
    lines = _lines(path)
    assert [line["event"] for line in lines] == ["rejection", "audit_error", "rejection"]
    assert lines[1]["kind"] == "rejection" and "no text" in lines[1]["error"]
    assert audit.stats()["encode_errors"] == 1 and "could not be encoded" in caplog.text


def test_a_failed_write_keeps_the_lines_and_writes_them_once_later(tmp_path):
    path = tmp_path / "audit.log"
    audit = Audit(str(path))
    handler = audit._handler
    real_emit = type(handler).emit
    failing = [True]

    def emit(record):
        if failing[0]:
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                handler.handleError(record)
        real_emit(handler, record)

    handler.emit = emit
    audit.rejection("order", {"symbol": "A"}, ValidationError("a", "symbol"))
    with pytest.raises(OSError):
        audit.flush()
    assert audit.stats()["unwritten_lines"] == 1 and audit.stats()["write_errors"] == 1
    assert "No space left" in audit.stats()["last_error"]
    audit.rejection("order", {"symbol": "B"}, ValidationError("b", "symbol"))
    failing[0] = False
    assert audit.flush() == 2
    audit.close()
    assert [line["body"]["symbol"] for line in _lines(path)] == ["A", "B"]  # in order, once each
    assert audit.stats()["unwritten_lines"] == 0 and audit.stats()["last_error"] is None


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
