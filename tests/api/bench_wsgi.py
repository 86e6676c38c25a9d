"""CPU per request of the app itself, without an HTTP server or a load generator
(a benchmark script, not a test): the WSGI app built by ``create_app`` is called
with prebuilt environs in one process, under eventlet like the server (background
tasks run every 8 requests), and the process CPU time is divided by the requests.
Far less noisy than a server under load on a shared machine, so it is the tool for
A/B comparisons of the code path; it leaves out eventlet's HTTP parsing and socket
IO (~150 us per request on the 2-core test machine).

    .venv/bin/python tests/api/bench_wsgi.py [health|ping|order|bulk] [--n 20000] [--fsync off|batch]
        [--batch 50] [--mix] [--threading] [--profile]

``order`` alternates a limit sell and a limit buy at one price (every second order
trades); ``ping`` posts the same bodies to ``POST /ping`` (read and parsed, nothing
done: the framework's part of an order); ``bulk`` posts ``--batch`` of them per request. ``--mix`` sends instead the
load runner's order stream (``tests/loadlib/orders.py``: four symbols, its default mix
without cancels, seed 1), every request a different body, as ``advanced_load_test.py``
does: more fills per order and a growing book. With ``--fsync batch`` every request
pays its own fsync (one request at a time: no group commit).
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
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.append(os.path.join(ROOT, "tests"))  # loadlib; after ROOT: tests/api is not api

from loadlib.orders import DEFAULT_SPECS, OrderFactory, build_specs, order_json  # noqa: E402
from loadlib.schedule import DEFAULT_MIX, parse_mix  # noqa: E402

from api.app import close_app, configure_gc, create_app  # noqa: E402


def environ(method: str, path: str, body: bytes = b"") -> dict:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:5000",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_TYPE": "application/json" if body else "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "_body": body,
    }


def call(app, env: dict) -> tuple[str, bytes]:
    e = dict(env)
    e["wsgi.input"] = io.BytesIO(e.pop("_body"))
    status = []
    body = b"".join(app(e, lambda s, h, exc_info=None: status.append(s)))
    return status[0], body


def mix_stream(n: int) -> list[bytes]:
    """``n`` order bodies of the load runner's stream (default mix without cancels)."""
    specs, _notes = build_specs(list(DEFAULT_SPECS), None, {})
    mix = dict(parse_mix(DEFAULT_MIX), cancel=0.0)
    factory = OrderFactory(specs, mix, seed=1)
    return [order_json(factory.next()[1]).encode() for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("health", "ping", "order", "bulk"))
    p.add_argument("--n", type=int, default=20000, help="requests measured")
    p.add_argument("--fsync", default="off", choices=("off", "batch", "always"))
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--mix", action="store_true", help="the load runner's order stream (see above)")
    p.add_argument("--threading", action="store_true", help="threading mode instead of eventlet")
    p.add_argument("--profile", action="store_true", help="cProfile the measured requests")
    args = p.parse_args()
    configure_gc()  # as main() does for the server
    data_dir = tempfile.mkdtemp(prefix="bench-wsgi-")
    app, socketio = create_app(
        {
            "data_dir": data_dir,
            "rate_limit": 0,
            "fsync": args.fsync,
            "async_mode": "threading" if args.threading else "eventlet",
        }
    )
    orders = [
        json.dumps(
            {
                "symbol": "BTC-USDT",
                "side": side,
                "order_type": "limit",
                "quantity": "0.01000",
                "price": "30000.00",
                "client_order_id": f"c{i}",
            }
        ).encode()
        for i, side in enumerate(("sell", "buy"))
    ]
    if args.mix:
        orders = mix_stream((200 + args.n) * (args.batch if args.mode == "bulk" else 1))
        if args.mode == "bulk":
            b = args.batch
            orders = [b"[" + b",".join(orders[i : i + b]) + b"]" for i in range(0, len(orders), b)]
    if args.mode == "health":
        envs = [environ("GET", "/health")]
    elif args.mode in ("order", "ping"):
        envs = [environ("POST", f"/{args.mode}", o) for o in orders]
    elif args.mix:
        envs = [environ("POST", "/orders", body) for body in orders]
    else:
        body = b"[" + b",".join(orders * (args.batch // 2)) + b"]"
        envs = [environ("POST", "/orders", body)]
    try:
        for i in range(200):
            call(app, envs[i % len(envs)])
        profiler = cProfile.Profile() if args.profile else None
        cpu0 = time.process_time()
        if profiler:
            profiler.enable()
        for i in range(args.n):
            status, body = call(app, envs[(200 + i) % len(envs)])
            if i % 8 == 7:
                socketio.sleep(0)  # the publisher and audit tasks run, as between requests in the server
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
        per = cpu / args.n * 1e6
        extra = f", {per / args.batch:.1f} us per order" if args.mode == "bulk" else ""
        print(
            f"{args.mode} fsync={args.fsync}: {per:.1f} us CPU per request{extra} ({status}, {len(body)} bytes)"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(
                int(os.environ.get("PROFILE_N", "25"))
            )
    finally:
        close_app(app)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
