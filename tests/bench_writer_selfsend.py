"""Best case for the writer process: the client thread itself hands each group
to the child (no committer thread, no blocking unless two groups behind)."""

import sys, time, os, tempfile, shutil, resource

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), "/work/shared/bench"]
from bench_durability import generate, prepare, make_engine, Runner, run_overlapped
from storage import Store

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
K = 1024
raw, _ = generate(N, 42, 1)
ops = prepare(raw)

BLOCKED = [0.0, 0]


def selfsend(engine, store, ops):
    runner = Runner(engine, store)
    apply = runner.apply
    t0 = time.perf_counter()
    if store is None:
        for op in ops:
            apply(op)
        return time.perf_counter() - t0
    previous = current = None
    for i, op in enumerate(ops, 1):
        t = apply(op)
        if t is not None:
            current = t
        if i % K == 0:
            with store._send_mu:
                store._send()
            if previous is not None and previous > store._durable_n:
                b = time.perf_counter()
                store.wait(previous)
                BLOCKED[0] += time.perf_counter() - b
                BLOCKED[1] += 1
            previous = current
    if current is not None:
        store.wait(current)
    return time.perf_counter() - t0


def cpu_children():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


modes = [
    ("none", None, None),
    ("batch process selfsend", "batch", "process"),
    ("off process selfsend", "off", "process"),
    ("batch inline overlapped", "batch", "inline"),
]
best = {}
cpu = {}
ch = {}
allr = {}
for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
    for label, policy, writer in modes:
        engine = make_engine(1)
        tmp = tempfile.mkdtemp()
        store = None
        if policy:
            store = Store(tmp, fsync=policy, snapshot_every=0, writer=writer)
            store.recover(engine)
            time.sleep(0.2)
        c0 = time.process_time()
        k0 = cpu_children()
        drive = run_overlapped if writer == "inline" else selfsend
        s = run_overlapped(engine, store, ops, K) if writer == "inline" else selfsend(engine, store, ops)
        c = (time.process_time() - c0) / len(ops) * 1e6
        if store:
            store.abandon()
        k = (cpu_children() - k0) / len(ops) * 1e6
        shutil.rmtree(tmp)
        rate = len(ops) / s
        if writer == "process":
            print(
                f"  {label}: {rate:,.0f}/s, {s * 1e3:.0f} ms, blocked {BLOCKED[0] * 1e3:.1f} ms in {BLOCKED[1]} waits"
            )
            BLOCKED[:] = [0.0, 0]
        best[label] = max(best.get(label, 0), rate)
        cpu[label] = min(cpu.get(label, 1e9), c)
        ch[label] = min(ch.get(label, 1e9), k)
        allr.setdefault(label, []).append(rate)
for label, *_ in modes:
    rs = sorted(allr[label])
    print(
        f"{label:26} {best[label]:9,.0f} ops/s {best[label] / best['none']:6.1%}  cpu {cpu[label]:.2f} us/op (journal {cpu[label] - cpu['none']:+.2f}) child {ch[label]:.2f}  runs {rs[0] / 1e3:.0f}-{rs[-1] / 1e3:.0f}k"
    )
