"""Pending stop and take-profit orders of one symbol: a data structure, no policy.

Layout
    falling   ``SortedDict`` stop price (ticks) -> bucket: orders that trigger
              when the last trade price falls to their stop price or below
              (a sell ``stop_loss``/``stop_limit``, a buy ``take_profit``/
              ``take_profit_limit``). The highest key triggers first.
    rising    the same for orders that trigger when it rises to their stop
              price or above (a buy stop, a sell take-profit); lowest first.
    orders    order_id -> pending ``Order``, for O(1) lookups.
    fall_max  the highest ``falling`` key (``NONE_FALLING`` when empty) and
    rise_min  the lowest ``rising`` key (``NONE_RISING`` when empty), cached:
              "does anything trigger at ``last``?" is then two integer
              comparisons, ``last <= fall_max or last >= rise_min``, which the
              matcher inlines after every command that traded.
A bucket is a ``dict`` order_id -> ``Order``: insertion-ordered (arrival
order, FIFO) with O(1) removal.

Invariants (asserted by ``check``)
    * every bucket is non-empty and holds pending orders of its direction
      whose ``stop_price`` is its key; ``orders`` is exactly their union;
    * after the matcher's trigger pass, ``max(falling) < last`` and
      ``min(rising) > last`` for the symbol's last trade price (the matcher
      guarantees it: nothing that should have triggered is left).

Complexities (n pending orders, P distinct stop prices)
    add: O(1) at an existing price, O(log P) for a new one; remove: O(1),
    O(log P) when the bucket empties; ``due``: O(1); ``pop_triggered``:
    O(k + log P per emptied price) for k orders triggered; check: O(n).
"""

from __future__ import annotations

from sortedcontainers import SortedDict

from engine.order import PENDING, SELL, STOP_LIMIT, STOP_LOSS, Order

# Sentinels of the cached ends: no price is at or below the first nor at or above the second.
NONE_FALLING = -1
NONE_RISING = 1 << 80


def falls(order: Order) -> bool:
    """Does ``order`` trigger on a falling price? (a sell stop, a buy take-profit)"""
    is_stop = order.order_type is STOP_LOSS or order.order_type is STOP_LIMIT
    return is_stop is (order.side is SELL)


def would_trigger(order: Order, stop_price: int, last: int | None) -> bool:
    """Would ``order`` with ``stop_price`` trigger at once at last trade price ``last``?"""
    if last is None:
        return False
    return last <= stop_price if falls(order) else last >= stop_price


class StopBook:
    """The pending stops of one symbol. See the module docstring."""

    __slots__ = ("falling", "rising", "orders", "fall_max", "rise_min")

    def __init__(self) -> None:
        self.falling: SortedDict = SortedDict()
        self.rising: SortedDict = SortedDict()
        self.orders: dict[int, Order] = {}
        self.fall_max = NONE_FALLING
        self.rise_min = NONE_RISING

    def _refresh_ends(self) -> None:
        self.fall_max = self.falling.peekitem(-1)[0] if self.falling else NONE_FALLING
        self.rise_min = self.rising.peekitem(0)[0] if self.rising else NONE_RISING

    def add(self, order: Order) -> None:
        """Queue a pending order at the back of its stop price's bucket.
        Runtime complexity: O(1), O(log P) for a new price."""
        price = order.stop_price
        if falls(order):
            side = self.falling
            if price > self.fall_max:
                self.fall_max = price
        else:
            side = self.rising
            if price < self.rise_min:
                self.rise_min = price
        bucket = side.get(price)
        if bucket is None:
            bucket = side[price] = {}
        bucket[order.order_id] = order
        self.orders[order.order_id] = order

    def remove(self, order: Order) -> None:
        """Take a pending order out. O(1), O(log P) when its bucket empties.

        Raises:
            KeyError: it is not pending here.
        """
        del self.orders[order.order_id]
        side = self.falling if falls(order) else self.rising
        bucket = side[order.stop_price]
        del bucket[order.order_id]
        if not bucket:
            del side[order.stop_price]
            self._refresh_ends()

    def due(self, last: int | None) -> bool:
        """Does any pending order trigger at last trade price ``last``? O(1)."""
        return last is not None and (last <= self.fall_max or last >= self.rise_min)

    def pop_triggered(self, last: int) -> list[Order]:
        """Remove and return every order that triggers at ``last``, in the
        order the price crossed them: falling ones highest stop price first,
        rising ones lowest first, FIFO within a price (falling before rising;
        both can trigger only at a symbol's first trade).

        Runtime complexity: O(k + log P per emptied price).
        """
        out: list[Order] = []
        orders = self.orders
        falling = self.falling
        while falling:
            price, bucket = falling.peekitem(-1)
            if price < last:
                break
            del falling[price]
            out.extend(bucket.values())
        rising = self.rising
        while rising:
            price, bucket = rising.peekitem(0)
            if price > last:
                break
            del rising[price]
            out.extend(bucket.values())
        for order in out:
            del orders[order.order_id]
        self._refresh_ends()
        return out

    def in_trigger_order(self) -> list[Order]:
        """Every pending order: falling (highest first) then rising (lowest
        first), FIFO within a price: the order a snapshot restores them in. O(n)."""
        out: list[Order] = []
        for price in reversed(self.falling):
            out.extend(self.falling[price].values())
        for price in self.rising:
            out.extend(self.rising[price].values())
        return out

    def check(self, last: int | None) -> None:
        """Assert the invariants (see the module docstring). O(n)."""
        seen = 0
        for is_falling, side in ((True, self.falling), (False, self.rising)):
            for price, bucket in side.items():
                assert bucket, f"empty bucket at {price}"
                for oid, order in bucket.items():
                    assert order.order_id == oid and order.stop_price == price
                    assert order.status is PENDING, (oid, order.status)
                    assert falls(order) is is_falling, oid
                    assert self.orders.get(oid) is order
                    seen += 1
        assert seen == len(self.orders), (seen, len(self.orders))
        assert self.fall_max == (self.falling.peekitem(-1)[0] if self.falling else NONE_FALLING)
        assert self.rise_min == (self.rising.peekitem(0)[0] if self.rising else NONE_RISING)
        assert not self.due(last), f"a pending order should have triggered at {last}"
