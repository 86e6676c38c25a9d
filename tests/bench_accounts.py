"""What accounts cost (a benchmark script that prints figures, asserts nothing
about speed), each comparison in one run with interleaved rounds and medians,
so that a busy machine disturbs both sides alike:

  engine  (ops per second of this process's CPU time, which the other
          processes of a shared machine disturb far less than wall time)
          the shared workload (../shared/bench/workload.py) through
          ``MatchingEngine.submit`` without accounts, and with two accounts
          alternating (op i belongs to account 1 + i % 2) and self-trade
          prevention ``cancel_taker`` (the default): one identity compare per
          fill, and the prevention itself where an order meets its own.
  rest    ``POST /order`` against two real servers at once, ``--auth off``
          and ``--auth on`` (each request with an ``X-API-Key``: buys with
          one account's key, sells with another's, so that orders trade
          instead of being cancelled by STP), from ``--clients`` processes
          each looping keep-alive ``http.client`` requests; plus the
          server's CPU time per request (from /proc).

    .venv/bin/python tests/bench_accounts.py [--part engine|rest|both] [--rounds 5]
        [--n 200000] [--duration 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from bench_engine import SHARED_BENCH, SYM, new_engine  # noqa: E402

from engine.errors import EngineError  # noqa: E402
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, NEW, PARTIALLY_FILLED, SELL  # noqa: E402

_SIDES = {"B": BUY, "S": SELL}
_TYPES = {"L": LIMIT, "M": MARKET, "I": IOC, "F": FOK}


# -- engine -------------------------------------------------------------------------
def run_engine(ops, accounts, funds: bool = False) -> tuple[float, dict]:
    """``accounts``: None (no owners), "alternate" (op i belongs to account
    1 + i % 2) or "by_side" (buys account 1, sells account 2: no order can
    meet its own, so the trades are those without accounts and the figure is
    the pure cost of owners). ``funds``: the engine keeps balances (both
    accounts funded far beyond what the workload spends, before the clock
    starts): every order locks, every fill settles, every cancel unlocks. The timed loops differ only in the owner
    argument: the ops are converted to the engine's enums and each op's owner
    chosen before the clock starts, and the STP count is taken afterwards."""
    rows = []
    for i, (kind, _sym, oid, side, price, qty) in enumerate(ops):
        if accounts == "by_side":
            owner = 1 if side == "B" else 2
        else:
            owner = 1 + (i & 1)
        rows.append(
            (kind == "C", oid, _SIDES[side], _TYPES.get(kind), None if kind == "M" else price, qty, owner)
        )
    engine = new_engine(funds=funds)
    if funds:
        for owner in (1, 2):
            engine.accounts.create(f"bench{owner}", 0, owner)
            for asset in engine.ledger.assets:
                engine.deposit(owner, asset, 10**18)  # 10 billion USDT at its scale of 8: never short
    submit = engine.submit
    cancel = engine.cancel
    ids = {}
    takers = []
    keep = takers.append
    gc.collect()
    t0 = time.process_time()  # CPU time: other processes on a shared machine disturb it least
    if accounts:
        for is_cancel, oid, side, order_type, price, qty, owner in rows:
            if is_cancel:
                order_id = ids.pop(oid, None)
                if order_id is not None:
                    try:
                        cancel(order_id)
                    except EngineError:
                        pass
                continue
            # positional, as the service calls it (api.service.Exchange._submit)
            r = submit(SYM, side, order_type, qty, price, None, None, None, None, owner)
            if r.status is NEW or r.status is PARTIALLY_FILLED:
                ids[oid] = r.order.order_id
            keep(r)
    else:
        for is_cancel, oid, side, order_type, price, qty, _owner in rows:
            if is_cancel:
                order_id = ids.pop(oid, None)
                if order_id is not None:
                    try:
                        cancel(order_id)
                    except EngineError:
                        pass
                continue
            r = submit(SYM, side, order_type, qty, price)
            if r.status is NEW or r.status is PARTIALLY_FILLED:
                ids[oid] = r.order.order_id
            keep(r)
    elapsed = time.process_time() - t0
    engine.check()
    trades = sum(len(r.trades) for r in takers)
    prevented = sum(r.order.cancel_reason == "self_trade" for r in takers)
    return len(ops) / elapsed, {"trades": trades, "stp_cancelled_takers": prevented}


def _shared_bench() -> str:
    """../shared/bench beside the project (or beside a worktree's parent)."""
    for path in (SHARED_BENCH, os.path.join(os.path.dirname(os.path.dirname(ROOT)), "shared", "bench")):
        if os.path.exists(os.path.join(path, "workload.py")):
            return path
    raise SystemExit(f"the shared workload is missing: {SHARED_BENCH}")


def bench_engine(n: int, rounds: int) -> None:
    sys.path.insert(0, _shared_bench())
    import workload as shared  # noqa: PLC0415

    ops, info = shared.generate(n, 42, 1)
    scenarios = {
        None: "no accounts",
        "alternate": "two accounts alternating, STP cancel_taker",
        "by_side": "buys one account, sells another",
        "alternate+funds": "two funded accounts alternating (balances)",
        "by_side+funds": "buys one funded account, sells another",
    }
    figures = {k: [] for k in scenarios}
    counts = {}
    for _ in range(rounds):
        for key in scenarios:
            accounts, _, funds = (key or "").partition("+")
            rate, c = run_engine(ops, accounts or None, funds=bool(funds))
            figures[key].append(rate)
            counts[key] = c
    base = statistics.median(figures[None])
    print(
        f"engine: shared workload, {len(ops)} ops, {rounds} interleaved rounds, medians of ops per CPU second"
    )
    for key, label in scenarios.items():
        rate = statistics.median(figures[key])
        print(
            f"  {label:<44} {rate:>9,.0f} ops/s  {rate / base:>6.1%}  trades {counts[key]['trades']:>6}  "
            f"takers cancelled by STP {counts[key]['stp_cancelled_takers']:>6}  "
            f"runs {[round(x) for x in figures[key]]}"
        )
    print(f"  (expected trades without accounts: {info['expected_trades']})")


# -- REST ---------------------------------------------------------------------------
def _client(port: int, keys: list[str | None], duration: float, out) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    bodies = [
        json.dumps(
            {
                "symbol": "BTC-USDT",
                "side": side,
                "order_type": "limit",
                "quantity": "0.01",
                "price": "30000.00",
            }
        ).encode()
        for side in ("buy", "sell")
    ]
    headers = []
    for key in keys:
        h = {"Content-Type": "application/json"}
        if key is not None:
            h["X-API-Key"] = key
        headers.append(h)
    n = bad = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        i = n & 1
        conn.request("POST", "/order", body=bodies[i], headers=headers[i])
        r = conn.getresponse()
        r.read()
        n += 1
        bad += r.status != 200
    out.put((n, bad))


def _load(port: int, keys, duration: float, clients: int) -> tuple[float, int, int]:
    queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_client, args=(port, keys, duration, queue)) for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    n = sum(r[0] for r in results)
    return n / duration, n, sum(r[1] for r in results)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_rest(rounds: int, duration: float, clients: int) -> None:
    from serverproc import ServerProcess  # noqa: PLC0415

    servers = []
    try:
        for mode in ("off", "on"):
            tmp = tempfile.mkdtemp(prefix=f"bench-auth-{mode}-")
            server = ServerProcess(tmp, "--auth", mode).start()
            keys = [None, None]
            if mode == "on":
                with open(os.path.join(tmp, "admin.token")) as f:
                    token = f.read().strip()
                keys = []
                conn = http.client.HTTPConnection("127.0.0.1", server.port)
                conn.request("GET", "/assets")
                assets = [a["asset"] for a in json.loads(conn.getresponse().read())["assets"]]
                for name in ("buyer", "seller"):
                    conn = http.client.HTTPConnection("127.0.0.1", server.port)
                    conn.request(
                        "POST",
                        "/admin/accounts",
                        # funded far beyond what the run spends (api/admin.py's LOAD_DEPOSIT)
                        body=json.dumps({"name": name, "deposits": dict.fromkeys(assets, "1000000000000")}),
                        headers={"Content-Type": "application/json", "X-Admin-Token": token},
                    )
                    keys.append(json.loads(conn.getresponse().read())["api_key"])
            servers.append((mode, tmp, server, keys))
        results: dict = {}
        for _ in range(rounds):
            for mode, _tmp, server, keys in servers:
                cpu0 = _cpu_seconds(server.proc.pid)
                rate, n, bad = _load(server.port, keys, duration, clients)
                cpu = (_cpu_seconds(server.proc.pid) - cpu0) / max(1, n) * 1e6
                results.setdefault(mode, []).append((rate, cpu, bad))
    finally:
        for _mode, tmp, server, _keys in servers:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"rest: POST /order, {clients} client processes, {rounds} interleaved rounds of {duration}s, medians"
    )
    med = {}
    for mode, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        med[mode] = (rate, cpu)
        print(
            f"  --auth {mode:<3}  {rate:>7,.0f} orders/s  server CPU {cpu:>5.0f} us/order  "
            f"non-200 {sum(r[2] for r in runs)}  runs {[round(r[0]) for r in runs]}"
        )
    paired = statistics.median(on[0] / off[0] for on, off in zip(results["on"], results["off"], strict=True))
    print(f"  median of the rounds' on/off ratios: {paired:.1%} of the orders/s")
    print(
        f"  ratio on/off: {med['on'][0] / med['off'][0]:.1%} of the orders/s, "
        f"{med['on'][1] / med['off'][1]:.1%} of the server CPU per order"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=("engine", "rest", "both"), default="both")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if args.part in ("engine", "both"):
        bench_engine(args.n, args.rounds)
    if args.part in ("rest", "both"):
        bench_rest(args.rounds, args.duration, args.clients)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
