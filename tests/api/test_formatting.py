"""``api/formatting.py`` prints decimal strings from integers; ``SymbolSpec``'s
``Decimal`` methods are the reference. Property tests over random grids, fee
rates and values (including values far beyond ``MAX_UNITS``, where the fast
path must hand over to ``Decimal``), and whole reports against a reference
built from the spec's methods.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import formatting
from engine.matcher import MatchingEngine
from engine.order import BUY, LIMIT, MARKET, SELL
from engine.symbols import SymbolSpec
from tests.api.grids import STEPS

FEES = ["0", "0.001", "0.002", "0.0015", "0.00075", "0.1", "0.0000001", "0.25"]

specs = st.builds(
    lambda tick, lot, maker, taker: SymbolSpec(
        "X-Y", "X", "Y", Decimal(tick), Decimal(lot), Decimal(maker), Decimal(taker)
    ),
    st.sampled_from(STEPS),
    st.sampled_from(STEPS),
    st.sampled_from(FEES),
    st.sampled_from(FEES),
)
units = st.one_of(
    st.integers(0, 10**15),
    st.integers(0, 1000),
    st.integers(10**24, 10**32),  # beyond Decimal's exact range: the Decimal fallback
    st.integers(-(10**15), -1),
)


@settings(max_examples=400, deadline=None)
@given(specs, units)
def test_price_and_quantity_text_equal_the_decimal_methods(spec, n):
    f = formatting.formatter(spec)
    assert f.price(n) == spec.format_price(n)
    assert f.quantity(n) == spec.format_quantity(n)
    assert f.price(None) is None


@settings(max_examples=400, deadline=None)
@given(specs, units)
def test_fee_text_equals_the_decimal_method(spec, fee):
    f = formatting.formatter(spec)
    try:
        expected = spec.format_fee(fee)
    except ArithmeticError:  # decimal.InvalidOperation: the fast path must not invent a value
        with pytest.raises(ArithmeticError):
            f.fee(fee)
        return
    assert f.fee(fee) == expected


@settings(max_examples=600, deadline=None)
@given(specs, st.integers(0, 10**30), st.one_of(st.integers(0, 10**15), st.integers(1, 7)))
def test_average_price_equals_the_decimal_method(spec, notional, lots):
    f = formatting.formatter(spec)
    try:
        expected = spec.format_average_price(notional, lots)
    except ArithmeticError:  # beyond Decimal's context: the fast path must not invent a value
        with pytest.raises(ArithmeticError):
            f.average_price(notional, lots)
        return
    assert f.average_price(notional, lots) == expected


@pytest.mark.parametrize(
    ("notional", "lots", "text"),
    [
        (1, 2, "0.00"),  # 0.005 -> half-even -> 0.00
        (3, 2, "0.02"),  # 0.015 -> 0.02
        (5, 2, "0.02"),  # 0.025 -> 0.02
        (7, 2, "0.04"),  # 0.035 -> 0.04
        (10, 3, "0.03"),  # 0.0333...
        (20, 3, "0.07"),  # 0.0666...
        (0, 5, "0.00"),
        (3000000, 1, "30000.00"),
    ],
)
def test_average_price_rounds_half_even(notional, lots, text):
    spec = SymbolSpec("X-Y", "X", "Y", Decimal("0.01"), Decimal("0.001"))
    assert formatting.formatter(spec).average_price(notional, lots) == text
    assert spec.format_average_price(notional, lots) == text
    assert formatting.formatter(spec).average_price(5, 0) is None


def test_fee_rounds_half_even_to_8_places():
    # tick 0.01 x lot 0.00001 x rate 0.001 -> fee units of 1e-10
    spec = SymbolSpec("X-Y", "X", "Y", Decimal("0.01"), Decimal("0.00001"))
    fee = formatting.formatter(spec).fee
    assert fee(150) == "0.00000002"  # 1.5e-8 -> 2e-8
    assert fee(250) == "0.00000002"  # 2.5e-8 -> 2e-8
    assert fee(251) == "0.00000003"
    assert fee(0) == "0.00000000"


def test_formatter_is_rebuilt_for_another_spec_object():
    a = SymbolSpec("X-Y", "X", "Y", Decimal("0.01"), Decimal("0.001"))
    b = SymbolSpec("X-Y", "X", "Y", Decimal("0.5"), Decimal("1"))
    assert formatting.formatter(a).price(3) == "0.03"
    assert formatting.formatter(b).price(3) == "1.5"
    assert formatting.formatter(a) is formatting.formatter(a)


def test_cached_price_quantity_and_fee_texts_stay_exact_past_the_cache_bound():
    spec = SymbolSpec("X-Y", "X", "Y", Decimal("0.01"), Decimal("0.001"))
    f = formatting.formatter(spec)
    values = list(range(1, formatting.MAX_CACHED + 50)) * 2  # hits, and a clear when full
    assert [f.price(v) for v in values] == [spec.format_price(v) for v in values]
    assert [f.quantity(v) for v in values] == [spec.format_quantity(v) for v in values]
    assert f.price(None) is None and f.price(None) is None
    fees = [v * 997 for v in values]
    assert [f.fee(v) for v in fees] == [spec.format_fee(v) for v in fees]


def _reference_trade(spec, trade) -> dict:
    return {
        "timestamp": formatting.iso(trade.timestamp),
        "symbol": trade.symbol,
        "trade_id": str(trade.trade_id),
        "price": spec.format_price(trade.price),
        "quantity": spec.format_quantity(trade.quantity),
        "aggressor_side": trade.aggressor_side.value,
        "maker_order_id": str(trade.maker.order_id),
        "taker_order_id": str(trade.taker.order_id),
        "maker_fee": spec.format_fee(trade.maker_fee),
        "taker_fee": spec.format_fee(trade.taker_fee),
    }


def _reference_report(spec, order, status, filled, notional, trades) -> dict:
    return {
        "order_id": str(order.order_id),
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "order_type": order.order_type.value,
        "price": spec.format_price(order.price),
        "quantity": spec.format_quantity(order.quantity),
        "filled_quantity": spec.format_quantity(filled),
        "remaining_quantity": spec.format_quantity(order.quantity - filled),
        "average_price": spec.format_average_price(notional, filled),
        "status": status.value,
        "timestamp": formatting.iso(order.timestamp),
        "stop_price": spec.format_price(order.stop_price),
        "display_quantity": None
        if order.display_quantity is None
        else spec.format_quantity(order.display_quantity),
        "post_only": order.post_only,
        "expire_time": None if order.expire_time is None else formatting.iso(order.expire_time),
        "quote_quantity": None
        if order.quote_quantity is None
        else spec.format_notional(order.quote_quantity),
        "cancel_reason": order.cancel_reason if status.value == "cancelled" else None,
        "trades": [_reference_trade(spec, t) for t in trades],
    }


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([BUY, SELL]), st.integers(1, 40), st.integers(99, 101), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_reports_equal_the_decimal_reference(orders):
    engine = MatchingEngine(None)
    symbol = "ETH-USDT"
    spec = engine.markets[symbol].spec
    for side, lots, price, market in orders:
        if market:
            result = engine.submit(symbol, side, MARKET, lots, None, "m")
        else:
            result = engine.submit(symbol, side, LIMIT, lots, price * 100, None)
        report = formatting.submit_report(spec, result)
        assert report == _reference_report(
            spec, result.order, result.status, result.filled, result.notional, result.trades
        )
        reference = _reference_report(spec, result.order, result.status, result.filled, result.notional, [])
        assert [k for k, v in report.items() if v is not None] == [
            k for k, v in reference.items() if v is not None
        ]
        assert [type(v) for k, v in report.items() if k != "cancel_reason"] == [
            type(v) for k, v in reference.items() if k != "cancel_reason"
        ]
        for trade in result.trades:
            assert formatting.trade_dict(spec, trade) == _reference_trade(spec, trade)
            maker = formatting.maker_report(spec, trade)
            assert maker["average_price"] == spec.format_average_price(
                trade.maker_notional, trade.maker_filled
            )
    seq, bids, asks = engine.depth(symbol, 5)
    book = formatting.book_dict(spec, seq, bids, asks, 0)
    assert book["bids"] == [[spec.format_price(p), spec.format_quantity(q)] for p, q in bids]
    assert book["asks"] == [[spec.format_price(p), spec.format_quantity(q)] for p, q in asks]
    seq, bid, ask = engine.bbo(symbol)
    bbo = formatting.bbo_dict(spec, seq, bid, ask, 0)
    if bid is not None and ask is not None:
        assert bbo["spread"] == spec.format_price(ask[0] - bid[0])
