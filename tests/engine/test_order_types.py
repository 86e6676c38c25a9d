"""The order types beyond the four, one named scenario per rule: stops and
take-profits, icebergs, post-only, good-till-time, market orders by quote
amount and amend. Every helper call runs ``engine.check()`` afterwards."""

import pytest

from engine.errors import OrderNotOpen, ValidationError
from engine.order import (
    BUY,
    CANCELLED,
    FILLED,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    PENDING,
    SELL,
    STOP_LIMIT,
    STOP_LOSS,
    TAKE_PROFIT,
    TAKE_PROFIT_LIMIT,
)
from tests.engine.helpers import SYM, depth, fills, limit, make_engine

SIDES = {"buy": BUY, "sell": SELL}


@pytest.fixture
def engine():
    return make_engine()


def put(engine, side, order_type, quantity, price=None, **extra):
    result = engine.submit_extended(SYM, SIDES[side], order_type, quantity, price, **extra)
    engine.check()
    return result


def trade_at(engine, price, quantity=1):
    """Print one trade at ``price`` between two fresh orders (sets the last price)."""
    limit(engine, "sell", quantity, price)
    return limit(engine, "buy", quantity, price)


def amend(engine, order, **changes):
    result = engine.amend(order.order_id, **changes)
    engine.check()
    return result


# -- stops and take-profits ------------------------------------------------------------
def test_stop_is_pending_off_the_book_and_out_of_depth(engine):
    trade_at(engine, 100)
    result = put(engine, "sell", STOP_LOSS, 5, stop_price=95)
    assert result.status is PENDING and not result.book_changed
    assert depth(engine) == ([], [])
    assert engine.market(SYM).sequence == result.sequence


def test_sell_stop_loss_triggers_when_price_falls_to_it_and_enters_as_market(engine):
    trade_at(engine, 100)
    stop = put(engine, "sell", STOP_LOSS, 3, stop_price=95).order
    limit(engine, "buy", 10, 94)  # liquidity for the stop to sell into
    result = trade_at(engine, 95)  # the last price falls to the stop price
    assert [e.order for e in result.triggered] == [stop]
    entry = result.triggered[0]
    assert entry.status is FILLED and [t.price for t in entry.trades] == [94]
    assert stop.order_type is STOP_LOSS and stop.stop_price == 95  # keeps its kind


def test_buy_stop_triggers_on_a_rise_and_not_on_a_fall(engine):
    trade_at(engine, 100)
    stop = put(engine, "buy", STOP_LOSS, 2, stop_price=105).order
    trade_at(engine, 90)
    assert stop.status is PENDING
    limit(engine, "sell", 5, 106)
    result = trade_at(engine, 105)
    assert result.triggered and stop.status is FILLED


def test_take_profit_triggers_in_the_opposite_direction(engine):
    trade_at(engine, 100)
    sell_tp = put(engine, "sell", TAKE_PROFIT, 1, stop_price=110).order
    buy_tp = put(engine, "buy", TAKE_PROFIT_LIMIT, 1, 80, stop_price=90).order
    limit(engine, "buy", 1, 109)
    trade_at(engine, 111)
    assert sell_tp.status is FILLED  # rose to 110 or above
    assert buy_tp.status is PENDING
    trade_at(engine, 90)
    assert buy_tp.status is NEW and buy_tp.order_id in engine.market(SYM).book.orders  # a limit at 80


def test_stop_limit_rests_at_its_price_when_triggered(engine):
    trade_at(engine, 100)
    stop = put(engine, "sell", STOP_LIMIT, 4, 97, stop_price=98).order
    result = trade_at(engine, 98)
    assert result.triggered[0].status is NEW
    assert depth(engine) == ([], [(97, 4)])
    assert stop.timestamp == result.order.timestamp  # its time priority starts at the trigger


def test_stop_that_would_trigger_at_once_is_refused(engine):
    trade_at(engine, 100)
    before = engine.snapshot()
    with pytest.raises(ValidationError) as e:
        engine.submit_extended(SYM, SELL, STOP_LOSS, 1, stop_price=100)
    assert e.value.field == "stop_price"
    with pytest.raises(ValidationError):
        engine.submit_extended(SYM, BUY, STOP_LOSS, 1, stop_price=99)
    with pytest.raises(ValidationError):
        engine.submit_extended(SYM, SELL, TAKE_PROFIT, 1, stop_price=100)
    assert engine.snapshot() == before


def test_any_stop_price_is_accepted_before_the_first_trade(engine):
    assert put(engine, "sell", STOP_LOSS, 1, stop_price=1).status is PENDING
    assert put(engine, "buy", STOP_LOSS, 1, stop_price=10**9).status is PENDING


