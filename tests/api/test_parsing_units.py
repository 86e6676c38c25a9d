"""``api.parsing._units``: the integer fast path of price/quantity conversion
answers only where ``SymbolSpec``'s ``Decimal`` conversion accepts, and then
with the same number; everything else goes to the spec (and its error message).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import parsing
from engine.errors import ValidationError
from engine.matcher import MatchingEngine
from engine.symbols import SymbolSpec
from tests.api.grids import STEPS

specs = st.builds(
    lambda tick, lot: SymbolSpec("X-Y", "X", "Y", Decimal(tick), Decimal(lot)),
    st.sampled_from(STEPS),
    st.sampled_from(STEPS),
)
texts = st.one_of(
    st.text(alphabet="0123456789.", min_size=0, max_size=45),
    st.text(alphabet="0123456789.-+eE _\u0661\u00b2 \t", min_size=0, max_size=12),
    st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 10**21), st.integers(0, 10**21)),
    st.builds(lambda a, z: f"{a}.{'0' * z}", st.integers(0, 10**6), st.integers(0, 22)),
)
values = st.one_of(
    texts,
    st.integers(-5, 10**21),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.decimals(allow_nan=False, places=3),
)


def _spec_units(spec: SymbolSpec, value, which: str):
    try:
        if which == "price":
            return spec.price_to_ticks(value, "price")
        return spec.quantity_to_lots(value, "quantity")
    except ValidationError:
        return None


@settings(max_examples=1500, deadline=None)
@given(specs, values, st.sampled_from(["price", "quantity"]))
def test_fast_units_agree_with_the_spec(spec, value, which):
    grid = parsing._grid(spec)
    coef, exp = (grid.tick_coef, grid.tick_exp) if which == "price" else (grid.lot_coef, grid.lot_exp)
    fast = parsing._units(value, coef, exp)
    expected = _spec_units(spec, value, which)
    if fast is not None:
        assert fast == expected
        assert type(fast) is int
    elif type(value) is str or (type(value) is int and 0 < value < 10**20):
        # declined: the spec must refuse it too
        assert expected is None


@pytest.mark.parametrize(
    ("text", "ticks"),
    [("30000.00", 3000000), ("30000", 3000000), ("0.01", 1), ("007.10", 710), ("1000000000000.00", 10**14)],
)
def test_plain_prices(text, ticks):
    engine = MatchingEngine(None)
    body = {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.001", "price": text}
    cmd = parsing.parse_order(engine, body)
    assert cmd.price == ticks
    assert cmd.quantity == 100


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("30000.001", "price 30000.001 is not a multiple of 0.01"),
        ("0.00", "price must be at least 0.01"),
        ("1.", None),
        (".5", None),
        ("\u0661", None),  # an Arabic-Indic digit: str.isdigit() says yes, the contract says no
        ("1_000", None),
        (" 1", None),
        ("10000000000000000000", "too large"),
    ],
)
def test_refusals_keep_the_spec_messages(price, message):
    engine = MatchingEngine(None)
    body = {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.001", "price": price}
    with pytest.raises(ValidationError) as info:
        parsing.parse_order(engine, body)
    assert info.value.field == "price"
    if message:
        assert message in info.value.message
    spec = engine.markets["BTC-USDT"].spec
    with pytest.raises(ValidationError) as reference:
        spec.price_to_ticks(price, "price")
    assert info.value.message == reference.value.message


def test_cached_conversions_answer_the_same_and_stay_bounded(monkeypatch):
    monkeypatch.setattr(parsing, "_MAX_CACHED", 8)
    engine = MatchingEngine(None)
    spec = engine.markets["BTC-USDT"].spec
    grid = parsing._grid(spec)
    grid.ticks.clear()
    for i in range(1, 40):
        text = f"{i}.0{i % 10}"
        body = {
            "symbol": "BTC-USDT",
            "side": "buy",
            "order_type": "limit",
            "quantity": "0.001",
            "price": text,
        }
        first = parsing.parse_order(engine, body).price
        again = parsing.parse_order(engine, body).price  # from the cache
        assert first == again == spec.price_to_ticks(text)
        assert len(grid.ticks) <= 8
    # refusals are never cached, and non-strings never reach the cache
    bad = {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.001", "price": "1.001"}
    for _ in range(2):
        with pytest.raises(ValidationError):
            parsing.parse_order(engine, bad)
    assert "1.001" not in grid.ticks
    body = {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.001", "price": ["1"]}
    with pytest.raises(ValidationError):
        parsing.parse_order(engine, body)
