"""Connections held by a real server, and what they cost (a benchmark script, not
a test): the server's RSS and open descriptors with N idle TCP connections
and with M upgraded Engine.IO WebSockets, and the latency of ``GET /health``
and ``POST /order`` from another address while they are held, against the
same server before it holds them.

    .venv/bin/python tests/bench_connections.py [--idle 10000] [--websockets 2000]
        [--per-address 100] [--samples 200] [--async-mode eventlet|threading]
    .venv/bin/python tests/bench_connections.py --overhead REV [--rounds 5] [--duration 3]

``--overhead REV`` measures instead what the HTTP layer costs per request: the
server of git revision REV (``git archive`` into a temporary directory) and
this tree's, side by side, in interleaved rounds of one keep-alive
``http.client`` connection on ``GET /health`` and ``POST /order``; medians of
req/s and of the server's CPU time per request (from /proc).

Idle connections are spread over loopback source addresses (127.0.1.x, ...),
``--per-address`` each, under the server's per-address cap (default 256).
The client process raises its own RLIMIT_NOFILE soft limit to the hard one.
Everything talks to 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.serverproc import ServerProcess  # noqa: E402

ORDER = b'{"symbol":"BTC-USDT","side":"buy","order_type":"limit","quantity":"0.01","price":"100.00"}'
WS_UPGRADE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def source_address(i: int, per_address: int) -> str:
    n = i // per_address
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def request(port: int, data: bytes) -> float:
    """One request on a new connection from 127.0.0.1; its wall time in ms."""
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"closed: {got!r}")
            got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head)
        length = int(
            next(
                v
                for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            )
        )
        while len(body) < length:
            body += s.recv(65536)
    return (time.perf_counter() - t) * 1000


def latencies(port: int, samples: int) -> dict:
    health = b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    order = (
        b"POST /order HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(ORDER), ORDER)
    )
    out = {}
    for name, data in (("health", health), ("order", order)):
        ms = sorted(request(port, data) for _ in range(samples))
        out[name] = {"p50": round(statistics.median(ms), 2), "p99": round(ms[int(len(ms) * 0.99) - 1], 2)}
    return out


def open_idle(port: int, n: int, per_address: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((source_address(i, per_address), 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def open_websockets(port: int, n: int, per_address: int, offset: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((source_address(offset + i, per_address), 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        s.sendall(WS_UPGRADE)
        reply = s.recv(4096)
        if not reply.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"websocket {i}: {reply[:200]!r}")
        socks.append(s)
    return socks


def settle(pid: int, want_fds: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while fds(pid) < want_fds and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def keepalive_loop(port: int, method: str, path: str, body: bytes | None, seconds: float) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body else {}
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status}")
        n += 1
    conn.close()
    return n


def overhead(rev: str, rounds: int, seconds: float, async_mode: str) -> int:
    tmp = tempfile.mkdtemp(prefix="bench-conn-")
    old_tree = os.path.join(tmp, "tree")
    os.makedirs(old_tree)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", old_tree], input=archive, check=True)
    servers = []
    try:
        for label, script in ((rev, os.path.join(old_tree, "api", "app.py")), ("this tree", None)):
            data = os.path.join(tmp, f"data-{len(servers)}")
            servers.append((label, ServerProcess(data, "--async-mode", async_mode, script=script).start()))
        cases = (("GET /health", "GET", "/health", None), ("POST /order", "POST", "/order", ORDER))
        runs: dict = {}
        for _ in range(rounds):
            for label, server in servers:
                for name, method, path, body in cases:
                    cpu0 = cpu_seconds(server.proc.pid)
                    n = keepalive_loop(server.port, method, path, body, seconds)
                    cpu = (cpu_seconds(server.proc.pid) - cpu0) / n * 1e6
                    runs.setdefault((label, name), []).append((n / seconds, cpu))
    finally:
        for _label, server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"async_mode={async_mode}; {rounds} interleaved rounds of {seconds:g} s, one keep-alive connection; medians"
    )
    for name in ("GET /health", "POST /order"):
        base = None
        for label, _server in servers:
            rps = statistics.median(r for r, _ in runs[(label, name)])
            cpu = statistics.median(c for _, c in runs[(label, name)])
            base = base or (rps, cpu)
            print(
                f"{name:<12} {label:<10} {rps:>7.0f} req/s ({rps / base[0]:>4.0%})  "
                f"server CPU {cpu:>5.0f} us/req ({cpu / base[1]:>4.0%})"
            )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=10_000, help="idle TCP connections (default 10000)")
    ap.add_argument("--websockets", type=int, default=2_000, help="Engine.IO WebSockets (default 2000)")
    ap.add_argument(
        "--per-address", type=int, default=100, help="connections per source address (default 100)"
    )
    ap.add_argument("--samples", type=int, default=200, help="requests per latency figure (default 200)")
    ap.add_argument("--async-mode", choices=("eventlet", "threading"), default="eventlet")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--overhead", metavar="REV", help="per-request cost against git revision REV instead")
    ap.add_argument("--rounds", type=int, default=5, help="--overhead: interleaved rounds (default 5)")
    ap.add_argument("--duration", type=float, default=3.0, help="--overhead: seconds per run (default 3)")
    args = ap.parse_args()
    if args.overhead:
        return overhead(args.overhead, args.rounds, args.duration, args.async_mode)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.websockets + 512
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    with tempfile.TemporaryDirectory() as tmp:
        cap = str(
            args.idle + args.websockets + 64
        )  # the default, 10,000, would refuse the measuring requests
        server = ServerProcess(
            tmp,
            "--async-mode",
            args.async_mode,
            "--idle-timeout",
            "600",
            "--max-connections",
            cap,
            timeout=60,
        )
        server.start()
        pid = server.proc.pid
        try:
            latencies(server.port, 20)  # warm up
            base_fds, base_rss = fds(pid), rss_kb(pid)
            base = latencies(server.port, args.samples)
            result = {
                "async_mode": args.async_mode,
                "baseline": {"rss_kb": base_rss, "fds": base_fds, **base},
            }
            t = time.monotonic()
            idle = open_idle(server.port, args.idle, args.per_address)
            settle(pid, base_fds + args.idle)
            opened = time.monotonic() - t
            idle_rss, idle_fds = rss_kb(pid), fds(pid)
            result["idle"] = {
                "connections": args.idle,
                "open_seconds": round(opened, 1),
                "server_fds": idle_fds,
                "rss_kb": idle_rss,
                "kb_per_connection": round((idle_rss - base_rss) / max(1, args.idle), 2),
                **latencies(server.port, args.samples),
            }
            ws = []
            if args.websockets:
                ws = open_websockets(server.port, args.websockets, args.per_address, args.idle)
                settle(pid, idle_fds + args.websockets)
                ws_rss = rss_kb(pid)
                result["websockets"] = {
                    "connections": args.websockets,
                    "rss_kb": ws_rss,
                    "kb_per_connection": round((ws_rss - idle_rss) / args.websockets, 2),
                    **latencies(server.port, args.samples),
                }
            for s in idle + ws:
                s.close()
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    print()
    print(
        f"{'state':<28} {'server RSS MB':>13} {'KB/conn':>8} {'health p50/p99 ms':>18} {'order p50/p99 ms':>17}"
    )
    for key, label in (("baseline", "no extra connections"), ("idle", f"+{args.idle} idle TCP"),
                       ("websockets", f"+{args.websockets} WebSockets")):  # fmt: skip
        if key not in result:
            continue
        r = result[key]
        per = f"{r['kb_per_connection']:.1f}" if "kb_per_connection" in r else "-"
        print(
            f"{label:<28} {r['rss_kb'] / 1024:>13.1f} {per:>8} "
            f"{r['health']['p50']:>8} / {r['health']['p99']:<7} {r['order']['p50']:>7} / {r['order']['p99']:<7}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
