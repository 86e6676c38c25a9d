"""Shared helpers for the storage tests: a deterministic command stream, a
driver that journals it the way the service does, and journal surgery."""

from __future__ import annotations

import json
import os
import random

from engine.errors import EngineError
from engine.matcher import MatchingEngine
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, SELL
from storage import Store
from storage.journal import chain_line, list_segments

SYMBOLS = ("BTC-USDT", "ETH-USDT")
TYPES = (LIMIT, LIMIT, LIMIT, LIMIT, MARKET, IOC, FOK)


def state(engine: MatchingEngine) -> str:
    """The engine's whole state as canonical text (what "byte-identical" means)."""
    return json.dumps(engine.snapshot(), sort_keys=True)


def commands(seed: int, count: int) -> list[tuple]:
    """A reproducible stream of ``("submit", symbol, side, type, qty, price, coid)``
    and ``("cancel", k)`` (cancel the k-th resting order known so far)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i > 5 and rng.random() < 0.25:
            out.append(("cancel", rng.randrange(1 << 30)))
            continue
        order_type = rng.choice(TYPES)
        price = None if order_type is MARKET else rng.randint(95, 105)
        coid = f'c-{i}-\u00e9"' if rng.random() < 0.2 else None
        out.append(
            (
                "submit",
                rng.choice(SYMBOLS),
                rng.choice((BUY, SELL)),
                order_type,
                rng.randint(1, 12),
                price,
                coid,
            )
        )
    return out


def run(engine: MatchingEngine, store: Store | None, stream, *, wait: bool = True) -> list[int]:
    """Apply commands as the service does (journal under the symbol lock, wait
    after); return the tickets."""
    tickets = []
    for cmd in stream:
        if cmd[0] == "cancel":
            resting = [o for o in engine.orders.values() if o.is_open]
            if not resting:
                continue
            order = resting[cmd[1] % len(resting)]
            with engine.lock(order.symbol):
                try:
                    result = engine.cancel(order.order_id)
                except EngineError:
                    continue
                ticket = store.log_cancel(result) if store else None
        else:
            _, symbol, side, order_type, qty, price, coid = cmd
            with engine.lock(symbol):
                result = engine.submit(symbol, side, order_type, qty, price, coid)
                ticket = store.log_submit(result) if store else None
        if ticket is not None:
            tickets.append(ticket)
            if wait:
                store.wait(ticket)
                store.maybe_snapshot(engine)
    return tickets


def fresh(data_dir, **kwargs) -> tuple[MatchingEngine, Store, dict]:
    """A new engine recovered from ``data_dir``."""
    engine = MatchingEngine()
    store = Store(str(data_dir), **kwargs)
    summary = store.recover(engine)
    return engine, store, summary


def build(data_dir, seed: int = 1, count: int = 60, **kwargs) -> tuple[MatchingEngine, Store]:
    engine, store, _ = fresh(data_dir, **kwargs)
    run(engine, store, commands(seed, count))
    return engine, store


def segments(data_dir) -> list[str]:
    return [path for _, path in list_segments(str(data_dir))]


def lines_of(path) -> list[bytes]:
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def rewrite_chain(path, lines: list[bytes], prev: bytes = b"0" * 32) -> None:
    """Write ``lines`` (possibly edited) to ``path`` with a recomputed, valid
    chain: what a forger -- or a writer bug -- would produce."""
    out = []
    for line in lines:
        record = line.rstrip(b"\n")
        line, prev = chain_line(record[1:-71], prev)  # the command, re-chained
        out.append(line)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def file_size(path) -> int:
    return os.path.getsize(path)


PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
