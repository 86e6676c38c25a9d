"""Symbol specifications: the grid (tick and lot), fee rates, and the one place
where decimals are converted to the engine's integers and back.

Conversion rules (the contract's "exact money"):
- A price or quantity is parsed from its decimal text exactly; a value that is
  not a positive whole multiple of the tick (lot) is rejected, never rounded.
- Formatting uses the grid's own number of decimals: ``"30000.00"``, ``"0.00100"``.
- A fee is ``notional * rate`` computed exactly from integers, then rounded
  half-even to ``FEE_DECIMALS`` places (the quote asset's precision). Notional
  itself is exact (price decimals + quantity decimals places, never more).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from engine.errors import ValidationError

FEE_DECIMALS = 8
# Plain decimal notation only: no sign, no exponent, no spaces, bounded length.
_DECIMAL_TEXT = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")
# Largest price or quantity in grid units; keeps every product far from float-
# sized surprises in clients and bounds the work a request can cause.
MAX_UNITS = 10**15


def parse_decimal(value: object, field_name: str) -> Decimal:
    """Parse a request value into an exact ``Decimal``.

    Accepts a decimal string (``"30000.5"``), an ``int``, or a ``Decimal``
    produced by ``json.loads(..., parse_float=Decimal)``. Rejects floats (they
    have already lost exactness), booleans, exponent forms, NaN, Infinity,
    signs, empty and over-long text.

    Raises:
        ValidationError: naming ``field_name``.
    """
    if isinstance(value, bool) or value is None:
        raise ValidationError(f"{field_name} must be a decimal string", field_name)
    if isinstance(value, int):
        # Bound first: str() of a huge int is slow, and refused past 4,300 digits.
        if not 0 < value < 10**20:
            raise ValidationError(f"{field_name} must be a positive decimal of at most 20 digits", field_name)
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError(f"{field_name} must be a finite number", field_name)
        # JSON numbers arrive as Decimal with their original text preserved.
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValidationError(f"{field_name} must be a decimal string", field_name)
    if not _DECIMAL_TEXT.fullmatch(text):
        raise ValidationError(
            f'{field_name} must be a plain positive decimal like "1.25" '
            f"(no sign, exponent or spaces, at most 20 digits each side)",
            field_name,
        )
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid text
        raise ValidationError(f"{field_name} is not a number", field_name) from None


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent)


@dataclass(slots=True)
class SymbolSpec:
    """A tradable symbol: ``tick_size`` and ``lot_size`` (step and minimum) and
    fee rates as fractions of notional.

    ``price_to_ticks`` / ``quantity_to_lots`` are the edge conversions;
    ``format_*`` the inverse. Runtime complexity of each: O(digits).
    """

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.002")
    price_decimals: int = field(init=False)
    quantity_decimals: int = field(init=False)
    # fee_in_quote = price_ticks * lots * fee_units * _fee_scale
    maker_fee_units: int = field(init=False)
    taker_fee_units: int = field(init=False)
    _fee_scale: Decimal = field(init=False)
    _notional_scale: Decimal = field(init=False)

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size", "maker_fee", "taker_fee"):
            setattr(self, name, Decimal(str(getattr(self, name))))
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size and lot_size must be positive")
        if self.maker_fee < 0 or self.taker_fee < 0:
            raise ValueError(f"{self.symbol}: fees must not be negative")
        self.price_decimals = _decimals(self.tick_size)
        self.quantity_decimals = _decimals(self.lot_size)
        fee_decimals = max(_decimals(self.maker_fee), _decimals(self.taker_fee))
        self.maker_fee_units = int(self.maker_fee.scaleb(fee_decimals))
        self.taker_fee_units = int(self.taker_fee.scaleb(fee_decimals))
        self._notional_scale = self.tick_size * self.lot_size
        self._fee_scale = self._notional_scale.scaleb(-fee_decimals)

    # -- edge conversions -------------------------------------------------
    def _to_units(self, value: object, step: Decimal, field_name: str) -> int:
        amount = parse_decimal(value, field_name)
        units, rest = divmod(amount, step)
        if rest != 0:
            raise ValidationError(f"{field_name} {amount} is not a multiple of {step}", field_name)
        if units <= 0:
            raise ValidationError(f"{field_name} must be at least {step}", field_name)
        if units > MAX_UNITS:
            raise ValidationError(f"{field_name} {amount} is too large", field_name)
        return int(units)

    def price_to_ticks(self, value: object, field_name: str = "price") -> int:
        """Exact price -> ticks. Raises ValidationError off the grid or out of range."""
        return self._to_units(value, self.tick_size, field_name)

    def quantity_to_lots(self, value: object, field_name: str = "quantity") -> int:
        """Exact quantity -> lots. Raises ValidationError off the grid or out of range."""
        return self._to_units(value, self.lot_size, field_name)

    def format_price(self, ticks: int | None) -> str | None:
        if ticks is None:
            return None
        return f"{(ticks * self.tick_size):.{self.price_decimals}f}"

    def format_quantity(self, lots: int) -> str:
        return f"{(lots * self.lot_size):.{self.quantity_decimals}f}"

    def format_average_price(self, notional: int, lots: int) -> str | None:
        """Average fill price, rounded half-even to the price precision."""
        if not lots:
            return None
        average = Decimal(notional) * self.tick_size / Decimal(lots)
        return f"{average.quantize(self.tick_size, ROUND_HALF_EVEN):.{self.price_decimals}f}"

    def format_notional(self, notional: int) -> str:
        return f"{(notional * self._notional_scale):.{self.price_decimals + self.quantity_decimals}f}"

    def format_fee(self, fee: int) -> str:
        """``fee`` in integer fee units (``price_ticks * lots * rate_units``)."""
        value = (fee * self._fee_scale).quantize(Decimal(1).scaleb(-FEE_DECIMALS), ROUND_HALF_EVEN)
        return f"{value:.{FEE_DECIMALS}f}"

    def format_fee_exact(self, fee: int) -> str:
        """``fee`` in fee units, exact: with the decimals of tick x lot x rate
        (the quote asset's scale for this symbol), never rounded."""
        return f"{Decimal(fee) * self._fee_scale:f}"

    def to_dict(self) -> dict:
        """The ``GET /symbols`` entry."""
        return {
            "symbol": self.symbol,
            "base": self.base,
            "quote": self.quote,
            "tick_size": f"{self.tick_size:.{self.price_decimals}f}",
            "lot_size": f"{self.lot_size:.{self.quantity_decimals}f}",
            "maker_fee": str(self.maker_fee),
            "taker_fee": str(self.taker_fee),
        }


def default_symbols() -> list[SymbolSpec]:
    """The contract's four default symbols."""
    return [
        SymbolSpec("BTC-USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001")),
        SymbolSpec("ETH-USDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001")),
        SymbolSpec("BNB-USDT", "BNB", "USDT", Decimal("0.01"), Decimal("0.001")),
        SymbolSpec("SOL-USDT", "SOL", "USDT", Decimal("0.01"), Decimal("0.001")),
    ]


