"""The order book of one symbol: a data structure, no policy.

Layout
    bids, asks   ``SortedDict`` price (int ticks) -> ``PriceLevel``; the best
                 bid is the last key of ``bids``, the best ask the first of
                 ``asks``, and both are cached in ``best_bid`` / ``best_ask``.
    PriceLevel   the resting orders at one price in time priority (a
                 ``deque``) with a cached ``total`` (visible lots) and
                 ``count`` (live orders).
    orders       order_id -> resting ``Order`` of this book, for O(1) cancel.
    shown        order_id -> lots currently displayed, for icebergs only
                 (orders with ``display_quantity``): the part of the current
                 slice not yet filled. The rest is hidden: it is in no total.

Invariants (asserted by ``check``)
    * every level in ``bids``/``asks`` has ``count >= 1``: an emptied level is
      removed at once, so the cached best prices are never stale;
    * ``total`` equals the sum of the *visible* quantity of the live orders in
      the level (the remaining quantity, or an iceberg's ``shown``) and
      ``count`` their number; ``0 < shown <= min(display, remaining)``;
    * no order is twice in a level; time priority is the deque's order
      (arrival order, except that an iceberg's refreshed slice and an amend
      that loses priority go to the back: order ids are then no longer
      increasing along a level);
    * after any command the book is neither crossed nor locked
      (``best_bid < best_ask``); the matcher guarantees it.

Cancel semantics
    ``remove`` is O(1) apart from deleting an emptied level: the order is
    marked cancelled and left in its level's deque; the matcher drops such
    entries when they reach the front. A level whose deque holds many more dead
    than live entries is compacted (amortised O(1)), so memory stays bounded by
    the live orders. ``unlink`` (for an amend that re-queues a live order)
    takes the order out of its deque at once, O(level length): the same object
    must never be in a deque twice.

Inlined elsewhere
    ``MatchingEngine.submit`` rests a plain order at an existing level, and
    ``MatchingEngine.cancel`` takes a plain order out of a level that stays,
    without calling ``add`` / ``remove`` (a call is ~10% of those commands);
    the matching loop pops filled makers itself. A change to what a level
    holds must be made there too; ``check`` (run after every step by the
    property tests) catches a mismatch.

Complexities (n orders, L levels on a side)
    add: O(1) at an existing level, O(log L) for a new level;
    remove: O(1), O(log L) when the level empties; unlink: O(level length);
    best price: O(1); depth(k): O(k); check: O(n).
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

from engine.order import BUY, CANCELLED, PENDING, Order, Side

# A level's deque is compacted when it holds more than 2 x live + SLACK entries
# (cancelled ones are left behind, see "Cancel semantics").
SLACK = 16


class PriceLevel:
    """Resting orders at one price, FIFO, with cached total and live count."""

    __slots__ = ("price", "orders", "total", "count")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.total = 0
        self.count = 0

    def live_orders(self) -> list[Order]:
        """The live orders in time priority. Runtime complexity: O(len(deque))."""
        return [o for o in self.orders if o.status is not CANCELLED]

    def compact(self) -> None:
        """Drop cancelled entries. Runtime complexity: O(len(deque))."""
        self.orders = deque(self.live_orders())


class OrderBook:
    """Bids and asks of one symbol. See the module docstring for invariants."""

    __slots__ = ("symbol", "bids", "asks", "best_bid", "best_ask", "orders", "shown")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.orders: dict[int, Order] = {}
        self.shown: dict[int, int] = {}

    # -- commands ---------------------------------------------------------
    def add(self, order: Order) -> None:
        """Rest ``order`` (its remaining quantity) at the back of its price level.

        The caller (the matcher) guarantees the order is not marketable.
        Runtime complexity: O(1), O(log L) when it opens a new level.
        """
        price = order.price
        if order.side is BUY:
            side = self.bids
            level = side.get(price)
            if level is None:
                level = side[price] = PriceLevel(price)
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
        else:
            side = self.asks
            level = side.get(price)
            if level is None:
                level = side[price] = PriceLevel(price)
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
        level.orders.append(order)
        ext = order.ext  # (an iceberg has ``ext.display_quantity``; most orders have no ext)
        if ext is None or ext.display_quantity is None:
            level.total += order.quantity - order.filled
        else:  # an iceberg shows its first slice
            shown = self.shown[order.order_id] = min(ext.display_quantity, order.quantity - order.filled)
            level.total += shown
        level.count += 1
        self.orders[order.order_id] = order

    def remove(self, order: Order) -> None:
        """Take a resting order out of the book and mark it cancelled.

        Runtime complexity: O(1) amortised; O(log L) when its level empties.

        Raises:
            KeyError: if the order is not resting in this book.
        """
        del self.orders[order.order_id]
        side = self.bids if order.side is BUY else self.asks
        level = side[order.price]
        order.status = CANCELLED
        ext = order.ext
        if ext is None or ext.display_quantity is None:
            level.total -= order.quantity - order.filled
        else:
            level.total -= self.shown.pop(order.order_id)
        level.count -= 1
        if level.count == 0:
            self.drop_level(order.side, order.price)
        elif len(level.orders) > 2 * level.count + SLACK:
            level.compact()

    def unlink(self, order: Order) -> None:
        """Take a live resting order out of the book without closing it (an
        amend that re-queues it calls ``add`` next). Its status is unchanged.

        Runtime complexity: O(orders in its level) (the deque entry is removed
        at once, never left behind), O(log L) when the level empties.

        Raises:
            KeyError: if the order is not resting in this book.
        """
        del self.orders[order.order_id]
        side = self.bids if order.side is BUY else self.asks
        level = side[order.price]
        level.orders.remove(order)
        if order.display_quantity is None:
            level.total -= order.quantity - order.filled
        else:
            level.total -= self.shown.pop(order.order_id)
        level.count -= 1
        if level.count == 0:
            self.drop_level(order.side, order.price)

    def reduce(self, order: Order, quantity: int) -> None:
        """Lower a resting order's total ``quantity`` in place, keeping its
        time priority (the caller checked ``filled < quantity < order.quantity``).
        An iceberg's shown part shrinks only if it exceeds what remains.

        Runtime complexity: O(1).
        """
        side = self.bids if order.side is BUY else self.asks
        level = side[order.price]
        if order.display_quantity is None:
            level.total -= order.quantity - quantity
        else:
            shown = self.shown[order.order_id]
            left = quantity - order.filled
            if shown > left:
                level.total -= shown - left
                self.shown[order.order_id] = left
        order.quantity = quantity

    def set_shown(self, order: Order, shown: int) -> None:
        """Set a resting iceberg's displayed part (restoring a snapshot). O(1)."""
        side = self.bids if order.side is BUY else self.asks
        level = side[order.price]
        level.total += shown - self.shown[order.order_id]
        self.shown[order.order_id] = shown

    def visible(self, order: Order) -> int:
        """What a resting order shows in the book (its remaining quantity, or an
        iceberg's current slice). O(1)."""
        if order.display_quantity is None:
            return order.quantity - order.filled
        return self.shown[order.order_id]

    def drop_level(self, side: Side, price: int) -> None:
        """Delete an emptied level and refresh the cached best price.

        Runtime complexity: O(log L).
        """
        if side is BUY:
            del self.bids[price]
            if price == self.best_bid:
                self.best_bid = self.bids.peekitem(-1)[0] if self.bids else None
        else:
            del self.asks[price]
            if price == self.best_ask:
                self.best_ask = self.asks.peekitem(0)[0] if self.asks else None

    # -- queries ----------------------------------------------------------
    def depth(self, levels: int = 10) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top ``levels`` of each side as ``(price, total)`` pairs, best first.

        Runtime complexity: O(levels + log L).
        """
        bids = self.bids
        asks = self.asks
        nb = len(bids)
        bid_prices = bids.islice(max(0, nb - levels), nb, reverse=True)
        ask_prices = asks.islice(0, levels)
        return (
            [(p, bids[p].total) for p in bid_prices],
            [(p, asks[p].total) for p in ask_prices],
        )

    def bbo(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """``((bid_price, bid_total) | None, (ask_price, ask_total) | None)``. O(1)."""
        bid = ask = None
        if self.best_bid is not None:
            bid = (self.best_bid, self.bids[self.best_bid].total)
        if self.best_ask is not None:
            ask = (self.best_ask, self.asks[self.best_ask].total)
        return bid, ask

    def resting(self) -> list[Order]:
        """Every resting order, bids best-first then asks best-first, FIFO within
        a level (the order a snapshot must restore them in). O(n)."""
        out: list[Order] = []
        for price in reversed(self.bids):
            out.extend(self.bids[price].live_orders())
        for price in self.asks:
            out.extend(self.asks[price].live_orders())
        return out

    def available(self, side: Side, limit: int | None, wanted: int) -> int:
        """Lots resting on ``side`` at ``limit`` or better, counted until
        ``wanted`` is reached (FOK's fillability test, read-only).

        Runtime complexity: O(levels visited + log L).
        """
        total = 0
        if side is BUY:
            book_side = self.bids
            nb = len(book_side)
            prices = book_side.islice(0, nb, reverse=True)
            for price in prices:
                if limit is not None and price < limit:
                    break
                total += book_side[price].total
                if total >= wanted:
                    break
        else:
            book_side = self.asks
            for price in book_side.islice(0, len(book_side)):
                if limit is not None and price > limit:
                    break
                total += book_side[price].total
                if total >= wanted:
                    break
        return total

    def check(self) -> None:
        """Assert every structural invariant (see the module docstring). O(n)."""
        seen = 0
        for side, book_side in ((Side.BUY, self.bids), (Side.SELL, self.asks)):
            for price, level in book_side.items():
                assert level.price == price, (price, level.price)
                live = level.live_orders()
                assert level.count == len(live) >= 1, (price, level.count, len(live))
                assert len({id(o) for o in level.orders}) == len(level.orders), "an order queued twice"
                total = 0
                for o in live:
                    assert o.side is side and o.price == price and o.symbol == self.symbol
                    assert o.is_open and o.status is not PENDING, (o.order_id, o.status)
                    assert 0 <= o.filled < o.quantity, (o.order_id, o.filled, o.quantity)
                    assert self.orders.get(o.order_id) is o
                    if o.display_quantity is None:
                        assert o.order_id not in self.shown, o.order_id
                        total += o.quantity - o.filled
                    else:
                        shown = self.shown[o.order_id]
                        assert 0 < shown <= min(o.display_quantity, o.quantity - o.filled), (
                            o.order_id,
                            shown,
                        )
                        total += shown
                assert level.total == total, (price, level.total, total)
                seen += len(live)
        assert seen == len(self.orders), (seen, len(self.orders))
        assert all(oid in self.orders for oid in self.shown), "shown names an order not in the book"
        expected_bid = self.bids.peekitem(-1)[0] if self.bids else None
        expected_ask = self.asks.peekitem(0)[0] if self.asks else None
        assert self.best_bid == expected_bid, (self.best_bid, expected_bid)
        assert self.best_ask == expected_ask, (self.best_ask, expected_ask)
        if expected_bid is not None and expected_ask is not None:
            assert expected_bid < expected_ask, f"crossed or locked: {expected_bid} >= {expected_ask}"