def test_stops_triggered_together_enter_highest_stop_first_after_a_fall(engine):
    trade_at(engine, 100)
    low = put(engine, "sell", STOP_LIMIT, 1, 50, stop_price=96).order
    high = put(engine, "sell", STOP_LIMIT, 1, 50, stop_price=99).order
    high2 = put(engine, "sell", STOP_LIMIT, 1, 50, stop_price=99).order
    result = trade_at(engine, 95)
    assert [e.order for e in result.triggered] == [high, high2, low]


def test_stops_triggered_together_enter_lowest_stop_first_after_a_rise(engine):
    trade_at(engine, 100)
    far = put(engine, "buy", STOP_LIMIT, 1, 200, stop_price=104).order
    near = put(engine, "buy", STOP_LIMIT, 1, 200, stop_price=101).order
    result = trade_at(engine, 105)
    assert [e.order for e in result.triggered] == [near, far]


def test_cascade_of_stops_of_mixed_kinds(engine):
    """A stop's own trades push the price further and trigger the next ones."""
    trade_at(engine, 100)
    limit(engine, "buy", 1, 97)
    limit(engine, "buy", 1, 94)
    limit(engine, "buy", 5, 90)
    first = put(engine, "sell", STOP_LOSS, 1, stop_price=98).order  # sells at 97
    second = put(engine, "sell", STOP_LIMIT, 1, 93, stop_price=97).order  # sells at 94
    tp = put(engine, "buy", TAKE_PROFIT, 1, stop_price=94).order  # buys on the fall to 94
    third = put(engine, "sell", STOP_LOSS, 2, stop_price=91).order  # never reached
    limit(engine, "sell", 1, 150)  # what the take-profit buys
    result = trade_at(engine, 98)
    order = [e.order for e in result.triggered]
    assert order == [first, second, tp]
    assert [t.price for e in result.triggered for t in e.trades] == [97, 94, 150]
    assert third.status is PENDING
    assert len({e.sequence for e in result.triggered} | {result.sequence}) == 1  # one command, one step
    ids = [t.trade_id for t in result.all_trades()]
    assert ids == sorted(ids)


def test_stop_triggered_by_an_icebergs_refreshed_part(engine):
    iceberg = put(engine, "buy", LIMIT, 6, 95, display_quantity=2).order
    limit(engine, "sell", 2, 95)  # takes the first slice; the next one shows
    assert depth(engine) == ([(95, 2)], [])
    trade_at(engine, 100)
    stop = put(engine, "sell", STOP_LOSS, 1, stop_price=95).order
    result = limit(engine, "sell", 1, 95)  # trades with the refreshed slice
    assert fills(result) == [(iceberg.order_id, 95, 1)]
    assert [e.order for e in result.triggered] == [stop]
    assert fills(result.triggered[0]) == [(iceberg.order_id, 95, 1)]
    assert depth(engine) == ([(95, 2)], [])  # third slice


def test_cancel_pending_stop_leaves_sequence_alone(engine):
    trade_at(engine, 100)
    stop = put(engine, "sell", STOP_LOSS, 1, stop_price=90).order
    seq = engine.market(SYM).sequence
    result = engine.cancel(stop.order_id)
    assert result.book_changed is False and result.sequence == seq
    assert stop.status is CANCELLED and stop.cancel_reason == "user"
    assert not engine.market(SYM).stops.orders


def test_triggered_market_stop_with_no_liquidity_is_cancelled_unfilled(engine):
    trade_at(engine, 100)
    stop = put(engine, "sell", STOP_LOSS, 1, stop_price=99).order
    trade_at(engine, 99)
    assert stop.status is CANCELLED and stop.cancel_reason == "unfilled"


# -- icebergs --------------------------------------------------------------------------
def test_iceberg_shows_only_its_display_quantity(engine):
    put(engine, "sell", LIMIT, 10, 100, display_quantity=3)
    assert depth(engine) == ([], [(100, 3)])
    assert engine.bbo(SYM)[2] == (100, 3)


def test_iceberg_refresh_goes_to_the_back_of_the_queue(engine):
    iceberg = put(engine, "sell", LIMIT, 10, 100, display_quantity=3).order
    other = limit(engine, "sell", 2, 100).order
    result = limit(engine, "buy", 4, 100)
    assert fills(result) == [(iceberg.order_id, 100, 3), (other.order_id, 100, 1)]
    assert depth(engine) == ([], [(100, 4)])  # other's 1 + the new slice of 3
    queue = [o.order_id for o in engine.market(SYM).book.asks[100].live_orders()]
    assert queue == [other.order_id, iceberg.order_id]


