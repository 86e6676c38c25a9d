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
