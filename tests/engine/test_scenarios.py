"""The matching rules, one named scenario each, including the classic bugs of
this field. Each builds a small known book, acts, and checks the returned
records and the resulting depth; ``submit`` (helpers) runs ``engine.check()``
after every command."""

import threading

import pytest

from engine.errors import OrderNotFound, OrderNotOpen, UnknownSymbol, ValidationError
from engine.order import BUY, CANCELLED, FILLED, LIMIT, MARKET, NEW, PARTIALLY_FILLED, SELL
from tests.engine.helpers import SYM, depth, fills, limit, make_engine, submit


@pytest.fixture
def engine():
    return make_engine()


# -- price-time priority ------------------------------------------------------
def test_better_price_fills_first(engine):
    a = limit(engine, "sell", 5, 101).order
    b = limit(engine, "sell", 5, 100).order
    result = limit(engine, "buy", 7, 101)
    assert fills(result) == [(b.order_id, 100, 5), (a.order_id, 101, 2)]


def test_same_price_fills_in_arrival_order(engine):
    first = limit(engine, "sell", 3, 100).order
    second = limit(engine, "sell", 3, 100).order
    third = limit(engine, "sell", 3, 100).order
    result = limit(engine, "buy", 7, 100)
    assert fills(result) == [(first.order_id, 100, 3), (second.order_id, 100, 3), (third.order_id, 100, 1)]
    assert third.status is PARTIALLY_FILLED and third.remaining == 2


def test_trade_prints_at_resting_price_not_takers(engine):
    limit(engine, "sell", 5, 100)
    result = limit(engine, "buy", 5, 105)
    assert [t.price for t in result.trades] == [100]
    assert result.notional == 500


def test_trade_prints_at_resting_price_for_a_sell_taker(engine):
    limit(engine, "buy", 5, 100)
    result = limit(engine, "sell", 5, 90)
    assert [t.price for t in result.trades] == [100]


def test_marketable_limit_never_sweeps_past_its_limit(engine):
    limit(engine, "sell", 5, 100)
    limit(engine, "sell", 5, 101)
    limit(engine, "sell", 5, 102)
    result = limit(engine, "buy", 20, 101)
    assert [t.price for t in result.trades] == [100, 101]
    assert result.status is PARTIALLY_FILLED and result.filled == 10
    bids, asks = depth(engine)
    assert bids == [(101, 10)] and asks == [(102, 5)]


def test_no_trade_through_levels_are_taken_best_first(engine):
    for price in (105, 103, 104, 101, 102):
        limit(engine, "sell", 1, price)
    result = submit(engine, "buy", "market", 5)
    assert [t.price for t in result.trades] == [101, 102, 103, 104, 105]


def test_book_is_never_crossed_after_a_marketable_limit(engine):
    limit(engine, "sell", 5, 100)
    limit(engine, "buy", 8, 100)
    bids, asks = depth(engine)
    assert bids == [(100, 3)] and asks == []


# -- order types ----------------------------------------------------------------
def test_limit_rests_its_remainder(engine):
    limit(engine, "sell", 2, 100)
    result = limit(engine, "buy", 5, 100)
    assert result.status is PARTIALLY_FILLED and result.book_changed
    assert result.order.order_id in engine.market(SYM).book.orders
    assert depth(engine) == ([(100, 3)], [])


def test_limit_that_does_not_cross_rests_as_new(engine):
    result = limit(engine, "buy", 5, 99)
    assert result.status is NEW and result.trades == [] and result.sequence == 1


def test_market_order_never_rests(engine):
    limit(engine, "sell", 2, 100)
    result = submit(engine, "buy", "market", 5)
    assert result.status is CANCELLED and result.filled == 2
    assert depth(engine) == ([], [])
    assert result.order.price is None


