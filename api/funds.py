"""Funds at the edge: balances as the contract shows them, deposits as the
admin gives them, conservation for ``/statistics``, and the private
``balance`` event of ``/market``.

Formatting (one place: ``balances_list``)
    ``[{"asset", "available", "locked"}]`` in ``ledger.assets`` order, every
    amount ``ledger.format``-ed (exactly the asset's ``scale`` decimals, as
    ``GET /assets`` publishes). ``GET /account``, ``GET /admin/accounts``
    (accounts and ``fees``), ``POST /admin/accounts``, ``/admin/deposit``,
    ``/admin/withdraw`` and the ``balance`` event all use it. Without funds
    (``--auth off``, ``ledger`` None) a balances list is empty.

The ``balance`` event (``BalanceFeed``)
    A keyed ``/market`` connection subscribes ``{"type": "balances"}``: it
    receives one ``balance`` event at once with its account exactly as
    ``GET /account`` (before the acknowledgement, like a book snapshot), then
    one after every durable command that changed the account's balances --
    its orders' locks, fills (as taker or maker), cancels and expiries,
    self-trade-prevention cancels, triggered stops, deposits and
    withdrawals -- in the order the ledger made them.

    How the order is kept:

    * ``capture`` runs in the command's critical section (with funds the
      engine has one lock over every symbol, so critical sections are
      totally ordered, as the journal is). It derives the accounts the
      command touched from its result (``touched``) and, for those with a
      subscriber (``watchers``), reads their balances; an account whose
      balances did not change since its last capture gets nothing. The
      capture takes the next *version*. Nobody subscribed: one dict
      truthiness test, nothing else.
    * ``release`` runs after the command's journal record is durable (or,
      ``deliver=False``, after it failed: the service then halts). It
      delivers captures strictly in version order, holding a later one until
      every earlier one is released, so two threads that finish their
      journal waits in the other order cannot swap two events.
    * A subscription's snapshot is a capture too (in the critical section,
      after the watcher is counted, so every later command captures for it);
      it waits until the state it shows is durable, and when its turn comes
      the connection joins the account's room and gets the snapshot: it
      never receives an event older than its snapshot.

    Delivery goes through one hook, ``publish(event, account_id, payload)``,
    which sends to the account's room ``balances:<account_id>`` (keyed
    connections of that account only). Revoking a key takes its
    connections out at once (``leave``), as for ``order_events``.
"""

from __future__ import annotations

import itertools
import logging
import threading

from engine.errors import ValidationError

log = logging.getLogger(__name__)

BALANCE_EVENT = "balance"


def balances_list(ledger, account_id: int | None) -> list[dict]:
    """The account's balances as the contract shows them (module docstring).
    Call holding the engine's lock for a consistent view. O(assets)."""
    if ledger is None or account_id is None:
        return []
    return rows_list(ledger, ledger.balances_of(account_id))


def rows_list(ledger, rows) -> list[dict]:
    """``balances_list`` of ``(asset, available, locked)`` rows read before
    (``ledger.balances_of``). O(assets)."""
    fmt = ledger.format
    return [{"asset": a, "available": fmt(a, av), "locked": fmt(a, lk)} for a, av, lk in rows]


def fees_list(ledger) -> list[dict]:
    """The exchange's fee balance as a balances list (``locked`` always zero)."""
    if ledger is None:
        return []
    fees = ledger.fees  # (a copy, made once)
    return rows_list(ledger, [(asset, fees[asset], 0) for asset in ledger.assets])


def conservation(ledger) -> dict | None:
    """``/statistics``' ``funds`` section: per asset the deposits, withdrawals,
    sums of available and locked, fees (formatted) and ``ok``; and ``ok`` for
    all. None without funds. Call holding the engine's lock.
    O(accounts x assets)."""
    if ledger is None:
        return None
    fmt = ledger.format
    assets = {}
    for asset, figures in ledger.conservation().items():
        entry = {
            name: fmt(asset, figures[name])
            for name in ("deposits", "withdrawals", "available", "locked", "fees")
        }
        entry["ok"] = figures["ok"]
        assets[asset] = entry
    return {
        "ok": all(entry["ok"] for entry in assets.values()),
        "accounts": len(ledger.balances),
        "assets": assets,
    }


def parse_deposits(ledger, deposits) -> list[tuple[str, int]]:
    """``POST /admin/accounts``' ``deposits`` (``{"USDT": "100000", ...}``) ->
    ``[(asset, units)]``, every entry checked before anything changes.

    Raises:
        ValidationError: not an object, an unknown asset, an amount that is
        not a positive decimal within the asset's scale (field ``deposits``,
        the message names the asset), or deposits without funds (``--auth off``).
    """
    if deposits is None:
        return []
    if not isinstance(deposits, dict):
        raise ValidationError("deposits must be an object of asset -> amount", "deposits")
    if not deposits:
        return []
    if ledger is None:
        raise ValidationError("this exchange runs without balances (--auth off): no deposits", "deposits")
    out = []
    for asset, amount in deposits.items():
        if asset not in ledger.scales:
            raise ValidationError(f"deposits: unknown asset {str(asset)[:20]!r}", "deposits")
        try:
            out.append((asset, ledger.parse_amount(asset, amount, asset)))
        except ValidationError as e:
            raise ValidationError(f"deposits: {e.message}", "deposits") from None
    return out


