"""A naive reference book: a flat list of resting orders scanned on every
command. Obviously correct, obviously slow; the stateful test compares the
engine with it after every step."""

from __future__ import annotations


class NaiveBook:
    def __init__(self) -> None:
        self.resting: list[list] = []  # [order_id, side, price, remaining] in arrival order
        self.trades: list[tuple] = []  # (maker_id, taker_id, price, quantity)

    def _eligible(self, side: str, limit: int | None) -> list[list]:
        opposite = "sell" if side == "buy" else "buy"
        out = [o for o in self.resting if o[1] == opposite]
        if limit is not None:
            out = [o for o in out if (o[2] <= limit if side == "buy" else o[2] >= limit)]
        # best price first, then arrival (ids increase with arrival)
        out.sort(key=lambda o: (o[2] if side == "buy" else -o[2], o[0]))
        return out

    def submit(self, order_id: int, side: str, kind: str, quantity: int, price: int | None) -> int:
        """Returns the filled quantity."""
        eligible = self._eligible(side, price)
        if kind == "fok" and sum(o[3] for o in eligible) < quantity:
            return 0
        remaining = quantity
        for maker in eligible:
            if not remaining:
                break
            fill = min(maker[3], remaining)
            maker[3] -= fill
            remaining -= fill
            self.trades.append((maker[0], order_id, maker[2], fill))
        self.resting = [o for o in self.resting if o[3] > 0]
        if remaining and kind == "limit":
            self.resting.append([order_id, side, price, remaining])
        return quantity - remaining

    def cancel(self, order_id: int) -> bool:
        for o in self.resting:
            if o[0] == order_id:
                self.resting.remove(o)
                return True
        return False

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        levels: dict[tuple[str, int], int] = {}
        for _, side, price, remaining in self.resting:
            levels[(side, price)] = levels.get((side, price), 0) + remaining
        bids = sorted(((p, q) for (s, p), q in levels.items() if s == "buy"), reverse=True)
        asks = sorted((p, q) for (s, p), q in levels.items() if s == "sell")
        return bids, asks


class Refused(Exception):
    """The model refuses the command (the engine must raise ValidationError)."""


