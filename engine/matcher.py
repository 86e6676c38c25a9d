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
    Given the same commands with the same timestamps and ids (``submit`` and
    ``cancel`` accept them for replay), the engine reaches the same state.

The engine never does IO, never logs on the hot path and never calls out: it
returns plain records (``engine.events``) for the caller to publish.

Accounts and self-trade prevention
    An order may carry an ``account_id`` (its owner; None without accounts)
    and an ``stp`` mode. When the taker meets a resting order of its own
    account in the matching loop, the taker's mode decides: ``cancel_taker``
    cancels the taker's remainder there (fills before it stand),
    ``cancel_maker`` cancels that resting order and matching goes on,
    ``cancel_both`` does both, ``none`` lets them trade. Cancelled orders
    carry ``cancel_reason`` ``self_trade``; the makers cancelled so are in
    ``SubmitResult.cancelled``. A FOK counts only the liquidity it could take
    without a self-trade (``_stp_available``) and, if short, changes nothing.
    Cost for everyone else: one identity compare per fill (owners are
    interned ints; an order without an owner, or with ``none``, compares
    against a sentinel nothing equals). The registry of accounts and keys
    (``engine.accounts``) is ``self.accounts``, snapshotted with the books.

Known limits
    Closed orders are kept in memory up to ``order_history`` (the oldest
    closed are forgotten first); trades up to ``trade_history`` per symbol.
    Durable history lives in the storage layer. Accounts have no balances
    yet: nothing checks an order against funds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable

