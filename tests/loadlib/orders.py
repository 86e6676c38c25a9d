"""Realistic orders on each symbol's tick and lot grid, built fast.

Prices are integer ticks around a per-symbol mid that walks slowly; most limit orders
rest a few ticks away from the mid, a share cross it (they trade against resting
orders of the opposite side), and market / IOC / FOK orders take liquidity. Cancels
target orders this worker placed that were still resting when last seen.

Decimal strings are produced from integers (no float ever touches a price): a tick
of ``m * 10**-e`` and a price of ``n`` ticks print as the digits of ``n * m`` with
``e`` decimals.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

# The contract's four symbols; used when /symbols cannot be read.
DEFAULT_SPECS = {
    "BTC-USDT": ("0.01", "0.00001"),
    "ETH-USDT": ("0.01", "0.0001"),
    "BNB-USDT": ("0.01", "0.001"),
    "SOL-USDT": ("0.01", "0.001"),
}
# Mid prices used when the book is empty (or /bbo cannot be read).
DEFAULT_MIDS = {"BTC-USDT": "30000", "ETH-USDT": "2000", "BNB-USDT": "300", "SOL-USDT": "100"}
FALLBACK_MID = "100"

MID_WALK_P = 0.02  # per order, probability that the symbol's mid moves one tick
MID_WALK_MAX = 200  # ticks the mid may wander from where it started
LIMIT_LOTS = (1, 50)
TAKER_LOTS = (1, 20)
KIND_CODES = {"limit": "L", "market": "M", "ioc": "I", "fok": "F", "cancel": "C"}


def scale_of(step: Decimal) -> tuple[int, int]:
    """``(m, e)`` with ``step == m * 10**-e``, m a positive integer.

    Raises:
        ValueError: step not positive.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    sign, digits, exp = step.normalize().as_tuple()
    m = int("".join(map(str, digits)))
    if exp >= 0:
        return m * 10**exp, 0
    return m, -exp


def fmt_units(units: int, decimals: int) -> str:
    """The decimal string of ``units * 10**-decimals`` (units >= 0)."""
    if decimals == 0:
        return str(units)
    s = str(units).rjust(decimals + 1, "0")
    return f"{s[:-decimals]}.{s[-decimals:]}"


@dataclass(slots=True)
class SymbolSpec:
    """One symbol's grid and a starting mid, in integer ticks."""

    symbol: str
    tick: Decimal
    lot: Decimal
    mid_ticks: int
    _pm: int = field(init=False, repr=False)
    _pe: int = field(init=False, repr=False)
    _qm: int = field(init=False, repr=False)
    _qe: int = field(init=False, repr=False)

    def __post_init__(self):
        self._pm, self._pe = scale_of(self.tick)
        self._qm, self._qe = scale_of(self.lot)

    def price(self, ticks: int) -> str:
        """Price string of ``ticks`` ticks."""
        return fmt_units(ticks * self._pm, self._pe)

    def quantity(self, lots: int) -> str:
        """Quantity string of ``lots`` lots."""
        return fmt_units(lots * self._qm, self._qe)

    def to_ticks(self, price: Decimal) -> int:
        """Nearest whole number of ticks to ``price`` (at least 1)."""
        return max(1, int((price / self.tick).to_integral_value()))


def _dec(value) -> Decimal | None:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    return d if d.is_finite() else None


def mid_from_bbo(bbo: dict | None) -> Decimal | None:
    """Mid price from a contract BBO (either side alone will do); None when empty."""
    if not isinstance(bbo, dict):
        return None
    prices = []
    for side in ("best_bid", "best_ask"):
        level = bbo.get(side)
        if isinstance(level, dict):
            p = _dec(level.get("price"))
            if p is not None and p > 0:
                prices.append(p)
    if not prices:
        return None
    return sum(prices) / len(prices)


