"""Durability benchmark: what the journal costs, and how long a restart takes.

    .venv/bin/python tests/bench_durability.py [--n 200000] [--restart-n 1000000] [--quick]
    .venv/bin/python tests/bench_durability.py --green --only throughput --server 1024 ...
    .venv/bin/python tests/bench_durability.py --only restart --funds [--repeat 3]

Part 1, throughput (engine level, one process, the shared workload from
``../shared/bench/workload.py``): the same op stream is applied through
``engine.submit``/``cancel`` with no journal, and with ``Store`` under each
fsync policy, in one run. Each op is what the service does per request::

    with engine.lock(symbol): result = engine.submit(...); ticket = store.log_submit(result)
    store.wait(ticket)

Three ways to drive it, because group commit only groups what is concurrent:
  * ``sequential``  wait after every op: one client, one request in flight.
                    With ``batch`` every op pays its own fsync.
  * ``pipelined K`` K ops, then wait for the last ticket: K requests in flight
                    (what an event loop holding K connections sees).
  * ``overlapped K`` K requests in flight while the previous group is being
                    fsynced by a committer thread: the service under eventlet,
                    whose commit leader fsyncs in a real OS thread.
  * ``threads T``   T threads, each a client with its own slice of the stream
                    and one request in flight; the commit leader's fsync
                    releases the GIL, the others append meanwhile.
  * ``server K``    the server's shape for the writer process: one OS thread
                    matches; after each group of K it hands the group to the
                    writer process (``Store.hand_off``) and waits only for the
                    group before last. With ``--green`` (eventlet monkey-
                    patched first, as ``api/app.py`` does) the acks are read
                    by a green thread, as in the server: no second OS thread
                    in the engine's process. Without it, by an OS thread.
                    (With the inline writer it is ``pipelined K``.)

Writers: ``--writer process inline`` (default both) runs ``batch`` and
``always`` with each (``Store(writer=...)``); ``off`` runs with its default,
inline. ``--green`` applies to every driver (``overlapped`` then has a green
committer whose inline fsync goes through ``tpool``, as in the server).

Each cell is the best of ``--repeat`` runs, the modes interleaved in every
round so that the machine's noise hits them alike; ``paired`` is the median,
over the rounds, of the cell's rate over the no-journal rate of the same
round. ``cpu`` is the least process CPU time (``time.process_time``, every
thread) per op of any run, and ``journal`` its difference to the no-journal
run: steadier than the rates on a shared machine; ``writer process`` the
child's CPU per op (``RUSAGE_CHILDREN``; its ~30 ms start included).

Part 2, restart: a data dir holding ``--restart-n`` journaled commands
(default 1,000,000), recovered with the default snapshot interval (the normal
case) and with snapshots off (full replay, the worst case). ``--funds`` adds
the same with balances (``MatchingEngine(funds=True)``): two funded accounts
alternating on the shared workload (op i belongs to account 1 + i % 2, as in
``tests/bench_accounts.py``; self-trade prevention ``cancel_taker``, which
cancels the takers that meet their own account's orders: about half the
trades), or with ``--owners by_side`` buys of one and sells of the other (no
order meets its own: the trades of no funds), funded
far beyond what they can lock, and every 1,000 ops a deposit or a withdrawal
(``d``/``w`` records); the four data dirs are built first and their
recoveries interleaved, so that the ratio funds / no funds is of one moment.
Each data dir's commands are generated until exactly ``--restart-n`` records
are journaled (a cancel of an order that filled first journals nothing).
"""

from __future__ import annotations

import sys

if "--green" in sys.argv:  # before anything imports threading: as api/app.py does
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from decimal import Decimal  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(os.path.dirname(ROOT), "shared", "bench"))
sys.path.insert(0, "/work/shared/bench")

from workload import generate  # noqa: E402

from engine.errors import EngineError  # noqa: E402
from engine.matcher import MatchingEngine  # noqa: E402
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, SELL  # noqa: E402
from engine.symbols import SymbolSpec  # noqa: E402
from storage import Store  # noqa: E402

if "--green" in sys.argv:
    from api.app import symbol_lock_factory  # noqa: E402

    _LOCK_FACTORY = symbol_lock_factory("eventlet")