def touched(result) -> set:
    """The accounts whose balances a command's result may have changed: the
    order's owner, every trade's maker, the makers self-trade prevention
    cancelled, and the same of every stop it triggered. O(trades)."""
    accounts = {result.order.account_id}
    add = accounts.add
    for entry in (result, *getattr(result, "triggered", ())):
        add(entry.order.account_id)
        for trade in getattr(entry, "trades", ()):
            add(trade.maker.account_id)
        for order in getattr(entry, "cancelled", ()):
            add(order.account_id)
    accounts.discard(None)
    return accounts


class BalanceFeed:
    """Ordered ``balance`` events to the subscribed accounts (module docstring).

    ``publish(event, account_id, payload)``: the one hook that sends to an
    account's keyed connections. ``join(sid, account_id)`` / ``leave(sid,
    account_id)`` put a connection in or out of that set; ``send(sid, event,
    payload)`` reaches one connection (the snapshot).
    """

    def __init__(self, engine, publish, join, leave, send, names=None) -> None:
        self.engine = engine
        self.ledger = engine.ledger
        self.publish = publish
        self.join = join
        self.leave = leave
        self.send = send
        self.names = names or (lambda account_id: None)  # account_id -> its name
        # account -> subscribed connections; changed in the engine's critical section
        self.watchers: dict[int, int] = {}
        self._last: dict[int, list] = {}  # account -> the rows last captured (critical section)
        self._versions = itertools.count(1)  # taken in the critical section: the ledger's order
        self._mu = threading.Lock()  # the delivery order below; never taken under the engine's lock
        self._next = 1
        self._ready: dict[int, tuple | None] = {}
        self.subscribed: dict[str, int] = {}  # sid -> account (critical section)
        self.events = 0

    # -- in the command's critical section ---------------------------------------------
    def capture(self, result):
        """The balances ``result`` changed for watched accounts, or None. O(trades + assets)."""
        watchers = self.watchers
        return self._take([a for a in touched(result) if a in watchers])

    def capture_accounts(self, accounts):
        """As ``capture``, for accounts named directly (a deposit)."""
        watchers = self.watchers
        return self._take([a for a in accounts if a in watchers]) if watchers else None

    def _take(self, accounts, sid: str | None = None):
        if not accounts:
            return None
        balances_of = self.ledger.balances_of
        last = self._last
        changed = []
        for account_id in accounts:
            rows = balances_of(account_id)
            if sid is None and last.get(account_id) == rows:
                continue
            last[account_id] = rows
            changed.append((account_id, rows))
        if not changed:
            return None
        return (next(self._versions), changed, sid)

    # -- after durability --------------------------------------------------------------
    def release(self, captures, deliver: bool = True) -> None:
        """Deliver captures (one or a list; None entries ignored) in version
        order; ``deliver=False``: their commands will never be durable, skip them."""
        if captures is None:
            return
        if type(captures) is tuple:
            captures = (captures,)
        with self._mu:
            ready = self._ready
            for capture in captures:
                if capture is not None:
                    ready[capture[0]] = capture if deliver else None
            while self._next in ready:
                capture = ready.pop(self._next)
                self._next += 1
                if capture is not None:
                    try:
                        self._deliver(capture)
                    except Exception:  # a send failure is the client's, never the command's
                        log.exception("delivering a balance event failed")

    def _deliver(self, capture) -> None:
        _version, changed, sid = capture
        ledger = self.ledger
        for account_id, rows in changed:
            payload = {
                "account_id": str(account_id),
                "name": self.names(account_id),
                "balances": rows_list(ledger, rows),
            }
            if sid is not None:
                if self.subscribed.get(sid) != account_id:
                    return  # unsubscribed (or gone) before its snapshot's turn
                self.join(sid, account_id)
                self.send(sid, BALANCE_EVENT, payload)
            else:
                self.publish(BALANCE_EVENT, account_id, payload)
            self.events += 1

    # -- subscriptions -------------------------------------------------------------------
    def subscribe(self, sid: str, account_id: int, durable_ticket):
        """Count ``sid`` as a watcher of the account and capture its snapshot,
        in the engine's critical section; returns ``(capture, ticket)``: the
        caller waits until ``ticket`` is durable, then ``release``s the
        capture (or releases it with ``deliver=False`` and ``unsubscribe``s)."""
        with self.engine.all_locks():  # the bookkeeping too: no other lock under this one
            before = self.subscribed.get(sid)
            self.subscribed[sid] = account_id
            if before is None:
                self.watchers[account_id] = self.watchers.get(account_id, 0) + 1
            elif before != account_id:  # pragma: no cover - a connection has one key
                self._unwatch(before)
                self.watchers[account_id] = self.watchers.get(account_id, 0) + 1
            capture = self._take([account_id], sid)
            ticket = durable_ticket()
        return capture, ticket

    def unsubscribe(self, sid: str) -> None:
        """``sid`` leaves its account's balance events (unsubscribe, disconnect,
        its key revoked). Not subscribed: nothing happens."""
        with self.engine.all_locks():
            account_id = self.subscribed.pop(sid, None)
            if account_id is not None:
                self._unwatch(account_id)
        if account_id is None:
            return
        try:
            self.leave(sid, account_id)
        except Exception:  # the connection is gone already
            log.debug("leaving the balance room of a closed connection", exc_info=True)

    def _unwatch(self, account_id: int) -> None:
        n = self.watchers.get(account_id, 0) - 1
        if n > 0:
            self.watchers[account_id] = n
        else:
            self.watchers.pop(account_id, None)
            self._last.pop(account_id, None)

    def stats(self) -> dict:
        return {
            "subscribed_connections": len(self.subscribed),
            "watched_accounts": len(self.watchers),
            "balance_events": self.events,
            "held": len(self._ready),
        }
