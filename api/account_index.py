"""Each account's orders and fills, for ``GET /orders``, ``GET /fills`` and
``POST /cancel_all``.

What it holds
    ``orders[owner]``  order_id -> ``Order`` for the orders the engine still
                       remembers (every open order, and closed ones up to the
                       engine's ``order_history``, which snapshots keep): the
                       same set ``GET /order/<id>`` can answer for.
    ``fills[owner]``   the owner's last ``FILLS_KEPT`` fills as ``(trade,
                       is_maker)``, newest last.
    ``owner`` is the engine's ``account_id``: None for the shared account of
    ``--auth off`` (which then owns every order, and both sides of a trade).

Where it comes from
    ``add(result)`` after each accepted order (the exchange calls it before
    answering, so a ``GET /orders`` right after ``POST /order`` sees it);
    ``rebuild(engine)`` once after recovery, from the engine's remembered
    orders and recent trades (``trade_history`` per symbol). So after a
    restart an account's fills are those among the trades the engine kept,
    which may be fewer than it had: the complete history is the journal and
    the audit log.

Cost: ``add`` is a dict store per order and two deque appends per fill (no
lock: each is atomic under the GIL). When an account's dict has doubled since
its last pruning (and holds at least ``PRUNE_AT`` orders), the orders the
engine has forgotten are dropped: a scan of n entries every n/2 additions at
the least, amortised O(1) per order, and the dict stays within twice what the
engine remembers. Queries copy the
account's entries first (atomic), so they never see a dict changing size.
"""

from __future__ import annotations

from collections import deque

from api import formatting
from engine.order import VALUE, Order

FILLS_KEPT = 10_000  # per account
PRUNE_AT = 4096  # an account's dict is pruned when it reaches max(this, twice its size after the last)


class AccountIndex:
    """Orders and fills by owner (see the module docstring)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.orders: dict[int | None, dict[int, Order]] = {}
        self.fills: dict[int | None, deque] = {}
        self._prune_at: dict[int | None, int] = {}

    def add(self, result) -> None:
        """Index a ``SubmitResult`` (or an ``AmendResult``): its order and the
        fills of both sides, and those of the stops it triggered. O(trades)."""
        order = result.order
        owner = order.account_id
        mine = self.orders.get(owner)
        if mine is None:
            mine = self.orders.setdefault(owner, {})
        mine[order.order_id] = order
        if len(mine) >= self._prune_at.get(owner, PRUNE_AT):
            self._prune(mine)
            self._prune_at[owner] = max(PRUNE_AT, 2 * len(mine))
        trades = result.trades
        if trades:
            fills = self.fills
            taker_fills = fills.get(owner)
            if taker_fills is None:
                taker_fills = fills.setdefault(owner, deque(maxlen=FILLS_KEPT))
            for trade in trades:
                maker_owner = trade.maker.account_id
                maker_fills = fills.get(maker_owner)
                if maker_fills is None:
                    maker_fills = fills.setdefault(maker_owner, deque(maxlen=FILLS_KEPT))
                maker_fills.append((trade, True))
                taker_fills.append((trade, False))
        for entry in result.triggered:  # a triggered stop's fills are its owner's
            self.add(entry)

    def _prune(self, mine: dict) -> None:
        remembered = self.engine.orders
        for order_id in list(mine):
            if order_id not in remembered:
                mine.pop(order_id, None)

    def rebuild(self, engine) -> None:
        """Index what a recovered engine remembers. O(orders + trades)."""
        self.orders = {}
        self.fills = {}
        self._prune_at = {}
        for order in sorted(engine.orders.values(), key=lambda o: o.order_id):
            self.orders.setdefault(order.account_id, {})[order.order_id] = order
        trades = [t for market in engine.markets.values() for t in market.trades]
        trades.sort(key=lambda t: t.trade_id)
        for trade in trades:
            self.fills.setdefault(trade.maker.account_id, deque(maxlen=FILLS_KEPT)).append((trade, True))
            self.fills.setdefault(trade.taker.account_id, deque(maxlen=FILLS_KEPT)).append((trade, False))

    # -- queries -------------------------------------------------------------------------
    def open_orders(self, owner, symbol: str | None = None) -> list[Order]:
        """The owner's open orders (in ``symbol``), oldest first. O(owner's orders)."""
        mine = self.orders.get(owner)
        if not mine:
            return []
        return [o for o in list(mine.values()) if o.is_open and (symbol is None or o.symbol == symbol)]

    def order_reports(self, owner, symbol: str | None, open_only: bool, limit: int) -> list[dict]:
        """``GET /orders``: the owner's orders, newest first, at most ``limit``.
        O(owner's orders) in the worst case (``open`` among many closed)."""
        mine = self.orders.get(owner)
        if not mine:
            return []
        remembered = self.engine.orders
        markets = self.engine.markets
        found = []
        for order in reversed(list(mine.values())):
            if symbol is not None and order.symbol != symbol:
                continue
            if open_only and not order.is_open:
                continue
            if order.order_id not in remembered:
                continue
            found.append(order)
            if len(found) >= limit:
                break
        found.sort(key=lambda o: o.order_id, reverse=True)  # threads may index out of id order
        out = []
        for order in found:
            market = markets[order.symbol]
            with market.lock:  # a consistent status/filled/notional triple
                out.append(formatting.order_report(market.spec, order))
        return out

    def fill_reports(self, owner, symbol: str | None, limit: int) -> list[dict]:
        """``GET /fills``: the owner's fills, newest first, at most ``limit``. O(kept fills)."""
        kept = self.fills.get(owner)
        if not kept:
            return []
        markets = self.engine.markets
        out = []
        for trade, is_maker in reversed(list(kept)):
            taker = trade.taker
            if symbol is not None and taker.symbol != symbol:
                continue
            out.append(fill_dict(markets[taker.symbol].spec, trade, is_maker))
            if len(out) >= limit:
                break
        return out


def fill_dict(spec, trade, is_maker: bool) -> dict:
    """One fill of an account: ``{"trade_id", "order_id", "symbol", "side",
    "price", "quantity", "fee", "fee_exact", "fee_asset", "liquidity",
    "timestamp"}``. ``fee`` is rounded half-even to 8 decimals like a trade's
    fees; ``fee_exact`` is what the balances moved by, to the quote asset's
    scale (tick x lot x rate: never rounded), in ``fee_asset``."""
    f = formatting.formatter(spec)
    taker = trade.taker
    if is_maker:
        order, fee, liquidity = trade.maker, trade.maker_fee, "maker"
    else:
        order, fee, liquidity = taker, trade.taker_fee, "taker"
    return {
        "trade_id": str(trade.trade_id),
        "order_id": str(order.order_id),
        "symbol": taker.symbol,
        "side": VALUE[order.side],
        "price": f.price(trade.price),
        "quantity": f.quantity(trade.quantity),
        "fee": f.fee(fee),
        "fee_exact": spec.format_fee_exact(fee),
        "fee_asset": spec.quote,
        "liquidity": liquidity,
        "timestamp": formatting.iso(taker.timestamp),
    }
