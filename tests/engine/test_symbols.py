"""Exact money at the edge: parsing onto the tick/lot grid and formatting back."""

from decimal import Decimal

import pytest

from engine.errors import ValidationError
from engine.symbols import default_symbols, load_symbols

BTC = {s.symbol: s for s in default_symbols()}["BTC-USDT"]


@pytest.mark.parametrize(
    "text, ticks",
    [
        ("30000.00", 3000000),
        ("30000", 3000000),
        ("0.01", 1),
        ("30000.1", 3000010),
        (30000, 3000000),
        (Decimal("30000.50"), 3000050),
        ("000123.4500", 12345),
    ],
)
def test_prices_parse_exactly(text, ticks):
    assert BTC.price_to_ticks(text) == ticks


@pytest.mark.parametrize(
    "value",
    [
        "30000.001",
        "0",
        "0.00",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        " 1",
        "1 ",
        "",
        "1.",
        ".5",
        "1,5",
        "0x10",
        "1" * 21,
        "1." + "0" * 21,
        True,
        None,
        1.5,
        [],
        {},
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+3"),
        "١٢٣",
    ],
)
def test_bad_prices_are_rejected_naming_the_field(value):
    with pytest.raises(ValidationError) as info:
        BTC.price_to_ticks(value)
    assert info.value.field == "price"


@pytest.mark.parametrize("text, lots", [("0.00001", 1), ("1", 100000), ("0.5", 50000)])
def test_quantities_parse_exactly(text, lots):
    assert BTC.quantity_to_lots(text) == lots


def test_quantity_off_the_lot_grid_is_rejected_not_rounded():
    with pytest.raises(ValidationError) as info:
        BTC.quantity_to_lots("0.000015")
    assert info.value.field == "quantity" and "multiple" in info.value.message


@pytest.mark.parametrize(
    "value",
    ["99999999999999999999", 10**20, 10**5000, -(10**5000), -5, 0],
    ids=["20-nines", "1e20", "5000-digits", "minus-5000-digits", "-5", "0"],
)
def test_too_large_or_non_positive_values_are_rejected(value):
    # a >4,300-digit int once escaped as ValueError from str() (found by the API tests)
    with pytest.raises(ValidationError):
        BTC.quantity_to_lots(value)


def test_formatting_uses_the_grid_decimals():
    assert BTC.format_price(3000000) == "30000.00"
    assert BTC.format_quantity(100) == "0.00100"
    assert BTC.format_price(None) is None


def test_fee_is_exact_then_rounded_half_even_to_8_decimals():
    # 30000.00 x 0.00001 = 0.3 notional; maker 0.001 -> 0.0003
    ticks, lots = 3000000, 1
    assert BTC.format_fee(ticks * lots * BTC.maker_fee_units) == "0.00030000"
    # 0.01 x 0.00001 = 1e-7 notional; taker 0.002 -> 2e-10 -> rounds to 0
    assert BTC.format_fee(1 * 1 * BTC.taker_fee_units) == "0.00000000"
    # 2.50 x 0.00001 x 0.001 = 0.000000025 -> half-even 0.00000002; 3.50 -> 0.00000004
    assert BTC.format_fee(250 * 1 * BTC.maker_fee_units) == "0.00000002"
    assert BTC.format_fee(350 * 1 * BTC.maker_fee_units) == "0.00000004"


def test_average_price_rounds_half_even_to_the_tick():
    assert BTC.format_average_price(3000000 * 1 + 3000001 * 1, 2) == "30000.00"  # 30000.005 -> even
    assert BTC.format_average_price(0, 0) is None


def test_symbols_to_dict_is_the_contract_entry():
    assert BTC.to_dict() == {
        "symbol": "BTC-USDT",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.01",
        "lot_size": "0.00001",
        "maker_fee": "0.001",
        "taker_fee": "0.002",
    }


def test_load_symbols_from_a_config_file(tmp_path):
    path = tmp_path / "symbols.json"
    path.write_text(
        '{"symbols": [{"symbol": "DOGE-USDT", "tick_size": "0.00001", "lot_size": 1,'
        ' "maker_fee": "0", "taker_fee": "0.0005"}]}'
    )
    (spec,) = load_symbols(str(path))
    assert (spec.base, spec.quote, spec.price_to_ticks("0.12345"), spec.taker_fee_units) == (
        "DOGE",
        "USDT",
        12345,
        5,
    )


def test_load_symbols_rejects_duplicates(tmp_path):
    path = tmp_path / "symbols.json"
    path.write_text(
        '{"symbols": [{"symbol": "A-B", "tick_size": "1", "lot_size": "1"},'
        ' {"symbol": "A-B", "tick_size": "1", "lot_size": "1"}]}'
    )
    with pytest.raises(ValueError):
        load_symbols(str(path))
