"""CPU per call of every public read endpoint, with the state that makes each one
expensive (a benchmark script, not a test): full latency windows (10,000 samples in
each of the service's and the publisher's figures), books of 1,200 levels a side,
10,000 trades in the symbol's history. The WSGI app built by ``create_app`` is
called in-process with prebuilt environs (as ``bench_wsgi.py`` does), so the figure
is the app's own CPU per request (Flask routing, the view, JSON encoding), without
eventlet's HTTP parsing and socket IO (~150 us more per request on the 2-core test
machine, the same for every endpoint).

    .venv/bin/python tests/api/bench_endpoints.py [--n 200] [--rounds 3] [--threading]

Prints one line per endpoint: the median over ``--rounds`` of the process CPU time
per call (``time.process_time``), and the response size. ``--threading`` runs in
threading mode instead of eventlet.
"""

from __future__ import annotations

import os
import sys

if "--threading" not in sys.argv:
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()

import argparse  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_wsgi import call, environ  # noqa: E402

from api.app import close_app, configure_gc, create_app  # noqa: E402

BTC = "BTC-USDT"
ENDPOINTS = [
    "/health",
    "/statistics",
    "/symbols",
    f"/bbo/{BTC}",
    f"/book/{BTC}",
    f"/book/{BTC}?levels=1000",
    f"/trades/{BTC}",
    f"/trades/{BTC}?limit=1000",
    "/order/1",
]


def fill(exchange, levels: int = 1200, trades: int = 10_000) -> None:
    """Deep books and a long trade history through the exchange's bulk path, then
    every latency window filled to its 10,000 samples (log-normal around 200 us)."""

    def limit(side, price, quantity="1"):
        return {"symbol": BTC, "side": side, "order_type": "limit", "quantity": quantity, "price": price}

    bids = [limit("buy", f"{10_000 + i}.00") for i in range(levels)]
    asks = [limit("sell", f"{20_000 + i}.00") for i in range(levels)]
    for batch in (bids, asks):
        for i in range(0, len(batch), 1000):
            exchange.place_orders(batch[i : i + 1000])
    exchange.place_order(limit("sell", "15000.00", str(trades)))
    market = {"symbol": BTC, "side": "buy", "order_type": "market", "quantity": "1"}
    for _ in range(trades // 1000):
        exchange.place_orders([market] * 1000)
    rng = random.Random(1)
    windows = list(exchange.latency.values())
    publisher = exchange.publisher
    if publisher is not None:
        windows += list(publisher.latency.values())
    for window in windows:
        for _ in range(10_000):
            window.add(int(rng.lognormvariate(12.2, 0.6)))


def measure(app, env, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        call(app, env)
    return (time.process_time() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200, help="calls per endpoint and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threading", action="store_true")
    args = p.parse_args()
    configure_gc()
    data_dir = tempfile.mkdtemp(prefix="bench-endpoints-")
    app, _socketio = create_app(
        {
            "data_dir": data_dir,
            "rate_limit": 0,
            "fsync": "off",
            "async_mode": "threading" if args.threading else "eventlet",
        }
    )
    try:
        exchange = app.extensions["exchange"]
        fill(exchange)
        envs = {}
        for path in ENDPOINTS:
            route, _, query = path.partition("?")
            env = environ("GET", route)
            env["QUERY_STRING"] = query
            status, body = call(app, env)
            assert status.startswith("200"), (path, status, body[:200])
            envs[path] = (env, len(body))
        results = {path: [] for path in ENDPOINTS}
        for _ in range(args.rounds):  # interleaved rounds: load from elsewhere hits all alike
            for path in ENDPOINTS:
                results[path].append(measure(app, envs[path][0], args.n))
        print(f"{'endpoint':32} {'CPU/call':>10} {'bytes':>9}")
        for path in ENDPOINTS:
            print(f"{path:32} {statistics.median(results[path]) * 1e6:8.0f}us {envs[path][1]:9d}")
    finally:
        close_app(app)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
