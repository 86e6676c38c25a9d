"""Balances, locks, settlement and fees: the ledger of an engine with funds.

Units
    Every amount is an exact int in its asset's smallest unit: ``scale``
    decimals (``engine.symbols.asset_scales``, published by ``GET /assets``).
    A base asset is held to its lot's decimals, a quote asset to tick x lot x
    fee rate's, so that each symbol converts its own integers with int factors
    (``SymbolFunds``): lots -> base units, notional (``ticks * lots``) and fee
    units (``Trade.maker_fee``) -> quote units. Nothing is ever rounded.

Balances
    ``available`` and ``locked`` per account and asset: a two-int list
    (``[available, locked]``, a *cell*), shared by every symbol that names the
    asset. ``Market.funds.cells`` maps an account to its ``(base, quote)``
    cells for that symbol, so settling a fill costs two dict lookups.

Locks (what an order may spend, taken at acceptance; ``lock_of``)
    * an order with a price that buys: ``price * remaining * buy_lock`` of
      quote, ``buy_lock`` being one notional unit plus the higher of its two
      fee rates (the contract's ``price x quantity x (1 + taker_fee)``: the
      taker rate is the higher one by default; a symbol configured with a
      higher maker rate locks by that, else a buyer filled as maker could
      owe more than it locked);
    * a sell: its remaining quantity of base -- except a market sell by quote
      amount, whose quantity is unknown ahead: it locks nothing and sells
      while the account's available base covers each lot;
    * a buy without a price (``market``, and ``stop_loss``/``take_profit``
      buys, which become market orders): nothing; it executes while the
      available quote covers each fill and its taker fee.
    The lock of an open order always equals ``lock_of`` its current state; a
    fill releases the lock of the lots it took (settlement), a close the rest
    (``release``), an amend the difference (``relock``). ``submit`` checks
    an order's whole lock at acceptance but takes it only for what rests: what
    trades at once is paid from available -- the same balances after the
    command as locking all of it and releasing the rest, with less work.

Settlement (in the engine's critical section, inside the matching loop that
makes the trades, ``MatchingEngine._match``: each maker per fill, the taker
once per loop, the fees into ``SymbolFunds.fee``): the buyer pays notional +
its fee in quote (from its lock, the surplus of a better price or a maker fee
back to available) and receives the base; the seller gives the base (from its lock)
and receives notional - its fee; both fees go to ``fees``.

Conservation (``check``, ``conservation``): per asset, the sum of available +
locked over every account, plus fees, equals deposits minus withdrawals; and
no balance is negative.

Pure: no IO, no clock, no locks of its own (the engine's critical section
covers every change; see ``MatchingEngine``, "Funds").
"""

from __future__ import annotations

from decimal import Decimal

from engine.errors import InsufficientFunds, ValidationError
from engine.order import BUY, MARKET, Order
from engine.symbols import _DECIMAL_TEXT, SymbolSpec, _decimals, asset_scales

MAX_AMOUNT = 10**40  # far beyond any real balance; bounds the work of formatting and parsing


class SymbolFunds:
    """A symbol's conversion factors and its accounts' cells (see the module
    docstring)."""

    __slots__ = (
        "base",
        "quote",
        "base_per_lot",
        "quote_per_notional",
        "quote_per_fee",
        "buy_lock",
        "taker_buy",
        "taker_sells",
        "fee_rate",
        "cells",
        "fee",
        "for_makers",
    )

    def __init__(self, spec: SymbolSpec, scales: dict[str, int]) -> None:
        self.base = spec.base
        self.quote = spec.quote
        fee_decimals = max(_decimals(spec.maker_fee), _decimals(spec.taker_fee))
        base_per_lot = spec.lot_size.scaleb(scales[spec.base])
        notional = (spec.tick_size * spec.lot_size).scaleb(scales[spec.quote])
        fee = notional.scaleb(-fee_decimals)
        for value in (base_per_lot, notional, fee):
            if value != value.to_integral_value() or value < 1:  # pragma: no cover - asset_scales' promise
                raise ValueError(f"{spec.symbol}: the asset scales do not hold its grid exactly")
        self.base_per_lot = int(base_per_lot)
        self.quote_per_notional = int(notional)
        self.quote_per_fee = int(fee)
        fee_rate = max(spec.maker_fee_units, spec.taker_fee_units)
        # quote locked per notional unit of a buy with a price (module docstring)
        self.buy_lock = self.quote_per_notional + fee_rate * self.quote_per_fee
        # Per notional unit of a fill, in quote units: what a taker buying pays
        # (notional + taker fee), what a taker selling gets (notional - fee),
        # what the exchange earns from both sides' fees.
        maker_fee, taker_fee = (
            spec.maker_fee_units * self.quote_per_fee,
            spec.taker_fee_units * self.quote_per_fee,
        )
        self.taker_buy = self.quote_per_notional + taker_fee
        self.taker_sells = self.quote_per_notional - taker_fee
        self.fee_rate = maker_fee + taker_fee
        self.cells: dict[int, tuple[list[int], list[int]]] = {}  # emptied in place, never replaced
        # the fee balance of its quote asset: one cell shared by the symbols of that asset
        self.fee: list[int] = [0]
        # What the matching loop settles a maker's fill with, in one load: its
        # cells, base per lot, and per notional unit the lock a buying maker
        # gives up, what it gets back of it (the lock's fee margin less the
        # maker fee), what a selling maker gets (notional - maker fee).
        self.for_makers = (
            self.cells,
            self.base_per_lot,
            self.buy_lock,
            self.buy_lock - self.quote_per_notional - maker_fee,
            self.quote_per_notional - maker_fee,
        )


