"""What one careless or hostile Socket.IO client costs the server's memory, with
the limits of ``api/sessions.py`` off (the behaviour before them) and on.

    .venv/bin/python tests/stream/bench_sessions.py slow  [--seconds 20] [--rate 300]
    .venv/bin/python tests/stream/bench_sessions.py flood [--handshakes 12000]

``slow``: one server per variant (its own port and temporary data dir), a
100-level ladder on each side of BTC-USDT, one subscriber that reads everything
and two that never read (one over WebSocket with a 4 KB receive buffer, one
over long-polling that never polls) -- each subscribed to ``trades``,
``l2_updates`` (depth 100) and ``bbo`` and answering pings -- while orders trade
at ``--rate`` orders/s. Prints the server's RSS each few seconds and its growth,
the slow consumers disconnected and whether the reader got every trade.
Variants: no slow clients (the order flow's own growth), caps off
(``--send-queue-bytes 0 --send-queue-bytes-per-ip 0``, as before), the
default caps (4 MiB a client, 32 MiB an address), a cap of 256 KiB.

``flood``: ``--handshakes`` Engine.IO polling handshakes from 127.0.0.1 over 4
keep-alive connections, as fast as they go; RSS before and after, answers by
status, and whether another address (127.0.0.2) is still served. Variants:
limits off (``--handshake-limit 0 --sessions-per-ip 0``, as before) and the
defaults.

Everything talks to 127.0.0.1 and stops by itself; the servers are stopped by pid.
The machine may be shared: compare the variants of one run, as ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.loadlib.rawsio import RawSio  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402
from tests.stream.rawclients import (  # noqa: E402
    EIO,
    SUBSCRIPTIONS,
    Poller,
    Reader,
    flow_orders,
    get_json,
    post_ladder,
    rss_kib,
)


def silent_clients(port: int) -> tuple[RawSio, Poller]:
    ws = RawSio("127.0.0.1", port)
    ws.connect()
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for sub in SUBSCRIPTIONS:
        ws.call("subscribe", sub)
    poller = Poller(port)
    poller.handshake()
    poller.post("40/market,")
    poller.get()
    for i, sub in enumerate(SUBSCRIPTIONS, 1):
        poller.post(f"42/market,{i}" + json.dumps(["subscribe", sub]))
    poller.get()
    return ws, poller


def slow_variant(name: str, args: list[str], slow: bool, seconds: float, rate: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(tmp, *args) as server:
        pid = server.proc.pid
        post_ladder(server.port)
        reader = Reader(server.port)
        reader.start()
        ws = poller = None
        if slow:
            ws, poller = silent_clients(server.port)
        time.sleep(0.5)
        before = rss_kib(pid)
        stop = threading.Event()
        result: dict = {}
        samples = []

        def send():
            result["trade_ids"] = flow_orders(server.port, seconds, stop, rate=rate)

        def pong():
            while not stop.wait(1.0):
                for fn in (lambda: ws.send_text("3"), lambda: poller.post("3")):
                    try:
                        fn()
                    except (OSError, http.client.HTTPException):
                        pass

        sender = threading.Thread(target=send)
        sender.start()
        if slow:
            threading.Thread(target=pong, daemon=True).start()
        started = time.monotonic()
        while sender.is_alive():
            sender.join(seconds / 5)
            samples.append((round(time.monotonic() - started), rss_kib(pid)))
        after = rss_kib(pid)
        stop.set()
        deadline = time.monotonic() + 10
        while len(reader.trade_ids) < len(result["trade_ids"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.stop.set()
        reader.join(5)
        stats = get_json(server, "/statistics")["streaming"]
        for c in (ws, poller):
            if c is not None:
                c.close()
    return {
        "variant": name,
        "rss_before_mb": before / 1024,
        "rss_after_mb": after / 1024,
        "grown_mb": (after - before) / 1024,
        "samples": samples,
        "trades": len(result["trade_ids"]),
        "reader_ok": reader.trade_ids == result["trade_ids"],
        "disconnected": stats.get("slow_consumers_disconnected", "-"),
    }


def run_slow(args) -> None:
    variants = [
        ("no slow clients", [], False),
        ("cap off (before)", ["--send-queue-bytes", "0", "--send-queue-bytes-per-ip", "0"], True),
        ("cap 4 MiB (default)", [], True),
        ("cap 256 KiB", ["--send-queue-bytes", str(256 * 1024)], True),
    ]
    print(
        f"slow consumers: {args.seconds:.0f} s at {args.rate:.0f} orders/s, 2 non-reading subscribers + 1 reader"
    )
    print(
        f"{'variant':22} {'RSS before':>10} {'after':>8} {'grown':>8}  {'disconnected':>12} {'trades':>7} reader"
    )
    for name, extra, slow in variants:
        r = slow_variant(name, extra, slow, args.seconds, args.rate)
        print(
            f"{r['variant']:22} {r['rss_before_mb']:9.1f}M {r['rss_after_mb']:7.1f}M {r['grown_mb']:+7.1f}M"
            f"  {r['disconnected']!s:>12} {r['trades']:7d} {'every trade' if r['reader_ok'] else 'MISSED TRADES'}"
        )
        print("    RSS (s, MB):", ", ".join(f"{t}: {kib / 1024:.1f}" for t, kib in r["samples"]))


def flood(port: int, total: int, connections: int = 4) -> dict:
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local: dict[int, int] = {}
        for _ in range(n):
            conn.request("GET", EIO)
            r = conn.getresponse()
            r.read()
            local[r.status] = local.get(r.status, 0) + 1
        conn.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(total // connections,)) for _ in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.monotonic() - started, "statuses": counts}


def run_flood(args) -> None:
    variants = [
        ("limits off (before)", ["--handshake-limit", "0", "--sessions-per-ip", "0"]),
        ("defaults (600/min, 256)", []),
    ]
    print(f"handshake flood: {args.handshakes} polling handshakes from 127.0.0.1 over 4 connections")
    print(
        f"{'variant':24} {'seconds':>7} {'RSS before':>10} {'after':>8} {'grown':>8}  answers; other address"
    )
    for name, extra in variants:
        with tempfile.TemporaryDirectory() as tmp, ServerProcess(tmp, *extra) as server:
            pid = server.proc.pid
            time.sleep(0.5)
            before = rss_kib(pid)
            r = flood(server.port, args.handshakes)
            after = rss_kib(pid)
            other = Poller(server.port, source="127.0.0.2")
            t0 = time.monotonic()
            status = other.handshake()[0]
            other_ms = (time.monotonic() - t0) * 1000
            other.close()
        print(
            f"{name:24} {r['seconds']:7.1f} {before / 1024:9.1f}M {after / 1024:7.1f}M {(after - before) / 1024:+7.1f}M"
            f"  {dict(sorted(r['statuses'].items()))}; handshake {status} in {other_ms:.1f} ms"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("slow")
    s.add_argument("--seconds", type=float, default=20.0)
    s.add_argument("--rate", type=float, default=300.0, help="orders/s (half of them trade)")
    f = sub.add_parser("flood")
    f.add_argument("--handshakes", type=int, default=12_000)
    args = ap.parse_args(argv)
    if args.what == "slow":
        run_slow(args)
    else:
        run_flood(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
