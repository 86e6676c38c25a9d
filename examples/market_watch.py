#!/usr/bin/env python3
"""Watch a market: print its BBO, order book (compact) and trades as they arrive.

    python examples/market_watch.py --url http://127.0.0.1:5000 --symbol BTC-USDT
    python examples/market_watch.py --symbol ETH-USDT --depth 3 --order-events
    python examples/market_watch.py --symbol BTC-USDT --no-book --trades-all
    python examples/market_watch.py --order-events --api-key-file data/demo.key
    python examples/market_watch.py --balances --api-key-file data/demo.key

A python-socketio client of the ``/market`` namespace (see
Documentation/STREAMING.md). It subscribes again after a reconnect. Ctrl-C exits
cleanly.

Market data is public. Order events are private with ``--auth on``: give the
account's key (``--api-key-file FILE``, or ``--api-key KEY``, which ``ps`` can see);
it travels in the Socket.IO connect packet (``auth={"api_key": key}``), and the
events are then that account's orders only. ``--balances`` (with a key) prints the
account's balances at once and after every change (the private ``balance`` event).

Output, one line per event::

    14:02:11.532 BBO   BTC-USDT #42   29999.00 x 1.20000  |  30001.00 x 0.50000   spread 2.00
    14:02:11.533 BOOK  BTC-USDT #42   bids 29999.00x1.20000 29998.50x0.30000 | asks 30001.00x0.50000
    14:02:11.534 TRADE BTC-USDT #17   buy  0.05000 @ 30001.00  (maker 5, taker 9)
    14:02:11.535 FUNDS demo  BTC 9.40000+0.40000  USDT 1006013.9800000000+0.0000000000
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime

try:
    import socketio
except ImportError:  # pragma: no cover - a hint for a bare interpreter
    sys.exit("python-socketio is missing: pip install -r requirements.txt (or use .venv/bin/python)")

NAMESPACE = "/market"


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


def _side(entry) -> str:
    return "-" if entry is None else f"{entry['price']} x {entry['quantity']}"


def _levels(levels: list, n: int) -> str:
    shown = " ".join(f"{price}x{qty}" for price, qty in levels[:n])
    return shown or "-"


class Watcher:
    """Subscribes on every (re)connect and prints what arrives."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.print_lock = threading.Lock()
        self.stopping = False
        self.sio = socketio.Client(reconnection=True, reconnection_delay=1, reconnection_delay_max=5)
        self.sio.on("connect", self.on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self.on_disconnect, namespace=NAMESPACE)
        self.sio.on("bbo", self.on_bbo, namespace=NAMESPACE)
        self.sio.on("l2_update", self.on_book, namespace=NAMESPACE)
        self.sio.on("trade", self.on_trade, namespace=NAMESPACE)
        self.sio.on("order_event", self.on_order_event, namespace=NAMESPACE)
        self.sio.on("balance", self.on_balance, namespace=NAMESPACE)

    def say(self, kind: str, text: str) -> None:
        with self.print_lock:
            print(f"{_clock()} {kind:<5} {text}", flush=True)

    def subscriptions(self) -> list[dict]:
        a = self.args
        subs = [{"type": "bbo", "symbol": a.symbol}]
        if not a.no_book:
            subs.append({"type": "l2_updates", "symbol": a.symbol, "depth": a.depth})
        subs.append({"type": "trades"} if a.trades_all else {"type": "trades", "symbol": a.symbol})
        if a.order_events:
            subs.append({"type": "order_events", "symbol": a.symbol})
        if a.balances:
            subs.append({"type": "balances"})
        return subs

    # -- Socket.IO handlers ---------------------------------------------------
    def on_connect(self) -> None:
        self.say("INFO", f"connected to {self.args.url}{NAMESPACE}")
        for sub in self.subscriptions():
            self.sio.emit("subscribe", sub, namespace=NAMESPACE, callback=self._acked(sub))

    def _acked(self, sub: dict):
        def ack(answer) -> None:
            if sub["type"] == "balances":
                name = "balances"
            else:
                name = sub["type"] + (f" {sub['symbol']}" if "symbol" in sub else " (all symbols)")
            if isinstance(answer, dict) and answer.get("ok"):
                self.say("INFO", f"subscribed to {name}")
            else:
                error = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
                hint = ""
                if error.get("code") == "UNAUTHENTICATED" and not self.args.key:
                    hint = f" (this server wants an API key for {sub['type']}: --api-key-file FILE)"
                self.say("ERROR", f"{name}: {error.get('code', '?')}: {error.get('message', answer)}{hint}")

        return ack

    def on_disconnect(self, reason=None) -> None:
        if not self.stopping:
            self.say("INFO", f"disconnected ({reason or 'server gone'}); reconnecting...")

    def on_bbo(self, m: dict) -> None:
        spread = m["spread"] if m["spread"] is not None else "-"
        self.say(
            "BBO",
            f"{m['symbol']} #{m['sequence']:<6} {_side(m['best_bid']):>24}  |  "
            f"{_side(m['best_ask']):<24} spread {spread}",
        )

    def on_book(self, m: dict) -> None:
        n = self.args.depth
        self.say(
            "BOOK",
            f"{m['symbol']} #{m['sequence']:<6} bids {_levels(m['bids'], n)} | asks {_levels(m['asks'], n)}",
        )

    def on_trade(self, t: dict) -> None:
        self.say(
            "TRADE",
            f"{t['symbol']} #{t['trade_id']:<6} {t['aggressor_side']:<4} {t['quantity']} @ {t['price']}  "
            f"(maker {t['maker_order_id']}, taker {t['taker_order_id']})",
        )

    def on_order_event(self, e: dict) -> None:
        o = e["order"]
        # the order types beyond the four: stop price, iceberg display, why it was cancelled
        extra = ""
        if o.get("stop_price"):
            extra += f"  stop {o['stop_price']}"
        if o.get("display_quantity"):
            extra += f"  display {o['display_quantity']}"
        if o.get("cancel_reason"):
            extra += f"  ({o['cancel_reason']})"
        self.say(
            "ORDER",
            f"{o['symbol']} {e['event']:<16} id {o['order_id']} {o['side']} {o['order_type']} "
            f"{o['filled_quantity']}/{o['quantity']} @ {o['price'] or 'market'}  status {o['status']}{extra}",
        )

    def on_balance(self, b: dict) -> None:
        # available+locked of every asset the account holds something of
        held = [x for x in b["balances"] if x["available"].strip("0.") or x["locked"].strip("0.")]
        shown = "  ".join(f"{x['asset']} {x['available']}+{x['locked']}" for x in held) or "nothing"
        self.say("FUNDS", f"{b['name']}  {shown}")

    # -- lifetime ---------------------------------------------------------------
    def run(self) -> int:
        try:
            self.sio.connect(
                self.args.url,
                namespaces=[NAMESPACE],
                transports=["websocket"],
                wait_timeout=self.args.timeout,
                auth={"api_key": self.args.key} if self.args.key else None,
            )
        except socketio.exceptions.ConnectionError as e:
            print(f"cannot connect to {self.args.url}: {e}", file=sys.stderr)
            return 1
        stop = threading.Event()

        def request_stop(signum, frame) -> None:
            self.stopping = True
            stop.set()

        # Our own handlers, installed after python-socketio's SIGINT hook, so
        # that Ctrl-C means "disconnect once and exit", not "reconnect".
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop.wait(0.5):
            pass
        self.sio.disconnect()
        self.say("INFO", "bye")
        return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Print a market's BBO, book and trades as they arrive.")
    p.add_argument("--url", default="http://127.0.0.1:5000", help="the server (default %(default)s)")
    p.add_argument("--symbol", default="BTC-USDT", help="the symbol to watch (default %(default)s)")
    p.add_argument("--depth", type=int, default=5, help="book levels per side, 1..100 (default %(default)s)")
    p.add_argument("--no-book", action="store_true", help="no l2_updates, only BBO and trades")
    p.add_argument("--trades-all", action="store_true", help="trades of every symbol")
    p.add_argument("--order-events", action="store_true", help="also print order events of the symbol")
    p.add_argument(
        "--balances",
        action="store_true",
        help="also print the account's balances as they change (needs a key)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="connect timeout in seconds")
    p.add_argument("--api-key", help="an account's API key, for its order events (visible in ps)")
    p.add_argument("--api-key-file", metavar="FILE", help="a file holding the API key (first line)")
    args = p.parse_args(argv)
    if not 1 <= args.depth <= 100:
        p.error("--depth must be from 1 to 100")
    if args.api_key and args.api_key_file:
        p.error("give --api-key or --api-key-file, not both")
    args.key = args.api_key
    if args.api_key_file:
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                args.key = f.readline().strip()
        except OSError as exc:
            p.error(f"cannot read {args.api_key_file}: {exc.strerror}")
        if not args.key:
            p.error(f"{args.api_key_file} holds no key")
    return args


def main(argv: list[str] | None = None) -> int:
    return Watcher(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