def build_specs(symbols: list[str], listing: dict | None, bbos: dict[str, dict | None]):
    """SymbolSpecs for ``symbols`` from a ``GET /symbols`` answer and ``GET /bbo`` answers.

    Missing or unreadable data falls back to the contract's defaults. Returns
    ``(specs, notes)`` where notes say which fallbacks were used.

    Raises:
        ValueError: a symbol that neither the server nor the defaults know.
    """
    notes = []
    known = {}
    if isinstance(listing, dict):
        for item in listing.get("symbols") or []:
            if isinstance(item, dict) and "symbol" in item:
                tick, lot = _dec(item.get("tick_size")), _dec(item.get("lot_size"))
                if tick and lot and tick > 0 and lot > 0:
                    known[item["symbol"]] = (tick, lot)
    specs = []
    for sym in symbols:
        if sym in known:
            tick, lot = known[sym]
        elif sym in DEFAULT_SPECS:
            tick, lot = (Decimal(x) for x in DEFAULT_SPECS[sym])
            if listing is not None:
                notes.append(f"{sym}: not in /symbols, using the contract's default grid")
        else:
            raise ValueError(f"unknown symbol {sym!r} (server lists: {', '.join(known) or '-'})")
        mid = mid_from_bbo(bbos.get(sym))
        if mid is None:
            mid = Decimal(DEFAULT_MIDS.get(sym, FALLBACK_MID))
            notes.append(f"{sym}: empty book, default mid {mid}")
        spec = SymbolSpec(sym, tick, lot, 0)
        spec.mid_ticks = spec.to_ticks(mid)
        specs.append(spec)
    return specs, notes


class OrderFactory:
    """Seeded stream of orders for one worker.

    ``next()`` returns ``(code, fields)``: code is one of L M I F C (limit, market, IOC,
    FOK, cancel); fields is ``(symbol, side, order_type, quantity, price_or_None,
    client_order_id)`` for orders and ``(order_id,)`` for cancels. A cancel is drawn
    only when an order of this worker is known to rest (``remember``); otherwise a
    limit order takes its place.

    With ``accounts`` > 1 the orders go to the accounts in turn, and ``account`` tells
    which one the order just returned belongs to (for a cancel: the account that
    placed the order, as ``remember`` was told).
    """

    def __init__(
        self,
        specs: list[SymbolSpec],
        mix: dict[str, float],
        seed: int = 1,
        worker: int = 0,
        tag: str = "lt",
        cross_share: float = 0.15,
        max_resting: int = 100_000,
        accounts: int = 1,
    ):
        if not specs:
            raise ValueError("need at least one symbol")
        self.specs = specs
        self.rng = random.Random(seed * 1_000_003 + worker)
        self.kinds = []
        self.cum = []
        acc = 0.0
        for kind, w in mix.items():
            if w > 0:
                acc += w
                self.kinds.append(KIND_CODES[kind])
                self.cum.append(acc)
        self.total = acc
        self.mids = [s.mid_ticks for s in specs]
        self.start_mids = list(self.mids)
        self.cross_share = cross_share
        self.prefix = f"{tag}-{worker}-"
        self.seq = 0
        self.resting: list[tuple[str, int]] = []  # (order_id, account)
        self.max_resting = max_resting
        self.accounts = max(1, accounts)
        self.account = 0
        self.next_account = worker % self.accounts  # workers start on different accounts

    def remember(self, order_id: str, account: int = 0) -> None:
        """Note an order of this worker (of ``account``) that rests (a later cancel may target it)."""
        r = self.resting
        if len(r) >= self.max_resting:
            r[self.rng.randrange(len(r))] = (order_id, account)
        else:
            r.append((order_id, account))

    def _pop_resting(self) -> tuple[str, int] | None:
        r = self.resting
        if not r:
            return None
        i = self.rng.randrange(len(r))
        r[i], r[-1] = r[-1], r[i]
        return r.pop()

    def next(self):
        rng = self.rng
        r = rng.random() * self.total
        code = self.kinds[-1]
        for k, c in zip(self.kinds, self.cum, strict=True):
            if r < c:
                code = k
                break
        if code == "C":
            popped = self._pop_resting()
            if popped is not None:
                self.account = popped[1]
                return "C", (popped[0],)
            code = "L"
        self.account = self.next_account
        self.next_account = (self.next_account + 1) % self.accounts
        i = rng.randrange(len(self.specs))
        spec = self.specs[i]
        mid = self.mids[i]
        if rng.random() < MID_WALK_P:
            mid += 1 if rng.random() < 0.5 else -1
            start = self.start_mids[i]
            mid = min(max(mid, start - MID_WALK_MAX, 2), start + MID_WALK_MAX)
            self.mids[i] = mid
        buy = rng.random() < 0.5
        if code == "L":
            lots = rng.randint(*LIMIT_LOTS)
            if rng.random() < self.cross_share:
                off = rng.randint(0, 4)
                ticks = mid + off if buy else mid - off
            else:
                off = 1
                while off < 50 and rng.random() > 0.3:
                    off += 1
                ticks = mid - off if buy else mid + off
        else:
            lots = rng.randint(*TAKER_LOTS)
            off = rng.randint(0, 3)
            ticks = mid + off if buy else mid - off
        self.seq += 1
        otype = {"L": "limit", "M": "market", "I": "ioc", "F": "fok"}[code]
        price = None if code == "M" else spec.price(max(1, ticks))
        return code, (
            spec.symbol,
            "buy" if buy else "sell",
            otype,
            spec.quantity(lots),
            price,
            f"{self.prefix}{self.seq}",
        )


