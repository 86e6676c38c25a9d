"""Plain records the matcher returns. Nothing here does IO or formatting.

Prices are ticks, quantities lots, fees integer *fee units* (see
``SymbolSpec.format_fee``), timestamps ns since the epoch.

Which records each command returns
    submit  -> ``SubmitResult``: the taker's state after processing, its
               trades (one per maker fill, in execution order), the resting
               orders self-trade prevention cancelled, the symbol's
               sequence and whether the book changed (only then did the
               sequence advance).
    cancel  -> ``CancelResult``: the cancelled order and the new sequence.
Order events for makers are derived from trades: ``Trade.maker_filled`` is the
maker's filled quantity right after that fill.
"""

from __future__ import annotations

import msgspec

from engine.order import Order, OrderStatus, Side


class Trade(msgspec.Struct, gc=False, eq=False):
    """One fill of a taker against one maker, at the maker's price.

    ``maker_filled`` / ``maker_notional`` are the maker's state right after
    this fill. The symbol, the aggressor side and the time are the taker's
    (a trade happens when its taker arrives), so they are read from it rather
    than stored three more times per fill.
    """

    trade_id: int
    price: int
    quantity: int
    maker: Order
    taker: Order
    maker_fee: int
    taker_fee: int
    maker_filled: int
    maker_notional: int

    @property
    def symbol(self) -> str:
        return self.taker.symbol

    @property
    def aggressor_side(self) -> Side:
        return self.taker.side

    @property
    def timestamp(self) -> int:
        return self.taker.timestamp

    @property
    def maker_order_id(self) -> int:
        return self.maker.order_id

    @property
    def taker_order_id(self) -> int:
        return self.taker.order_id


class SubmitResult(msgspec.Struct, gc=False, eq=False):
    """Outcome of ``MatchingEngine.submit``; ``status``/``filled``/``notional``
    are the order's state when the command finished (the live ``order`` may
    change later, when it is hit as a maker). ``cancelled``: the resting
    orders self-trade prevention cancelled (``cancel_reason`` ``self_trade``),
    in the order it met them."""

    order: Order
    status: OrderStatus
    filled: int
    notional: int
    trades: list[Trade]
    sequence: int
    book_changed: bool
    cancelled: list[Order] | tuple = ()


class CancelResult(msgspec.Struct, gc=False, eq=False):
    """Outcome of ``MatchingEngine.cancel``: the order is now cancelled.
    ``timestamp`` is when (ns; the journal records it for replay)."""

    order: Order
    sequence: int
    timestamp: int
