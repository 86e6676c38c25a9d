"""Orders and their vocabulary: sides, order types, statuses.

Prices are integer *ticks* and quantities integer *lots* of the order's symbol
(see ``engine.symbols.SymbolSpec``); decimals exist only at the edge.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return SELL if self is BUY else BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    IOC = "ioc"
    FOK = "fok"
    STOP_LOSS = "stop_loss"
    STOP_LIMIT = "stop_limit"
    TAKE_PROFIT = "take_profit"
    TAKE_PROFIT_LIMIT = "take_profit_limit"


class OrderStatus(StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    PENDING = "pending"  # a stop or take-profit waiting for its trigger: open, off the book

    @property
    def is_open(self) -> bool:
        return self is NEW or self is PARTIALLY_FILLED or self is PENDING


class SelfTradePrevention(StrEnum):
    """What happens when an order would trade with a resting order of its own
    account; the incoming order's (the taker's) mode decides."""

    CANCEL_TAKER = "cancel_taker"  # cancel the taker's remainder there; fills before it stand
    CANCEL_MAKER = "cancel_maker"  # cancel that resting order and go on matching
    CANCEL_BOTH = "cancel_both"  # both
    NONE = "none"  # no prevention: the two orders trade


# Module-level aliases: enum attribute lookup through the class is measurably
# slower than a global on the matching hot path.
BUY, SELL = Side.BUY, Side.SELL
MARKET, LIMIT, IOC, FOK = OrderType.MARKET, OrderType.LIMIT, OrderType.IOC, OrderType.FOK
NEW, PARTIALLY_FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED
FILLED, CANCELLED, PENDING = OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.PENDING
STOP_LOSS, STOP_LIMIT = OrderType.STOP_LOSS, OrderType.STOP_LIMIT
TAKE_PROFIT, TAKE_PROFIT_LIMIT = OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT
# The stop kinds, and what each enters the book as once triggered.
STOP_TYPES = frozenset((STOP_LOSS, STOP_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT))
LIMIT_STOP_TYPES = frozenset((STOP_LIMIT, TAKE_PROFIT_LIMIT))
# Types whose open orders rest in the book (with a price).
RESTING_TYPES = frozenset((LIMIT, STOP_LIMIT, TAKE_PROFIT_LIMIT))

STP_CANCEL_TAKER, STP_CANCEL_MAKER = SelfTradePrevention.CANCEL_TAKER, SelfTradePrevention.CANCEL_MAKER
STP_CANCEL_BOTH, STP_NONE = SelfTradePrevention.CANCEL_BOTH, SelfTradePrevention.NONE

# Why an order closed cancelled (``Order.cancel_reason``; None while open or filled).
USER = REASON_USER = "user"  # POST /cancel, /cancel_all
UNFILLED = REASON_UNFILLED = "unfilled"  # the remainder of a market / IOC / FOK order
REASON_SELF_TRADE = "self_trade"  # self-trade prevention
REASON_INSUFFICIENT_FUNDS = "insufficient_funds"  # a market order ran out of the account's funds
POST_ONLY = "post_only"  # a post-only order that would have taken
EXPIRED = "expired"  # good-till-time

# Member -> its string, for every side, order type and status: a dict lookup is
# ~5x cheaper than ``.value`` (a descriptor). Report formatting and snapshots
# read several per order.
VALUE = {m: m.value for enum in (Side, OrderType, OrderStatus, SelfTradePrevention) for m in enum}


class OrderExt(msgspec.Struct, gc=False, eq=False):
    """The rarely set part of an order (``Order.ext``): the fields of the
    order types beyond the four, and a self-trade prevention mode other than
    the default. An order that has none of them has no ``OrderExt`` at all:
    ``Order`` reads the defaults below through its properties. Each record
    belongs to one order (never shared), so it may be changed in place (an
    amend's new stop price).

    ``stop_price`` (ticks) for the stop kinds; ``display_quantity`` (lots) for
    an iceberg, whose currently shown part the book keeps (``OrderBook.shown``);
    ``post_only``; ``expire_time`` (ns since the epoch) for good-till-time;
    ``quote_quantity`` for a market order by quote amount, in *notional units*
    (``price_ticks * lots``, i.e. multiples of ``tick_size * lot_size`` of the
    quote asset, the unit of ``notional``); ``stp``, the order's self-trade
    prevention mode, used while it is the taker.
    """

    stop_price: int | None = None
    display_quantity: int | None = None
    post_only: bool = False
    expire_time: int | None = None
    quote_quantity: int | None = None
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER


_DEFAULTS = OrderExt()  # what an order without an OrderExt reads; never attached to one


def order_ext(
    stop_price: int | None = None,
    display_quantity: int | None = None,
    post_only: bool = False,
    expire_time: int | None = None,
    quote_quantity: int | None = None,
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER,
) -> OrderExt | None:
    """The ``Order.ext`` for these values: None when all are the defaults. O(1)."""
    if (
        stop_price is None
        and display_quantity is None
        and not post_only
        and expire_time is None
        and quote_quantity is None
        and stp is SelfTradePrevention.CANCEL_TAKER
    ):
        return None
    return OrderExt(stop_price, display_quantity, post_only, expire_time, quote_quantity, stp)


class Order(msgspec.Struct, gc=False, eq=False):
    """One order, live or closed.

    A ``msgspec.Struct`` rather than a slotted dataclass: it is created ~4x
    faster and, with ``gc=False``, never tracked by the cyclic garbage
    collector (an order references no containers, so it cannot be part of a
    cycle); on the shared benchmark that removed GC pauses worth ~20%.

    ``filled`` counts lots executed so far and ``notional`` the sum of
    ``price * lots`` over its fills (for the average price), both exact ints.
    ``timestamp`` is the acceptance time in ns since the epoch; it also fixes
    the order's time priority (arrival order within a price level). A stop
    that triggers, and an amend that loses priority, set it to that command's
    time: the order then (re)enters the book at that moment.

    ``account_id`` is the owner (None: no accounts, ``--auth off``); the
    engine interns it (``MatchingEngine._intern``) so that all orders of one
    account share one int object and the matching loop can compare owners by
    identity. It follows ``timestamp`` so that an owned order is created with
    nine positional arguments, the defaults after it left out.
    ``cancel_reason`` once it closed cancelled (``USER``, ``UNFILLED``,
    ``REASON_SELF_TRADE``, ``REASON_INSUFFICIENT_FUNDS``, ``POST_ONLY``,
    ``EXPIRED``).

    ``ext`` holds the rest (see ``OrderExt``; None for most orders), read
    through the properties ``stop_price``, ``display_quantity``, ``post_only``,
    ``expire_time``, ``quote_quantity`` and ``stp``. Keeping them out of the
    struct keeps every order small: 14 fields (128 bytes) instead of 19 (176).
    Each order in memory costs its size in cache traffic, and on the shared
    benchmark (which keeps its ~150,000 orders) five more fields cost ~5% of
    the throughput (Documentation/PERFORMANCE.md, "A smaller Order").
    """

    order_id: int
    client_order_id: str | None
    symbol: str
    side: Side
    order_type: OrderType
    price: int | None
    quantity: int
    timestamp: int
    account_id: int | None = None
    filled: int = 0
    notional: int = 0
    status: OrderStatus = NEW
    cancel_reason: str | None = None
    ext: OrderExt | None = None

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        status = self.status
        return status is NEW or status is PARTIALLY_FILLED or status is PENDING

    @property
    def stop_price(self) -> int | None:
        return (self.ext or _DEFAULTS).stop_price

    @property
    def display_quantity(self) -> int | None:
        return (self.ext or _DEFAULTS).display_quantity

    @property
    def post_only(self) -> bool:
        return (self.ext or _DEFAULTS).post_only

    @property
    def expire_time(self) -> int | None:
        return (self.ext or _DEFAULTS).expire_time

    @property
    def quote_quantity(self) -> int | None:
        return (self.ext or _DEFAULTS).quote_quantity

    @property
    def stp(self) -> SelfTradePrevention:
        return (self.ext or _DEFAULTS).stp
