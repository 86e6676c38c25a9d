"""What waiting for the journal costs a request under eventlet (a benchmark
script, not a test): CPU per record in the engine's process.

    .venv/bin/python tests/bench_journal_wait.py [--n 40000] [--clients 16] [--repeat 3] [--work-us 200] [--think-ms 1]

``--clients`` green threads (the server's requests) each loop: a switch to the
hub (the next request's IO), ``engine.submit`` and ``store.log_submit`` under
the symbol's lock, then ``store.wait`` -- with the writer process and ``fsync
batch``, as the server does -- and, for comparison in the same run, the same
loop without a store. The difference is the journal's CPU per record in this
process: hand-off, waiting and the ack reader (the child's chaining, writing
and fsyncs are on the other core). Rounds alternate the two so that the
machine's noise hits both; medians are printed.

``--work-us W`` adds W us of CPU per request before it submits (what the web
stack costs a request: ~200 us here) and ``--think-ms T`` a pause between a
client's requests, for smaller groups (flat out the server shares an fsync
among only ~3 records); without them the 16 clients fill every group. With
small groups the figure includes the process's sleeping and waking between
groups (kernel time), which no Python change removes.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from api.app import _GroupCommitYield, symbol_lock_factory  # noqa: E402
from engine.matcher import MatchingEngine  # noqa: E402
from engine.order import BUY, LIMIT, SELL  # noqa: E402
from storage.store import Store  # noqa: E402

SYMBOL = "BTC-USDT"


class _Journaled:
    journaled = 0  # what _GroupCommitYield watches (Exchange.journaled in the server)


def _spin(us: float) -> None:
    end = time.thread_time_ns() + int(us * 1000)
    while time.thread_time_ns() < end:
        pass


def run(
    n: int, clients: int, journal: bool, work_us: float = 0.0, think_ms: float = 0.0
) -> tuple[float, float]:
    """One run: ``(us CPU per record, records per fsync)``."""
    data_dir = tempfile.mkdtemp(prefix="bench-wait-")
    engine = MatchingEngine(None, lock_factory=symbol_lock_factory("eventlet"))
    counter = _Journaled()
    store = None
    if journal:
        group_yield = _GroupCommitYield(eventlet.sleep)
        group_yield.exchange = counter
        store = Store(data_dir, fsync="batch", yield_fn=group_yield, writer="process", snapshot_every=0)
        store.recover(engine)
    lock = engine.markets[SYMBOL].lock

    def client(k: int) -> None:
        for i in range(n // clients):
            eventlet.sleep(think_ms / 1000)  # the next request's IO (arriving after think_ms)
            if work_us:
                _spin(work_us)
            with lock:
                # a buy and a sell at one price: every second order trades
                result = engine.submit(SYMBOL, BUY if (i + k) % 2 else SELL, LIMIT, 10, 3_000_000)
                ticket = store.log_submit(result) if store is not None else None
                counter.journaled += 1
            if ticket is not None:
                store.wait(ticket)

    started = time.process_time()
    threads = [eventlet.spawn(client, k) for k in range(clients)]
    for t in threads:
        t.wait()
    cpu = time.process_time() - started
    per_fsync = 0.0
    if store is not None:
        stats = store.statistics()
        per_fsync = stats["records"] / max(1, stats["fsyncs"])
        store.close(engine)
    shutil.rmtree(data_dir, ignore_errors=True)
    return cpu / (n // clients * clients) * 1e6, per_fsync


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work-us", type=float, default=0.0, help="CPU per request outside the journal")
    p.add_argument("--think-ms", type=float, default=0.0, help="each client's pause between requests")
    args = p.parse_args()
    with_journal, without, per_fsync = [], [], []
    for _ in range(args.repeat):
        without.append(run(args.n, args.clients, False, args.work_us, args.think_ms)[0])
        us, group = run(args.n, args.clients, True, args.work_us, args.think_ms)
        with_journal.append(us)
        per_fsync.append(group)
    a, b = statistics.median(without), statistics.median(with_journal)
    print(
        f"{args.clients} green clients, {args.n:,} records per run, {args.work_us:g} us of other work "
        f"per request, medians of {args.repeat} runs"
    )
    print(f"no journal              {a:6.1f} us CPU per record")
    print(
        f"writer process, batch   {b:6.1f} us CPU per record ({statistics.median(per_fsync):.1f} per fsync)"
    )
    print(f"the journal's share     {b - a:6.1f} us per record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
