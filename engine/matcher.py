"""The matching engine: order-type policy, fees, ids, sequences, per-symbol locks.

Contract
    * Strict price-time priority; a marketable order executes level by level
      from the best opposite price, each fill at the resting (maker) order's
      price, never past its own limit (no trade-through).
    * ``limit`` rests its remainder (good-till-cancelled); ``market`` and
      ``ioc`` cancel their remainder; ``fok`` first measures the liquidity at
      its limit or better (read-only) and, if it cannot fill completely,
      changes nothing at all.
    * The book is never crossed or locked after a command.
    * A symbol's ``sequence`` advances by exactly one for each command that
      changes its book (a trade, a rest or a cancel) and not for one that
      changes nothing (a killed FOK, a market/IOC order that finds nothing).
    * Order and trade ids are engine-wide increasing integers, never reused;
      ``restore`` continues after the highest ever issued.
    * Every trade carries maker and taker fees (integer fee units, exact).
    * Order types beyond the four (``Documentation/ENGINE.md``): stops and
      take-profits wait, status ``pending``, in the symbol's ``StopBook``
      (``engine/stops.py``) until the last trade price crosses their stop
      price; after every command that traded they enter one at a time in
      the order the price crossed them, each entry's trades checked for more,
      all within that command (``_trigger``; the sequence advances once).
      Icebergs show ``display_quantity`` at a time (``OrderBook.shown``);
      post-only orders that would take are cancelled whole; good-till-time
      orders are cancelled by ``expire`` commands the caller issues when
      ``due_expiries`` names them; a market order by ``quote_quantity`` buys or
      sells whole lots within it; ``amend`` changes an open order in place.
    * An order that closes cancelled says why in ``cancel_reason``.

Accounts and self-trade prevention
    An order may carry an ``account_id`` (its owner; None without accounts)
    and an ``stp`` mode. When the taker meets a resting order of its own
    account in the matching loop, the taker's mode decides: ``cancel_taker``
    cancels the taker's remainder there (fills before it stand),
    ``cancel_maker`` cancels that resting order and matching goes on,
    ``cancel_both`` does both, ``none`` lets them trade. Cancelled orders
    carry ``cancel_reason`` ``self_trade``; the makers cancelled so are in
    ``cancelled`` of the command's result (a triggered stop's in its entry).
    A FOK counts only the liquidity it could take without a self-trade
    (``_stp_available``) and, if short, changes nothing. Triggered stops and
    amends that cross match through the same loop, so the same rule holds.
    Cost for everyone else: one identity compare per fill (owners are
    interned ints; an order without an owner, or with ``none``, compares
    against a sentinel nothing equals). The registry of accounts and keys
    (``engine.accounts``) is ``self.accounts``, snapshotted with the books.

Concurrency
    Each symbol has a re-entrant lock; ``submit``/``cancel`` hold it while
    they mutate that symbol's book. Callers that must do something atomically
    with a command (the journal appends its record in the same critical
    section, so the journal's order is the book's order) hold
    ``engine.lock(symbol)`` around it; the lock is re-entrant. Ids come from
    ``itertools.count`` (atomic under the GIL), so two symbols never share an
    id.

    The locks are made by ``lock_factory`` (default ``threading.RLock``): the
    caller knows its concurrency model. Nothing the engine does while holding
    a lock blocks, does IO or calls out, so a lock that excludes only OS
    threads (a C ``RLock`` shared by green threads on one OS thread) is
    enough for a caller whose own critical sections never yield either; the
    api layer chooses that under eventlet (``api.app.symbol_lock_factory``).

Determinism
    Given the same commands with the same timestamps and ids (``submit``,
    ``cancel``, ``amend`` and ``expire`` accept them for replay), the engine
    reaches the same state: triggered stops are consequences of the command
    that traded, and their trades use the command's journaled trade ids.

The engine never does IO, never logs on the hot path and never calls out: it
returns plain records (``engine.events``) for the caller to publish.

Funds (``funds=True``; ``engine.funds`` and ``Documentation/ENGINE.md``)
    ``self.ledger`` keeps every account's available and locked balance per
    asset and the exchange's fees. An order locks what it may spend when it
    is accepted (``InsufficientFunds``, nothing changed, when the account
    cannot cover it); every matching loop settles its trades before it
    returns; a close releases the rest of the lock, an amend moves it. A
    market buy (and a quote-amount sell) locks nothing and executes in rounds
    (``_enter_rounds``) while the available balance covers each fill, unless
    it can afford its quantity at the highest ask. Every symbol shares one
    lock: an order's check and lock are atomic across symbols (an account's
    quote is shared by all its symbols), and the journal's order is the
    ledger's, so replay is exact. Every order needs an owner.

Known limits
    Closed orders are kept in memory up to ``order_history`` (the oldest
    closed are forgotten first); trades up to ``trade_history`` per symbol.
    Durable history lives in the storage layer.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable

from engine.accounts import AccountRegistry
from engine.book import SLACK, OrderBook
from engine.errors import OrderNotFound, OrderNotOpen, UnknownSymbol, ValidationError
from engine.events import AmendResult, CancelResult, SubmitResult, Trade
from engine.funds import Ledger, SymbolFunds, lock_for, lock_of
from engine.order import (
    BUY,
    CANCELLED,
    EXPIRED,
    FILLED,
    FOK,
    IOC,
    LIMIT,
    LIMIT_STOP_TYPES,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    PENDING,
    POST_ONLY,
    REASON_INSUFFICIENT_FUNDS,
    REASON_SELF_TRADE,
    RESTING_TYPES,
    SELL,
    STOP_LOSS,
    STOP_TYPES,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    STP_NONE,
    TAKE_PROFIT,
    UNFILLED,
    USER,
    VALUE,
    Order,
    OrderExt,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    order_ext,
)
from engine.stops import StopBook, would_trigger
from engine.symbols import MAX_UNITS, SymbolSpec, default_symbols

_NO_TRADES: list = []  # shared, never mutated: callers only read result.trades
_NO_ORDERS: tuple = ()  # SubmitResult.cancelled when self-trade prevention cancelled no maker
_NOBODY = object()  # the owner an order without account (or with stp "none") compares against
_STP_MODES = frozenset(SelfTradePrevention)


class _AllLocks:
    """Every symbol lock, acquired in order and released in reverse."""

    __slots__ = ("locks",)

    def __init__(self, locks: list) -> None:
        self.locks = locks

    def __enter__(self) -> None:
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc) -> None:
        for lock in reversed(self.locks):
            lock.release()


def _stp_available(book: OrderBook, side: Side, limit: int | None, wanted: int, owner: int, stp) -> int:
    """A FOK's fillability test under self-trade prevention: the lots resting on
    ``side`` at ``limit`` or better that it could take without a self-trade,
    counted until ``wanted`` is reached. With ``cancel_maker`` that is every
    other account's liquidity; with ``cancel_taker``/``cancel_both``, what rests
    ahead of ``owner``'s first order (matching stops there). Read-only.

    Runtime complexity: O(orders visited + log L).
    """
    book_side = book.bids if side is BUY else book.asks
    shown = book.shown
    n = len(book_side)
    prices = book_side.islice(0, n, reverse=True) if side is BUY else book_side.islice(0, n)
    total = 0
    for price in prices:
        if limit is not None and (price < limit if side is BUY else price > limit):
            break
        for order in book_side[price].orders:
            if order.status is CANCELLED:
                continue
            if order.account_id is owner:
                if stp is STP_CANCEL_MAKER:
                    continue
                return total
            total += shown.get(order.order_id, order.quantity - order.filled)  # an iceberg: its shown part
            if total >= wanted:
                return total
    return total


def _after(counter: itertools.count, issued: int) -> itertools.count:
    """A counter continuing after both ``counter`` and the id ``issued``."""
    return itertools.count(max(next(counter), issued + 1))


def _check_other(
    order_type, quantity, price, stop_price, display_quantity, post_only, expire_time, quote_quantity
) -> None:
    """Validate the fields of an order of a type beyond the four (or of one of
    the four with a new field). Raises ValidationError naming the field."""

    def units(value, name: str) -> None:
        if type(value) is not int or value <= 0 or value > MAX_UNITS:
            raise ValidationError(f"{name} must be a positive number of grid units", name)

    if type(order_type) is not OrderType:
        raise ValidationError("unknown order_type", "order_type")
    kind = order_type.value
    if post_only not in (False, True):
        raise ValidationError("post_only must be true or false", "post_only")
    if display_quantity is not None and order_type is not LIMIT:
        raise ValidationError(f"display_quantity belongs to limit orders, not {kind}", "display_quantity")
    if post_only and order_type is not LIMIT:
        raise ValidationError(f"post_only belongs to limit orders, not {kind}", "post_only")
    if expire_time is not None and order_type is not LIMIT and order_type not in LIMIT_STOP_TYPES:
        raise ValidationError(f"expire_time belongs to limit orders, not {kind}", "expire_time")
    if quote_quantity is not None and order_type is not MARKET:
        raise ValidationError(f"quote_quantity belongs to market orders, not {kind}", "quote_quantity")
    if order_type in STOP_TYPES:
        if stop_price is None:
            raise ValidationError(f"stop_price is required for a {kind} order", "stop_price")
        units(stop_price, "stop_price")
    elif stop_price is not None:
        raise ValidationError(f"stop_price belongs to stop and take-profit orders, not {kind}", "stop_price")
    if order_type is MARKET or order_type is STOP_LOSS or order_type is TAKE_PROFIT:
        if price is not None:
            raise ValidationError(f"a {kind} order takes no price", "price")
    elif price is None:
        raise ValidationError(f"price is required for a {kind} order", "price")
    else:
        units(price, "price")
    if quote_quantity is not None:
        if quantity is not None:
            raise ValidationError("give quantity or quote_quantity, not both", "quote_quantity")
        units(quote_quantity, "quote_quantity")
        if quote_quantity > MAX_UNITS * MAX_UNITS:
            raise ValidationError("quote_quantity is too large", "quote_quantity")
    else:
        units(quantity, "quantity")
    if display_quantity is not None:
        units(display_quantity, "display_quantity")
        if display_quantity >= quantity:
            raise ValidationError("display_quantity must be below quantity", "display_quantity")
    if expire_time is not None and (type(expire_time) is not int or expire_time <= 0):
        raise ValidationError("expire_time must be a time (ns since the epoch)", "expire_time")


def _iceberg_fill(book: OrderBook, level, maker: Order, remaining: int, closed: deque) -> int:
    """Fill up to ``remaining`` of an iceberg maker at the front of ``level``:
    at most its shown part. When the order is done it leaves the book; when
    only its slice is used up, its next slice (up to ``display_quantity`` of
    what remains) goes to the back of the level with a new time priority and
    is added to the level's total (the caller subtracts the fill). Returns
    the fill. O(1)."""
    oid = maker.order_id
    shown = book.shown[oid]
    fill = shown if shown <= remaining else remaining
    left = maker.quantity - maker.filled - fill
    if not left:
        maker.status = FILLED
        level.orders.popleft()
        level.count -= 1
        del book.orders[oid]
        del book.shown[oid]
        closed.append(oid)
    elif fill == shown:
        maker.status = PARTIALLY_FILLED
        queue = level.orders
        queue.popleft()
        queue.append(maker)
        display = maker.ext.display_quantity
        following = display if display < left else left
        book.shown[oid] = following
        level.total += following
    else:
        maker.status = PARTIALLY_FILLED
        book.shown[oid] = shown - fill
    return fill


def _after(counter: itertools.count, issued: int) -> itertools.count:
    """A counter continuing after both ``counter`` and the id ``issued``."""
    return itertools.count(max(next(counter), issued + 1))


class SymbolStats:
    """Counters of one symbol (volume in lots, notional in ticks*lots)."""

    __slots__ = ("orders", "cancels", "rejections", "trades", "volume", "notional")

    def __init__(self) -> None:
        self.orders = self.cancels = self.rejections = 0
        self.trades = self.volume = self.notional = 0

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class Market:
    """Everything the engine keeps for one symbol."""

    __slots__ = (
        "spec",
        "book",
        "lock",
        "sequence",
        "stats",
        "trades",
        "stops",
        "pending",
        "expiries",
        "funds",
    )

    def __init__(self, spec: SymbolSpec, trade_history: int, lock) -> None:
        self.spec = spec
        self.book = OrderBook(spec.symbol)
        self.lock = lock
        self.sequence = 0
        self.stats = SymbolStats()
        self.trades: deque[Trade] = deque(maxlen=trade_history)
        self.stops = StopBook()
        self.pending = self.stops.orders  # the same dict: one attribute load on the hot path
        # (expire_time, order_id) of good-till-time orders, a heap; entries of
        # orders that closed otherwise are dropped when they reach the top.
        self.expiries: list[tuple[int, int]] = []
        self.funds: SymbolFunds | None = None  # its ledger factors and cells, with funds

    @property
    def last_price(self) -> int | None:
        """The price of the symbol's last trade (what stops trigger on), or
        None before its first. Read from the recent trades (kept in every
        snapshot), so the matching loop stores nothing more. O(1)."""
        trades = self.trades
        return trades[-1].price if trades else None


class MatchingEngine:
    """All symbols' books and the rules that change them.

    ``lock_factory``: called once per symbol for its re-entrant lock (see
    *Concurrency* in the module docstring); ``threading.RLock`` by default.
    """

    def __init__(
        self,
        symbols: Iterable[SymbolSpec] | None = None,
        *,
        order_history: int = 200_000,
        trade_history: int = 10_000,
        clock=time.time_ns,
        lock_factory=threading.RLock,
        funds: bool = False,
    ) -> None:
        specs = list(symbols) if symbols is not None else default_symbols()
        if trade_history < 1:
            raise ValueError("trade_history must be at least 1 (stops trigger on the last trade's price)")
        if funds:  # one critical section for every symbol (see "Funds" in the module docstring)
            shared = lock_factory()
            lock_factory = lambda: shared  # noqa: E731
        self.markets: dict[str, Market] = {s.symbol: Market(s, trade_history, lock_factory()) for s in specs}
        self.orders: dict[int, Order] = {}
        self._closed: deque[int] = deque()
        self._order_history = order_history
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._clock = clock
        self.accounts = AccountRegistry()
        # Balances, locks and fees (None: no funds, every order is accepted as before)
        self.ledger: Ledger | None = None
        if funds:
            self.ledger = Ledger(specs, self.accounts)
            for symbol, market in self.markets.items():
                market.funds = self.ledger.symbols[symbol]
        # account id -> the one int object every order of that account holds
        # (the matching loop compares owners by identity)
        self._interned: dict[int, int] = {}

    # -- lookups ------------------------------------------------------------
    def market(self, symbol: str) -> Market:
        """The symbol's market. Raises UnknownSymbol."""
        try:
            return self.markets[symbol]
        except (KeyError, TypeError):
            raise UnknownSymbol(symbol) from None

    def spec(self, symbol: str) -> SymbolSpec:
        return self.market(symbol).spec

    def lock(self, symbol: str):
        """The symbol's re-entrant lock, for callers that extend a command's
        critical section (e.g. to journal it in book order)."""
        return self.market(symbol).lock

    def all_locks(self):
        """A context manager holding every symbol's lock (in the one order
        ``snapshot`` takes them): for commands that are not about one symbol
        (account and key changes) and must not interleave with a snapshot."""
        return _AllLocks([m.lock for m in self.markets.values()])

    def get_order(self, order_id: int) -> Order:
        """The order as it stands now. O(1). Raises OrderNotFound."""
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return order

    # -- commands -------------------------------------------------------------
    def submit(
        self,
        symbol: str,
        side: Side,
        order_type: OrderType,
        quantity: int | None,
        price: int | None = None,
        client_order_id: str | None = None,
        # Not keyword-only, although callers pass them by name: CPython fills a
        # missing keyword-only parameter by a dict lookup in __kwdefaults__, a
        # positional one from a tuple (Documentation/PERFORMANCE.md, "Order
        # types beyond the four").
        timestamp: int | None = None,
        order_id: int | None = None,
        trade_ids: list[int] | None = None,
        account_id: int | None = None,
        stp: SelfTradePrevention = STP_CANCEL_TAKER,
    ) -> SubmitResult:
        """Accept one order, match it, rest or cancel its remainder; then let
        any stop its trades triggered enter (``SubmitResult.triggered``).

        ``quantity`` is in lots and ``price`` in ticks (``None`` for market).
        ``timestamp``, ``order_id`` and ``trade_ids`` (every trade id of the
        command, the triggered stops' included) are for replaying a journal;
        live callers leave them out. Pass everything after ``client_order_id``
        by name. The fields of the order types beyond the four go to
        ``submit_extended`` (a stop type given here has no stop price and is
        refused): keeping them off this signature keeps the four original
        types' path as short as before them. ``account_id`` owns the order
        and ``stp`` is its self-trade prevention mode (see the module
        docstring); without an account there is no prevention.

        Runtime complexity: O(log L) + O(fills) (+ O(levels inspected) for FOK)
        (+ O(k log P) when it triggers k stops).

        Raises:
            UnknownSymbol, ValidationError: and then nothing has changed.
        """
        market = self.markets.get(symbol)
        if market is None:
            raise UnknownSymbol(symbol)
        if side is BUY:
            is_buy = True
        elif side is SELL:
            is_buy = False
        else:
            raise ValidationError("side must be buy or sell", "side")
        if (
            order_type is not LIMIT
            and order_type is not MARKET
            and order_type is not IOC
            and order_type is not FOK
        ):
            return self._submit_other(
                market, side, order_type, quantity, price, client_order_id, timestamp, order_id, trade_ids,
                None, None, False, None, None, account_id, stp,
            )  # fmt: skip
        if type(quantity) is not int or quantity <= 0 or quantity > MAX_UNITS:
            raise ValidationError("quantity must be a positive number of lots", "quantity")
        if order_type is MARKET:
            if price is not None:
                raise ValidationError("a market order takes no price", "price")
        elif type(price) is not int or price <= 0 or price > MAX_UNITS:
            raise ValidationError(f"a {order_type.value} order needs a positive price", "price")
        if account_id is not None:
            # (``_owner``, inlined: a call is a measurable share of an owned order's path)
            if stp is not STP_CANCEL_TAKER and stp not in _STP_MODES:
                raise ValidationError("stp must be cancel_taker, cancel_maker, cancel_both or none", "stp")
            if type(account_id) is not int:
                raise ValidationError("account_id must be an integer", "account_id")
            account_id = self._interned.setdefault(account_id, account_id)
        if timestamp is None:
            timestamp = self._clock()
        cell = None  # with funds: the balance cell of the order's lock (None: it locks nothing)

        lock = market.lock  # (acquire/release: ``with`` makes two bound methods per command)
        lock.acquire()
        try:
            # Funds: refuse an order whose lock the account cannot cover. The lock
            # is taken for what rests; what trades at once is paid from available
            # (the same balances as locking all and releasing, with less work).
            funds = market.funds  # (None: no funds)
            if funds is not None:
                if account_id is None:
                    raise ValidationError("an order needs an account", "account_id")
                pair = funds.cells.get(account_id) or self.ledger.pair(funds, account_id)  # (base, quote)
                if price is not None or not is_buy:  # (a market buy locks nothing)
                    cell = pair[is_buy]
                    locked = price * quantity * funds.buy_lock if is_buy else quantity * funds.base_per_lot
                    if cell[0] < locked:
                        raise self.ledger.short(funds, is_buy, locked)
            if order_id is None:
                order_id = next(self._order_ids)
            else:  # replay: later ids continue after the journal's
                self._order_ids = _after(self._order_ids, order_id)
            # (positional: msgspec matches keyword arguments by name, ~300 instructions)
            order = Order(
                order_id, client_order_id, symbol, side, order_type, price, quantity, timestamp, account_id
            )
            if account_id is not None and stp is not STP_CANCEL_TAKER:  # (no prevention without an owner)
                order.ext = OrderExt(stp=stp)
            self.orders[order_id] = order
            market.stats.orders += 1
            book = market.book

            # Most orders are passive: decide marketability before paying for
            # the matching loop's set-up, and keep that path short.
            best = book.best_ask if is_buy else book.best_bid
            if (
                best is None
                or (price is not None and (best > price if is_buy else best < price))
                or (
                    order_type is FOK
                    and (
                        book.available(side.opposite, price, quantity)
                        if account_id is None or stp is STP_NONE
                        else _stp_available(book, side.opposite, price, quantity, account_id, stp)
                    )
                    < quantity
                )
            ):
                if order_type is LIMIT:  # rests as it came (status NEW)
                    level = (book.bids if is_buy else book.asks).get(price)
                    if level is None:  # a new price level
                        book.add(order)
                    else:  # OrderBook.add, inlined for a plain order at an existing level
                        level.orders.append(order)
                        level.total += quantity
                        level.count += 1
                        book.orders[order_id] = order
                    if cell is not None:  # it locks (Ledger.reserve, inlined)
                        cell[0] -= locked
                        cell[1] += locked
                    market.sequence += 1
                    return SubmitResult(order, NEW, 0, 0, _NO_TRADES, market.sequence, True)
                order.status = CANCELLED  # market / IOC / FOK that cannot trade: nothing changed
                order.cancel_reason = UNFILLED
                closed = self._closed  # remember the closed order (inlined: the hot path)
                closed.append(order_id)
                if len(closed) > self._order_history:
                    self.orders.pop(closed.popleft(), None)
                return SubmitResult(order, CANCELLED, 0, 0, _NO_TRADES, market.sequence, False)

            next_trade_id = self._trade_ids.__next__ if trade_ids is None else iter(trade_ids).__next__
            if (
                funds is not None
                and price is None
                and is_buy
                and pair[1][0] < book.asks.peekitem(-1)[0] * quantity * funds.taker_buy
            ):
                # funds: a market buy executes while the account's quote covers each fill and
                # its fee; one that can afford its quantity at the highest ask cannot run short
                # and takes the common path
                result = self._enter(market, order, None, next_trade_id)
                if result.trades and market.pending:
                    self._trigger(market, result, timestamp, next_trade_id)
                if trade_ids:
                    self._trade_ids = _after(self._trade_ids, trade_ids[-1])
                return result
            trades, cancelled = self._match(market, order, price, next_trade_id, False)
            filled = order.filled
            if filled == quantity:
                order.status = FILLED
            elif order_type is LIMIT and order.cancel_reason is None:
                status = order.status = PARTIALLY_FILLED if filled else NEW
                book.add(order)
                if cell is not None:  # what rests locks (covered: the fills cost at most their lock)
                    locked = (quantity - filled) * (price * funds.buy_lock if is_buy else funds.base_per_lot)
                    cell[0] -= locked
                    cell[1] += locked
                market.sequence += 1
                result = SubmitResult(
                    order, status, filled, order.notional, trades, market.sequence, True, (), cancelled
                )
                if trades and market.pending:  # inlined StopBook.due: two comparisons
                    stops = market.stops
                    last = trades[-1].price
                    if last <= stops.fall_max or last >= stops.rise_min:
                        self._trigger(market, result, timestamp, next_trade_id)
                if trade_ids:  # replay: later ids continue after the journal's
                    self._trade_ids = _after(self._trade_ids, trade_ids[-1])
                return result
            else:
                order.status = CANCELLED
                if order.cancel_reason is None:
                    order.cancel_reason = UNFILLED
            # Only self-trade prevention can end the loop with nothing done
            # (the taker's first maker was its own, cancel_taker): then the
            # book did not change.
            if trades or cancelled:
                changed = True
                market.sequence += 1
            else:
                changed = False
            closed = self._closed  # remember the closed order (inlined: the hot path)
            closed.append(order_id)
            if len(closed) > self._order_history:
                self.orders.pop(closed.popleft(), None)
            result = SubmitResult(
                order, order.status, filled, order.notional, trades, market.sequence, changed, (), cancelled
            )
            if trades and market.pending:  # inlined StopBook.due: two comparisons
                stops = market.stops
                last = trades[-1].price
                if last <= stops.fall_max or last >= stops.rise_min:
                    self._trigger(market, result, timestamp, next_trade_id)
            if trade_ids:  # replay: later ids continue after the journal's
                self._trade_ids = _after(self._trade_ids, trade_ids[-1])
            return result
        finally:
            lock.release()

    def submit_extended(
        self,
        symbol: str,
        side: Side,
        order_type: OrderType,
        quantity: int | None,
        price: int | None = None,
        client_order_id: str | None = None,
        timestamp: int | None = None,
        order_id: int | None = None,
        trade_ids: list[int] | None = None,
        *,
        stop_price: int | None = None,
        display_quantity: int | None = None,
        post_only: bool = False,
        expire_time: int | None = None,
        quote_quantity: int | None = None,
        account_id: int | None = None,
        stp: SelfTradePrevention = STP_CANCEL_TAKER,
    ) -> SubmitResult:
        """``submit`` with the fields of the order types beyond the four:
        ``stop_price`` (ticks) for ``stop_loss``/``stop_limit``/``take_profit``/
        ``take_profit_limit``; ``display_quantity`` (lots), ``post_only`` and
        ``expire_time`` (ns since the epoch; also on the ``_limit`` stop kinds)
        for ``limit``; ``quote_quantity`` (notional units) for ``market``,
        with ``quantity`` ``None``. Any type may come this way; the four
        without new fields take ``submit``'s own path. Rules:
        ``Documentation/ENGINE.md``, "Order types beyond the four".

        Runtime complexity: as ``submit``; a quote-amount market order adds
        O(log L) per level it touches.

        Raises:
            UnknownSymbol, ValidationError (naming the field at fault): and
            then nothing has changed.
        """
        market = self.markets.get(symbol)
        if market is None:
            raise UnknownSymbol(symbol)
        if side is not BUY and side is not SELL:
            raise ValidationError("side must be buy or sell", "side")
        if (
            stop_price is None
            and display_quantity is None
            and not post_only
            and expire_time is None
            and quote_quantity is None
            and (order_type is LIMIT or order_type is MARKET or order_type is IOC or order_type is FOK)
        ):
            return self.submit(
                symbol, side, order_type, quantity, price, client_order_id, timestamp, order_id, trade_ids,
                account_id, stp,
            )  # fmt: skip
        return self._submit_other(
            market, side, order_type, quantity, price, client_order_id, timestamp, order_id, trade_ids,
            stop_price, display_quantity, post_only, expire_time, quote_quantity, account_id, stp,
        )  # fmt: skip

    def _submit_other(
        self,
        market: Market,
        side: Side,
        order_type: OrderType,
        quantity: int | None,
        price: int | None,
        client_order_id: str | None,
        timestamp: int | None,
        order_id: int | None,
        trade_ids: list[int] | None,
        stop_price: int | None,
        display_quantity: int | None,
        post_only: bool,
        expire_time: int | None,
        quote_quantity: int | None,
        account_id: int | None = None,
        stp: SelfTradePrevention = STP_CANCEL_TAKER,
    ) -> SubmitResult:
        """``submit_extended`` for the order types beyond the four: stops and
        take-profits (pending until triggered), icebergs, post-only,
        good-till-time limit orders and market orders by quote amount.

        Raises:
            ValidationError: naming the field at fault; nothing has changed.
        """
        _check_other(
            order_type, quantity, price, stop_price, display_quantity, post_only, expire_time, quote_quantity
        )
        if timestamp is None:
            timestamp = self._clock()
        if expire_time is not None and expire_time <= timestamp:
            raise ValidationError("expire_time must be in the future", "expire_time")
        if account_id is not None:
            account_id = self._owner(account_id, stp)
        is_stop = order_type in STOP_TYPES
        with market.lock:
            if is_stop:
                probe = Order(
                    0, None, market.spec.symbol, side, order_type, price, 1, 0, ext=OrderExt(stop_price)
                )
                if would_trigger(probe, stop_price, market.last_price):
                    raise ValidationError(
                        "stop_price would trigger at once against the last trade price", "stop_price"
                    )
            ledger = self.ledger
            if ledger is not None:  # funds: lock what the order may spend, or refuse it
                if account_id is None:
                    raise ValidationError("an order needs an account", "account_id")
                need = lock_for(market.funds, order_type, side is BUY, price, quantity, quote_quantity)
                if need:
                    ledger.reserve(market.funds, account_id, side is BUY, need)
            if order_id is None:
                order_id = next(self._order_ids)
            else:  # replay: later ids continue after the journal's
                self._order_ids = _after(self._order_ids, order_id)
            order = Order(
                order_id,
                client_order_id,
                market.spec.symbol,
                side,
                order_type,
                price,
                quantity if quantity is not None else 0,
                timestamp,
                account_id=account_id,
                ext=order_ext(stop_price, display_quantity, post_only, expire_time, quote_quantity, stp),
            )
            self.orders[order_id] = order
            market.stats.orders += 1
            if expire_time is not None:
                heapq.heappush(market.expiries, (expire_time, order_id))
            if is_stop:
                order.status = PENDING
                market.stops.add(order)
                return SubmitResult(order, PENDING, 0, 0, _NO_TRADES, market.sequence, False)
            next_trade_id = self._trade_ids.__next__ if trade_ids is None else iter(trade_ids).__next__
            if quote_quantity is not None:
                result = self._enter_rounds(market, order, next_trade_id)
            else:
                book = market.book
                best = book.best_ask if side is BUY else book.best_bid
                if post_only and best is not None and (best <= price if side is BUY else best >= price):
                    order.status = CANCELLED  # it would take: cancelled whole, nothing changed
                    order.cancel_reason = POST_ONLY
                    if ledger is not None:
                        ledger.release(market.funds, order)
                    self._close(order_id)
                    return SubmitResult(order, CANCELLED, 0, 0, _NO_TRADES, market.sequence, False)
                result = self._enter(market, order, price, next_trade_id)
            if result.trades and market.pending:
                self._trigger(market, result, timestamp, next_trade_id)
            if trade_ids:
                self._trade_ids = _after(self._trade_ids, trade_ids[-1])
            return result

    def _enter(self, market: Market, order: Order, limit: int | None, next_trade_id) -> SubmitResult:
        """Match ``order`` (a limit order when ``limit`` is set, else a market
        order), rest a limit order's remainder, cancel a market order's; the
        sequence advances if the book changed. For the paths off the hot one:
        triggered stops, icebergs, good-till-time, amends that re-price."""
        book = market.book
        is_buy = order.side is BUY
        if limit is None and is_buy and self.ledger is not None:
            return self._enter_rounds(market, order, next_trade_id)  # funds: a market buy
        best = book.best_ask if is_buy else book.best_bid
        if best is not None and (limit is None or (best <= limit if is_buy else best >= limit)):
            trades, cancelled = self._match_more(market, order, limit, next_trade_id)
        else:
            trades, cancelled = _NO_TRADES, _NO_ORDERS
        filled = order.filled
        changed = bool(trades) or bool(cancelled)
        if filled == order.quantity:
            order.status = FILLED
            self._close(order.order_id)
        elif limit is not None and order.cancel_reason is None:
            order.status = PARTIALLY_FILLED if filled else NEW
            book.add(order)
            changed = True
        else:
            order.status = CANCELLED
            if order.cancel_reason is None:
                order.cancel_reason = UNFILLED
            if self.ledger is not None:
                self.ledger.release(market.funds, order)
            self._close(order.order_id)
        if changed:
            market.sequence += 1
        return SubmitResult(
            order, order.status, filled, order.notional, trades, market.sequence, changed, (), cancelled
        )

    def _enter_rounds(self, market: Market, order: Order, next_trade_id) -> SubmitResult:
        """A market order that executes in rounds, one price level at a time:
        one by ``quote_quantity``, and, with funds, a buy (by quantity or by
        quote amount) or a sell by quote amount, which lock nothing ahead.

        Each round takes, with ``_match`` limited to the best price, the lots
        that level shows, within what is left of ``quantity`` or -- by quote
        amount -- of the budget (whole lots while the sum of the fills'
        notionals stays within it, stopping at the first lot that would
        exceed it), and, with funds, within what the account's available
        balance covers: for a buy each lot's price and taker fee, for a sell
        its base (settled after each round, so a round sees the one before).
        An iceberg's refreshed slice at the same price is taken in the next
        round.

        Ends ``filled`` when the order is done (by quote amount: when the
        budget stopped it after some fill); else ``cancelled`` with
        ``cancel_reason`` ``insufficient_funds`` when the funds stopped it,
        ``unfilled`` when the book ran out first or nothing could be bought
        (or ``self_trade``). By quote amount, ``quantity`` ends as what
        executed. Runtime complexity: O(fills + log L per round); a round per
        level touched and per iceberg refresh.
        """
        book = market.book
        is_buy = order.side is BUY
        opposite = book.asks if is_buy else book.bids
        trades: list[Trade] = []
        cancelled: list[Order] = []
        budget = order.quote_quantity
        target = order.quantity  # by quantity: what it must execute
        ledger = self.ledger
        funds = market.funds if ledger is not None else None
        cell = None
        if funds is not None and (is_buy or budget is not None):
            cell = ledger.pair(funds, order.account_id)[1 if is_buy else 0]
        stopped_by = None  # "budget", "funds", or None: the book ran out (or self-trade prevention)
        while True:
            best = book.best_ask if is_buy else book.best_bid
            if best is None or order.cancel_reason is not None:  # (self-trade prevention stopped it)
                break
            take = opposite[best].total
            if budget is not None:
                affordable = (budget - order.notional) // best
                if affordable < take:
                    take = affordable
                    if not take:
                        stopped_by = "budget"
                        break
            elif target - order.filled < take:
                take = target - order.filled
            if cell is not None:
                covered = cell[0] // (best * funds.taker_buy) if is_buy else cell[0] // funds.base_per_lot
                if covered < take:
                    take = covered
                    if not take:
                        stopped_by = "funds"
                        break
            order.quantity = order.filled + take
            round_trades, round_cancelled = self._match_more(market, order, best, next_trade_id)
            trades.extend(round_trades)
            cancelled.extend(round_cancelled)
            if budget is None and order.filled == target:
                break
        if budget is None:
            order.quantity = target
            done = order.filled == target
        else:
            order.quantity = order.filled
            done = order.filled and stopped_by == "budget"
        if done:
            order.status = FILLED
        else:
            order.status = CANCELLED
            if order.cancel_reason is None:
                order.cancel_reason = REASON_INSUFFICIENT_FUNDS if stopped_by == "funds" else UNFILLED
        self._close(order.order_id)
        if trades or cancelled:
            market.sequence += 1
        return SubmitResult(
            order,
            order.status,
            order.filled,
            order.notional,
            trades or _NO_TRADES,
            market.sequence,
            bool(trades) or bool(cancelled),
            (),
            cancelled or _NO_ORDERS,
        )

    # -- stops ---------------------------------------------------------------
    def _trigger(self, market: Market, result, timestamp: int, next_trade_id) -> None:
        """Let every stop triggered by the last trade price enter, one at a
        time, in the order the price crossed them; each entry's trades may
        trigger more, which queue behind. All of it belongs to the command
        that traded (one sequence step); the entries go to ``result.triggered``.

        Runtime complexity: O(1) when nothing triggers; O(k log P + their
        fills) for k triggered orders.
        """
        stops = market.stops
        if not stops.due(market.last_price):
            return
        queue: deque[Order] = deque()
        entered: list[SubmitResult] = []
        while True:
            if stops.orders and stops.due(market.last_price):
                queue.extend(stops.pop_triggered(market.last_price))
            if not queue:
                break
            order = queue.popleft()
            order.status = NEW
            order.timestamp = timestamp  # it enters the book now
            limit = order.price if order.order_type in LIMIT_STOP_TYPES else None
            seq = market.sequence
            entry = self._enter(market, order, limit, next_trade_id)
            if entry.book_changed:  # one step for the whole command
                market.sequence = seq
            entered.append(entry)
        for entry in entered:
            entry.sequence = market.sequence
        result.triggered = entered

    def _close(self, order_id: int) -> None:
        """Remember a closed order (the oldest closed are forgotten). O(1)."""
        closed = self._closed
        closed.append(order_id)
        if len(closed) > self._order_history:
            self.orders.pop(closed.popleft(), None)

    def cancel(self, order_id: int, *, timestamp: int | None = None) -> CancelResult:
        """Cancel an open order (``cancel_reason`` ``user``): a resting one
        leaves the book, a pending stop its trigger queue (the book did not
        change: the sequence does not advance). O(1) (O(log L) if its level
        empties).

        Raises:
            OrderNotFound: no such order (or forgotten from memory).
            OrderNotOpen: it is already filled or cancelled.
        """
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        market = self.markets[order.symbol]
        lock = market.lock  # (acquire/release: ``with`` makes two bound methods per command)
        lock.acquire()
        try:
            status = order.status
            if status is NEW or status is PARTIALLY_FILLED:  # inlined: a quarter of all commands
                book = market.book
                is_buy = order.side is BUY
                remaining = order.quantity - order.filled
                level = (book.bids if is_buy else book.asks)[order.price]
                if level.count == 1 or order.ext is not None:  # its level empties, or an iceberg
                    book.remove(order)
                else:  # OrderBook.remove, inlined for a plain order whose level stays
                    del book.orders[order_id]
                    order.status = CANCELLED
                    level.total -= remaining
                    level.count -= 1
                    if len(level.orders) > 2 * level.count + SLACK:
                        level.compact()
                order.cancel_reason = USER
                funds = market.funds
                # unlock the rest (Ledger.release, inlined: a resting order has a price)
                if funds is not None:
                    base, quote = funds.cells.get(order.account_id) or self.ledger.pair(
                        funds, order.account_id
                    )
                    if is_buy:
                        locked = order.price * remaining * funds.buy_lock
                        quote[1] -= locked
                        quote[0] += locked
                    else:
                        locked = remaining * funds.base_per_lot
                        base[1] -= locked
                        base[0] += locked
                closed = self._closed
                closed.append(order_id)
                if len(closed) > self._order_history:
                    self.orders.pop(closed.popleft(), None)
                market.stats.cancels += 1
                market.sequence += 1
                return CancelResult(
                    order, market.sequence, timestamp if timestamp is not None else self._clock()
                )
        finally:
            lock.release()
        return self._cancel(order_id, timestamp, USER)

    def expire(self, order_id: int, *, timestamp: int | None = None) -> CancelResult:
        """Cancel a good-till-time order whose ``expire_time`` has come
        (``cancel_reason`` ``expired``). The caller decides when (see
        ``due_expiries``); journaled like any command, so replay is exact.

        Raises:
            OrderNotFound, OrderNotOpen: as ``cancel``.
            ValidationError: the order has no ``expire_time``, or it is still
            in the future at ``timestamp``.
        """
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        if timestamp is None:
            timestamp = self._clock()
        if order.expire_time is None or order.expire_time > timestamp:
            raise ValidationError(f"order {order_id} is not due to expire", "order_id")
        return self._cancel(order_id, timestamp, EXPIRED)

    def _cancel(self, order_id: int, timestamp: int | None, reason: str) -> CancelResult:
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        market = self.markets[order.symbol]
        with market.lock:
            status = order.status
            if status is PENDING:
                market.stops.remove(order)
                order.status = CANCELLED
                changed = False
            elif status is NEW or status is PARTIALLY_FILLED:
                market.book.remove(order)
                market.sequence += 1
                changed = True
            else:
                raise OrderNotOpen(order_id, status.value)
            order.cancel_reason = reason
            if self.ledger is not None:
                self.ledger.release(market.funds, order)
            closed = self._closed  # remember the closed order (inlined: a quarter of all commands)
            closed.append(order_id)
            if len(closed) > self._order_history:
                self.orders.pop(closed.popleft(), None)
            market.stats.cancels += 1
            return CancelResult(
                order, market.sequence, timestamp if timestamp is not None else self._clock(), changed
            )

    def due_expiries(self, symbol: str, now: int) -> list[int]:
        """Take the ids of the symbol's open orders whose ``expire_time`` is at
        or before ``now``, earliest first (ties by id), off its expiry heap:
        the caller issues ``expire`` for each. O(k log n) for k taken.
        """
        market = self.market(symbol)
        out = []
        with market.lock:
            heap = market.expiries
            orders = self.orders
            while heap and heap[0][0] <= now:
                _, oid = heapq.heappop(heap)
                order = orders.get(oid)
                if order is not None and order.is_open:
                    out.append(oid)
        return out

    def next_expiry(self, symbol: str) -> int | None:
        """The earliest ``expire_time`` of the symbol's open orders (an entry of
        an order closed since may answer first: ``due_expiries`` skips it).
        O(1)."""
        heap = self.market(symbol).expiries
        return heap[0][0] if heap else None

    def amend(
        self,
        order_id: int,
        quantity: int | None = None,
        price: int | None = None,
        stop_price: int | None = None,
        *,
        timestamp: int | None = None,
        trade_ids: list[int] | None = None,
    ) -> AmendResult:
        """Change an open or pending order in place, same ``order_id``.

        ``quantity`` is the new total (the filled part included): below the
        current one it keeps time priority; above it, a new ``price`` or a new
        ``stop_price`` loses it (the order goes to the back of its new level or
        stop bucket, with ``timestamp`` as its new time). A new price that
        crosses trades at once, as a taker, and may trigger stops.

        Runtime complexity: O(1) for a reduction; O(orders at its level +
        log L + fills) when it loses priority.

        Raises:
            OrderNotFound: no such order.
            OrderNotOpen: it is filled or cancelled.
            ValidationError: nothing to change; ``quantity`` not above what is
            filled; ``price`` on an order without one; ``stop_price`` on an
            order that is not a pending stop, or one that would trigger at
            once; a post-only order's new price would take.
        """
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        for name, value in (("quantity", quantity), ("price", price), ("stop_price", stop_price)):
            if value is not None and (type(value) is not int or value <= 0 or value > MAX_UNITS):
                raise ValidationError(f"{name} must be a positive number of grid units", name)
        if quantity is None and price is None and stop_price is None:
            raise ValidationError("nothing to amend: give quantity, price or stop_price")
        market = self.markets[order.symbol]
        with market.lock:
            status = order.status
            if not order.is_open:
                raise OrderNotOpen(order_id, status.value)
            if quantity is not None and quantity <= order.filled:
                raise ValidationError("quantity must exceed the quantity already filled", "quantity")
            if price is not None and order.order_type not in RESTING_TYPES:
                raise ValidationError(f"a {order.order_type.value} order has no price", "price")
            if stop_price is not None and status is not PENDING:
                raise ValidationError(
                    "only a pending stop or take-profit has a stop_price to amend", "stop_price"
                )
            if stop_price is not None and would_trigger(order, stop_price, market.last_price):
                raise ValidationError(
                    "stop_price would trigger at once against the last trade price", "stop_price"
                )
            if timestamp is None:
                timestamp = self._clock()
            new_quantity = order.quantity if quantity is None else quantity
            new_price = order.price if price is None else price
            loses = (
                new_quantity > order.quantity
                or new_price != order.price
                or (stop_price is not None and stop_price != order.stop_price)
            )
            book = market.book
            trades = _NO_TRADES
            cancelled = _NO_ORDERS
            changed = False
            ledger = self.ledger
            if ledger is not None:  # funds: the lock follows the new quantity and price
                is_buy = order.side is BUY
                if status is not PENDING and loses and order.post_only:
                    opposite = book.best_ask if is_buy else book.best_bid
                    if opposite is not None and (opposite <= new_price if is_buy else opposite >= new_price):
                        raise ValidationError("the new price would take, and the order is post-only", "price")
                ledger.relock(
                    market.funds,
                    order,
                    lock_of(market.funds, order),
                    lock_for(
                        market.funds,
                        order.order_type,
                        is_buy,
                        new_price,
                        new_quantity - order.filled,
                        order.quote_quantity,
                    ),
                )
            if status is PENDING:
                if loses:
                    market.stops.remove(order)
                    order.quantity, order.price = new_quantity, new_price
                    if stop_price is not None:
                        order.ext.stop_price = stop_price  # (a stop always has its ext)
                    market.stops.add(order)
                else:
                    order.quantity = new_quantity
            elif not loses:
                if new_quantity < order.quantity:
                    book.reduce(order, new_quantity)
                    market.sequence += 1
                    changed = True
            else:
                is_buy = order.side is BUY
                opposite = book.best_ask if is_buy else book.best_bid
                crosses = opposite is not None and (
                    opposite <= new_price if is_buy else opposite >= new_price
                )
                if order.post_only and crosses:
                    raise ValidationError("the new price would take, and the order is post-only", "price")
                book.unlink(order)
                order.quantity, order.price, order.timestamp = new_quantity, new_price, timestamp
                next_trade_id = self._trade_ids.__next__ if trade_ids is None else iter(trade_ids).__next__
                entry = self._enter(market, order, new_price, next_trade_id)
                trades = entry.trades
                cancelled = entry.cancelled
                changed = True  # it left the book and re-entered it (_enter advanced the sequence)
            result = AmendResult(
                order, order.status, order.filled, order.notional, trades, market.sequence, changed,
                timestamp, quantity, price, stop_price, (), cancelled,
            )  # fmt: skip
            if trades and market.pending:
                self._trigger(market, result, timestamp, next_trade_id)
            if trade_ids:
                self._trade_ids = _after(self._trade_ids, trade_ids[-1])
            return result

    def record_rejection(self, symbol: str | None) -> None:
        """Count an order refused at the edge (for ``statistics``)."""
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is not None:
            market.stats.rejections += 1

    # -- the matching loop ----------------------------------------------------
    def _match_more(
        self, market: Market, taker: Order, limit: int | None, next_trade_id
    ) -> tuple[list[Trade], list[Order] | tuple]:
        """``_match`` for a taker that may have filled before (an amended order
        re-entering, a quote-amount market order's next round): ``_match``
        takes a fresh taker's whole ``quantity`` and sets its ``filled`` and
        ``notional``, which keeps the common path free of this bookkeeping.
        O(1) + ``_match``."""
        filled, notional, quantity = taker.filled, taker.notional, taker.quantity
        if not filled:
            return self._match(market, taker, limit, next_trade_id)
        taker.quantity, taker.filled, taker.notional = quantity - filled, 0, 0
        try:
            trades, cancelled = self._match(market, taker, limit, next_trade_id)
        finally:
            taker.quantity = quantity
            taker.filled += filled
            taker.notional += notional
        return trades, cancelled

    def _match(
        self, market: Market, taker: Order, limit: int | None, next_trade_id, locked: bool = True
    ) -> tuple[list[Trade], list[Order] | tuple]:
        """Execute a fresh (nothing filled yet) ``taker`` against the opposite side,
        best level first, FIFO within a level, at the makers' prices, stopping
        at ``limit`` -- or where self-trade prevention cancels the taker (then
        its ``cancel_reason`` is set). ``next_trade_id`` issues the trade ids
        (the journal's on replay). An iceberg maker fills up to its shown part;
        when that is used up its next slice goes to the back of the level,
        where the same taker may reach it again. Returns the trades and the
        resting orders self-trade prevention cancelled.

        With funds it settles as it goes: each maker per fill, the taker once
        at the end -- from its lock when ``locked`` (it holds one: an order
        re-entering, a triggered stop), else from its available balance
        (``submit``'s taker, whose lock is taken only for what rests).

        Runtime complexity: O(fills + cancelled entries skipped + log L per
        emptied level).
        """
        book = market.book
        spec = market.spec
        is_buy = taker.side is BUY
        opposite = book.asks if is_buy else book.bids
        maker_side = SELL if is_buy else BUY
        maker_rate = spec.maker_fee_units
        taker_rate = spec.taker_fee_units
        resting = book.orders
        closed = self._closed
        trades: list[Trade] = []
        append = trades.append
        remaining = taker.quantity
        notional = 0
        # The owner makers are compared with, by identity (one compare per
        # fill): nobody's for an order without account or with stp "none".
        owner = taker.account_id
        ext = taker.ext
        if owner is None or (ext is not None and ext.stp is STP_NONE):
            owner = _NOBODY
        cancelled = _NO_ORDERS
        stop = False
        funds = market.funds
        if funds is not None:  # settle each maker as it fills (the taker once, at the end)
            cells, per_lot, buy_lock, maker_refund, maker_sells = funds.for_makers
        while remaining:
            best = book.best_ask if is_buy else book.best_bid
            if best is None or (limit is not None and (best > limit if is_buy else best < limit)):
                break
            level = opposite[best]
            queue = level.orders
            taken = 0
            while queue:
                maker = queue[0]
                if maker.status is CANCELLED:
                    queue.popleft()
                    continue
                if maker.account_id is owner:  # a self-trade: the taker's stp decides
                    # (taker.stp, without the property call)
                    stp = STP_CANCEL_TAKER if ext is None else ext.stp
                    if stp is not STP_CANCEL_TAKER:  # cancel_maker, cancel_both: the maker goes
                        queue.popleft()
                        level.count -= 1
                        oid = maker.order_id
                        shown = book.shown.pop(oid, None)  # an iceberg: only its shown part is counted
                        level.total -= (maker.quantity - maker.filled) if shown is None else shown
                        del resting[oid]
                        closed.append(oid)
                        maker.status = CANCELLED
                        maker.cancel_reason = REASON_SELF_TRADE
                        if funds is not None:
                            self.ledger.release(funds, maker)
                        if cancelled is _NO_ORDERS:
                            cancelled = []
                        cancelled.append(maker)
                    if stp is not STP_CANCEL_MAKER:  # cancel_taker, cancel_both: the taker stops
                        taker.cancel_reason = REASON_SELF_TRADE
                        stop = True
                        break
                    continue
                filled = maker.filled
                if maker.ext is not None and maker.ext.display_quantity is not None:
                    fill = _iceberg_fill(book, level, maker, remaining, closed)
                elif (available := maker.quantity - filled) <= remaining:
                    fill = available
                    maker.status = FILLED
                    queue.popleft()
                    level.count -= 1
                    del resting[maker.order_id]
                    closed.append(maker.order_id)
                else:
                    fill = remaining
                    maker.status = PARTIALLY_FILLED
                filled += fill
                maker.filled = filled
                value = best * fill
                maker_notional = maker.notional + value
                maker.notional = maker_notional
                notional += value
                taken += fill
                append(
                    Trade(
                        next_trade_id(),
                        best,
                        fill,
                        maker,
                        taker,
                        value * maker_rate,
                        value * taker_rate,
                        filled,
                        maker_notional,
                    )
                )
                if funds is not None:  # settle the maker at once
                    base, quote = cells.get(maker.account_id) or self.ledger.pair(funds, maker.account_id)
                    if is_buy:  # it sold: its base leaves its lock, it gets notional - fee
                        base[1] -= fill * per_lot
                        quote[0] += value * maker_sells
                    else:  # it bought at its own price: paid from its lock, the rest back
                        quote[1] -= value * buy_lock
                        quote[0] += value * maker_refund
                        base[0] += fill * per_lot
                remaining -= fill
                if not remaining:
                    break
            level.total -= taken
            if level.count == 0:
                book.drop_level(maker_side, best)
            if stop:
                break
        orders = self.orders
        while len(closed) > self._order_history:
            orders.pop(closed.popleft(), None)
        if trades:
            volume = taker.quantity - remaining
            taker.filled = volume
            taker.notional = notional
            stats = market.stats
            stats.trades += len(trades)
            stats.volume += volume
            stats.notional += notional
            market.trades.extend(trades)
            if funds is not None:
                # The taker pays or receives once for all its fills: a fee is notional x rate
                # per fill, so the sum of this loop's fees is its notional times the rate (exact).
                base, quote = cells.get(taker.account_id) or self.ledger.pair(funds, taker.account_id)
                if is_buy:
                    locked_at = taker.price if locked else None  # None: it pays from available
                    if locked_at is None:
                        quote[0] -= notional * funds.taker_buy
                    else:
                        unlocked = locked_at * volume * buy_lock
                        quote[1] -= unlocked
                        quote[0] += unlocked - notional * funds.taker_buy
                    base[0] += volume * per_lot
                else:
                    if not locked or (taker.order_type is MARKET and taker.quote_quantity is not None):
                        base[0] -= volume * per_lot  # it holds no lock: from available
                    else:
                        base[1] -= volume * per_lot
                    quote[0] += notional * funds.taker_sells
                funds.fee[0] += notional * funds.fee_rate
        else:  # (nothing traded: the shared empty list, not one more list kept by every result)
            trades = _NO_TRADES
        if cancelled:
            market.stats.cancels += len(cancelled)
        return trades, cancelled

    def _owner(self, account_id: int, stp) -> int:
        """Validate an order's owner and self-trade prevention mode; the owner's
        one int object (see ``Order``). O(1).

        Raises:
            ValidationError: an unknown mode, or an owner that is not an int.
        """
        # (the default first: an enum's hash is a Python-level call)
        if stp is not STP_CANCEL_TAKER and stp not in _STP_MODES:
            raise ValidationError("stp must be cancel_taker, cancel_maker, cancel_both or none", "stp")
        if type(account_id) is not int:
            raise ValidationError("account_id must be an integer", "account_id")
        return self._interned.setdefault(account_id, account_id)

    # -- funds -----------------------------------------------------------------
    def deposit(self, account_id: int, asset: str, amount: int) -> None:
        """Credit ``amount`` (units of ``asset``) to the account's available
        balance, in the critical section of every symbol. O(1).

        Raises:
            ValidationError: no funds here, an unknown asset, an amount that is
            not positive. AccountNotFound.
        """
        with self.all_locks():
            self._ledger().deposit(account_id, asset, amount)

    def withdraw(self, account_id: int, asset: str, amount: int) -> None:
        """Debit ``amount`` from the account's available balance (locked funds
        stay locked). O(1).

        Raises:
            As ``deposit``; InsufficientFunds: more than available.
        """
        with self.all_locks():
            self._ledger().withdraw(account_id, asset, amount)

    def _ledger(self) -> Ledger:
        if self.ledger is None:
            raise ValidationError("this exchange runs without balances (--auth off)")
        return self.ledger

    def _intern(self, account_id: int) -> int:
        """The one int object of this account id (see ``Order``). O(1)."""
        return self._interned.setdefault(account_id, account_id)

    # -- queries ------------------------------------------------------------
    def depth(self, symbol: str, levels: int = 10):
        """``(sequence, bids, asks)`` with ``[(price, total)]`` best first."""
        market = self.market(symbol)
        with market.lock:
            bids, asks = market.book.depth(levels)
            return market.sequence, bids, asks

    def bbo(self, symbol: str):
        """``(sequence, (price, total) | None, (price, total) | None)``."""
        market = self.market(symbol)
        with market.lock:
            bid, ask = market.book.bbo()
            return market.sequence, bid, ask

    def recent_trades(self, symbol: str, limit: int = 50) -> list[Trade]:
        """The last ``limit`` trades of the symbol, oldest first."""
        market = self.market(symbol)
        with market.lock:
            trades = market.trades
            if limit >= len(trades):
                return list(trades)
            return list(itertools.islice(trades, len(trades) - limit, None))

    def statistics(self) -> dict:
        """Counters per symbol and engine-wide (plain ints)."""
        per_symbol = {}
        totals = {name: 0 for name in SymbolStats.__slots__}
        for symbol, market in self.markets.items():
            stats = market.stats.to_dict()
            for name, value in stats.items():
                totals[name] += value
            stats["resting_orders"] = len(market.book.orders)
            stats["pending_stops"] = len(market.stops.orders)
            stats["sequence"] = market.sequence
            per_symbol[symbol] = stats
        totals["resting_orders"] = sum(len(m.book.orders) for m in self.markets.values())
        totals["pending_stops"] = sum(len(m.stops.orders) for m in self.markets.values())
        totals["orders_in_memory"] = len(self.orders)
        return {"engine": totals, "symbols": per_symbol}

    def check(self) -> None:
        """Assert the invariants of every book and of the order index. O(n)."""
        for market in self.markets.values():
            market.book.check()
            market.stops.check(market.last_price)
            for order in market.book.orders.values():
                assert self.orders.get(order.order_id) is order
            for order in market.stops.orders.values():
                assert self.orders.get(order.order_id) is order
            due = {oid for _, oid in market.expiries}
            for order in market.book.orders.values():
                if order.expire_time is not None:
                    assert order.order_id in due, f"GTD order {order.order_id} has no expiry entry"
        for order in self.orders.values():
            assert 0 <= order.filled <= order.quantity
            market = self.markets[order.symbol]
            if order.status is PENDING:
                assert order.order_type in STOP_TYPES
                assert market.stops.orders.get(order.order_id) is order
            elif order.is_open:
                assert order.order_type in RESTING_TYPES
                assert market.book.orders.get(order.order_id) is order
            if order.status is CANCELLED:
                assert order.cancel_reason is not None, order.order_id
            elif order.status is not PENDING:
                assert order.cancel_reason is None
            if order.account_id is not None:
                assert self._interned.get(order.account_id) is order.account_id, "owner not interned"
        self.accounts.check()
        if self.ledger is not None:
            self.ledger.check(
                [
                    o
                    for m in self.markets.values()
                    for o in itertools.chain(m.book.orders.values(), m.stops.orders.values())
                ]
            )

    # -- state transfer (snapshots) -------------------------------------------
    def snapshot(self) -> dict:
        """The whole engine state as plain data (ints, strings, lists), taken
        under every symbol's lock: resting orders in time priority per book,
        remembered closed orders, recent trades, sequences, counters and the
        next ids; per symbol also the last trade price, the pending stops in
        trigger order and the icebergs' shown parts (version 2; expiries are
        rebuilt from the orders' ``expire_time``). ``restore`` of it gives an
        engine equal in every observable way. O(n)."""
        locks = [m.lock for m in self.markets.values()]
        for lock in locks:
            lock.acquire()
        try:
            markets = {}
            for symbol, market in self.markets.items():
                markets[symbol] = {
                    "sequence": market.sequence,
                    "stats": market.stats.to_dict(),
                    "resting": [o.order_id for o in market.book.resting()],
                    "trades": [_trade_to_row(t) for t in market.trades],
                    "pending": [o.order_id for o in market.stops.in_trigger_order()],
                    "shown": sorted(market.book.shown.items()),
                }
            # Every symbol lock is held, so no id is being issued: read the
            # counters by consuming one value and putting it back.
            next_order_id = next(self._order_ids)
            next_trade_id = next(self._trade_ids)
            self._order_ids = itertools.count(next_order_id)
            self._trade_ids = itertools.count(next_trade_id)
            return {
                "version": 2,
                "next_order_id": next_order_id,
                "next_trade_id": next_trade_id,
                "orders": [_order_to_row(o) for o in self.orders.values()],
                "closed": list(self._closed),
                "markets": markets,
                "accounts": self.accounts.snapshot(),
                "funds": self.ledger.snapshot() if self.ledger is not None else None,
            }
        finally:
            for lock in reversed(locks):
                lock.release()

    def restore(self, state: dict) -> None:
        """Replace this engine's state by a ``snapshot()``. O(n).

        Raises:
            ValueError: if the snapshot names a symbol this engine lacks or has
            an unknown version (1, before the order types beyond the four, and
            2 are read).
        """
        if state.get("version") not in (1, 2):
            raise ValueError(f"unknown snapshot version {state.get('version')!r}")
        unknown = set(state["markets"]) - set(self.markets)
        if unknown:
            raise ValueError(f"snapshot has symbols not configured here: {sorted(unknown)}")
        orders = {}
        self._interned = {}
        for row in state["orders"]:
            order = _order_from_row(row)
            if order.account_id is not None:
                order.account_id = self._intern(order.account_id)
            orders[order.order_id] = order
        self.orders = orders
        self._closed = deque(state["closed"])
        self._order_ids = itertools.count(state["next_order_id"])
        self._trade_ids = itertools.count(state["next_trade_id"])
        for symbol, market in self.markets.items():
            data = state["markets"].get(symbol)
            market.book = OrderBook(symbol)
            market.trades.clear()
            market.stats = SymbolStats()
            market.sequence = 0
            market.stops = StopBook()
            market.pending = market.stops.orders
            market.expiries = []
            if data is None:
                continue
            market.sequence = data["sequence"]
            for name, value in data["stats"].items():
                setattr(market.stats, name, value)
            book = market.book
            for order_id in data["resting"]:
                book.add(orders[order_id])
            for order_id, shown in data.get("shown", ()):
                book.set_shown(orders[order_id], shown)
            for order_id in data.get("pending", ()):
                market.stops.add(orders[order_id])
            for row in data["trades"]:
                market.trades.append(_trade_from_row(row, orders, self._intern))
        for order in orders.values():
            if order.expire_time is not None and order.is_open:
                heapq.heappush(self.markets[order.symbol].expiries, (order.expire_time, order.order_id))
        self.accounts.restore(state.get("accounts"))
        funds = state.get("funds")
        if self.ledger is not None:
            self.ledger.restore(funds)
        elif funds:
            raise ValueError("the snapshot holds balances: this data dir runs with funds (--auth on)")


