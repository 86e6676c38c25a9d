"""Engine records -> the contract's JSON shapes. The only place that turns
ticks, lots and fee units back into decimal strings and ns timestamps into
ISO 8601 text.

Every function here is pure: it reads records and returns dicts.

Decimal strings are printed from integers (``_Fmt``, one per ``SymbolSpec``):
a price is ``ticks * tick_mult`` in units of ``10**-price_decimals``, printed
as ``"%d.%0Nd" % divmod(units, 10**N)``; the average price and fees are rounded
half-even with ``divmod``. That is exactly what ``SymbolSpec.format_*`` print
with ``Decimal`` (a property test compares them over random grids and values),
at half the cost: the report of an order with one fill went from ~8.9 us to
~4.7 us (one core). A spec whose grid is written with trailing zeros
(``"0.010"``: ``Decimal.quantize`` would round the average price to its
exponent, not to the grid's decimals) and values so large that ``Decimal``'s
28-digit context would round (far beyond ``MAX_UNITS``) use the spec's own
``Decimal`` methods.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.events import CancelResult, SubmitResult, Trade
from engine.order import CANCELLED, FILLED, PARTIALLY_FILLED, VALUE, Order, OrderStatus
from engine.symbols import FEE_DECIMALS, SymbolSpec

# (second, "YYYY-MM-DDTHH:MM:SS.") of the last call: ``strftime`` costs ~4 us and
# almost every timestamp formatted falls in the same second as the previous one.
# One tuple, replaced (never mutated), so concurrent callers stay consistent.
_iso_second: tuple[int, str] = (-1, "")


def iso(ns: int) -> str:
    """ns since the epoch -> ``"2026-11-24T17:51:32.123456Z"`` (UTC, microseconds)."""
    global _iso_second
    seconds, rest = divmod(ns, 1_000_000_000)
    cached = _iso_second
    if cached[0] != seconds:
        prefix = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        cached = _iso_second = (seconds, prefix)
    return f"{cached[1]}{rest // 1000:06d}Z"


# Below this, ``Decimal`` arithmetic in the spec's methods is exact (28 digits).
_EXACT = 10**26


class _Fmt:
    """Integer formatting of one symbol's prices, quantities and fees."""

    __slots__ = ("spec", "symbol", "price", "quantity", "average_price", "fee")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        pd, qd = spec.price_decimals, spec.quantity_decimals
        tick_mult = int(spec.tick_size.scaleb(pd))
        lot_mult = int(spec.lot_size.scaleb(qd))
        self.price = _cached(_fixed_formatter(tick_mult, pd, spec.format_price))
        self.quantity = _cached(_fixed_formatter(lot_mult, qd, spec.format_quantity))
        if spec.tick_size.as_tuple().exponent == -pd:
            self.average_price = _average_formatter(tick_mult, pd, spec.format_average_price)
        else:  # quantize() would round to the written exponent: keep Decimal's semantics
            self.average_price = spec.format_average_price
        # fee value = fee * coef * 10**exp (Decimal's _fee_scale), rounded half-even to 8 places
        _sign, digits, exp = spec._fee_scale.as_tuple()
        coef = int("".join(map(str, digits)))
        self.fee = _cached(_fee_formatter(coef, exp, spec.format_fee))


MAX_CACHED = 4096  # texts per cached formatter; the dict is emptied when full


def _cached(fmt):
    """``fmt`` through a bounded ``units -> text`` dict. Prices near the touch
    and common sizes repeat, and so do fees (price * fill * rate: 98% of them
    were formatted before in the load runner's stream); a hit costs ~60 ns
    against ~250 ns (~390 ns for a fee) for formatting. Average prices (a
    ratio of two values) are not cached."""
    cache: dict = {}
    get = cache.get

    def cached(units):
        text = get(units)
        if text is None:
            text = fmt(units)
            if text is not None:
                if len(cache) >= MAX_CACHED:
                    cache.clear()
                cache[units] = text
        return text

    return cached


