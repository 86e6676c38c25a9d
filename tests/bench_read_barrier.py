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
        "cpu_us": summary.get("server_cpu_us_per_request") or float("nan"),
        "errors": summary.get("errors", 0),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reads(port: int, pid: int, duration: float, threads: int = 8) -> tuple[float, float]:
    """GET /book/BTC-USDT flat out over keep-alive connections: answers/s
    and the server's CPU per answer (us)."""
    cpu0 = cpu_seconds(pid)
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
    answered = sum(counts)
    return answered / duration, (cpu_seconds(pid) - cpu0) / max(1, answered) * 1e6


def micro(n: int = 200_000) -> None:
    """The barrier's common case in process: ``Store.wait_symbol`` on a
    durable symbol, and ``Exchange.book`` with and without the barrier."""
    import timeit

    from api.service import Exchange
    from engine.matcher import MatchingEngine
    from engine.order import BUY, LIMIT
    from storage import Store

    with tempfile.TemporaryDirectory() as tmp:
        engine = MatchingEngine()
        store = Store(tmp, fsync="off")
        store.recover(engine)
        for i in range(50):
            with engine.lock("BTC-USDT"):
                store.wait(store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 100 + i)))
        with_barrier = Exchange(engine, store=store)
        without = Exchange(engine)
        cases = (
            ("Store.wait_symbol (durable)", lambda: store.wait_symbol("BTC-USDT", 2.0)),
            ("Exchange._visible (durable)", lambda: with_barrier._visible("BTC-USDT")),
            ("Exchange.book, barrier", lambda: with_barrier.book("BTC-USDT", 10)),
            ("Exchange.book, no store", lambda: without.book("BTC-USDT", 10)),
        )
        best = {label: float("inf") for label, _ in cases}
        for _ in range(5):  # interleaved: a busy machine slows them alike
            for label, stmt in cases:
                best[label] = min(best[label], timeit.timeit(stmt, number=n // 5) / (n // 5))
        for label, seconds in best.items():
            print(f"micro  {label:<30} {seconds * 1e9:8.0f} ns per call")
        store.close(engine)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="a checkout of the code before the barrier")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    args = p.parse_args()
    micro()
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
                    book, book_cpu = reads(server.port, server.proc.pid, args.duration / 2)
            row = {
                "orders_per_s": flat["orders_per_s"],
                "cpu_us": flat["cpu_us"],
                "p99_max_ms": flat["p99_ms"],
                "p50_500_ms": fixed["p50_ms"],
                "p99_500_ms": fixed["p99_ms"],
                "book_per_s": book,
                "book_cpu_us": book_cpu,
                "errors": flat["errors"] + fixed["errors"],
            }
            results[name].append(row)
            print(
                f"round {rnd + 1} {name:<6} flat out {row['orders_per_s']:7,.0f} orders/s "
                f"{row['cpu_us']:5.0f} us CPU/order p99 {row['p99_max_ms']:7.1f} ms | 500/s p50 "
                f"{row['p50_500_ms']:.2f} p99 {row['p99_500_ms']:.2f} ms | GET /book {row['book_per_s']:6,.0f}/s "
                f"{row['book_cpu_us']:5.0f} us CPU | errors {row['errors']}",
                flush=True,
            )
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"median {name:<6} flat out {med['orders_per_s']:7,.0f} orders/s {med['cpu_us']:5.0f} us CPU/order "
            f"p99 {med['p99_max_ms']:7.1f} ms | 500/s p50 {med['p50_500_ms']:.2f} p99 {med['p99_500_ms']:.2f} ms "
            f"| GET /book {med['book_per_s']:6,.0f}/s {med['book_cpu_us']:5.0f} us CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
