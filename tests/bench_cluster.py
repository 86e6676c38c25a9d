#!/usr/bin/env python3
"""Scale-out benchmark: many WebSocket subscribers on the edges while the engine takes orders.

    python tests/bench_cluster.py --subscribers 2000 --rate 500 --duration 15 --json out.json

Starts its own cluster (``deploy/cluster.py``'s ``Cluster``: Redis, the engine
process, ``--edges`` edges; all on 127.0.0.1, free ports, a temporary dir,
stopped by PID) and runs two scenarios against it, one after the other:

1. ``baseline``: no subscriber; the engine takes ``--rate`` orders/s for
   ``--duration`` seconds.
2. ``subscribers``: ``--subscribers`` raw WebSocket Socket.IO clients
   (``tests/loadlib/rawsio.py``, several per process), spread evenly over the
   edges and over the symbols, each subscribed to ``bbo`` and ``trades`` of one
   symbol; then the same orders.

Orders are spread round-robin over the four symbols; per symbol, ``--trade-every``
orders make one cycle: a crossing pair (a limit order one tick off the mid and an
IOC that takes it: one trade) and quotes that rest a few ticks away (they change
the book and its ``sequence``, so every order produces a ``bbo`` change). With the
default 10, 10% of the orders trade.

Per scenario it prints the CPU of each process (``psutil``; percent of one
core), the engine's CPU per order, and for the subscribers: trades expected and
lost (every trade in an order's answer must reach every subscriber of its symbol),
trade latency from the order's scheduled send time to its arrival (p50/p99/max),
``bbo`` sequence regressions, events and deliveries per second per edge and the
edges' CPU per delivery. The verdict compares with the issue's targets: nothing
lost, trade p99 < 100 ms, engine CPU per order within 10% of the baseline.

``--single`` runs the same scenarios against one server process without Redis
(``make run``'s shape), for comparison: there the engine process does the fan-out.

Loopback only; every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import re
import selectors
import sys
import tempfile
import time
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from loadlib.httpengine import ERROR, HttpWorker  # noqa: E402
from loadlib.orders import build_specs  # noqa: E402
from loadlib.procs import ProcSampler, SystemSampler  # noqa: E402
from loadlib.stats import summarize  # noqa: E402
from md_latency import SubRecord, analyze, parse_orders  # noqa: E402

from deploy.cluster import Cluster  # noqa: E402

SYMBOLS = ("BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT")


class QuoteMixFactory:
    """Round-robin over symbols; per symbol a cycle of ``trade_every`` orders:
    a limit sell one tick above the mid, the IOC buy that takes it, then quotes
    resting 5..40 ticks from the mid (alternating sides)."""

    def __init__(self, specs, trade_every: int = 10, tag: str = "sc") -> None:
        self.specs = specs
        self.trade_every = max(2, trade_every)
        self.n = 0
        self.per = [0] * len(specs)
        self.tag = tag
        self.account = 0  # the load tools' factory interface: one account (the engine runs --auth off)

    def remember(self, order_id: str, account: int = 0) -> None:
        """Not used (no cancels)."""

    def next(self):
        i = self.n % len(self.specs)
        self.n += 1
        spec = self.specs[i]
        k = self.per[i] % self.trade_every
        self.per[i] += 1
        mid = spec.mid_ticks
        if k == 0:
            code, side, otype, ticks = "L", "sell", "limit", mid + 1
        elif k == 1:
            code, side, otype, ticks = "I", "buy", "ioc", mid + 1
        else:
            away = 5 + (self.per[i] * 7) % 36
            side = "buy" if k % 2 == 0 else "sell"
            code, otype, ticks = "L", "limit", (mid - away) if side == "buy" else (mid + away)
        return code, (spec.symbol, side, otype, spec.quantity(1), spec.price(ticks), f"{self.tag}-{self.n}")


# The subscriber side shares the 2 cores with what it measures: its steady-state read
# path (lean_read) handles each frame as bytes -- the frame header, a prefix compare and
# one or two small regular expressions -- and leaves anything else (pings, acks,
# fragmented or control frames) to RawSio's general parser, in order.
_EVENT_TRADE = b'42/market,["trade",'
_EVENT_BBO = b'42/market,["bbo",'
_B_TRADE_ID = re.compile(rb'"trade_id":"?(\d+)')
_B_SEQ = re.compile(rb'"sequence":(\d+)')
_B_TS = re.compile(rb'"timestamp":"([^"]{1,26})')


WALL_OFFSET = [0.0]  # time.time() - time.monotonic(), per subscriber process
SAMPLE_EVERY = 25  # subscribers whose trades' read-after-engine-timestamp is recorded


def lean_read(c, rec, t: float, pfx: dict) -> None:
    """Read what ``c`` (a non-blocking ``RawSio``) has and record its trades and
    bbo events in ``rec`` as ``SubRecord.on_packet`` would."""
    try:
        chunk = c.sock.recv(1 << 16)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        c.closed = True
        return
    if not chunk:
        c.closed = True
        return
    buf = c.buf
    if buf or c.partial:
        buf += chunk
    else:
        buf = chunk
    pos, n = 0, len(buf)
    trades, bbo = rec.trades, rec.bbo
    while n - pos >= 2:
        b0, length = buf[pos], buf[pos + 1]
        if b0 != 0x81 or length & 0x80:  # not one final unmasked text frame: the general parser
            break
        hdr = 2
        if length == 126:
            if n - pos < 4:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            hdr = 4
        elif length == 127:
            break
        end = pos + hdr + length
        if end > n:
            break
        start = pos + hdr
        if buf.startswith(_EVENT_TRADE, start):
            m = _B_TRADE_ID.search(buf, start, end)
            if m:
                tid = m.group(1).decode()
                if tid in trades:
                    rec.dup_trades += 1
                else:
                    trades[tid] = t
            lags = rec.__dict__.get("lags")
            if lags is not None:  # a sampled subscriber: read time - the trade's engine timestamp
                ts = _B_TS.search(buf, start, end)
                if ts:
                    stamp = datetime.fromisoformat(ts.group(1).decode()).replace(tzinfo=UTC)
                    lags.append(t + WALL_OFFSET[0] - stamp.timestamp())
        elif buf.startswith(_EVENT_BBO, start):
            m = _B_SEQ.search(buf, start, end)
            ts = _B_TS.search(buf, start, end)
            seq = int(m.group(1)) if m else -1
            if bbo and seq < bbo[-1][0]:
                rec.regressions["bbo"] += 1
            bbo.append((seq, t, ts.group(1).decode() if ts else ""))
        else:
            break
        rec.events += 1
        pos = end
    rest = buf[pos:]
    c.buf = rest if isinstance(rest, bytearray) else bytearray(rest)
    if c.buf:
        for pkt in c._drain():
            rec.on_packet(pkt, t, pfx)


def sub_main(cfg: dict, targets: list, ready_q, stop_evt, out_q) -> None:
    """Subscriber process: ``targets`` is ``[(port, symbol), ...]``, one raw connection each."""
    from loadlib.rawsio import RawSio

    if cfg.get("nice"):
        os.nice(cfg["nice"])
    try:
        ns = "/market"
        pfx = {"trade": f'42{ns},["trade",', "bbo": f'42{ns},["bbo",', "l2_update": f'42{ns},["l2_update",'}
        sel = selectors.DefaultSelector()
        conns, recs, errors = [], [], []
        for port, symbol in targets:
            c = RawSio(cfg["host"], port, ns)
            rec = SubRecord()
            rec.symbol, rec.port = symbol, port
            if len(recs) % SAMPLE_EVERY == 0:
                rec.lags = []
            try:
                c.connect()
                for msg in ({"type": "trades", "symbol": symbol}, {"type": "bbo", "symbol": symbol}):
                    ack = c.call("subscribe", msg)
                    if not (isinstance(ack, dict) and ack.get("ok") is True):
                        raise RuntimeError(f"subscribe {msg} answered {ack!r}")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                c.close()
                continue
            now = time.monotonic()
            for pkt in c.early:
                rec.on_packet(pkt, now, pfx)
            c.set_nonblocking()
            sel.register(c.sock, selectors.EVENT_READ, (c, rec))
            conns.append(c)
            recs.append(rec)
        ready_q.put(("ready", os.getpid(), len(conns), errors))
        WALL_OFFSET[0] = time.time() - time.monotonic()
        cpu0, wall0 = time.process_time(), time.monotonic()
        mono = time.monotonic
        while not stop_evt.is_set():
            for key, _ in sel.select(0.05):
                c, rec = key.data
                lean_read(c, rec, mono(), pfx)
                if c.closed:
                    sel.unregister(key.fileobj)
        cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
        closed = sum(1 for c in conns if c.closed)
        for c in conns:
            c.close()
        out = []
        for r in recs:
            e = r.export()
            e["symbol"], e["port"] = r.symbol, r.port
            e["lags"] = r.__dict__.get("lags") or []
            out.append(e)
        out_q.put(("result", os.getpid(), out, cpu, closed))
    except BaseException as exc:
        ready_q.put(("error", os.getpid(), 0, [f"{type(exc).__name__}: {exc}"]))
        out_q.put(("result", os.getpid(), [], 0.0, 0))


def urllib_request():
    import urllib.request

    return urllib.request


def edge_stats(edge) -> dict:
    import urllib.request

    with urllib.request.urlopen(edge.url + "/statistics", timeout=5) as r:
        return json.load(r)


def run_scenario(args, cluster: Cluster, specs, n_subs: int) -> dict:
    edges = cluster.edges
    targets = [(edges[i % len(edges)].port, SYMBOLS[(i // len(edges)) % len(SYMBOLS)]) for i in range(n_subs)]
    nproc = max(1, min(args.sub_processes, n_subs)) if n_subs else 0
    ctx = mp.get_context("fork")
    ready_q, out_q = ctx.Queue(), ctx.Queue()
    stop_evt = ctx.Event()
    chunks = [targets[i::nproc] for i in range(nproc)]
    procs = [
        ctx.Process(
            target=sub_main,
            args=({"host": "127.0.0.1", "nice": args.sub_nice}, ch, ready_q, stop_evt, out_q),
            daemon=True,
        )
        for ch in chunks
    ]
    for p in procs:
        p.start()
    connected, errors = 0, []
    samplers = {}
    try:
        for _ in procs:
            try:
                _kind, _pid, n, errs = ready_q.get(timeout=120)
            except queue.Empty:
                raise RuntimeError("subscribers did not connect within 120 s") from None
            connected += n
            errors += errs
        if connected < n_subs:
            raise RuntimeError(
                f"only {connected} of {n_subs} connected: " + "; ".join(sorted(set(errors))[:3])
            )
        time.sleep(1.0)
        before = {e.name: edge_stats(e)["streaming"]["deliveries"] for e in edges}
        factory = QuoteMixFactory(specs, args.trade_every, tag=f"sc{n_subs}")
        scfg = {
            "host": "127.0.0.1",
            "port": cluster.engine.port,
            "mode": "rest",
            "rate": args.rate,
            "duration": args.duration,
            "connections": args.connections,
            "timeout": 5.0,
            "drain": 5.0,
            "arrival": "uniform",
            "seed": 1,
            "workers": 1,
            "specs": specs,
            "mix": {"limit": 1.0},
            "batch_size": 1,
            "tag": "sc",
            "factory_obj": factory,
            "keep_answers": True,
        }
        sender = HttpWorker(scfg, 0)
        if sender.connect_all() == 0:
            raise RuntimeError("the sender could not connect to the engine")
        procs_to_sample = [cluster.engine, *edges, cluster.redis] if cluster.redis else [cluster.engine]
        samplers = {c.name: ProcSampler(c.pid) for c in procs_to_sample}
        samplers["sender"] = ProcSampler(os.getpid())  # this process: the order sender (and the sampling)
        machine = SystemSampler()
        for s in samplers.values():
            s.start()
        machine.start()
        t0 = time.monotonic() + 0.05
        wall_offset = time.time() - time.monotonic()
        print(
            f"  {n_subs} subscribers in {nproc} process(es): {args.rate:g} orders/s for {args.duration:g} s",
            file=sys.stderr,
            flush=True,
        )
        sres = sender.run(t0)
        time.sleep(args.settle)
        cpu = {name: s.stop() for name, s in samplers.items()}
        machine_use = machine.stop()
        final = {e.name: edge_stats(e) for e in edges}
        after = {name: st["streaming"]["deliveries"] for name, st in final.items()}
    finally:
        stop_evt.set()
    subs, sub_cpu, closed = [], [], 0
    for _ in procs:
        try:
            _k, _pid, recs, c, ncl = out_q.get(timeout=60)
        except queue.Empty:
            break
        subs.extend(recs)
        sub_cpu.append(round(c * 100, 1))
        closed += ncl
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
    orders, info = parse_orders(sender.keep, t0, wall_offset)
    answered = [sres["lat"][i] for i in range(len(sres["lat"])) if sres["outcome"][i] != ERROR]
    sent_orders = len(answered)
    window = args.duration + args.settle
    res = {
        "subscribers": n_subs,
        "orders_answered": sent_orders,
        "order_errors": sum(1 for o in sres["outcome"] if o == ERROR),
        "orders_rejected": info["rejected"],
        "post_latency_ms": summarize(answered),
        "post_service_ms": summarize([x for x in sres["svc"] if x == x]),
        "send_delay_ms": summarize(
            [
                sres["sent"][i] - sres["sched"][i]
                for i in range(len(sres["sent"]))
                if sres["sent"][i] == sres["sent"][i]
            ]
        ),
        "cpu": cpu,
        "machine": machine_use,
        "subscriber_cpu_percent": sub_cpu,
        "subscribers_disconnected": closed,
        "trades": sum(len(o["trades"]) for o in orders),
    }
    engine_cpu = cpu["engine"]["cpu_s"] if cpu.get("engine") else None
    res["engine_cpu_us_per_order"] = (
        None if not engine_cpu or not sent_orders else 1e6 * engine_cpu / sent_orders
    )
    if n_subs:
        per_symbol = {}
        lat, from_receipt, lost, expected, regress = [], [], 0, 0, 0
        sym_of_order = _symbols_by_order(sender.keep)
        for sym in SYMBOLS:
            o_sym = [o for o in orders if sym_of_order.get(o["order_id"]) == sym]
            s_sym = [s for s in subs if s["symbol"] == sym]
            if not s_sym:
                continue
            a = analyze(o_sym, s_sym, False)
            per_symbol[sym] = {
                "subscribers": len(s_sym),
                "trades": a["trades_expected_per_subscriber"],
                "lost": a["lost_trades"],
                "trade_p99_ms": a["latency_ms"]["trade"]["p99"],
            }
            lat += a["_samples"]["trade"]
            receipt = {
                tid: o["t_receipt"] for o in o_sym for tid in o["trades"] if o.get("t_receipt") is not None
            }
            for sub in s_sym:
                from_receipt += [t - receipt[tid] for tid, t in sub["trades"].items() if tid in receipt]
            lost += a["lost_trades"]
            expected += a["trades_expected_per_subscriber"] * len(s_sym)
            regress += a["sequence_regressions"]["bbo"]
        res["per_symbol"] = per_symbol
        res["trade_deliveries_expected"] = expected
        res["lost_trades"] = lost
        res["trade_latency_ms"] = summarize(lat)
        res["trade_latency_from_receipt_ms"] = summarize(from_receipt)
        res["sub_read_after_match_ms"] = {
            k: v
            for k, v in summarize([x for s in subs for x in s.get("lags", ())]).items()
            if k in ("count", "p50", "p99")
        }
        res["bbo_sequence_regressions"] = regress
        res["events_received"] = sum(s["events"] for s in subs)
        res["deliveries_per_s_per_edge"] = {
            name: round((after[name] - before[name]) / window) for name in after
        }
        res["edge_trade_wait_ms"] = {  # a trade's arrival on the edge -> its pass's emit (last 10,000)
            name: {k: st["streaming"]["latency"]["trade_publication"][k] for k in ("p50_ms", "p99_ms")}
            for name, st in final.items()
        }
        res["edge_fanout"] = {name: st.get("fanout") for name, st in final.items()}
        res["edge_trade_written_ms"] = {  # direct fan-out: arrival -> the pass's writes done
            name: {k: st["streaming"]["latency"]["trade_written"][k] for k in ("p50_ms", "p99_ms")}
            for name, st in final.items()
            if "trade_written" in st["streaming"]["latency"]
        }
        if cluster.redis is not None:  # the engine: an order's receipt -> its feed message published
            with urllib_request().urlopen(cluster.engine.url + "/statistics", timeout=5) as r:
                mq = json.load(r)["streaming"]["message_queue"]
            res["engine_feed_ms"] = {k: mq["publish_latency"][k] for k in ("p50_ms", "p99_ms")}
        res["feed_lag_ms"] = {  # the engine's publish -> the edge's receipt (wall clocks, one host)
            name: {k: st["feed"]["lag"][k] for k in ("p50_ms", "p99_ms")}
            for name, st in final.items()
            if "feed" in st
        }
        res["edge_cpu_us_per_delivery"] = {
            name: round(1e6 * cpu[name]["cpu_s"] / max(1, after[name] - before[name]), 2)
            for name in after
            if cpu.get(name)
        }
        if cluster.redis is None:  # one process does everything: its CPU is not the fan-out's alone
            res["edge_cpu_us_per_delivery"] = {}
    return res


UNLIMITED_CLIENTS = ["--sessions-per-ip", "0", "--handshake-limit", "0", "--max-connections-per-client", "0"]


class Single:
    """``make run``'s shape: one process, no Redis; it is its own "edge"."""

    def __init__(self, run_dir: str, data_dir: str) -> None:
        from deploy.cluster import App, free_port

        self.engine = App(
            run_dir,
            "engine",
            free_port(),
            ["--data-dir", data_dir, "--rate-limit", "0", "--auth", "off", *UNLIMITED_CLIENTS],
        )
        self.edges = [self.engine]
        self.redis = None

    def __enter__(self) -> Single:
        self.engine.start()
        return self

    def __exit__(self, *exc) -> None:
        self.engine.stop()