class NaiveExchange:
    """The reference for every order type: a flat list of resting orders and a
    flat list of pending stops, scanned in full on every command.

    Resting entry: ``{"id", "side", "price", "remaining", "display", "shown",
    "rank", "post_only"}``; time priority is ``rank`` (a counter: a new order,
    an iceberg's refreshed slice and an amend that loses priority take the
    next one). Pending entry: ``{"id", "side", "kind", "stop", "price",
    "quantity", "rank"}``. ``trades`` collects ``(maker, taker, price,
    quantity)`` of every fill, triggered stops' included.
    """

    STOPS = ("stop_loss", "stop_limit", "take_profit", "take_profit_limit")

    def __init__(self) -> None:
        self.resting: list[dict] = []
        self.pending: list[dict] = []
        self.trades: list[tuple] = []
        self.last: int | None = None
        self.rank = 0
        self.status: dict[int, str] = {}  # order id -> "open" | "pending" | "filled" | "cancelled"

    def _next_rank(self) -> int:
        self.rank += 1
        return self.rank

    @staticmethod
    def _falls(side: str, kind: str) -> bool:
        return (kind in ("stop_loss", "stop_limit")) == (side == "sell")

    def _eligible(self, side: str, limit: int | None) -> list[dict]:
        out = [o for o in self.resting if o["side"] != side]
        if limit is not None:
            out = [o for o in out if (o["price"] <= limit if side == "buy" else o["price"] >= limit)]
        out.sort(key=lambda o: (o["price"] if side == "buy" else -o["price"], o["rank"]))
        return out

    def _visible(self, o: dict) -> int:
        return o["remaining"] if o["display"] is None else o["shown"]

    def _take(self, taker_id: int, side: str, limit: int | None, wanted: int, budget: int | None = None):
        """Fill up to ``wanted`` lots (or within ``budget`` notional); returns
        (lots, notional, stopped_by_budget)."""
        lots = notional = 0
        while wanted is None or lots < wanted:
            eligible = self._eligible(side, limit)
            if not eligible:
                return lots, notional, False
            maker = eligible[0]
            fill = self._visible(maker)
            if wanted is not None:
                fill = min(fill, wanted - lots)
            if budget is not None:
                affordable = (budget - notional) // maker["price"]
                if not affordable:
                    return lots, notional, True
                fill = min(fill, affordable)
            self.trades.append((maker["id"], taker_id, maker["price"], fill))
            self.last = maker["price"]
            lots += fill
            notional += fill * maker["price"]
            maker["remaining"] -= fill
            if maker["display"] is not None:
                maker["shown"] -= fill
                if maker["remaining"] and not maker["shown"]:
                    maker["shown"] = min(maker["display"], maker["remaining"])
                    maker["rank"] = self._next_rank()
            if not maker["remaining"]:
                self.resting.remove(maker)
                self.status[maker["id"]] = "filled"
        return lots, notional, False

    def _rest(self, order_id, side, price, remaining, display=None, post_only=False) -> None:
        shown = None if display is None else min(display, remaining)
        self.resting.append(
            {"id": order_id, "side": side, "price": price, "remaining": remaining, "display": display,
             "shown": shown, "rank": self._next_rank(), "post_only": post_only}
        )  # fmt: skip
        self.status[order_id] = "open"

    def submit(self, order_id, side, kind, quantity, price=None, stop=None, display=None, post_only=False,
               quote=None) -> int:  # fmt: skip
        """Returns the lots filled by this order itself (triggered stops aside)."""
        if kind in self.STOPS:
            if self.last is not None and (
                self.last <= stop if self._falls(side, kind) else self.last >= stop
            ):
                raise Refused("would trigger at once")
            self.pending.append(
                {"id": order_id, "side": side, "kind": kind, "stop": stop, "price": price,
                 "quantity": quantity, "rank": self._next_rank()}
            )  # fmt: skip
            self.status[order_id] = "pending"
            return 0
        if post_only and self._eligible(side, price):
            self.status[order_id] = "cancelled"
            return 0
        if quote is not None:
            lots, _, by_budget = self._take(order_id, side, None, None, quote)
            self.status[order_id] = "filled" if lots and by_budget else "cancelled"
            self._cascade()
            return lots
        if kind == "fok" and sum(self._visible(o) for o in self._eligible(side, price)) < quantity:
            self.status[order_id] = "cancelled"
            return 0
        filled = self._enter(order_id, side, "limit" if kind == "limit" else "taker", quantity, price, display,
                             post_only)  # fmt: skip
        self._cascade()
        return filled

    def _enter(self, order_id, side, mode, quantity, price, display=None, post_only=False) -> int:
        lots, _, _ = self._take(order_id, side, price, quantity)
        if lots == quantity:
            self.status[order_id] = "filled"
        elif mode == "limit":
            self._rest(order_id, side, price, quantity - lots, display, post_only)
        else:
            self.status[order_id] = "cancelled"
        return lots

    def _cascade(self) -> None:
        queue: list[dict] = []
        while True:
            if self.last is not None:
                last = self.last
                falling = [p for p in self.pending if self._falls(p["side"], p["kind"]) and p["stop"] >= last]
                rising = [
                    p for p in self.pending if not self._falls(p["side"], p["kind"]) and p["stop"] <= last
                ]
                falling.sort(key=lambda p: (-p["stop"], p["rank"]))
                rising.sort(key=lambda p: (p["stop"], p["rank"]))
                for p in falling + rising:
                    self.pending.remove(p)
                    queue.append(p)
            if not queue:
                return
            p = queue.pop(0)
            is_limit = p["kind"] in ("stop_limit", "take_profit_limit")
            self._enter(p["id"], p["side"], "limit" if is_limit else "taker", p["quantity"],
                        p["price"] if is_limit else None)  # fmt: skip

    def cancel(self, order_id) -> bool:
        for book in (self.resting, self.pending):
            for o in book:
                if o["id"] == order_id:
                    book.remove(o)
                    self.status[order_id] = "cancelled"
                    return True
        return False

    def amend(self, order_id, filled: int, quantity=None, price=None, stop=None) -> None:
        """``filled``: what the order has filled so far (the engine's figure
        for a resting order; the model tracks remaining only)."""
        for p in self.pending:
            if p["id"] == order_id:
                if price is not None and p["kind"] not in ("stop_limit", "take_profit_limit"):
                    raise Refused("no price")
                if (
                    stop is not None
                    and self.last is not None
                    and (self.last <= stop if self._falls(p["side"], p["kind"]) else self.last >= stop)
                ):
                    raise Refused("would trigger")
                loses = (quantity is not None and quantity > p["quantity"]) or (
                    price is not None and price != p["price"]) or (stop is not None and stop != p["stop"])  # fmt: skip
                p["quantity"] = quantity or p["quantity"]
                p["price"] = price or p["price"]
                p["stop"] = stop or p["stop"]
                if loses:
                    p["rank"] = self._next_rank()
                return
        for o in self.resting:
            if o["id"] == order_id:
                if stop is not None:
                    raise Refused("not pending")
                if quantity is not None and quantity <= filled:
                    raise Refused("quantity")
                total = filled + o["remaining"]
                new_quantity = quantity or total
                new_price = price or o["price"]
                if new_quantity <= total and new_price == o["price"]:
                    o["remaining"] = new_quantity - filled
                    if o["display"] is not None:
                        o["shown"] = min(o["shown"], o["remaining"])
                    return
                crosses = bool(self._eligible(o["side"], new_price))
                if o["post_only"] and crosses:
                    raise Refused("post only")
                self.resting.remove(o)
                self._enter(order_id, o["side"], "limit", new_quantity - filled, new_price, o["display"],
                            o["post_only"])  # fmt: skip
                self._cascade()
                return
        raise Refused("not open")

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        levels: dict[tuple[str, int], int] = {}
        for o in self.resting:
            key = (o["side"], o["price"])
            levels[key] = levels.get(key, 0) + self._visible(o)
        bids = sorted(((p, q) for (s, p), q in levels.items() if s == "buy"), reverse=True)
        asks = sorted((p, q) for (s, p), q in levels.items() if s == "sell")
        return bids, asks