from engine.accounts import AccountRegistry
from engine.book import OrderBook
from engine.errors import OrderNotFound, OrderNotOpen, UnknownSymbol, ValidationError
from engine.events import CancelResult, SubmitResult, Trade
from engine.order import (
    BUY,
    CANCELLED,
    FILLED,
    FOK,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    REASON_SELF_TRADE,
    REASON_UNFILLED,
    REASON_USER,
    SELL,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    STP_NONE,
    VALUE,
    Order,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
)
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
            total += order.quantity - order.filled
            if total >= wanted:
                return total
    return total


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

    __slots__ = ("spec", "book", "lock", "sequence", "stats", "trades")

    def __init__(self, spec: SymbolSpec, trade_history: int, lock) -> None:
        self.spec = spec
        self.book = OrderBook(spec.symbol)
        self.lock = lock
        self.sequence = 0
        self.stats = SymbolStats()
        self.trades: deque[Trade] = deque(maxlen=trade_history)


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
    ) -> None:
        specs = list(symbols) if symbols is not None else default_symbols()
        self.markets: dict[str, Market] = {s.symbol: Market(s, trade_history, lock_factory()) for s in specs}
        self.orders: dict[int, Order] = {}
        self._closed: deque[int] = deque()
        self._order_history = order_history
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._clock = clock
        self.accounts = AccountRegistry()
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
        quantity: int,
        price: int | None = None,
        client_order_id: str | None = None,
        *,
        timestamp: int | None = None,
        order_id: int | None = None,
        trade_ids: list[int] | None = None,
        account_id: int | None = None,
        stp: SelfTradePrevention = STP_CANCEL_TAKER,
    ) -> SubmitResult:
        """Accept one order, match it, rest or cancel its remainder.

        ``quantity`` is in lots and ``price`` in ticks (``None`` for market).
        ``timestamp``, ``order_id`` and ``trade_ids`` are for replaying a
        journal; live callers leave them out. ``account_id`` owns the order
        and ``stp`` is its self-trade prevention mode (see the module
        docstring); without an account there is no prevention.

        Runtime complexity: O(log L) + O(fills) (+ O(levels inspected) for FOK).

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
        if type(quantity) is not int or quantity <= 0 or quantity > MAX_UNITS:
            raise ValidationError("quantity must be a positive number of lots", "quantity")
        if order_type is MARKET:
            if price is not None:
                raise ValidationError("a market order takes no price", "price")
        elif order_type is not LIMIT and order_type is not IOC and order_type is not FOK:
            raise ValidationError("order_type must be market, limit, ioc or fok", "order_type")
        elif type(price) is not int or price <= 0 or price > MAX_UNITS:
            raise ValidationError(f"a {order_type.value} order needs a positive price", "price")
        if account_id is not None:
            # (the default first: an enum's hash is a Python-level call)
            if stp is not STP_CANCEL_TAKER and stp not in _STP_MODES:
                raise ValidationError("stp must be cancel_taker, cancel_maker, cancel_both or none", "stp")
            if type(account_id) is not int:
                raise ValidationError("account_id must be an integer", "account_id")
            account_id = self._interned.setdefault(account_id, account_id)  # _intern, inlined
        if timestamp is None:
            timestamp = self._clock()

        with market.lock:
            if order_id is None:
                order_id = next(self._order_ids)
            else:  # replay: later ids continue after the journal's
                self._order_ids = _after(self._order_ids, order_id)
            if account_id is None:
                order = Order(order_id, client_order_id, symbol, side, order_type, price, quantity, timestamp)
            else:
                order = Order(
                    order_id,
                    client_order_id,
                    symbol,
                    side,
                    order_type,
                    price,
                    quantity,
                    timestamp,
                    account_id=account_id,
                    stp=stp,
                )
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
                    book.add(order)
                    market.sequence += 1
                    return SubmitResult(order, NEW, 0, 0, _NO_TRADES, market.sequence, True)
                order.status = CANCELLED  # market / IOC / FOK that cannot trade: nothing changed
                order.cancel_reason = REASON_UNFILLED
                closed = self._closed  # remember the closed order (inlined: the hot path)
                closed.append(order_id)
                if len(closed) > self._order_history:
                    self.orders.pop(closed.popleft(), None)
                return SubmitResult(order, CANCELLED, 0, 0, _NO_TRADES, market.sequence, False)

            trades, cancelled = self._match(market, order, price, trade_ids)
            # Only self-trade prevention can end the loop with nothing done
            # (the taker's first maker was its own, cancel_taker): then the
            # book did not change.
            changed = bool(trades) or bool(cancelled)
            filled = order.filled
            if filled == quantity:
                order.status = FILLED
            elif order_type is LIMIT and order.cancel_reason is None:
                status = order.status = PARTIALLY_FILLED if filled else NEW
                book.add(order)
                market.sequence += 1
                return SubmitResult(
                    order, status, filled, order.notional, trades, market.sequence, True, cancelled
                )
            else:
                order.status = CANCELLED
                if order.cancel_reason is None:
                    order.cancel_reason = REASON_UNFILLED
            if changed:
                market.sequence += 1
            closed = self._closed  # remember the closed order (inlined: the hot path)
            closed.append(order_id)
            if len(closed) > self._order_history:
                self.orders.pop(closed.popleft(), None)
            return SubmitResult(
                order, order.status, filled, order.notional, trades, market.sequence, changed, cancelled
            )

    def cancel(self, order_id: int, *, timestamp: int | None = None) -> CancelResult:
        """Cancel a resting order. O(1) (O(log L) if its level empties).

        Raises:
            OrderNotFound: no such order (or forgotten from memory).
            OrderNotOpen: it is already filled or cancelled.
        """
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        market = self.markets[order.symbol]
        with market.lock:
            status = order.status
            if status is not NEW and status is not PARTIALLY_FILLED:
                raise OrderNotOpen(order_id, status.value)
            market.book.remove(order)
            order.cancel_reason = REASON_USER
            closed = self._closed  # remember the closed order (inlined: a quarter of all commands)
            closed.append(order_id)
            if len(closed) > self._order_history:
                self.orders.pop(closed.popleft(), None)
            market.stats.cancels += 1
            market.sequence += 1
            return CancelResult(order, market.sequence, timestamp if timestamp is not None else self._clock())

    def record_rejection(self, symbol: str | None) -> None:
        """Count an order refused at the edge (for ``statistics``)."""
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is not None:
            market.stats.rejections += 1

    # -- the matching loop ----------------------------------------------------
    def _match(
        self, market: Market, taker: Order, limit: int | None, trade_ids: list[int] | None
    ) -> tuple[list[Trade], list[Order] | tuple]:
        """Execute ``taker`` against the opposite side, best level first, FIFO
        within a level, at the makers' prices, stopping at ``limit`` -- or
        where self-trade prevention cancels the taker (then its
        ``cancel_reason`` is set). Returns the trades and the resting orders
        self-trade prevention cancelled.

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
        next_trade_id = self._trade_ids.__next__ if trade_ids is None else iter(trade_ids).__next__
        closed = self._closed
        trades: list[Trade] = []
        append = trades.append
        remaining = taker.quantity
        notional = 0
        # The owner makers are compared with, by identity (one compare per
        # fill): nobody's for an order without account or with stp "none".
        owner = taker.account_id
        if owner is None or taker.stp is STP_NONE:
            owner = _NOBODY
        cancelled = _NO_ORDERS
        stop = False
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
                    stp = taker.stp
                    if stp is not STP_CANCEL_TAKER:  # cancel_maker, cancel_both: the maker goes
                        queue.popleft()
                        level.count -= 1
                        level.total -= maker.quantity - maker.filled
                        del resting[maker.order_id]
                        closed.append(maker.order_id)
                        maker.status = CANCELLED
                        maker.cancel_reason = REASON_SELF_TRADE
                        if cancelled is _NO_ORDERS:
                            cancelled = []
                        cancelled.append(maker)
                    if stp is not STP_CANCEL_MAKER:  # cancel_taker, cancel_both: the taker stops
                        taker.cancel_reason = REASON_SELF_TRADE
                        stop = True
                        break
                    continue
                filled = maker.filled
                available = maker.quantity - filled
                if available <= remaining:
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
            if trade_ids is not None:  # replay: later ids continue after the journal's
                self._trade_ids = _after(self._trade_ids, trades[-1].trade_id)
            stats = market.stats
            stats.trades += len(trades)
            stats.volume += volume
            stats.notional += notional
            market.trades.extend(trades)
        if cancelled:
            market.stats.cancels += len(cancelled)
        return trades, cancelled

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
            stats["sequence"] = market.sequence
            per_symbol[symbol] = stats
        totals["resting_orders"] = sum(len(m.book.orders) for m in self.markets.values())
        totals["orders_in_memory"] = len(self.orders)
        return {"engine": totals, "symbols": per_symbol}

    def check(self) -> None:
        """Assert the invariants of every book and of the order index. O(n)."""
        for market in self.markets.values():
            market.book.check()
            for order in market.book.orders.values():
                assert self.orders.get(order.order_id) is order
        for order in self.orders.values():
            assert 0 <= order.filled <= order.quantity
            if order.is_open:
                assert order.order_type is LIMIT
                assert self.markets[order.symbol].book.orders.get(order.order_id) is order
                assert order.cancel_reason is None
            elif order.status is CANCELLED:
                assert order.cancel_reason is not None, order.order_id
            if order.account_id is not None:
                assert self._interned.get(order.account_id) is order.account_id, "owner not interned"
        self.accounts.check()

    # -- state transfer (snapshots) -------------------------------------------
    def snapshot(self) -> dict:
        """The whole engine state as plain data (ints, strings, lists), taken
        under every symbol's lock: resting orders in time priority per book,
        remembered closed orders, recent trades, sequences, counters and the
        next ids. ``restore`` of it gives an engine equal in every observable
        way. O(n)."""
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
                }
            # Every symbol lock is held, so no id is being issued: read the
            # counters by consuming one value and putting it back.
            next_order_id = next(self._order_ids)
            next_trade_id = next(self._trade_ids)
            self._order_ids = itertools.count(next_order_id)
            self._trade_ids = itertools.count(next_trade_id)
            return {
                "version": 1,
                "next_order_id": next_order_id,
                "next_trade_id": next_trade_id,
                "orders": [_order_to_row(o) for o in self.orders.values()],
                "closed": list(self._closed),
                "markets": markets,
                "accounts": self.accounts.snapshot(),
            }
        finally:
            for lock in reversed(locks):
                lock.release()

    def restore(self, state: dict) -> None:
        """Replace this engine's state by a ``snapshot()``. O(n).

        Raises:
            ValueError: if the snapshot names a symbol this engine lacks or has
            an unknown version.
        """
        if state.get("version") != 1:
            raise ValueError(f"unknown snapshot version {state.get('version')!r}")
        unknown = set(state["markets"]) - set(self.markets)
        if unknown:
            raise ValueError(f"snapshot has symbols not configured here: {sorted(unknown)}")
        self._interned = {}
        orders = {}
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
            if data is None:
                continue
            market.sequence = data["sequence"]
            for name, value in data["stats"].items():
                setattr(market.stats, name, value)
            for order_id in data["resting"]:
                market.book.add(orders[order_id])
            for row in data["trades"]:
                market.trades.append(_trade_from_row(row, orders, self._intern))
        self.accounts.restore(state.get("accounts"))


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
        # 11-15: the fields of the order types beyond the four (stop_price,
        # display_quantity, post_only, expire_time, quote_quantity), which
        # another branch adds; written empty here so that both layouts agree
        None,
        None,
        False,
        None,
        None,
        order.cancel_reason,
        order.account_id,
        VALUE[order.stp],
    ]


def _order_from_row(row: list) -> Order:
    """An order from ``_order_to_row``; rows written before accounts existed
    (11 fields) restore without owner, and with the cancel reason that was
    the only possible one then."""
    oid, coid, symbol, side, otype, price, qty, ts, filled, notional, status = row[:11]
    order = Order(
        oid,
        coid,
        symbol,
        Side(side),
        OrderType(otype),
        price,
        qty,
        ts,
        filled,
        notional,
        OrderStatus(status),
    )
    if len(row) > 16:
        order.cancel_reason = row[16]
    elif order.status is CANCELLED:
        # A row from before cancel reasons: then only the user cancelled a
        # limit order, and the engine the rest of the others -- exactly.
        order.cancel_reason = REASON_USER if order.order_type is LIMIT else REASON_UNFILLED
    if len(row) > 18:
        order.account_id = row[17]
        order.stp = SelfTradePrevention(row[18])
    return order


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
    order = Order(order_id, None, symbol, side, LIMIT, None, 1, timestamp, 1, 0, FILLED)
    if account_id is not None:
        order.account_id = intern(account_id)
    return order
