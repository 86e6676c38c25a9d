"""A client that polls one GET endpoint at a fixed rate over one keep-alive
connection, for the "one client polls an expensive read while others trade"
measurement in Documentation/PERFORMANCE.md (*Public reads*). Loopback only; it
stops by itself after ``--duration``.

    .venv/bin/python tests/api/poll_endpoint.py --url http://127.0.0.1:5000/statistics \\
        --rate 160 --duration 25

160/s is within the default rate limit (10,000 a minute). Prints the requests
answered, the achieved rate and the poller's own p50/p99 latency.
"""

from __future__ import annotations

import argparse
import http.client
import time
from urllib.parse import urlsplit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:5000/statistics")
    p.add_argument("--rate", type=float, default=160.0)
    p.add_argument("--duration", type=float, default=25.0)
    args = p.parse_args()
    url = urlsplit(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    path = url.path + (f"?{url.query}" if url.query else "")
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    interval = 1.0 / args.rate
    start = time.perf_counter()
    end = start + args.duration
    latencies = []
    statuses: dict[int, int] = {}
    n = 0
    while True:
        due = start + n * interval
        now = time.perf_counter()
        if due >= end:
            break
        if due > now:
            time.sleep(due - now)
        t0 = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t0)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        n += 1
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(
        f"{path}: {n} requests in {elapsed:.1f} s ({n / elapsed:.0f}/s), statuses {statuses}, "
        f"p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms"
    )


if __name__ == "__main__":
    main()