def lock_for(funds: SymbolFunds, order_type, is_buy: bool, price, quantity: int, quote_quantity) -> int:
    """What an order of these fields locks at acceptance (``lock_of`` of it
    before any fill). O(1)."""
    if is_buy:
        return 0 if price is None else price * quantity * funds.buy_lock
    if order_type is MARKET and quote_quantity is not None:
        return 0
    return quantity * funds.base_per_lot


def lock_of(funds: SymbolFunds, order: Order) -> int:
    """What the order holds locked now: for a buy with a price in quote units,
    for a sell in base units (0 for an order that locks nothing). O(1)."""
    remaining = order.quantity - order.filled
    if order.side is BUY:
        return 0 if order.price is None else order.price * remaining * funds.buy_lock
    if order.order_type is MARKET and order.quote_quantity is not None:
        return 0
    return remaining * funds.base_per_lot


class Ledger:
    """Every account's balances and the exchange's fees (module docstring).

    ``accounts`` is the engine's ``AccountRegistry``: deposits go only to
    accounts that exist.
    """

    def __init__(self, specs, accounts) -> None:
        specs = list(specs)
        self.scales = asset_scales(specs)
        self.assets = list(self.scales)  # the order GET /account lists them in
        self.symbols = {s.symbol: SymbolFunds(s, self.scales) for s in specs}
        self.registry = accounts
        self.balances: dict[int, dict[str, list[int]]] = {}
        self._fees = {
            asset: [0] for asset in self.assets
        }  # asset -> [fee balance], shared with SymbolFunds.fee
        for funds in self.symbols.values():
            funds.fee = self._fees[funds.quote]
        self.deposited = dict.fromkeys(self.assets, 0)
        self.withdrawn = dict.fromkeys(self.assets, 0)

    @property
    def fees(self) -> dict[str, int]:
        """The exchange's fee balance per asset (a copy). O(assets)."""
        return {asset: cell[0] for asset, cell in self._fees.items()}

    # -- cells ----------------------------------------------------------------------
    def account_cells(self, account_id: int) -> dict[str, list[int]]:
        """The account's ``asset -> [available, locked]``, made on first use. O(assets) once, then O(1)."""
        cells = self.balances.get(account_id)
        if cells is None:
            cells = self.balances[account_id] = {asset: [0, 0] for asset in self.assets}
        return cells

    def pair(self, funds: SymbolFunds, account_id: int) -> tuple[list[int], list[int]]:
        """The account's ``(base, quote)`` cells for this symbol. O(1)."""
        pair = funds.cells.get(account_id)
        if pair is None:
            cells = self.account_cells(account_id)
            pair = funds.cells[account_id] = (cells[funds.base], cells[funds.quote])
        return pair

    # -- orders ---------------------------------------------------------------------
    def reserve(self, funds: SymbolFunds, account_id: int, is_buy: bool, amount: int) -> None:
        """Lock ``amount`` (quote for a buy, base for a sell) of the account.

        Raises:
            InsufficientFunds: the available balance is short; nothing changed.
        """
        cell = self.pair(funds, account_id)[1 if is_buy else 0]
        if cell[0] < amount:
            raise self.short(funds, is_buy, amount)
        cell[0] -= amount
        cell[1] += amount

    def short(self, funds: SymbolFunds, is_buy: bool, amount: int) -> InsufficientFunds:
        """The refusal of an order whose lock of ``amount`` (quote for a buy,
        base for a sell) the account cannot cover."""
        asset = funds.quote if is_buy else funds.base
        return InsufficientFunds(f"the order needs {self.format(asset, amount)} {asset} available")

    def release(self, funds: SymbolFunds, order: Order) -> None:
        """Unlock what a closing order still holds. O(1)."""
        amount = lock_of(funds, order)
        if amount:
            cell = self.pair(funds, order.account_id)[1 if order.side is BUY else 0]
            cell[1] -= amount
            cell[0] += amount

    def relock(self, funds: SymbolFunds, order: Order, before: int, after: int) -> None:
        """Move the order's lock from ``before`` to ``after`` (an amend).

        Raises:
            InsufficientFunds: the increase is not available; nothing changed.
        """
        delta = after - before
        if not delta:
            return
        is_buy = order.side is BUY
        cell = self.pair(funds, order.account_id)[1 if is_buy else 0]
        if cell[0] < delta:
            asset = funds.quote if is_buy else funds.base
            raise InsufficientFunds(
                f"the amended order needs {self.format(asset, delta)} more {asset} available"
            )
        cell[0] -= delta
        cell[1] += delta

    # -- deposits and withdrawals ---------------------------------------------------------
    def deposit(self, account_id: int, asset: str, amount: int) -> None:
        """Credit ``amount`` units of ``asset`` to the account's available.

        Raises:
            AccountNotFound, ValidationError (unknown asset, amount not positive).
        """
        cell = self._cell_for(account_id, asset, amount)
        cell[0] += amount
        self.deposited[asset] += amount

    def withdraw(self, account_id: int, asset: str, amount: int) -> None:
        """Debit ``amount`` units of ``asset`` from the account's available.

        Raises:
            AccountNotFound, ValidationError: as ``deposit``.
            InsufficientFunds: more than available (locked funds cannot be withdrawn).
        """
        cell = self._cell_for(account_id, asset, amount)
        if cell[0] < amount:
            raise InsufficientFunds(
                f"only {self.format(asset, cell[0])} {asset} is available to withdraw", "amount"
            )
        cell[0] -= amount
        self.withdrawn[asset] += amount

    def _cell_for(self, account_id, asset, amount) -> list[int]:
        self.registry.get(account_id)  # AccountNotFound
        if type(asset) is not str or asset not in self.scales:
            raise ValidationError(f"unknown asset {str(asset)[:20]!r}", "asset")
        if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
            raise ValidationError("amount must be positive", "amount")
        return self.account_cells(account_id)[asset]

    # -- edge conversions ---------------------------------------------------------------
    def parse_amount(self, asset: str, value, field: str = "amount") -> int:
        """A positive decimal amount of ``asset`` (string, int or exact Decimal)
        -> units. Raises ValidationError: not a plain positive decimal, more
        decimals than the asset's scale, or beyond the bound."""
        if type(asset) is not str or asset not in self.scales:
            raise ValidationError(f"unknown asset {str(asset)[:20]!r}", "asset")
        if isinstance(value, bool) or value is None:
            raise ValidationError(f"{field} must be a decimal string", field)
        if isinstance(value, int):
            text = str(value) if 0 < value < 10**30 else ""
        elif isinstance(value, (str, Decimal)):
            text = str(value) if not isinstance(value, Decimal) or value.is_finite() else ""
        else:
            raise ValidationError(f"{field} must be a decimal string", field)
        if not _DECIMAL_TEXT.fullmatch(text):
            raise ValidationError(f'{field} must be a plain positive decimal like "100.5"', field)
        units = Decimal(text).scaleb(self.scales[asset])
        if units != units.to_integral_value():
            raise ValidationError(f"{field} has more than {self.scales[asset]} decimals ({asset})", field)
        units = int(units)
        if not 0 < units <= MAX_AMOUNT:
            raise ValidationError(f"{field} must be positive", field)
        return units

    def format(self, asset: str, units: int) -> str:
        """Units of ``asset`` as a decimal string with its scale's decimals."""
        scale = self.scales[asset]
        if not scale:
            return str(units)
        sign = "-" if units < 0 else ""
        digits = str(abs(units)).rjust(scale + 1, "0")
        return f"{sign}{digits[:-scale]}.{digits[-scale:]}"

    # -- queries ------------------------------------------------------------------------
    def balances_of(self, account_id: int) -> list[tuple[str, int, int]]:
        """``(asset, available, locked)`` of every asset, in ``assets`` order. O(assets)."""
        cells = self.balances.get(account_id)
        if cells is None:
            return [(asset, 0, 0) for asset in self.assets]
        return [(asset, *cells[asset]) for asset in self.assets]

    def totals(self) -> dict[str, tuple[int, int]]:
        """``asset -> (sum of available, sum of locked)`` over every account. O(accounts x assets)."""
        out = {asset: [0, 0] for asset in self.assets}
        for cells in self.balances.values():
            for asset, (available, locked) in cells.items():
                total = out[asset]
                total[0] += available
                total[1] += locked
        return {asset: (a, b) for asset, (a, b) in out.items()}

    def conservation(self) -> dict[str, dict]:
        """Per asset: deposits, withdrawals, the sums of available and locked,
        fees, and ``ok``: available + locked + fees == deposits - withdrawals,
        with no negative balance. O(accounts x assets)."""
        negative = {
            asset
            for cells in self.balances.values()
            for asset, (available, locked) in cells.items()
            if available < 0 or locked < 0
        }
        out = {}
        fees = self.fees
        for asset, (available, locked) in self.totals().items():
            out[asset] = {
                "deposits": self.deposited[asset],
                "withdrawals": self.withdrawn[asset],
                "available": available,
                "locked": locked,
                "fees": fees[asset],
                "ok": asset not in negative
                and available + locked + fees[asset] == self.deposited[asset] - self.withdrawn[asset],
            }
        return out

    def check(self, open_orders=()) -> None:
        """Assert conservation, no negative balance, and (given every open
        order) that each account's locked equals the sum of its open orders'
        ``lock_of``. O(accounts x assets + orders)."""
        for asset, figures in self.conservation().items():
            assert figures["ok"], f"{asset}: conservation broken: {figures}"
        expected: dict[tuple[int, str], int] = {}
        for order in open_orders:
            funds = self.symbols[order.symbol]
            amount = lock_of(funds, order)
            if amount:
                key = (order.account_id, funds.quote if order.side is BUY else funds.base)
                expected[key] = expected.get(key, 0) + amount
        for account_id, cells in self.balances.items():
            for asset, (_available, locked) in cells.items():
                assert locked == expected.get((account_id, asset), 0), (
                    f"account {account_id} {asset}: locked {locked}, its open orders hold "
                    f"{expected.get((account_id, asset), 0)}"
                )
        for account_id, _asset in expected:
            assert account_id in self.balances, f"account {account_id} holds locks but has no balances"
        for funds in self.symbols.values():
            for account_id, (base, quote) in funds.cells.items():
                assert self.balances[account_id][funds.base] is base
                assert self.balances[account_id][funds.quote] is quote

    # -- state transfer ---------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Plain data: balances per account (``[[account_id, [[asset, available,
        locked], ...]], ...]`` by account id, zero cells and accounts left out
        -- so that a live engine and a replay of its journal write the same
        bytes, whichever order they first touched the accounts in), fees, deposits and
        withdrawals per asset. O(accounts x assets)."""
        balances = []
        for account_id, cells in sorted(self.balances.items()):  # by id: as a replay has them
            rows = [[asset, a, b] for asset, (a, b) in cells.items() if a or b]
            if rows:  # an account whose every balance is zero is left out, as if never used
                balances.append([account_id, rows])
        return {
            "balances": balances,
            "fees": self.fees,
            "deposited": dict(self.deposited),
            "withdrawn": dict(self.withdrawn),
        }

    def restore(self, state: dict | None) -> None:
        """Replace the ledger by a ``snapshot()`` (None: empty). O(n).

        Raises:
            ValueError: an asset this configuration does not have.
        """
        self.balances = {}
        for funds in self.symbols.values():
            funds.cells.clear()
        for cell in self._fees.values():
            cell[0] = 0
        self.deposited = dict.fromkeys(self.assets, 0)
        self.withdrawn = dict.fromkeys(self.assets, 0)
        if not state:
            return
        for name, target in (("fees", None), ("deposited", self.deposited), ("withdrawn", self.withdrawn)):
            for asset, value in state[name].items():
                if asset not in self.scales:
                    raise ValueError(f"the snapshot's funds name an asset not configured here: {asset!r}")
                if target is None:
                    self._fees[asset][0] = value
                else:
                    target[asset] = value
        for account_id, rows in state["balances"]:
            cells = self.account_cells(account_id)
            for asset, available, locked in rows:
                if asset not in cells:
                    raise ValueError(f"the snapshot's funds name an asset not configured here: {asset!r}")
                cells[asset][0] = available
                cells[asset][1] = locked