_q = json.dumps  # symbols and ids are quoted safely; everything else is digits and dots


def order_json(fields) -> str:
    """The JSON text of a ``POST /order`` body from an order's fields."""
    sym, side, otype, qty, price, coid = fields
    if price is None:
        return (
            f'{{"symbol":{_q(sym)},"side":"{side}","order_type":"{otype}",'
            f'"quantity":"{qty}","client_order_id":{_q(coid)}}}'
        )
    return (
        f'{{"symbol":{_q(sym)},"side":"{side}","order_type":"{otype}",'
        f'"quantity":"{qty}","price":"{price}","client_order_id":{_q(coid)}}}'
    )


def order_dict(fields) -> dict:
    """The same body as a dict (for Socket.IO emits)."""
    sym, side, otype, qty, price, coid = fields
    d = {"symbol": sym, "side": side, "order_type": otype, "quantity": qty, "client_order_id": coid}
    if price is not None:
        d["price"] = price
    return d


def cancel_json(fields) -> str:
    """The JSON text of a ``POST /cancel`` body."""
    return f'{{"order_id":{_q(fields[0])}}}'


class CrossingFactory:
    """Orders that each change the book, half of them trading, for market-data probes.

    A cycle of four: a limit sell resting one tick above the mid, an IOC buy that takes
    it (limit three ticks above the mid), a limit buy one tick below, an IOC sell that
    takes it. Maker and taker have the same quantity, so the book does not grow. With
    the requests in flight on two connections a taker can overtake its maker; it then
    trades with whatever rests or is cancelled unfilled, and the probe simply measures
    the orders that did change the book.

    With ``accounts`` > 1 the makers are account 0's and the takers account 1's
    (``account`` after each ``next()``), so that they trade under self-trade prevention.
    """

    def __init__(self, spec: SymbolSpec, seed: int = 1, tag: str = "md", accounts: int = 1):
        self.spec = spec
        self.rng = random.Random(seed)
        self.mid = spec.mid_ticks
        self.prefix = f"{tag}-"
        self.seq = 0
        self.lots = 1
        self.resting: list[str] = []
        self.accounts = max(1, accounts)
        self.account = 0

    def remember(self, order_id: str, account: int = 0) -> None:
        """Not used (no cancels); present for the engines' interface."""

    def next(self):
        phase = self.seq % 4
        self.seq += 1
        self.account = (phase % 2) % self.accounts  # makers (0, 2) and takers (1, 3)
        if phase in (0, 2):
            self.lots = self.rng.randint(1, 5)
        spec, mid = self.spec, self.mid
        if phase == 0:
            code, side, otype, ticks = "L", "sell", "limit", mid + 1
        elif phase == 1:
            code, side, otype, ticks = "I", "buy", "ioc", mid + 3
        elif phase == 2:
            code, side, otype, ticks = "L", "buy", "limit", max(1, mid - 1)
        else:
            code, side, otype, ticks = "I", "sell", "ioc", max(1, mid - 3)
        return code, (
            spec.symbol,
            side,
            otype,
            spec.quantity(self.lots),
            spec.price(ticks),
            f"{self.prefix}{self.seq}",
        )