_ORDER_FIELDS = (
    "order_id",
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "price",
    "quantity",
    "timestamp",
    "filled",
    "notional",
    "status",
    "stop_price",
    "display_quantity",
    "post_only",
    "expire_time",
    "quote_quantity",
    "cancel_reason",
    "account_id",
    "stp",
)


def _order_to_row(order: Order) -> list:
    return [
        order.order_id,
        order.client_order_id,
        order.symbol,
        VALUE[order.side],
        VALUE[order.order_type],
        order.price,
        order.quantity,
        order.timestamp,
        order.filled,
        order.notional,
        VALUE[order.status],
        order.stop_price,
        order.display_quantity,
        order.post_only,
        order.expire_time,
        order.quote_quantity,
        order.cancel_reason,
        order.account_id,
        VALUE[order.stp],
    ]


def _order_from_row(row: list) -> Order:
    """An order from its snapshot row (``_ORDER_FIELDS``; a version 1 row has
    only the first 11, or 19 with the owner's fields written by the accounts
    branch before the order types merged, 11-15 empty)."""
    oid, coid, symbol, side, otype, price, qty, ts, filled, notional, status = row[:11]
    status = OrderStatus(status)
    otype = OrderType(otype)
    if len(row) > 11:
        extended, reason = row[11:16], row[16]
    else:
        extended = ()
        # what version 1 implied
        reason = (USER if otype is LIMIT else UNFILLED) if status is CANCELLED else None
    account_id, stp = (row[17], SelfTradePrevention(row[18])) if len(row) > 18 else (None, STP_CANCEL_TAKER)
    return Order(
        oid, coid, symbol, Side(side), otype, price, qty, ts, account_id, filled, notional, status, reason,
        order_ext(*extended, stp=stp),
    )  # fmt: skip