def test_same_taker_goes_on_matching_the_refreshed_slice(engine):
    iceberg = put(engine, "sell", LIMIT, 10, 100, display_quantity=3).order
    result = limit(engine, "buy", 8, 100)
    assert fills(result) == [
        (iceberg.order_id, 100, 3),
        (iceberg.order_id, 100, 3),
        (iceberg.order_id, 100, 2),
    ]
    assert depth(engine) == ([], [(100, 1)])  # the last slice, partly filled
    assert iceberg.remaining == 2


def test_iceberg_last_slice_is_what_remains(engine):
    iceberg = put(engine, "sell", LIMIT, 7, 100, display_quantity=3).order
    limit(engine, "buy", 6, 100)
    assert depth(engine) == ([], [(100, 1)])
    limit(engine, "buy", 1, 100)
    assert iceberg.status is FILLED and depth(engine) == ([], [])


def test_cancel_iceberg_removes_only_its_shown_part_from_the_level(engine):
    iceberg = put(engine, "buy", LIMIT, 10, 100, display_quantity=2).order
    limit(engine, "buy", 5, 100)
    engine.cancel(iceberg.order_id)
    engine.check()
    assert depth(engine) == ([(100, 5)], [])


@pytest.mark.parametrize("display", [10, 11])
def test_display_quantity_must_be_below_quantity(engine, display):
    with pytest.raises(ValidationError) as e:
        engine.submit_extended(SYM, BUY, LIMIT, 10, 100, display_quantity=display)
    assert e.value.field == "display_quantity"


# -- post-only ---------------------------------------------------------------------------
def test_post_only_that_would_take_is_cancelled_whole(engine):
    limit(engine, "sell", 5, 100)
    seq = engine.market(SYM).sequence
    result = put(engine, "buy", LIMIT, 2, 100, post_only=True)
    assert result.status is CANCELLED and result.order.cancel_reason == "post_only"
    assert not result.trades and not result.book_changed and result.sequence == seq
    assert depth(engine) == ([], [(100, 5)])


def test_post_only_that_does_not_cross_rests(engine):
    limit(engine, "sell", 5, 100)
    result = put(engine, "buy", LIMIT, 2, 99, post_only=True)
    assert result.status is NEW and depth(engine) == ([(99, 2)], [(100, 5)])


# -- good till a time --------------------------------------------------------------------
def test_gtd_order_expires_by_an_expire_command(engine):
    order = put(engine, "buy", LIMIT, 2, 99, expire_time=2_000, timestamp=1_000).order
    assert engine.due_expiries(SYM, 1_999) == []
    assert engine.due_expiries(SYM, 2_000) == [order.order_id]
    result = engine.expire(order.order_id, timestamp=2_000)
    engine.check()
    assert order.status is CANCELLED and order.cancel_reason == "expired" and result.book_changed
    assert depth(engine) == ([], [])


def test_expire_time_in_the_past_is_refused(engine):
    with pytest.raises(ValidationError) as e:
        engine.submit_extended(SYM, BUY, LIMIT, 1, 99, expire_time=1_000, timestamp=1_000)
    assert e.value.field == "expire_time"


def test_expire_before_its_time_is_refused(engine):
    order = put(engine, "buy", LIMIT, 2, 99, expire_time=2_000, timestamp=1_000).order
    with pytest.raises(ValidationError):
        engine.expire(order.order_id, timestamp=1_500)
    assert order.status is NEW


def test_filled_gtd_order_is_not_due(engine):
    order = put(engine, "buy", LIMIT, 2, 99, expire_time=2_000, timestamp=1_000).order
    limit(engine, "sell", 2, 99)
    assert order.status is FILLED and engine.due_expiries(SYM, 3_000) == []


# -- market by quote amount --------------------------------------------------------------
def test_quote_market_buys_whole_lots_within_the_amount(engine):
    limit(engine, "sell", 2, 100)
    limit(engine, "sell", 5, 110)
    result = put(engine, "buy", MARKET, None, quote_quantity=450)
    # 2 x 100 = 200, then 2 x 110 = 220 (total 420); a third lot at 110 would be 530
    assert fills(result)[-1][1:] == (110, 2)
    assert result.status is FILLED and result.order.quantity == 4 and result.notional == 420


def test_quote_market_that_runs_out_of_book_is_cancelled_unfilled(engine):
    limit(engine, "sell", 2, 100)
    result = put(engine, "buy", MARKET, None, quote_quantity=10_000)
    assert result.status is CANCELLED and result.order.cancel_reason == "unfilled"
    assert result.order.quantity == 2 and result.order.quote_quantity == 10_000


