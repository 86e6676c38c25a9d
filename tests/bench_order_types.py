"""Benchmarks of the order types beyond the four: prints figures, asserts nothing.

Scenarios (``--scenario``, default all but ``commits``):
  stops     the shared workload (../shared/bench/workload.py, 200,000 ops)
            on a fresh engine, alone and with 10,000 pending stops and
            take-profits far from the price (no trigger ever due), runs
            interleaved in one process: throughput with / without;
  cascade   one order triggers N stops (N = 1k, 2k, 5k, 10k), each a market
            sell that fills against one large bid: the triggering command's
            time, and per triggered stop (linear means flat per stop);
  commits   the shared workload through ``tests/bench_adapter.py`` of this
            tree and of ``--old-tree`` (e.g. a ``git worktree`` of the commit
            before this work), each run in its own process by
            the same loop as ../shared/bench/bench.py (warm-up, then the stream,
            results checked against the expected counts), alternating: old / new.

Throughput is ops per second of CPU time (``time.process_time``): on a shared
machine wall-clock time mostly measures the other jobs.

    python tests/bench_order_types.py [--reps 5] [--scenario stops|cascade|commits]
                                      [--old-tree /tmp/old]

The machine may be shared: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.matcher import MatchingEngine  # noqa: E402
from engine.order import BUY, LIMIT, MARKET, SELL, STOP_LOSS, TAKE_PROFIT  # noqa: E402
from tests.bench_engine import (  # noqa: E402  (the shared workload's finder, engine and driver)
    SHARED_BENCH,
    SYM,
    WorkloadState,
    apply_workload,
    new_engine,
)


def shared_ops(n: int):
    sys.path.insert(0, SHARED_BENCH)
    import workload as shared  # noqa: PLC0415

    ops, info = shared.generate(n, 42, 1)
    return ops, info


def far_stops(engine: MatchingEngine, count: int) -> None:
    """``count`` pending orders far from the workload's price (~100000 ticks):
    sell stops and buy take-profits at 1..5000 ticks (trigger on a fall that
    never comes), buy stops and sell take-profits at 10**7.. (a rise)."""
    for i in range(count):
        low, high = 1 + i % 5000, 10**7 + i % 5000
        kind = i % 4
        if kind == 0:
            engine.submit_extended(SYM, SELL, STOP_LOSS, 10, stop_price=low)
        elif kind == 1:
            engine.submit_extended(SYM, BUY, TAKE_PROFIT, 10, stop_price=low)
        elif kind == 2:
            engine.submit_extended(SYM, BUY, STOP_LOSS, 10, stop_price=high)
        else:
            engine.submit_extended(SYM, SELL, TAKE_PROFIT, 10, stop_price=high)


def run_workload(ops, stops: int) -> float:
    engine = new_engine()
    if stops:
        far_stops(engine, stops)
    state = WorkloadState(engine)
    gc.collect()
    t0 = time.process_time()  # CPU time: other jobs on a shared machine do not count
    for op in ops:
        apply_workload(engine, state, op)
    elapsed = time.process_time() - t0
    assert len(engine.market(SYM).stops.orders) == stops
    return len(ops) / elapsed


def scenario_stops(reps: int, n: int, count: int) -> dict:
    ops, info = shared_ops(n)
    without, with_stops = [], []
    for _ in range(reps):  # interleaved: drift in the machine's load hits both alike
        without.append(run_workload(ops, 0))
        with_stops.append(run_workload(ops, count))
    a, b = statistics.median(without), statistics.median(with_stops)
    return {
        "scenario": f"shared workload with {count:,} far pending stops (median of {reps})",
        "ops": len(ops),
        "without_ops_per_s": round(a),
        "with_ops_per_s": round(b),
        "ratio": round(b / a, 3),
        "all_runs_without": [round(x) for x in without],
        "all_runs_with": [round(x) for x in with_stops],
    }


def cascade_once(count: int) -> tuple[float, int]:
    engine = new_engine()
    engine.submit(SYM, SELL, LIMIT, 1, 100_000)
    engine.submit(SYM, BUY, LIMIT, 1, 100_000)  # last price 100000
    for i in range(count):  # distinct-ish stop prices 99000..99999, ten per price at 10k
        engine.submit_extended(SYM, SELL, STOP_LOSS, 1, stop_price=99_000 + i % 1000)
    engine.submit(SYM, BUY, LIMIT, count, 90_000)  # what the stops sell into
    engine.submit(SYM, BUY, LIMIT, 1, 98_000)
    gc.collect()
    t0 = time.perf_counter()
    result = engine.submit(SYM, SELL, MARKET, 1)  # prints at 98000: every stop triggers
    elapsed = time.perf_counter() - t0
    assert len(result.triggered) == count, len(result.triggered)
    engine.check()
    return elapsed, len(result.triggered)


def scenario_cascade(reps: int, sizes=(1000, 2000, 5000, 10000)) -> list[dict]:
    out = []
    for size in sizes:
        times = [cascade_once(size)[0] for _ in range(reps)]
        t = statistics.median(times)
        out.append(
            {
                "scenario": f"cascade: one order triggers {size:,} stops (median of {reps})",
                "ms": round(t * 1000, 2),
                "us_per_stop": round(t / size * 1e6, 2),
            }
        )
    return out


_TREE_RUN = """
import gc, importlib.util, sys, time
tree, shared, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, shared)
import workload
spec = importlib.util.spec_from_file_location("adapter", tree + "/tests/bench_adapter.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
ops, info = workload.generate(n, 42, 1)
warm = module.Adapter(1)
for op in workload.generate(20000, 7, 1)[0]:
    warm.submit(op)
adapter = module.Adapter(1)
gc.collect()
t0 = time.process_time()
for op in ops:
    adapter.submit(op)
elapsed = time.process_time() - t0
assert adapter.result() == {"trades": info["expected_trades"], "volume": info["expected_volume_lots"]}
print(len(ops) / elapsed)
"""


def bench_tree(tree: str, n: int) -> float:
    """The shared workload through ``tree``'s ``tests/bench_adapter.py`` in a
    fresh process (its own engine package), after a warm-up; CPU time."""
    cmd = [sys.executable, "-c", _TREE_RUN, tree, SHARED_BENCH, str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tree).stdout
    return float(out.split()[-1])


def scenario_commits(reps: int, n: int, old_tree: str) -> dict:
    old, new = [], []
    for _ in range(reps):
        old.append(bench_tree(old_tree, n))
        new.append(bench_tree(ROOT, n))
    a, b = statistics.median(old), statistics.median(new)
    return {
        "scenario": f"shared workload, commit before this work vs now (median of {reps})",
        "old_tree": old_tree,
        "old_ops_per_s": round(a),
        "new_ops_per_s": round(b),
        "ratio": round(b / a, 3),
        "all_runs_old": [round(x) for x in old],
        "all_runs_new": [round(x) for x in new],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=("stops", "cascade", "commits"), action="append")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=200_000, help="workload operations")
    ap.add_argument("--stops", type=int, default=10_000)
    ap.add_argument("--old-tree", help="a checkout of the commit to compare with (scenario commits)")
    args = ap.parse_args()
    chosen = args.scenario or ["stops", "cascade"] + (["commits"] if args.old_tree else [])
    results = []
    if "stops" in chosen:
        results.append(scenario_stops(args.reps, args.n, args.stops))
    if "cascade" in chosen:
        results += scenario_cascade(args.reps)
    if "commits" in chosen:
        if not args.old_tree:
            ap.error("--scenario commits needs --old-tree")
        results.append(scenario_commits(args.reps, args.n, args.old_tree))
    print(
        f"# order types benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    for r in results:
        name = r.pop("scenario")
        print(f"{name}\n    " + ", ".join(f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