def test_market_order_on_empty_side_changes_nothing(engine):
    limit(engine, "buy", 1, 90)
    seq = engine.market(SYM).sequence
    result = submit(engine, "buy", "market", 5)
    assert result.status is CANCELLED and result.filled == 0 and not result.book_changed
    assert result.sequence == seq == engine.market(SYM).sequence


def test_ioc_remainder_never_rests(engine):
    limit(engine, "sell", 2, 100)
    limit(engine, "sell", 2, 102)
    result = submit(engine, "buy", "ioc", 5, 101)
    assert fills(result)[0][1:] == (100, 2)
    assert result.status is CANCELLED and result.filled == 2
    assert depth(engine) == ([], [(102, 2)])


def test_ioc_that_cannot_trade_changes_nothing(engine):
    limit(engine, "sell", 2, 102)
    seq = engine.market(SYM).sequence
    result = submit(engine, "buy", "ioc", 5, 101)
    assert result.status is CANCELLED and result.trades == []
    assert engine.market(SYM).sequence == seq


def test_ioc_filled_in_full_is_filled(engine):
    limit(engine, "sell", 5, 100)
    assert submit(engine, "buy", "ioc", 5, 100).status is FILLED


def test_fok_fills_completely_across_levels(engine):
    limit(engine, "sell", 2, 100)
    limit(engine, "sell", 3, 101)
    result = submit(engine, "buy", "fok", 5, 101)
    assert result.status is FILLED and [t.quantity for t in result.trades] == [2, 3]


def test_fok_that_cannot_fill_changes_nothing(engine):
    limit(engine, "sell", 2, 100)
    limit(engine, "sell", 3, 102)  # beyond the limit: does not count
    before = depth(engine)
    seq = engine.market(SYM).sequence
    result = submit(engine, "buy", "fok", 5, 101)
    assert result.status is CANCELLED and result.filled == 0 and result.trades == []
    assert depth(engine) == before and engine.market(SYM).sequence == seq
    assert not result.book_changed


def test_fok_never_fills_partly_when_cancelled_orders_linger_in_a_level(engine):
    keep = limit(engine, "sell", 2, 100).order
    gone = limit(engine, "sell", 3, 100).order
    engine.cancel(gone.order_id)
    result = submit(engine, "buy", "fok", 4, 100)
    assert result.trades == [] and keep.remaining == 2


# -- cancels ------------------------------------------------------------------------
def test_cancel_of_the_only_order_at_best_updates_best_price(engine):
    limit(engine, "buy", 1, 99)
    top = limit(engine, "buy", 1, 100).order
    engine.cancel(top.order_id)
    engine.check()
    assert engine.market(SYM).book.best_bid == 99
    assert engine.bbo(SYM)[1] == (99, 1)
    # and a sell at 100 must rest, not trade against the stale 100 bid
    result = limit(engine, "sell", 1, 100)
    assert result.trades == [] and result.status is NEW


def test_fifo_holds_after_cancelling_from_the_middle_of_a_level(engine):
    a = limit(engine, "sell", 1, 100).order
    b = limit(engine, "sell", 1, 100).order
    c = limit(engine, "sell", 1, 100).order
    engine.cancel(b.order_id)
    d = limit(engine, "sell", 1, 100).order
    result = limit(engine, "buy", 3, 100)
    assert [m for m, _, _ in fills(result)] == [a.order_id, c.order_id, d.order_id]


def test_cancel_of_a_filled_order_is_refused(engine):
    maker = limit(engine, "sell", 1, 100).order
    limit(engine, "buy", 1, 100)
    with pytest.raises(OrderNotOpen):
        engine.cancel(maker.order_id)


def test_cancel_of_a_cancelled_order_is_refused_and_changes_nothing(engine):
    order = limit(engine, "sell", 1, 100).order
    engine.cancel(order.order_id)
    seq = engine.market(SYM).sequence
    with pytest.raises(OrderNotOpen):
        engine.cancel(order.order_id)
    assert engine.market(SYM).sequence == seq


def test_cancel_of_an_unknown_order(engine):
    with pytest.raises(OrderNotFound):
        engine.cancel(12345)