def _trade_to_row(t: Trade) -> list:
    return [
        t.trade_id,
        t.symbol,
        t.price,
        t.quantity,
        VALUE[t.aggressor_side],
        t.maker.order_id,
        t.taker.order_id,
        t.maker_fee,
        t.taker_fee,
        t.timestamp,
        t.maker_filled,
        t.maker_notional,
        t.maker.account_id,
        t.taker.account_id,
    ]


def _trade_from_row(row: list, orders: dict[int, Order], intern) -> Trade:
    tid, symbol, price, qty, side, maker_id, taker_id, mfee, tfee, ts, mfilled, mnotional = row[:12]
    maker_account, taker_account = row[12:14] if len(row) >= 14 else (None, None)
    maker = orders.get(maker_id) or _placeholder(
        maker_id, symbol, Side(side).opposite, ts, maker_account, intern
    )
    taker = orders.get(taker_id) or _placeholder(taker_id, symbol, Side(side), ts, taker_account, intern)
    return Trade(tid, price, qty, maker, taker, mfee, tfee, mfilled, mnotional)


def _placeholder(order_id: int, symbol: str, side: Side, timestamp: int, account_id, intern) -> Order:
    """A stand-in for an order forgotten from memory that a kept trade names
    (a trade reads its symbol, aggressor side and time -- and its owners, for
    an account's fills -- from its orders)."""
    owner = None if account_id is None else intern(account_id)
    return Order(order_id, None, symbol, side, LIMIT, None, 1, timestamp, owner, 1, 0, FILLED)