else:
    _LOCK_FACTORY = threading.RLock

_SIDES = {"B": BUY, "S": SELL}
_TYPES = {"L": LIMIT, "M": MARKET, "I": IOC, "F": FOK}


def make_engine(symbols: int, funds: bool = False) -> MatchingEngine:
    """An engine of ``symbols`` symbols, with the server's symbol locks: under
    ``--green`` the C ``RLock`` the api uses under eventlet
    (``api.app.symbol_lock_factory``), else ``threading.RLock``; ``funds``:
    with balances."""
    specs = [
        SymbolSpec(f"SYM{i}", f"SYM{i}", "USDT", Decimal("0.01"), Decimal("0.001")) for i in range(symbols)
    ]
    return MatchingEngine(specs, lock_factory=_LOCK_FACTORY, funds=funds)


def prepare(ops):
    """The op stream as engine arguments (conversion is not what we measure)."""
    out = []
    for kind, sym, oid, side, price, qty in ops:
        if kind == "C":
            out.append((None, f"SYM{sym}", oid, None, None, None))
        else:
            out.append((_TYPES[kind], f"SYM{sym}", oid, _SIDES[side], None if kind == "M" else price, qty))
    return out


class Runner:
    """Applies a prepared stream to one engine, journaling into ``store``."""

    def __init__(self, engine, store) -> None:
        self.engine = engine
        self.store = store
        self.ids: dict[int, int] = {}

    def apply(self, op) -> int | None:
        """One op as the service does it; returns the ticket (None: nothing journaled)."""
        order_type, symbol, oid, side, price, qty = op
        engine = self.engine
        store = self.store
        if order_type is None:
            engine_id = self.ids.pop(oid, None)
            if engine_id is None:
                return None
            with engine.lock(symbol):
                try:
                    result = engine.cancel(engine_id)
                except EngineError:
                    return None
                return store.log_cancel(result) if store is not None else None
        with engine.lock(symbol):
            result = engine.submit(symbol, side, order_type, qty, price)
            ticket = store.log_submit(result) if store is not None else None
        if result.book_changed and result.status.is_open:
            self.ids[oid] = result.order.order_id
        return ticket


