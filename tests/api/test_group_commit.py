"""The group-commit yield (``api.app._GroupCommitYield``) and the journal
counter it watches (``Exchange.journaled``); bulk entry waits once, for its
last record."""

from __future__ import annotations

from api.app import _GroupCommitYield
from api.service import Exchange
from engine.matcher import MatchingEngine

ORDER = {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.001", "price": "100.00"}


class _Exchange:
    journaled = 0


def _yielder(arrivals: list[int], max_passes: int = 4):
    """A yield whose k-th pass lets ``arrivals[k]`` records be journaled."""
    exchange = _Exchange()
    passes = []

    def sleep(seconds):
        assert seconds == 0
        k = len(passes)
        passes.append(k)
        exchange.journaled += arrivals[k] if k < len(arrivals) else 0

    y = _GroupCommitYield(sleep, max_passes)
    y.exchange = exchange
    return y, passes


def test_a_lone_request_yields_once():
    y, passes = _yielder([])
    y()
    assert len(passes) == 1


def test_yields_again_while_records_keep_arriving():
    y, passes = _yielder([3, 2, 0, 5])
    y()
    assert len(passes) == 3  # the third pass added nothing: flush


def test_bounded_by_max_passes():
    y, passes = _yielder([1] * 100, max_passes=4)
    y()
    assert len(passes) == 4


def test_without_an_exchange_it_yields_once():
    calls = []
    y = _GroupCommitYield(calls.append)
    y()
    assert calls == [0]


class _Store:
    """Records tickets and waits (in ticket order, like storage.Store)."""

    def __init__(self):
        self.n = 0
        self.waits = []

    def log_submit(self, result):
        self.n += 1
        return self.n

    def log_cancel(self, result):
        self.n += 1
        return self.n

    def wait(self, ticket):
        self.waits.append(ticket)


def test_journaled_counts_every_record_and_bulk_waits_once_for_the_last():
    store = _Store()
    ex = Exchange(MatchingEngine(None), store=store)
    report = ex.place_order(dict(ORDER))
    assert ex.journaled == 1 and store.waits == [1]
    bad = dict(ORDER, price="1.001")
    out = ex.place_orders([dict(ORDER), bad, dict(ORDER, side="sell"), bad])
    assert [("error" in o) for o in out] == [False, True, False, True]
    assert ex.journaled == 3
    assert store.waits == [1, 3]  # one wait for the whole batch: its last record
    assert report["status"] == "new"
    ex.cancel_order({"order_id": out[0]["order_id"]})  # order 1 was filled by the sell
    assert ex.journaled == 4 and store.waits[-1] == 4


def test_bulk_of_only_refused_orders_waits_for_nothing():
    store = _Store()
    ex = Exchange(MatchingEngine(None), store=store)
    out = ex.place_orders([dict(ORDER, price="x"), {"symbol": "NOPE"}])
    assert all("error" in o for o in out)
    assert store.waits == [] and ex.journaled == 0
