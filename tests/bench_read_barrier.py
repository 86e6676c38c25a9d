"""The read barrier's cost end to end: the same load against a server of an
older checkout (before the barrier) and of this one, in alternation, each on
a fresh data dir (a benchmark script that prints figures, not a test).

    git archive 69f47f4 | tar -x -C /tmp/old        # the commit before the barrier
    .venv/bin/python tests/bench_read_barrier.py --old /tmp/old [--rounds 3] [--duration 8]

Per round and variant: ``tests/advanced_load_test.py --rate max`` (REST
orders flat out, its default 64 connections) and ``--rate 500`` (latency at a
fixed offered rate), and ``GET /book`` flat out from 8 threads with
keep-alive (a read pays the barrier's compare). Prints one line per run and
the medians. The machine is shared: compare within a round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.serverproc import ROOT, ServerProcess  # noqa: E402


def load(url: str, rate: str, duration: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "tests", "advanced_load_test.py"),
                "--url",
                url,
                "--rate",
                rate,
                "--duration",
                str(duration),
                "--no-progress",
                "--json",
                out.name,
            ],
            check=False,
            capture_output=True,
        )
        data = json.load(open(out.name))
    phase = data["phases"][-1] if "phases" in data else data
    summary = phase.get("summary", phase)
    return {
        "orders_per_s": summary["achieved_rate"],
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "errors": summary.get("errors", 0),
    }


def reads(port: int, duration: float, threads: int = 8) -> float:
    """GET /book/BTC-USDT flat out over keep-alive connections: answers/s."""
    stop = time.monotonic() + duration
    counts = [0] * threads

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            conn.request("GET", "/book/BTC-USDT")
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                counts[i] += 1
        conn.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / duration


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="a checkout of the code before the barrier")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    args = p.parse_args()
    variants = {
        "before": os.path.join(args.old, "api", "app.py"),
        "after": os.path.join(ROOT, "api", "app.py"),
    }
    results: dict = {name: [] for name in variants}
    for rnd in range(args.rounds):
        for name, script in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                with ServerProcess(os.path.join(tmp, "data"), script=script) as server:
                    flat = load(server.url, "max", args.duration)
                with ServerProcess(os.path.join(tmp, "data2"), script=script) as server:
                    fixed = load(server.url, "500", args.duration)
                    book = reads(server.port, args.duration / 2)
            row = {
                "orders_per_s": flat["orders_per_s"],
                "p99_max_ms": flat["p99_ms"],
                "p50_500_ms": fixed["p50_ms"],
                "p99_500_ms": fixed["p99_ms"],
                "book_per_s": book,
                "errors": flat["errors"] + fixed["errors"],
            }
            results[name].append(row)
            print(
                f"round {rnd + 1} {name:<6} flat out {row['orders_per_s']:7,.0f} orders/s p99 "
                f"{row['p99_max_ms']:7.1f} ms | 500/s p50 {row['p50_500_ms']:.2f} p99 {row['p99_500_ms']:.2f} ms "
                f"| GET /book {row['book_per_s']:6,.0f}/s | errors {row['errors']}",
                flush=True,
            )
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"median {name:<6} flat out {med['orders_per_s']:7,.0f} orders/s p99 {med['p99_max_ms']:7.1f} ms | "
            f"500/s p50 {med['p50_500_ms']:.2f} p99 {med['p99_500_ms']:.2f} ms | GET /book {med['book_per_s']:6,.0f}/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
