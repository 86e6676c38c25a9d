"""What funds cost on the order path in-process (a benchmark script that prints
figures and asserts nothing about speed): ``Exchange.place_order`` of one
account's resting buys and of two accounts trading, ``--auth off`` (no funds),
``--auth on`` with nobody subscribed to balances, and with the account's
``balances`` subscriber on ``/market`` (a Flask-SocketIO test client: the
capture in the critical section, the ordered release and one emit per order).
Interleaved rounds, medians of orders per second of this process's CPU time.

    .venv/bin/python tests/api/bench_funds.py [--rounds 5] [--n 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from api.app import close_app, create_app  # noqa: E402
from api.market import MARKET_NAMESPACE  # noqa: E402

FUNDED = {"USDT": "1000000000000", "BTC": "1000000000"}


def _setup(mode: str, tmp: str):
    auth = "off" if mode == "off" else "on"
    app, socketio = create_app(
        {
            "async_mode": "threading",
            "data_dir": tmp,
            "rate_limit": 0,
            "store": False,
            "audit": False,
            "auth": auth,
        }
    )
    exchange = app.extensions["exchange"]
    accounts = [None, None]
    client = None
    if auth == "on":
        registry = app.extensions["auth"]
        accounts = [registry.create_account(name, deposits=FUNDED)[0] for name in ("buyer", "seller")]
        if mode == "watched":
            key = registry.issue_key(accounts[0].account_id)[1]
            client = socketio.test_client(app, namespace=MARKET_NAMESPACE, auth={"api_key": key})
            client.emit("subscribe", {"type": "balances"}, namespace=MARKET_NAMESPACE, callback=True)
    return app, exchange, accounts, client


def _run(mode: str, n: int, trading: bool) -> float:
    with tempfile.TemporaryDirectory(prefix=f"bench-funds-{mode}-") as tmp:
        app, exchange, (buyer, seller), client = _setup(mode, tmp)
        try:
            bodies = []
            for i in range(n):
                if trading and i % 2:
                    body = {
                        "symbol": "BTC-USDT",
                        "side": "sell",
                        "order_type": "limit",
                        "price": "100.00",
                        "quantity": "1",
                    }
                    bodies.append((body, seller))
                else:
                    price = "100.00" if trading else f"{50 + i % 40}.00"
                    body = {
                        "symbol": "BTC-USDT",
                        "side": "buy",
                        "order_type": "limit",
                        "price": price,
                        "quantity": "1",
                    }
                    bodies.append((body, buyer))
            place = exchange.place_order
            t0 = time.process_time()
            for body, account in bodies:
                place(body, account)
            cpu = time.process_time() - t0
            if client is not None:
                received = [p for p in client.get_received(MARKET_NAMESPACE) if p["name"] == "balance"]
                # the snapshot, then one per order: each changes the buyer's balances (a lock, or a fill as maker)
                assert len(received) == n + 1, len(received)
            return n / cpu
        finally:
            if client is not None:
                client.disconnect(namespace=MARKET_NAMESPACE)
            close_app(app)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=5_000)
    args = ap.parse_args(argv)
    modes = ("off", "on", "watched")
    for trading in (False, True):
        rates: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for mode in modes:
                rates[mode].append(_run(mode, args.n, trading))
        what = "two accounts trading (every other order fills)" if trading else "one account's resting buys"
        print(f"{what}: {args.n} orders x {args.rounds} interleaved rounds, medians of orders/s of CPU time")
        base = statistics.median(rates["off"])
        for mode in modes:
            med = statistics.median(rates[mode])
            label = {
                "off": "--auth off",
                "on": "--auth on, no subscriber",
                "watched": "--auth on, balances subscriber",
            }[mode]
            print(f"  {label:<32} {med:>9,.0f} orders/s  {med / base:6.1%} of --auth off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