class FundedRunner(Runner):
    """``Runner`` with balances: two accounts opened and funded as the service
    does (records ``o``, ``k``, ``d`` under every lock), op i owned by account
    1 + i % 2 (``owners`` "alternate") or buys by 1 and sells by 2
    ("by_side"), and every ``transfer_every`` ops a deposit or a withdrawal of
    USDT by one of them (records ``d`` / ``w``). The funding (10**20 units of
    USDT, 10**15 of each base) is far beyond what the workload can lock, so
    no order is refused for funds: the journal holds the workload's commands."""

    FUNDING = {"USDT": 10**20}

    def __init__(self, engine, store, owners: str = "alternate", transfer_every: int = 1_000) -> None:
        super().__init__(engine, store)
        self.by_side = owners == "by_side"
        self.transfer_every = transfer_every
        self.count = 0
        ts = time.time_ns()
        funding = dict(self.FUNDING, **{m.spec.base: 10**15 for m in engine.markets.values()})
        with engine.all_locks():
            for name in ("alice", "bob"):
                account = engine.accounts.create(name, ts)
                store.log_command("o", account.account_id, name, ts)
                key_hash = hashlib.sha256(name.encode()).hexdigest()
                engine.accounts.add_key(account.account_id, key_hash, ts)
                store.log_command("k", account.account_id, key_hash, ts)
                for asset, amount in funding.items():
                    engine.deposit(account.account_id, asset, amount)
                    store.log_command("d", account.account_id, asset, amount, ts)

    def apply(self, op) -> int | None:
        """One op as the service does it, owned; returns the last ticket (None: nothing journaled)."""
        i = self.count
        self.count = i + 1
        order_type, symbol, oid, side, price, qty = op
        owner = (1 if side is BUY else 2) if self.by_side else 1 + (i & 1)
        engine = self.engine
        store = self.store
        ticket = None
        if i % self.transfer_every == self.transfer_every - 1:
            kind = "dw"[(i // self.transfer_every) & 1]
            ts = time.time_ns()
            with engine.all_locks():
                (engine.deposit if kind == "d" else engine.withdraw)(owner, "USDT", 10**12)
                ticket = store.log_command(kind, owner, "USDT", 10**12, ts)
        if order_type is None:
            engine_id = self.ids.pop(oid, None)
            if engine_id is None:
                return ticket
            with engine.lock(symbol):
                try:
                    result = engine.cancel(engine_id)
                except EngineError:
                    return ticket
                return store.log_cancel(result)
        with engine.lock(symbol):
            result = engine.submit(symbol, side, order_type, qty, price, account_id=owner)
            ticket = store.log_submit(result)
        if result.book_changed and result.status.is_open:
            self.ids[oid] = result.order.order_id
        return ticket


def run_unjournaled(apply, ops) -> float:
    """The no-journal baseline of the drivers that need a store for their shape."""
    t0 = time.perf_counter()
    for op in ops:
        apply(op)
    return time.perf_counter() - t0


def run_sequential(engine, store, ops) -> float:
    runner = Runner(engine, store)
    apply = runner.apply
    wait = store.wait if store is not None else None
    t0 = time.perf_counter()
    for op in ops:
        ticket = apply(op)
        if ticket is not None:
            wait(ticket)
    return time.perf_counter() - t0


def run_pipelined(engine, store, ops, k: int) -> float:
    runner = Runner(engine, store)
    apply = runner.apply
    wait = store.wait if store is not None else None
    t0 = time.perf_counter()
    last = None
    for i, op in enumerate(ops, 1):
        ticket = apply(op)
        if ticket is not None:
            last = ticket
        if i % k == 0 and last is not None:
            wait(last)
            last = None
    if last is not None:
        wait(last)
    return time.perf_counter() - t0


def run_overlapped(engine, store, ops, k: int) -> float:
    """K requests in flight while the previous group syncs: a committer thread
    leads the group commits (its fsync releases the GIL) and the client waits
    for the group before last. This is the service under eventlet, where the
    commit leader's fsync runs in a real OS thread (``tpool``) while the hub
    keeps serving requests."""
    runner = Runner(engine, store)
    apply = runner.apply
    if store is None:
        return run_unjournaled(apply, ops)
    done = threading.Event()

    def committer() -> None:
        while not done.is_set():
            last = store._last_n  # benchmark-only peek at the newest ticket (a property)
            if last > store._durable_n:
                store.wait(last)
            else:
                time.sleep(0.0001)

    thread = threading.Thread(target=committer)
    thread.start()
    t0 = time.perf_counter()
    previous = current = None
    for i, op in enumerate(ops, 1):
        ticket = apply(op)
        if ticket is not None:
            current = ticket
        if i % k == 0:
            if previous is not None:
                store.wait(previous)
            previous = current
    if current is not None:
        store.wait(current)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    return seconds


def run_threads(engine, store, ops, threads: int) -> float:
    # Each thread is one client: its own symbol (so its cancels find its own
    # orders) and one request in flight at a time.
    slices = [[op for op in ops if int(op[1][3:]) % threads == t] for t in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def client(part) -> None:
        runner = Runner(engine, store)
        apply = runner.apply
        barrier.wait()
        for op in part:
            ticket = apply(op)
            if ticket is not None and store is not None:
                store.wait(ticket)

    workers = [threading.Thread(target=client, args=(part,)) for part in slices]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


# Seconds the last server-shaped run spent blocked in ``wait`` (the group
# before last not yet durable): the time the engine thread lost to the writer.
BLOCKED = [0.0]


def run_server(engine, store, ops, k: int) -> float:
    """The server's shape: one OS thread matches; after each group of K it
    hands the group to the writer (``Store.hand_off``) and waits for the
    group before last, whose acks the ack reader has usually delivered.
    Sets ``BLOCKED[0]``."""
    BLOCKED[0] = 0.0
    runner = Runner(engine, store)
    apply = runner.apply
    if store is None:
        return run_unjournaled(apply, ops)
    hand_off = store.hand_off
    wait = store.wait
    clock = time.perf_counter
    blocked = 0.0
    t0 = clock()
    previous = current = None
    for i, op in enumerate(ops, 1):
        ticket = apply(op)
        if ticket is not None:
            current = ticket
        if i % k == 0:
            hand_off()
            if previous is not None and previous > store._durable_n:  # benchmark-only peek
                b = clock()
                wait(previous)
                blocked += clock() - b
            previous = current
    if current is not None:
        wait(current)
    BLOCKED[0] = blocked
    return time.perf_counter() - t0


def throughput(args) -> None:
    print(
        f"# throughput: shared workload, n={args.n} (always: {args.always_n}), seed 42, best of {args.repeat}"
    )
    print(f"# load average at start {_load()}; eventlet {'monkey-patched' if args.green else 'not used'}")
    # (label, fsync policy, writer): off with its default writer (inline), the
    # fsyncing policies with each writer
    modes = [("no journal", None, None), ("off", "off", None)]
    for writer in args.writer:
        modes.append((f"batch {writer}", "batch", writer))
        if not args.no_always:
            modes.append((f"always {writer}", "always", writer))
    drivers = [("sequential", 1, run_sequential)]
    for k in args.pipeline:
        drivers.append((f"pipelined {k}", 1, lambda e, s, ops, k=k: run_pipelined(e, s, ops, k)))
    for k in args.overlapped:
        drivers.append((f"overlapped {k}", 1, lambda e, s, ops, k=k: run_overlapped(e, s, ops, k)))
    for t in args.threads:
        drivers.append((f"threads {t}", t, lambda e, s, ops, t=t: run_threads(e, s, ops, t)))
    for k in args.server:
        drivers.append((f"server {k}", 1, lambda e, s, ops, k=k: run_server(e, s, ops, k)))
    for name, symbols, drive in drivers:
        print(f"# {name}{' (green)' if args.green else ''}: load average {_load()}")
        raw, _info = generate(args.n, 42, symbols)
        ops = prepare(raw)
        best: dict = {}
        cpus: dict = {}  # the least CPU seconds per op of any run
        child_cpus: dict = {}  # the writer process's, likewise
        rates: dict = {}  # every run's rate, for the spread
        paired: dict = {}  # per round: the rate over the same round's no-journal rate
        blocked: dict = {}  # per run: seconds the engine thread waited (server K only)
        for _ in range(args.repeat):  # modes interleaved: machine noise hits them alike
            round_rates: dict = {}
            for label, policy, writer in modes:
                # one fsync per op: a shorter stream gives the same rate in less time
                per_op_fsync = policy == "always" or (policy == "batch" and name == "sequential")
                stream = ops[: args.always_n] if per_op_fsync else ops
                engine = make_engine(symbols)
                tmp = tempfile.mkdtemp(prefix="bench-dur-", dir=args.tmp)
                store = None
                if policy is not None:
                    store = Store(tmp, fsync=policy, snapshot_every=0, writer=writer)
                    store.recover(engine)
                    if store.writer == "process":
                        time.sleep(0.2)  # let the child finish starting
                children0 = _children_cpu()
                cpu0 = time.process_time()  # the whole process: committer threads included
                BLOCKED[0] = float("nan")
                seconds = drive(engine, store, stream)
                blocked.setdefault(label, []).append(BLOCKED[0])
                cpu = (time.process_time() - cpu0) / len(stream)
                stats = store.statistics() if store is not None else None
                if store is not None:
                    store.abandon()  # waits for the writer process to exit
                child_cpu = (_children_cpu() - children0) / len(stream)
                shutil.rmtree(tmp)
                rate = len(stream) / seconds
                if label not in best or rate > best[label][0]:
                    best[label] = (rate, stats, len(stream))
                cpus[label] = min(cpus.get(label, cpu), cpu)
                child_cpus[label] = min(child_cpus.get(label, child_cpu), child_cpu)
                rates.setdefault(label, []).append(rate)
                round_rates[label] = rate
            for label, rate in round_rates.items():
                paired.setdefault(label, []).append(rate / round_rates["no journal"])
        base = best["no journal"][0]
        off = best["off"][0]
        for label, policy, writer in modes:
            rate, stats, count = best[label]
            cpu_us = cpus[label] * 1e6
            journal_us = cpu_us - cpus["no journal"] * 1e6
            runs = sorted(rates[label])
            ratios = sorted(paired[label])
            extra = f"  paired {ratios[len(ratios) // 2]:6.1%} ({ratios[0]:.1%}-{ratios[-1]:.1%})"
            extra += f"  runs {runs[0] / 1e3:.0f}-{runs[-1] / 1e3:.0f}k"
            if writer == "process":
                extra += f"  writer process cpu {child_cpus[label] * 1e6:4.2f} us/op"
            waits = sorted(blocked[label])
            if policy is not None and waits[0] == waits[0]:  # not nan: a server-shaped run
                extra += f"  blocked {waits[len(waits) // 2] * 1e3:.0f} ms (median of {len(waits)})"
            if stats:
                per_fsync = stats["records"] / stats["fsyncs"] if stats["fsyncs"] else float("nan")
                extra += (
                    f"  vs off {rate / off:6.1%}  {stats['fsyncs']:>7} fsyncs, {per_fsync:7.1f} records/fsync"
                )
            print(
                f"{name:14} {label:14} {rate:10,.0f} ops/s  {rate / base:6.1%} of no journal  "
                f"cpu {cpu_us:5.2f} us/op (journal {journal_us:+5.2f}){extra}  (n={count})"
            )
        print(f"# load average at end {_load()}")
        print()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _children_cpu() -> float:
    """CPU seconds of every waited-for child process (the journal writers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _restart_dir(args, ops, every: int, funds: str | None) -> tuple[str, dict]:
    """A data dir of exactly ``--restart-n`` records journaled from ``ops``
    (snapshots every ``every`` records; 0: none), left as a crash leaves it
    (no final snapshot); ``funds``: None, or the owners of ``FundedRunner``.
    Returns its path and what writing it took."""
    n = args.restart_n
    tmp = tempfile.mkdtemp(prefix="bench-restart-", dir=args.tmp)
    engine = make_engine(1, funds is not None)
    store = Store(tmp, fsync="off", snapshot_every=every)
    store.recover(engine)
    runner = FundedRunner(engine, store, funds) if funds else Runner(engine, store)
    t0 = time.perf_counter()
    last = 0
    for i, op in enumerate(ops, 1):
        ticket = runner.apply(op)
        if ticket is not None:
            last = ticket
        if i % 256 == 0 or last >= n:
            store.wait(last)
            store.maybe_snapshot(engine)
        if last >= n:
            break
    else:
        raise SystemExit(f"the stream ran out at record {last}: generate more ops")
    store.wait(last)
    stats = store.statistics()
    write_s = time.perf_counter() - t0
    figures = {"records": stats["last_record"], "write_s": write_s, "snap_s": stats["last_snapshot_seconds"]}
    if funds:
        ledger = engine.ledger
        assert all(f["ok"] for f in ledger.conservation().values())
        figures["fees"] = ledger.fees["USDT"]
        figures["balances"] = [ledger.balances_of(a) for a in (1, 2)]
    figures["trades"] = engine.statistics()["engine"]["trades"]
    store.abandon()  # a crash: no final snapshot
    figures["bytes"] = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    return tmp, figures


def restart(args) -> None:
    n = args.restart_n
    modes = [(None, 250_000), (None, 0)]
    if args.funds:
        modes += [(owners, every) for owners in args.owners for every in (250_000, 0)]
    print(
        f"# restart: data dirs of exactly {n:,} journaled commands (shared workload, seed 7); "
        f"load average {_load()}"
    )
    raw, _ = generate(int(n * 1.25), 7, 1)  # a cancel of an order that filled journals nothing
    ops = prepare(raw)
    dirs = {}
    for funds, every in modes:
        dirs[funds, every] = _restart_dir(args, ops, every, funds)
    times: dict = {key: [] for key in dirs}
    cpus: dict = {key: [] for key in dirs}  # this process's CPU seconds: steadier on a shared machine
    summaries: dict = {}
    for _ in range(args.repeat):  # interleaved: the machine's noise hits every data dir alike
        for (funds, every), (tmp, figures) in dirs.items():
            fresh = make_engine(1, funds is not None)
            again = Store(tmp)  # the service's defaults: snapshot interval 250,000, writer process
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            summary = again.recover(fresh)
            times[funds, every].append(time.perf_counter() - t0)
            cpus[funds, every].append(time.process_time() - cpu0)
            summaries[funds, every] = summary
            if funds:  # the recovered balances are the ones the data dir was written with
                assert [fresh.ledger.balances_of(a) for a in (1, 2)] == figures["balances"]
                assert fresh.ledger.fees["USDT"] == figures["fees"]
            again.abandon()
    print(f"# load average at end {_load()}")
    best = {}
    best_cpu = {}
    for (funds, every), (tmp, figures) in dirs.items():
        shutil.rmtree(tmp)
        runs = sorted(times[funds, every])
        best[funds, every] = runs[0]
        best_cpu[funds, every] = min(cpus[funds, every])
        summary = summaries[funds, every]
        owners = {"alternate": "funds, 2 accounts alternating", "by_side": "funds, buys 1, sells 2"}
        label = owners.get(funds, "no funds") + (f", snapshots every {every:,}" if every else ", full replay")
        print(
            f"{label:53} {figures['records']:,} records ({figures['trades']:,} trades), "
            f"{figures['bytes'] / 1e6:,.0f} MB on disk, written in {figures['write_s']:.1f} s; "
            f"restart {runs[0]:.2f} s best, {runs[len(runs) // 2]:.2f} s median of {len(runs)} "
            f"(cpu {best_cpu[funds, every]:.2f} s; snapshot {os.path.basename(summary['snapshot'] or '-')}, "
            f"{summary['records_replayed']:,} replayed)"
            + (f"; the last snapshot took {figures['snap_s']:.2f} s to take" if figures["snap_s"] else "")
        )
    for owners in args.owners if args.funds else ():
        for every in (250_000, 0):
            print(
                f"# funds ({owners}) / no funds, {'snapshots' if every else 'full replay'}: "
                f"{best[owners, every] / best[None, every]:.2f}x the restart time, "
                f"{best_cpu[owners, every] / best_cpu[None, every]:.2f}x its CPU time (best of each)"
            )
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--pipeline", type=int, nargs="*", default=[16, 256, 1024], help="K values")
    p.add_argument(
        "--overlapped", type=int, nargs="*", default=[256, 1024], help="K values, committer thread"
    )
    p.add_argument("--threads", type=int, nargs="*", default=[8], help="T values")
    p.add_argument("--server", type=int, nargs="*", default=[1024], help="K values, the server's shape")
    p.add_argument(
        "--green", action="store_true", help="monkey-patch eventlet first (acks read by a green thread)"
    )
    p.add_argument(
        "--always-n",
        type=int,
        default=5_000,
        help="ops where every op pays an fsync (always; sequential batch)",
    )
    p.add_argument(
        "--writer",
        nargs="+",
        choices=("process", "inline"),
        default=["process", "inline"],
        help="journal writers to compare (Store(writer=...))",
    )
    p.add_argument("--no-always", action="store_true", help="skip the always policy")
    p.add_argument("--restart-n", type=int, default=1_000_000)
    p.add_argument("--funds", action="store_true", help="restart: also with balances (two funded accounts)")
    p.add_argument(
        "--owners",
        nargs="+",
        choices=("alternate", "by_side"),
        default=["alternate"],
        help="with --funds: op i owned by account 1 + i %% 2, or buys by 1 and sells by 2",
    )
    p.add_argument("--repeat", type=int, default=3, help="best of R runs per cell")
    p.add_argument("--tmp", default=None, help="directory for the data dirs (default: the system temp dir)")
    p.add_argument("--quick", action="store_true", help="n=50k, restart-n=200k, repeat 1")
    p.add_argument("--only", choices=("throughput", "restart"))
    args = p.parse_args()
    if args.quick:
        args.n, args.restart_n, args.repeat, args.always_n = 50_000, 200_000, 1, 2_000
    print(
        f"# python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"{platform.platform()}"
    )
    if args.only != "restart":
        throughput(args)
    if args.only != "throughput":
        restart(args)


if __name__ == "__main__":
    main()
