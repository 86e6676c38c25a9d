"""Engine records -> the contract's JSON shapes. The only place that turns
ticks, lots and fee units back into decimal strings (via ``SymbolSpec``) and
ns timestamps into ISO 8601 text.

Every function here is pure: it reads records and returns dicts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.events import CancelResult, SubmitResult, Trade
from engine.order import FILLED, PARTIALLY_FILLED, Order, OrderStatus
from engine.symbols import SymbolSpec

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
    command left it in."""
    if status is None:
        status, filled, notional = order.status, order.filled, order.notional
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
        "timestamp": iso(order.timestamp),
        "trades": [trade_dict(spec, t) for t in trades] if trades else [],
    }


def submit_report(spec: SymbolSpec, result: SubmitResult) -> dict:
    """The answer to ``POST /order``: the order as the command left it, with its fills."""
    return order_report(spec, result.order, result.status, result.filled, result.notional, result.trades)


def cancel_report(spec: SymbolSpec, result: CancelResult) -> dict:
    """The answer to ``POST /cancel``."""
    order = result.order
    return order_report(spec, order, order.status, order.filled, order.notional)


def trade_dict(spec: SymbolSpec, trade: Trade) -> dict:
    """The contract's trade."""
    return {
        "timestamp": iso(trade.timestamp),
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


def maker_report(spec: SymbolSpec, trade: Trade) -> dict:
    """The maker's order report right after ``trade`` (for its ``order_event``)."""
    maker = trade.maker
    status = FILLED if trade.maker_filled == maker.quantity else PARTIALLY_FILLED
    return order_report(spec, maker, status, trade.maker_filled, trade.maker_notional)


def levels(spec: SymbolSpec, pairs: list[tuple[int, int]]) -> list[list[str]]:
    """``[(ticks, lots)]`` -> ``[["30000.00", "0.50000"], ...]``."""
    fp, fq = spec.format_price, spec.format_quantity
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
    spread = None
    if bid is not None and ask is not None:
        spread = spec.format_price(ask[0] - bid[0])
    return {
        "timestamp": iso(now_ns),
        "symbol": spec.symbol,
        "sequence": sequence,
        "best_bid": None
        if bid is None
        else {"price": spec.format_price(bid[0]), "quantity": spec.format_quantity(bid[1])},
        "best_ask": None
        if ask is None
        else {"price": spec.format_price(ask[0]), "quantity": spec.format_quantity(ask[1])},
        "spread": spread,
    }