def _fixed_formatter(mult: int, decimals: int, slow):
    """``units -> text`` for ``f"{units * step:.{decimals}f}"`` with ``step = mult * 10**-decimals``."""
    scale = 10**decimals
    pattern = "%d.%0" + str(decimals) + "d"
    if decimals == 0:

        def fmt(units):
            if units is None:
                return None
            n = units * mult
            if -_EXACT < n < _EXACT:
                return str(n)
            return slow(units)

    elif mult == 1:

        def fmt(units):
            if units is None:
                return None
            if 0 <= units < _EXACT:
                return pattern % divmod(units, scale)
            return slow(units)

    else:

        def fmt(units):
            if units is None:
                return None
            n = units * mult
            if 0 <= n < _EXACT:
                return pattern % divmod(n, scale)
            return slow(units)

    return fmt


def _average_formatter(tick_mult: int, decimals: int, slow):
    """``(notional, lots) -> text``: ``notional * tick / lots`` rounded half-even to the grid."""
    scale = 10**decimals
    pattern = "%d" if decimals == 0 else "%d.%0" + str(decimals) + "d"

    def fmt(notional, lots):
        if not lots:
            return None
        x = notional * tick_mult
        if lots < 0 or not 0 <= x < _EXACT:
            return slow(notional, lots)
        q, r = divmod(x, lots)
        r += r
        if r > lots or (r == lots and q & 1):
            q += 1
        return pattern % q if decimals == 0 else pattern % divmod(q, scale)

    return fmt


def _fee_formatter(coef: int, exp: int, slow):
    """``fee units -> text``: ``fee * coef * 10**exp`` rounded half-even to ``FEE_DECIMALS``."""
    places = FEE_DECIMALS
    scale = 10**places
    pattern = "%d.%0" + str(places) + "d"
    shift = exp + places  # > 0: exact, scale up; < 0: round away the extra places
    up = 10**shift if shift > 0 else 1
    down = 10**-shift if shift < 0 else 1
    half = down // 2

    def fmt(fee):
        n = fee * coef
        if not 0 <= n < _EXACT:
            return slow(fee)
        if shift >= 0:
            n *= up
            if n >= _EXACT:
                return slow(fee)
        else:
            n, r = divmod(n, down)
            if r > half or (r == half and n & 1):
                n += 1
        return pattern % divmod(n, scale)

    return fmt


_formatters: dict[int, _Fmt] = {}


def formatter(spec: SymbolSpec) -> _Fmt:
    """The integer formatter of ``spec`` (built once per spec object)."""
    f = _formatters.get(id(spec))
    if f is None or f.spec is not spec:
        f = _formatters[id(spec)] = _Fmt(spec)
    return f


def order_report(
    spec: SymbolSpec,
    order: Order,
    status: OrderStatus | None = None,
    filled: int | None = None,
    notional: int | None = None,
    trades: list[Trade] | None = None,
) -> dict:
    """The contract's order report. ``status``/``filled``/``notional`` default
    to the order's live state; pass a result's snapshot to report the state a
    command left it in. ``cancel_reason`` is the order's when the reported
    status is ``cancelled``, else null. ``quote_quantity`` is printed in the
    quote asset with ``price decimals + quantity decimals`` places (the
    notional's)."""
    if status is None:
        status, filled, notional = order.status, order.filled, order.notional
    f = formatter(spec)
    quantity = f.quantity
    timestamp = iso(order.timestamp)
    stop_price = order.stop_price
    display = order.display_quantity
    expire_time = order.expire_time
    quote = order.quote_quantity
    return {
        "order_id": str(order.order_id),
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": VALUE[order.side],
        "order_type": VALUE[order.order_type],
        "price": f.price(order.price),
        "quantity": quantity(order.quantity),
        "filled_quantity": quantity(filled),
        "remaining_quantity": quantity(order.quantity - filled),
        "average_price": f.average_price(notional, filled),
        "status": VALUE[status],
        "timestamp": timestamp,
        "stop_price": None if stop_price is None else f.price(stop_price),
        "display_quantity": None if display is None else quantity(display),
        "post_only": order.post_only,
        "expire_time": None if expire_time is None else iso(expire_time),
        "quote_quantity": None if quote is None else spec.format_notional(quote),
        # None while open or filled; a report of an earlier state (an order
        # event of a fill) never shows the reason of a later cancel
        "cancel_reason": order.cancel_reason if status is CANCELLED else None,
        # last: api.audit splices the encoded report at this key
        "trades": _taker_trades(f, order, timestamp, trades) if trades else [],
    }