def asset_scales(specs) -> dict[str, int]:
    """Every base and quote asset of ``specs`` -> the decimals it is held to
    (``GET /assets``), in the order the symbols name them: a base asset its
    lot size's decimals; a quote asset those of tick size x lot size x fee
    rate, so that every notional, fee and buy lock (``price x quantity x
    (1 + taker_fee)``) of every symbol is exact in it. The largest where an
    asset plays several roles. O(symbols)."""
    scales: dict[str, int] = {}
    for spec in specs:
        fee_decimals = max(_decimals(spec.maker_fee), _decimals(spec.taker_fee))
        for asset, scale in (
            (spec.base, spec.quantity_decimals),
            (spec.quote, spec.price_decimals + spec.quantity_decimals + fee_decimals),
        ):
            scales[asset] = max(scales.get(asset, 0), scale)
    return scales


def load_symbols(path: str) -> list[SymbolSpec]:
    """Read symbol specs from a JSON file: ``{"symbols": [{"symbol", "base",
    "quote", "tick_size", "lot_size"[, "maker_fee", "taker_fee"]}, ...]}``.
    Numbers are best written as strings; JSON numbers are read exactly.

    Raises:
        ValueError: on a malformed file (startup fails with the reason).
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f, parse_float=Decimal)
    specs = []
    for entry in data["symbols"]:
        specs.append(
            SymbolSpec(
                entry["symbol"],
                entry.get("base", entry["symbol"].split("-")[0]),
                entry.get("quote", entry["symbol"].split("-")[-1]),
                Decimal(str(entry["tick_size"])),
                Decimal(str(entry["lot_size"])),
                Decimal(str(entry.get("maker_fee", "0.001"))),
                Decimal(str(entry.get("taker_fee", "0.002"))),
            )
        )
    if len({s.symbol for s in specs}) != len(specs):
        raise ValueError(f"{path}: duplicate symbol")
    return specs