def test_quote_market_sell_stops_at_the_first_lot_that_exceeds(engine):
    limit(engine, "buy", 3, 100)
    result = put(engine, "sell", MARKET, None, quote_quantity=250)
    assert result.status is FILLED and result.filled == 2


def test_quote_market_through_an_iceberg(engine):
    put(engine, "sell", LIMIT, 10, 100, display_quantity=2)
    result = put(engine, "buy", MARKET, None, quote_quantity=700)
    assert result.filled == 7 and result.status is FILLED


def test_quantity_and_quote_quantity_are_exclusive(engine):
    with pytest.raises(ValidationError) as e:
        engine.submit_extended(SYM, BUY, MARKET, 1, quote_quantity=100)
    assert e.value.field == "quote_quantity"


# -- amend -------------------------------------------------------------------------------
def test_amend_quantity_down_keeps_priority(engine):
    first = limit(engine, "sell", 5, 100).order
    second = limit(engine, "sell", 5, 100).order
    result = amend(engine, first, quantity=3)
    assert result.book_changed and depth(engine) == ([], [(100, 8)])
    assert fills(limit(engine, "buy", 3, 100)) == [(first.order_id, 100, 3)]
    assert second.filled == 0


def test_amend_quantity_up_loses_priority(engine):
    first = limit(engine, "sell", 5, 100).order
    second = limit(engine, "sell", 5, 100).order
    amend(engine, first, quantity=6)
    assert fills(limit(engine, "buy", 5, 100)) == [(second.order_id, 100, 5)]


def test_amend_price_that_crosses_trades_at_once_as_taker(engine):
    limit(engine, "sell", 3, 101)
    bid = limit(engine, "buy", 5, 99).order
    result = amend(engine, bid, price=101)
    assert [t.price for t in result.trades] == [101] and result.trades[0].taker is bid
    assert result.status is PARTIALLY_FILLED and depth(engine) == ([(101, 2)], [])


def test_amend_quantity_must_exceed_filled(engine):
    order = limit(engine, "sell", 5, 100).order
    limit(engine, "buy", 2, 100)
    for quantity in (1, 2):
        with pytest.raises(ValidationError) as e:
            engine.amend(order.order_id, quantity=quantity)
        assert e.value.field == "quantity"
    assert order.quantity == 5


def test_amend_filled_or_cancelled_order_is_not_open(engine):
    order = limit(engine, "sell", 1, 100).order
    limit(engine, "buy", 1, 100)
    with pytest.raises(OrderNotOpen):
        engine.amend(order.order_id, quantity=3)
    other = limit(engine, "sell", 1, 100).order
    engine.cancel(other.order_id)
    with pytest.raises(OrderNotOpen):
        engine.amend(other.order_id, price=5)


def test_amend_pending_stop_price_loses_priority_and_is_checked(engine):
    trade_at(engine, 100)
    a = put(engine, "sell", STOP_LOSS, 1, stop_price=90).order
    b = put(engine, "sell", STOP_LOSS, 1, stop_price=90).order
    with pytest.raises(ValidationError) as e:
        engine.amend(a.order_id, stop_price=100)
    assert e.value.field == "stop_price"
    amend(engine, a, stop_price=92)
    amend(engine, a, stop_price=90)  # back at 90, behind b
    limit(engine, "buy", 5, 80)
    result = trade_at(engine, 90)
    assert [x.order for x in result.triggered] == [b, a]


def test_amend_post_only_to_a_taking_price_is_refused(engine):
    limit(engine, "sell", 1, 100)
    order = put(engine, "buy", LIMIT, 1, 98, post_only=True).order
    with pytest.raises(ValidationError):
        engine.amend(order.order_id, price=100)
    assert order.price == 98 and depth(engine) == ([(98, 1)], [(100, 1)])


# -- replay and snapshots ------------------------------------------------------------------
def test_snapshot_carries_stops_icebergs_and_expiries(engine):
    trade_at(engine, 100)
    put(engine, "sell", STOP_LOSS, 1, stop_price=90)
    put(engine, "sell", STOP_LIMIT, 1, 80, stop_price=90)
    iceberg = put(engine, "sell", LIMIT, 10, 105, display_quantity=3).order
    limit(engine, "buy", 2, 105)
    put(engine, "buy", LIMIT, 1, 95, expire_time=10**30)
    clone = make_engine()
    clone.restore(engine.snapshot())
    clone.check()
    assert clone.snapshot() == engine.snapshot()
    assert clone.market(SYM).book.shown[iceberg.order_id] == 1
    assert clone.next_expiry(SYM) == 10**30