def test_cancel_reports_the_partial_fill(engine):
    order = limit(engine, "sell", 5, 100).order
    limit(engine, "buy", 2, 100)
    result = engine.cancel(order.order_id)
    assert result.order.status is CANCELLED and result.order.filled == 2
    assert depth(engine) == ([], [])


def test_cancel_compacts_a_level_full_of_dead_entries(engine):
    keep = limit(engine, "sell", 1, 100).order
    for _ in range(200):
        engine.cancel(limit(engine, "sell", 1, 100).order.order_id)
    level = engine.market(SYM).book.asks[100]
    assert len(level.orders) < 40 and level.count == 1
    assert fills(limit(engine, "buy", 1, 100)) == [(keep.order_id, 100, 1)]


# -- trades, fees, ids, sequences ---------------------------------------------------
def test_no_zero_quantity_trades_when_maker_and_taker_match_exactly(engine):
    limit(engine, "sell", 3, 100)
    limit(engine, "sell", 3, 100)
    result = limit(engine, "buy", 3, 100)
    assert [t.quantity for t in result.trades] == [3]
    result = limit(engine, "buy", 3, 100)
    assert [t.quantity for t in result.trades] == [3]
    assert depth(engine) == ([], [])


def test_fees_are_exact_on_every_trade(engine):
    limit(engine, "sell", 7, 333)
    trade = limit(engine, "buy", 7, 333).trades[0]
    spec = engine.spec(SYM)
    assert spec.format_fee(trade.maker_fee) == "2.33100000"  # 7 * 333 * 0.001
    assert spec.format_fee(trade.taker_fee) == "4.66200000"


def test_ids_are_unique_and_increasing(engine):
    ids = [limit(engine, "sell", 1, 100 + i).order.order_id for i in range(5)]
    trade_ids = [t.trade_id for t in submit(engine, "buy", "market", 5).trades]
    assert ids == sorted(set(ids)) and trade_ids == sorted(set(trade_ids))


def test_sequence_advances_once_per_changing_command(engine):
    market = engine.market(SYM)
    assert limit(engine, "sell", 1, 100).sequence == 1
    assert limit(engine, "sell", 1, 101).sequence == 2
    assert submit(engine, "buy", "market", 2).sequence == 3  # two trades, one command
    assert submit(engine, "buy", "fok", 2, 100).sequence == 3  # killed: unchanged
    order = limit(engine, "buy", 1, 90).order
    assert engine.cancel(order.order_id).sequence == 5
    assert market.sequence == 5


def test_maker_state_is_snapshotted_on_each_trade(engine):
    maker = limit(engine, "sell", 5, 100).order
    t1 = limit(engine, "buy", 2, 100).trades[0]
    t2 = limit(engine, "buy", 3, 100).trades[0]
    assert (t1.maker_filled, t2.maker_filled) == (2, 5)
    assert maker.status is FILLED


def test_deep_same_price_sweep_takes_every_maker_in_order(engine):
    # engine.submit directly: helpers' check() after each of 5,000 rests is O(n^2)
    makers = [engine.submit(SYM, SELL, LIMIT, 1, 100).order.order_id for _ in range(5000)]
    result = submit(engine, "buy", "market", 5000)
    assert [t.maker.order_id for t in result.trades] == makers
    assert result.status is FILLED and depth(engine) == ([], [])
    assert len({t.trade_id for t in result.trades}) == 5000