def _profiled(app, out: str):
    """``app``'s command under the stack sampler (``--profile-edges``)."""
    command = type(app).command
    sampler = os.path.join(HERE, "loadlib", "pysampler.py")

    def profiled_command() -> list[str]:
        python, *rest = command(app)
        return [python, sampler, out, *rest]

    return profiled_command


def _symbols_by_order(keep) -> dict:
    out = {}
    for _sched, _sent, _ans, status, body in keep:
        if status != 200:
            continue
        try:
            rep = json.loads(body)
        except ValueError:
            continue
        out[rep.get("order_id")] = rep.get("symbol")
    return out


def _ms(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def fmt(res: dict) -> str:
    lines = [f"== {res['subscribers']} subscribers"]
    lines.append(
        f"  orders answered {res['orders_answered']} (errors {res['order_errors']}, rejected {res['orders_rejected']}),"
        f" trades {res['trades']}, POST p50/p99 {_ms(res['post_latency_ms']['p50'])}/{_ms(res['post_latency_ms']['p99'])} ms"
    )
    lines.append(
        f"  sender: send delay p99 {_ms(res['send_delay_ms']['p99'])} ms; answer after send p50/p99"
        f" {_ms(res['post_service_ms']['p50'])}/{_ms(res['post_service_ms']['p99'])} ms"
    )
    cpu = ", ".join(f"{k} {v['cpu_percent']:.0f}%" for k, v in res["cpu"].items() if v)
    lines.append(f"  CPU (% of one core): {cpu}; subscriber processes {res['subscriber_cpu_percent']}")
    if res.get("machine"):
        m = res["machine"]
        lines.append(
            f"  machine: busy {m.get('busy_percent', 0):.0f}% of {m.get('cores')} cores,"
            f" CPU pressure {m.get('cpu_pressure_percent') or 0:.0f}%, load {m.get('load_avg_1m') or 0:.1f}"
        )
    lines.append(f"  engine CPU per order: {res['engine_cpu_us_per_order']:.0f} us")
    if res["subscribers"]:
        t = res["trade_latency_ms"]
        lines.append(
            f"  trade deliveries expected {res['trade_deliveries_expected']}, lost {res['lost_trades']},"
            f" latency p50/p99/max {_ms(t['p50'])}/{_ms(t['p99'])}/{_ms(t['max'])} ms; bbo regressions"
            f" {res['bbo_sequence_regressions']}; disconnected {res['subscribers_disconnected']}"
        )
        r = res["trade_latency_from_receipt_ms"]
        lines.append(
            f"  trade latency from the engine's receipt of the order p50/p99/max"
            f" {_ms(r['p50'])}/{_ms(r['p99'])}/{_ms(r['max'])} ms"
        )
        lines.append(
            f"  deliveries/s per edge {res['deliveries_per_s_per_edge']}; edge CPU per delivery (us)"
            f" {res['edge_cpu_us_per_delivery']}"
        )
        if res.get("edge_trade_wait_ms"):
            lines.append(f"  on the edge, trade arrival -> emit (ms): {res['edge_trade_wait_ms']}")
        if res.get("edge_trade_written_ms"):
            lines.append(
                f"  on the edge, trade arrival -> written to every subscriber (ms): {res['edge_trade_written_ms']}"
            )
        if res.get("sub_read_after_match_ms"):
            lines.append(
                f"  subscriber read - trade's engine timestamp (ms, sampled): {res['sub_read_after_match_ms']}"
            )
        if res.get("engine_feed_ms"):
            lines.append(f"  engine, order receipt -> feed message published (ms): {res['engine_feed_ms']}")
        if res.get("feed_lag_ms"):
            lines.append(f"  feed, engine publish -> edge receipt (ms): {res['feed_lag_ms']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--edges", type=int, default=2)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument(
        "--trade-every", type=int, default=10, help="orders per symbol per trading pair (default 10)"
    )
    ap.add_argument("--connections", type=int, default=32, help="sender HTTP connections")
    ap.add_argument("--sub-processes", type=int, default=4)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--edge-nice", type=int, default=0, help="niceness of the edges (the engine keeps 0)")
    ap.add_argument(
        "--edge-stream-interval",
        type=float,
        default=0.01,
        help="the edges' pass interval for trades, seconds (their book rooms keep up to 0.05)",
    )
    ap.add_argument(
        "--edge-fanout",
        choices=("direct", "queue"),
        default="direct",
        help="the edges' writes to their clients (api/fanout.py; queue: Engine.IO's writer per packet)",
    )
    ap.add_argument("--sub-nice", type=int, default=0, help="niceness of the subscriber processes")
    ap.add_argument(
        "--single",
        action="store_true",
        help="for comparison: one server process without Redis; the subscribers connect to it",
    )
    ap.add_argument(
        "--profile-edges",
        metavar="DIR",
        help="run each edge under tests/loadlib/pysampler.py; its profile goes to DIR/<edge>.txt at the end",
    )
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    specs, _notes = build_specs(list(SYMBOLS), None, {s: None for s in SYMBOLS})
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        if args.single:
            cluster = Single(os.path.join(tmp, "run"), os.path.join(tmp, "data"))
        else:
            cluster = Cluster(
                os.path.join(tmp, "run"),
                os.path.join(tmp, "data"),
                edges=args.edges,
                engine_args=["--rate-limit", "0", "--auth", "off"],
                # thousands of subscribers from this one address, straight to the edges
                edge_args=[
                    "--rate-limit",
                    "0",
                    *UNLIMITED_CLIENTS,
                    "--edge-fanout",
                    args.edge_fanout,
                    "--edge-stream-interval",
                    str(args.edge_stream_interval),
                ],
                edge_nice=args.edge_nice,
            )
        if args.profile_edges:
            os.makedirs(args.profile_edges, exist_ok=True)
            for edge in cluster.edges:
                edge.command = _profiled(
                    edge, os.path.join(os.path.abspath(args.profile_edges), edge.name + ".txt")
                )
        with cluster:
            scenarios = ([] if args.no_baseline else [0]) + [args.subscribers]
            for n in scenarios:
                res = run_scenario(args, cluster, specs, n)
                results.append(res)
                print(fmt(res), flush=True)
    ok = True
    if len(results) == 2:
        base, load = results
        ratio = load["engine_cpu_us_per_order"] / base["engine_cpu_us_per_order"]
        p99 = load["trade_latency_ms"]["p99"]
        checks = {
            "nothing lost": load["lost_trades"] == 0 and load["order_errors"] == 0,
            "trade p99 < 100 ms": p99 is not None and p99 < 100,
            "engine CPU per order within 10% of baseline": ratio <= 1.10,
        }
        print(f"engine CPU per order, with/without subscribers: {ratio:.3f}")
        for name, passed in checks.items():
            print(f"  {'PASS' if passed else 'FAIL'}  {name}")
        ok = all(checks.values())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
