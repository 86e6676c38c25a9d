#!/usr/bin/env python3
"""What the queue feed costs the engine process per order, in-process (no Redis).

    python tests/bench_feed.py [--orders 20000] [--per-pass 3]

The same order stream (four symbols, round robin; per symbol one crossing pair in
ten orders, the rest quotes 5..40 ticks away: ``tests/bench_cluster.py``'s mix) is
run through the engine alone, then through the engine and ``api.mq.QueueFeed``
(formatting every trade and order event, reading each changed book's top 100
levels once per pass, encoding one message per pass; ``--per-pass`` orders per
pass: at 500 orders/s and a pass every 5 ms, about 2.5). The difference is the
feed's CPU per order; the Redis PUBLISH per message is not included (one system
call per pass). Prints process CPU time per order; compare within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from api.mq import QueueFeed, QueueJSON  # noqa: E402
from engine.matcher import MatchingEngine  # noqa: E402
from engine.order import OrderType, Side  # noqa: E402


class _Emitter:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def emit(self, event, data, namespace=None, to=None):
        self.messages += 1
        self.bytes += len(QueueJSON.dumps(data))


def _orders(engine, n: int):
    symbols = list(engine.markets)
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        mid = 1_000_000  # ticks: any price on every default grid
        k = (i // len(symbols)) % 10
        if k == 0:
            yield symbol, Side.SELL, OrderType.LIMIT, 1, mid + 1
        elif k == 1:
            yield symbol, Side.BUY, OrderType.IOC, 1, mid + 1
        else:
            away = 5 + (i * 7) % 36
            side = Side.BUY if k % 2 == 0 else Side.SELL
            yield symbol, side, OrderType.LIMIT, 1, mid - away if side is Side.BUY else mid + away


def engine_only(n: int) -> float:
    engine = MatchingEngine()
    t0 = time.process_time()
    for order in _orders(engine, n):
        engine.submit(*order)
    return (time.process_time() - t0) / n * 1e6


def with_feed(n: int, per_pass: int) -> tuple[float, int, float]:
    engine = MatchingEngine()
    emitter = _Emitter()
    feed = QueueFeed(emitter, engine)
    feed._wake = threading.Event()
    feed._task = object()  # passes run here, not in a background task
    feed._init_baselines()
    feed._pass()
    t0 = time.process_time()
    for i, order in enumerate(_orders(engine, n)):
        feed.on_submit(engine.submit(*order))
        if i % per_pass == per_pass - 1:
            feed._pass()
    feed._pass()
    return (time.process_time() - t0) / n * 1e6, emitter.messages, emitter.bytes / max(1, emitter.messages)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--per-pass", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    for _ in range(args.repeat):
        alone = engine_only(args.orders)
        total, messages, size = with_feed(args.orders, args.per_pass)
        print(
            f"engine alone {alone:.1f} us/order; engine + feed {total:.1f} us/order; "
            f"feed {total - alone:.1f} us/order; {messages} messages of {size:.0f} B on average"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
