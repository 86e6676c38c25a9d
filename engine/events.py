"""Plain records the matcher returns. Nothing here does IO or formatting.

Prices are ticks, quantities lots, fees integer *fee units* (see
``SymbolSpec.format_fee``), timestamps ns since the epoch.

Which records each command returns
    submit  -> ``SubmitResult``: the taker's state after processing, its
               trades (one per maker fill, in execution order), the resting
               orders self-trade prevention cancelled, the symbol's
               sequence and whether the book changed (only then did the
               sequence advance).
    cancel  -> ``CancelResult``: the cancelled order and the new sequence
               (also ``expire``, with ``cancel_reason`` ``expired``).
    amend   -> ``AmendResult``: the order after the amend, the trades it made
               as a taker when its new price crossed.
Order events for makers are derived from trades: ``Trade.maker_filled`` is the
maker's filled quantity right after that fill.

Stops triggered by a command's trades enter before the command returns; each
entry is a ``SubmitResult`` (its ``order`` the triggered stop, its ``trades``
the fills it made as a taker) in ``triggered`` of the command's result, in the
order they entered. ``all_trades()`` is the command's trades and theirs, in
execution (``trade_id``) order: what the journal records for replay.
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
    triggered: tuple | list = ()
    cancelled: list[Order] | tuple = ()  # resting orders self-trade prevention cancelled

    def all_trades(self) -> list[Trade]:
        """This command's trades and those of the stops it triggered, in
        execution order. O(trades)."""
        if not self.triggered:
            return self.trades
        out = list(self.trades)
        for entry in self.triggered:
            out.extend(entry.trades)
        return out


class CancelResult(msgspec.Struct, gc=False, eq=False):
    """Outcome of ``MatchingEngine.cancel`` (and ``expire``): the order is now
    cancelled, ``order.cancel_reason`` says why. ``timestamp`` is when (ns;
    the journal records it for replay). ``book_changed`` is False for a
    pending stop (it was not in the book; the sequence did not advance)."""

    order: Order
    sequence: int
    timestamp: int
    book_changed: bool = True


class AmendResult(msgspec.Struct, gc=False, eq=False):
    """Outcome of ``MatchingEngine.amend``. ``quantity``/``price``/``stop_price``
    are what was asked (``None``: unchanged), for the journal; ``status``,
    ``filled``, ``notional`` the order's state when the command finished;
    ``trades`` its fills as a taker when a new price crossed; ``triggered`` as
    in ``SubmitResult``."""

    order: Order
    status: OrderStatus
    filled: int
    notional: int
    trades: list[Trade]
    sequence: int
    book_changed: bool
    timestamp: int
    quantity: int | None
    price: int | None
    stop_price: int | None
    triggered: tuple | list = ()
    cancelled: list[Order] | tuple = ()  # resting orders self-trade prevention cancelled

    all_trades = SubmitResult.all_trades