# -- validation: bad commands change nothing ----------------------------------------
@pytest.mark.parametrize(
    "args, field",
    [
        ((BUY, LIMIT, 0, 100), "quantity"),
        ((BUY, LIMIT, -1, 100), "quantity"),
        ((BUY, LIMIT, 1.5, 100), "quantity"),
        ((BUY, LIMIT, 1, None), "price"),
        ((BUY, LIMIT, 1, 0), "price"),
        ((BUY, LIMIT, 1, -5), "price"),
        ((BUY, MARKET, 1, 100), "price"),
        (("buy", LIMIT, 1, 100), "side"),
        ((BUY, "limit", 1, 100), "order_type"),
        ((BUY, LIMIT, 10**16, 100), "quantity"),
    ],
)
def test_invalid_commands_are_rejected_and_change_nothing(engine, args, field):
    limit(engine, "sell", 1, 100)
    seq = engine.market(SYM).sequence
    with pytest.raises(ValidationError) as info:
        engine.submit(SYM, *args)
    assert info.value.field == field
    assert engine.market(SYM).sequence == seq and depth(engine) == ([], [(100, 1)])


def test_unknown_symbol(engine):
    with pytest.raises(UnknownSymbol):
        engine.submit("NOPE", BUY, LIMIT, 1, 1)


def test_closed_orders_are_forgotten_beyond_the_history_limit():
    engine = make_engine(order_history=3)
    ids = [limit(engine, "buy", 1, 100).order.order_id for _ in range(5)]
    submit(engine, "sell", "market", 5)
    assert [i in engine.orders for i in ids] == [False, False, False, True, True]
    with pytest.raises(OrderNotFound):
        engine.get_order(ids[0])


def test_snapshot_restore_round_trip(engine):
    limit(engine, "sell", 5, 101)
    a = limit(engine, "sell", 5, 100).order
    limit(engine, "sell", 5, 100)
    limit(engine, "buy", 7, 100)
    engine.cancel(limit(engine, "buy", 1, 90).order.order_id)
    state = engine.snapshot()
    other = make_engine()
    other.restore(state)
    other.check()
    assert other.snapshot() == state
    # time priority survives: the partially filled first maker trades first
    assert fills(limit(other, "buy", 1, 100))[0][0] != a.order_id  # a was filled (5 of 7)
    # ids continue without reuse
    assert limit(other, "buy", 1, 1).order.order_id > max(other.orders) - 1


def test_replay_with_journaled_ids_continues_after_them(engine):
    result = engine.submit(SYM, SELL, LIMIT, 1, 100, timestamp=5, order_id=41)
    assert result.order.order_id == 41 and result.order.timestamp == 5
    taker = engine.submit(SYM, BUY, LIMIT, 1, 100, order_id=42, trade_ids=[77])
    assert taker.trades[0].trade_id == 77
    assert limit(engine, "buy", 1, 99).order.order_id == 43
    limit(engine, "sell", 1, 99)
    assert engine.market(SYM).trades[-1].trade_id == 78


class _CountingLock:
    """A re-entrant lock that counts its acquisitions and knows its depth."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.acquired = 0
        self.depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self.lock.acquire(blocking, timeout)
        self.acquired += 1
        self.depth += 1
        return ok

    def release(self) -> None:
        self.depth -= 1
        self.lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def test_the_injected_lock_factory_makes_every_symbol_lock():
    made: list[_CountingLock] = []

    def factory() -> _CountingLock:
        made.append(_CountingLock())
        return made[-1]

    engine = make_engine(lock_factory=factory)
    assert len(made) == 1
    market = engine.market(SYM)
    assert engine.lock(SYM) is market.lock and market.lock in made
    maker = limit(engine, "sell", 5, 100)
    taker = limit(engine, "buy", 3, 100)
    assert fills(taker) == [(maker.order.order_id, 100, 3)]
    engine.cancel(maker.order.order_id)
    engine.depth(SYM)
    engine.bbo(SYM)
    state = engine.snapshot()  # every symbol's lock
    assert market.lock.acquired == 6 and market.lock.depth == 0
    with engine.lock(SYM):  # re-entrant: a caller's critical section around a command
        limit(engine, "buy", 1, 90)
    assert market.lock.depth == 0
    engine.check()
    other = make_engine(lock_factory=factory)
    other.restore(state)
    other.check()
    assert other.market(SYM).lock is made[-1] and len(made) == 2
