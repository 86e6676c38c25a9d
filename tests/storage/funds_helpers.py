"""Helpers for the storage tests with funds: accounts opened and funded the
way the service journals them (``o``, ``k``, then one ``d`` per asset, in one
``all_locks`` section), deposits and withdrawals, and a deterministic stream
of owned orders of several accounts over several symbols."""

from __future__ import annotations

import hashlib
import random

from engine.errors import EngineError, InsufficientFunds
from engine.matcher import MatchingEngine
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, PENDING, SELL, STOP_LOSS

SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
_clock = iter(range(1_800_000_000_000_000_000, 1 << 62, 1_000))


def tick() -> int:
    """A timestamp (ns), increasing: journaled commands carry the caller's time."""
    return next(_clock)


def open_account(engine: MatchingEngine, store, name: str, deposits: dict[str, int]) -> int:
    """Open an account with a key and fund it, as ``POST /admin/accounts`` with
    deposits does: records ``o``, ``k``, one ``d`` per asset, under every lock.
    Returns the account id (after the records are durable)."""
    ts = tick()
    with engine.all_locks():
        account = engine.accounts.create(name, ts)
        store.log_command("o", account.account_id, name, ts)
        key_hash = hashlib.sha256(name.encode()).hexdigest()
        engine.accounts.add_key(account.account_id, key_hash, ts)
        ticket = store.log_command("k", account.account_id, key_hash, ts)
        for asset, amount in deposits.items():
            engine.deposit(account.account_id, asset, amount)
            ticket = store.log_command("d", account.account_id, asset, amount, ts)
    store.wait(ticket)
    return account.account_id


def move(engine: MatchingEngine, store, op: str, account_id: int, asset: str, amount: int) -> int | None:
    """A deposit (``op`` "d") or withdrawal ("w") journaled in its critical
    section; None when the engine refused it (nothing journaled)."""
    ts = tick()
    with engine.all_locks():
        try:
            (engine.deposit if op == "d" else engine.withdraw)(account_id, asset, amount)
        except InsufficientFunds:
            return None
        ticket = store.log_command(op, account_id, asset, amount, ts)
    store.wait(ticket)
    return ticket


def funded_commands(seed: int, count: int, accounts: int = 3) -> list[tuple]:
    """A reproducible stream over accounts ``1..accounts``: ``("submit",
    account, symbol, side, type, quantity, price, stop_price)``, ``("cancel",
    k)`` (the k-th open order), ``("amend", k, quantity_delta, price_delta)``,
    ``("d" | "w", account, asset, amount)``."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        account = rng.randint(1, accounts)
        roll = rng.random()
        if i > 5 and roll < 0.18:
            out.append(("cancel", rng.randrange(1 << 30)))
        elif i > 5 and roll < 0.24:
            out.append(("amend", rng.randrange(1 << 30), rng.randint(-3, 3), rng.choice((0, 0, -1, 1))))
        elif roll < 0.27:
            asset = rng.choice(("USDT", "BTC", "ETH", "SOL"))
            amount = rng.randint(1, 50) * (10**8 if asset == "USDT" else 40)
            out.append((rng.choice("dww"), account, asset, amount))
        else:
            order_type = rng.choice((LIMIT,) * 6 + (MARKET, IOC, FOK, STOP_LOSS))
            price = None if order_type in (MARKET, STOP_LOSS) else rng.randint(95, 105)
            stop = rng.randint(93, 107) if order_type is STOP_LOSS else None
            out.append(
                (
                    "submit",
                    account,
                    rng.choice(SYMBOLS),
                    rng.choice((BUY, SELL)),
                    order_type,
                    rng.randint(1, 12),
                    price,
                    stop,
                )
            )
    return out


def run_funded(engine: MatchingEngine, store, stream, *, wait: bool = True) -> dict:
    """Apply ``stream`` as the service does (journal in the critical section,
    wait after; refused commands change nothing and are not journaled).
    Returns counts of what was journaled and refused."""
    done = {"journaled": 0, "refused": 0}
    for cmd in stream:
        kind = cmd[0]
        ticket = None
        if kind in ("d", "w"):
            _, account, asset, amount = cmd
            ts = tick()
            with engine.all_locks():
                try:
                    (engine.deposit if kind == "d" else engine.withdraw)(account, asset, amount)
                except InsufficientFunds:
                    done["refused"] += 1
                    continue
                ticket = store.log_command(kind, account, asset, amount, ts)
        elif kind in ("cancel", "amend"):
            with engine.all_locks():  # other threads may be changing the orders
                live = [o for o in engine.orders.values() if o.is_open or o.status is PENDING]
            if not live:
                continue
            order = live[cmd[1] % len(live)]
            with engine.lock(order.symbol):
                try:
                    if kind == "cancel":
                        ticket = store.log_cancel(engine.cancel(order.order_id))
                    else:
                        quantity = order.quantity + cmd[2] if cmd[2] else None
                        price = order.price + cmd[3] if cmd[3] and order.price is not None else None
                        ticket = store.log_amend(engine.amend(order.order_id, quantity, price))
                except EngineError:
                    done["refused"] += 1
                    continue
        else:
            _, account, symbol, side, order_type, quantity, price, stop = cmd
            with engine.lock(symbol):
                try:
                    if stop is None:
                        result = engine.submit(symbol, side, order_type, quantity, price, account_id=account)
                    else:
                        result = engine.submit_extended(
                            symbol, side, order_type, quantity, price, stop_price=stop, account_id=account
                        )
                except EngineError:
                    done["refused"] += 1
                    continue
                ticket = store.log_submit(result)
        done["journaled"] += 1
        if wait:
            store.wait(ticket)
            store.maybe_snapshot(engine)
    return done


def funds_state(engine: MatchingEngine) -> dict:
    """Every account's balances, the fees, deposits and withdrawals, and each
    open order's lock: what a recovery must give back exactly."""
    ledger = engine.ledger
    return {
        "balances": {a: ledger.balances_of(a) for a in sorted(engine.accounts.accounts)},
        "fees": dict(ledger.fees),
        "deposited": dict(ledger.deposited),
        "withdrawn": dict(ledger.withdrawn),
        "conservation": ledger.conservation(),
        "open": sorted(
            (o.order_id, o.account_id, o.quantity - o.filled, o.price)
            for o in engine.orders.values()
            if o.is_open
        ),
    }


def funded(engine_kwargs=None) -> MatchingEngine:
    return MatchingEngine(funds=True, **(engine_kwargs or {}))