def submit_report(spec: SymbolSpec, result: SubmitResult) -> dict:
    """The answer to ``POST /order``: the order as the command left it, with its fills."""
    return order_report(spec, result.order, result.status, result.filled, result.notional, result.trades)


def cancel_report(spec: SymbolSpec, result: CancelResult) -> dict:
    """The answer to ``POST /cancel``."""
    order = result.order
    return order_report(spec, order, order.status, order.filled, order.notional)


def _trade(f: _Fmt, trade: Trade) -> dict:
    taker = trade.taker
    return {
        "timestamp": iso(taker.timestamp),
        "symbol": taker.symbol,
        "trade_id": str(trade.trade_id),
        "price": f.price(trade.price),
        "quantity": f.quantity(trade.quantity),
        "aggressor_side": VALUE[taker.side],
        "maker_order_id": str(trade.maker.order_id),
        "taker_order_id": str(taker.order_id),
        "maker_fee": f.fee(trade.maker_fee),
        "taker_fee": f.fee(trade.taker_fee),
    }


def _taker_trades(f: _Fmt, order: Order, timestamp: str, trades: list[Trade]) -> list[dict]:
    """The trades of ``order`` as the taker: its time, symbol, side and id are each
    formatted once for all of them."""
    symbol = order.symbol
    side = VALUE[order.side]
    taker_id = str(order.order_id)
    price, quantity, fee = f.price, f.quantity, f.fee
    out = []
    for trade in trades:
        if trade.taker is not order:
            out.append(_trade(f, trade))
            continue
        out.append(
            {
                "timestamp": timestamp,
                "symbol": symbol,
                "trade_id": str(trade.trade_id),
                "price": price(trade.price),
                "quantity": quantity(trade.quantity),
                "aggressor_side": side,
                "maker_order_id": str(trade.maker.order_id),
                "taker_order_id": taker_id,
                "maker_fee": fee(trade.maker_fee),
                "taker_fee": fee(trade.taker_fee),
            }
        )
    return out


def trade_dict(spec: SymbolSpec, trade: Trade) -> dict:
    """The contract's trade."""
    return _trade(formatter(spec), trade)


def maker_report(spec: SymbolSpec, trade: Trade) -> dict:
    """The maker's order report right after ``trade`` (for its ``order_event``)."""
    maker = trade.maker
    status = FILLED if trade.maker_filled == maker.quantity else PARTIALLY_FILLED
    return order_report(spec, maker, status, trade.maker_filled, trade.maker_notional)


def levels(spec: SymbolSpec, pairs: list[tuple[int, int]]) -> list[list[str]]:
    """``[(ticks, lots)]`` -> ``[["30000.00", "0.50000"], ...]``."""
    f = formatter(spec)
    fp, fq = f.price, f.quantity
    return [[fp(p), fq(q)] for p, q in pairs]


def book_dict(spec: SymbolSpec, sequence: int, bids, asks, now_ns: int) -> dict:
    """``GET /book`` and the ``l2_update`` event."""
    return {
        "timestamp": iso(now_ns),
        "symbol": spec.symbol,
        "sequence": sequence,
        "bids": levels(spec, bids),
        "asks": levels(spec, asks),
    }


def bbo_dict(spec: SymbolSpec, sequence: int, bid, ask, now_ns: int) -> dict:
    """``GET /bbo`` and the ``bbo`` event."""
    f = formatter(spec)
    fp, fq = f.price, f.quantity
    spread = None
    if bid is not None and ask is not None:
        spread = fp(ask[0] - bid[0])
    return {
        "timestamp": iso(now_ns),
        "symbol": spec.symbol,
        "sequence": sequence,
        "best_bid": None if bid is None else {"price": fp(bid[0]), "quantity": fq(bid[1])},
        "best_ask": None if ask is None else {"price": fp(ask[0]), "quantity": fq(ask[1])},
        "spread": spread,
    }
