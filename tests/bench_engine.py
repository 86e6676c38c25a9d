"""Engine benchmark (``make bench``): prints figures, asserts nothing about speed.

Scenarios, each on a fresh engine, single thread, GC enabled:
  workload   the seeded shared stream (../shared/bench/workload.py, 200,000 ops:
             60% limit around a random-walking mid, 25% cancels, 10% market,
             5% IOC/FOK), with the bare RefBook run beside it for a ratio;
  deep       a static book of 5,000 price levels per side (4 orders each),
             then 200,000 ops: 50% cancels, 40% passive adds anywhere in the
             book, 10% small marketable orders;
  sweeps     a ladder of 100 levels x 5 makers refilled and swept by one
             market order, over and over (500 fills per sweep);
  same-price one order taking N makers at one price, N = 1,000 .. 20,000:
             ns per fill must stay flat (linear cost);
  memory     RSS growth for 1,000,000 resting orders (in a subprocess).

Each scenario prints ops/s and per-op latency p50 / p99 / p99.9 (a second,
separately timed pass so that timing overhead does not depress throughput).

    python tests/bench_engine.py [--n 200000] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ../shared/bench next to the checkout (or next to its parent: a worktree under wt/)
SHARED_BENCH = next(
    (
        path
        for path in (
            os.path.join(os.path.dirname(d), "shared", "bench") for d in (ROOT, os.path.dirname(ROOT))
        )
        if os.path.exists(os.path.join(path, "workload.py"))
    ),
    os.path.join(os.path.dirname(ROOT), "shared", "bench"),
)
sys.path.insert(0, ROOT)

from decimal import Decimal  # noqa: E402

from engine.errors import EngineError  # noqa: E402
from engine.matcher import MatchingEngine  # noqa: E402
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, NEW, PARTIALLY_FILLED, SELL  # noqa: E402
from engine.symbols import SymbolSpec  # noqa: E402

SYM = "BENCH-USDT"


def new_engine(funds: bool = False) -> MatchingEngine:
    return MatchingEngine([SymbolSpec(SYM, "BENCH", "USDT", Decimal("0.01"), Decimal("0.001"))], funds=funds)


def percentile(sorted_values: list[int], p: float) -> int:
    i = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[i]


def measure(name: str, make_ops, apply, setup=None) -> dict:
    """Throughput pass, then a latency pass, each on a fresh engine."""
    figures = {"scenario": name}
    for phase in ("throughput", "latency"):
        engine = new_engine()
        state = setup(engine) if setup else None
        ops = make_ops()
        gc.collect()
        if phase == "throughput":
            t0 = time.perf_counter()
            for op in ops:
                apply(engine, state, op)
            elapsed = time.perf_counter() - t0
            figures.update(ops=len(ops), seconds=round(elapsed, 4), ops_per_s=round(len(ops) / elapsed))
        else:
            clock = time.perf_counter_ns
            lat = []
            record = lat.append
            for op in ops:
                t = clock()
                apply(engine, state, op)
                record(clock() - t)
            lat.sort()
            figures.update(
                p50_us=round(percentile(lat, 50) / 1000, 2),
                p99_us=round(percentile(lat, 99) / 1000, 2),
                p999_us=round(percentile(lat, 99.9) / 1000, 2),
                max_us=round(lat[-1] / 1000, 1),
            )
        engine.check()
    return figures


# -- the shared workload ------------------------------------------------------------
_SIDES = {"B": BUY, "S": SELL}
_TYPES = {"L": LIMIT, "M": MARKET, "I": IOC, "F": FOK}


class WorkloadState:
    __slots__ = ("ids", "trades", "volume")

    def __init__(self, engine):
        self.ids = {}
        self.trades = 0
        self.volume = 0


def apply_workload(engine, state, op):
    kind, _sym, oid, side, price, qty = op
    if kind == "C":
        order_id = state.ids.pop(oid, None)
        if order_id is not None:
            try:
                engine.cancel(order_id)
            except EngineError:
                pass
        return
    result = engine.submit(SYM, _SIDES[side], _TYPES[kind], qty, None if kind == "M" else price)
    status = result.status
    if status is NEW or status is PARTIALLY_FILLED:  # it rests: remember its engine id
        state.ids[oid] = result.order.order_id
    if result.trades:
        state.trades += len(result.trades)
        state.volume += result.filled


def workload(n: int) -> list[dict]:
    if not os.path.exists(os.path.join(SHARED_BENCH, "workload.py")):
        print(f"(skipping the shared workload: {SHARED_BENCH} not found)")
        return []
    sys.path.insert(0, SHARED_BENCH)
    import workload as shared  # noqa: PLC0415

    ops, info = shared.generate(n, 42, 1)
    out = []
    figures = measure("workload", lambda: ops, apply_workload, WorkloadState)
    # correctness of the throughput pass: rerun to count (cheap next to the rest)
    engine = new_engine()
    state = WorkloadState(engine)
    for op in ops:
        apply_workload(engine, state, op)
    figures.update(
        trades=state.trades,
        volume_lots=state.volume,
        expected_trades=info["expected_trades"],
        expected_volume_lots=info["expected_volume_lots"],
        correct=(state.trades, state.volume) == (info["expected_trades"], info["expected_volume_lots"]),
    )
    out.append(figures)

    ref = shared.RefBook()
    gc.collect()
    t0 = time.perf_counter()
    for op in ops:
        ref.apply(op)
    elapsed = time.perf_counter() - t0
    out.append(
        {
            "scenario": "workload: RefBook (bare 150-line book, counts only)",
            "ops": len(ops),
            "ops_per_s": round(len(ops) / elapsed),
        }
    )
    return out


# -- deep book -------------------------------------------------------------------
def deep(n: int) -> dict:
    levels = 5000
    mid = 1_000_000

    def setup(engine):
        rng = random.Random(7)
        resting = []
        for i in range(1, levels + 1):
            for _ in range(4):
                resting.append(engine.submit(SYM, BUY, LIMIT, rng.randint(1, 50), mid - i).order.order_id)
                resting.append(engine.submit(SYM, SELL, LIMIT, rng.randint(1, 50), mid + i).order.order_id)
        return resting

    def make_ops():
        rng = random.Random(11)
        ops = []
        for _ in range(n):
            r = rng.random()
            if r < 0.5:
                ops.append(("C", rng.random()))
            elif r < 0.9:
                side = BUY if rng.random() < 0.5 else SELL
                offset = rng.randint(1, levels)
                ops.append(("L", side, mid - offset if side is BUY else mid + offset, rng.randint(1, 50)))
            else:
                ops.append(("M", BUY if rng.random() < 0.5 else SELL, rng.randint(1, 40)))
        return ops

    def apply(engine, resting, op):
        kind = op[0]
        if kind == "C":
            if resting:
                i = int(op[1] * len(resting))
                order_id = resting[i]
                resting[i] = resting[-1]
                resting.pop()
                try:
                    engine.cancel(order_id)
                except EngineError:
                    pass  # filled meanwhile
        elif kind == "L":
            resting.append(engine.submit(SYM, op[1], LIMIT, op[3], op[2]).order.order_id)
        else:
            engine.submit(SYM, op[1], MARKET, op[2])

    figures = measure("deep book (5,000 levels a side, 50% cancels)", make_ops, apply, setup)
    figures["resting_at_start"] = levels * 8
    return figures


# -- sweeps -------------------------------------------------------------------------
def sweeps(n: int) -> dict:
    per_sweep = 100 * 5 + 1
    count = max(1, n // per_sweep)

    def make_ops():
        ops = []
        for _ in range(count):
            for level in range(100):
                for _ in range(5):
                    ops.append(("L", 1_000_000 + level))
            ops.append(("M", 500 * 3))
        return ops

    def apply(engine, _state, op):
        if op[0] == "L":
            engine.submit(SYM, SELL, LIMIT, 3, op[1])
        else:
            result = engine.submit(SYM, BUY, MARKET, op[1])
            assert len(result.trades) == 500

    figures = measure("sweeps (100 levels x 5 makers, one market order)", make_ops, apply)
    figures["fills_per_sweep"] = 500
    return figures


def same_price(sizes=(1000, 5000, 20000)) -> list[dict]:
    out = []
    for size in sizes:
        engine = new_engine()
        for _ in range(size):
            engine.submit(SYM, SELL, LIMIT, 1, 1_000_000)
        gc.collect()
        t0 = time.perf_counter_ns()
        result = engine.submit(SYM, BUY, MARKET, size)
        elapsed = time.perf_counter_ns() - t0
        assert len(result.trades) == size and result.filled == size
        out.append(
            {
                "scenario": f"one order takes {size:,} makers at one price",
                "fills": size,
                "ms": round(elapsed / 1e6, 2),
                "ns_per_fill": round(elapsed / size),
            }
        )
    return out


# -- memory --------------------------------------------------------------------------
def memory(count: int) -> dict:
    code = (
        "import sys, random, resource\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from tests.bench_engine import new_engine, SYM\n"
        "from engine.order import BUY, SELL, LIMIT\n"
        "def rss():\n"
        "    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * 4096\n"
        "engine = new_engine(); rng = random.Random(3)\n"
        "before = rss()\n"
        f"for i in range({count}):\n"
        "    side = BUY if i % 2 else SELL\n"
        "    price = 1_000_000 - rng.randint(1, 20000) if side is BUY else 1_000_000 + rng.randint(1, 20000)\n"
        "    engine.submit(SYM, side, LIMIT, rng.randint(1, 50), price)\n"
        "after = rss()\n"
        "print(len(engine.market(SYM).book.orders), after - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    resting, grown = map(int, out.stdout.split())
    return {
        "scenario": f"memory: {resting:,} resting orders",
        "resting": resting,
        "rss_growth_mib": round(grown / 2**20, 1),
        "bytes_per_order": round(grown / resting),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="operations per scenario")
    ap.add_argument("--memory-orders", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.n, args.memory_orders = 20_000, 50_000

    results = []
    results += workload(args.n)
    results.append(deep(args.n))
    results.append(sweeps(args.n))
    results += same_price((1000, 5000) if args.quick else (1000, 5000, 20000))
    results.append(memory(args.memory_orders))

    print(
        f"# engine benchmark: Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    )
    for r in results:
        name = r.pop("scenario")
        print(f"{name}\n    " + ", ".join(f"{k}={v}" for k, v in r.items()))
        r["scenario"] = name
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
