#!/usr/bin/env python3
"""Market-data latency: from an order's send time to the events it causes at subscribers.

    python tests/md_latency.py --rate 500 --duration 20 --subscribers 1,50
    python tests/md_latency.py --subscribers 50 --target-p99-ms 50 --json md.json --plot md.png

N subscribers connect to the ``/market`` namespace and subscribe to ``bbo``,
``l2_updates`` and ``trades`` of one symbol. An open-loop sender posts orders over REST
at ``--rate`` (a cycle of resting limit orders one tick off the mid and IOC orders that
take them, so every order changes the book and half of them trade). For every order
and every subscriber it measures, from the order's scheduled send time:

* ``trade``: arrival of each trade listed in the order's answer (by ``trade_id``);
* ``bbo`` / ``l2_update``: arrival of the first event whose ``sequence`` is >= the
  order's (when the order report carries a ``sequence``); otherwise the first whose
  server ``timestamp`` is >= the order report's timestamp (marked "by timestamp").

Every trade id in the answers must reach every subscriber: the ones that do not are
counted as lost. ``sequence`` going backwards at a subscriber is counted too.

With ``--subscribers 1,50`` the scenarios run one after the other against the same
server and are printed side by side. Subscribers use a lean raw-WebSocket Socket.IO
client by default (``--client raw``, many connections per process), because the
python-socketio client saturates at ~2.5-3k events/s per process on this machine;
``--client socketio`` uses python-socketio instead, as a cross-check.

Loopback only unless ``--allow-remote``; every scenario is bounded by ``--duration``
plus ``--settle`` and the drain timeout. Exit status 0 PASS, 1 FAIL, 2 usage/unreachable.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as _dt
import json
import multiprocessing as mp
import os
import queue
import re
import selectors
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadlib import accounts  # noqa: E402
from loadlib.httpengine import ERROR, HttpWorker  # noqa: E402
from loadlib.orders import CrossingFactory, build_specs  # noqa: E402
from loadlib.procs import ProcSampler, SystemSampler, find_server_pid  # noqa: E402
from loadlib.runner import cpu_count  # noqa: E402
from loadlib.safety import base_url, check_url, rate_limit_problem  # noqa: E402
from loadlib.stats import fmt_ms, summarize  # noqa: E402

EVENT_TYPES = ("trade", "bbo", "l2_update")
SENDER_BOTTLENECK_MS = 5.0  # a p99 send delay above this: every sender connection was busy
TOPICS = ("trades", "bbo", "l2_updates")

_TRADE_ID = re.compile(r'"trade_id"\s*:\s*"?([^",}\s]+)')
_SEQ = re.compile(r'"sequence"\s*:\s*(\d+)')
_TS = re.compile(r'"timestamp"\s*:\s*"([^"]+)"')


class SubRecord:
    """What one subscriber received: first arrival per trade id, (sequence, time, ts) per event."""

    def __init__(self):
        self.trades: dict[str, float] = {}
        self.dup_trades = 0
        self.bbo: list[tuple[int, float, str]] = []
        self.l2: list[tuple[int, float, str]] = []
        self.regressions = {"bbo": 0, "l2_update": 0}
        self.events = 0
        self.other = 0

    def on_packet(self, pkt: str, t: float, pfx: dict) -> None:
        self.events += 1
        if pkt.startswith(pfx["trade"]):
            m = _TRADE_ID.search(pkt)
            if m:
                tid = m.group(1)
                if tid in self.trades:
                    self.dup_trades += 1
                else:
                    self.trades[tid] = t
            return
        for name, lst in (("bbo", self.bbo), ("l2_update", self.l2)):
            if pkt.startswith(pfx[name]):
                m = _SEQ.search(pkt)
                ts = _TS.search(pkt)
                seq = int(m.group(1)) if m else -1
                if lst and seq < lst[-1][0]:
                    self.regressions[name] += 1
                lst.append((seq, t, ts.group(1)[:26] if ts else ""))
                return
        self.other += 1

    def on_event(self, name: str, data, t: float) -> None:
        """The python-socketio variant: parsed payloads."""
        self.events += 1
        if name == "trade":
            tid = str(data.get("trade_id"))
            if tid in self.trades:
                self.dup_trades += 1
            else:
                self.trades[tid] = t
            return
        lst = self.bbo if name == "bbo" else self.l2
        seq = data.get("sequence")
        seq = seq if isinstance(seq, int) else -1
        if lst and seq < lst[-1][0]:
            self.regressions[name] += 1
        lst.append((seq, t, str(data.get("timestamp", ""))[:26]))

    def export(self) -> dict:
        return {
            "trades": self.trades,
            "dup_trades": self.dup_trades,
            "bbo": self.bbo,
            "l2": self.l2,
            "regressions": self.regressions,
            "events": self.events,
            "other": self.other,
        }


def _subscribe_msgs(symbol: str, depth: int):
    return [
        {"type": "trades", "symbol": symbol},
        {"type": "bbo", "symbol": symbol},
        {"type": "l2_updates", "symbol": symbol, "depth": depth},
    ]


def sub_main_raw(cfg: dict, n: int, ready_q, stop_evt, out_q) -> None:
    """A subscriber process with ``n`` raw connections in one selector loop."""
    from loadlib.rawsio import RawSio

    try:
        ns = cfg["namespace"]
        pfx = {"trade": f'42{ns},["trade",', "bbo": f'42{ns},["bbo",', "l2_update": f'42{ns},["l2_update",'}
        sel = selectors.DefaultSelector()
        conns, recs, errors = [], [], []
        for _ in range(n):
            c = RawSio(cfg["host"], cfg["port"], ns)
            rec = SubRecord()
            try:
                c.connect()
                for msg in _subscribe_msgs(cfg["symbol"], cfg["depth"]):
                    ack = c.call("subscribe", msg)
                    if not (isinstance(ack, dict) and ack.get("ok") is True):
                        raise RuntimeError(f"subscribe {msg} answered {ack!r}")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                c.close()
                continue
            now = time.monotonic()
            for pkt in c.early:  # the snapshots sent on subscribing
                rec.on_packet(pkt, now, pfx)
            c.set_nonblocking()
            sel.register(c.sock, selectors.EVENT_READ, (c, rec))
            conns.append(c)
            recs.append(rec)
        ready_q.put(("ready", os.getpid(), len(conns), errors))
        cpu0, wall0 = time.process_time(), time.monotonic()
        mono = time.monotonic
        while not stop_evt.is_set():
            for key, _ in sel.select(0.05):
                c, rec = key.data
                t = mono()
                for pkt in c.on_readable():
                    rec.on_packet(pkt, t, pfx)
                if c.closed:
                    sel.unregister(key.fileobj)
        cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
        closed = sum(1 for c in conns if c.closed)
        for c in conns:
            c.close()
        out_q.put(("result", os.getpid(), [r.export() for r in recs], cpu, closed))
    except BaseException as exc:
        ready_q.put(("error", os.getpid(), 0, [f"{type(exc).__name__}: {exc}"]))
        out_q.put(("result", os.getpid(), [], 0.0, 0))


def _handler(rec: SubRecord, name: str):
    mono = time.monotonic

    def handler(data):
        rec.on_event(name, data, mono())

    return handler


def sub_main_sio(cfg: dict, n: int, ready_q, stop_evt, out_q) -> None:
    """A subscriber process with ``n`` python-socketio clients."""
    import socketio

    sys.setswitchinterval(0.0002)
    try:
        ns = cfg["namespace"]
        clients, recs, errors = [], [], []
        for _ in range(n):
            rec = SubRecord()
            c = socketio.Client(reconnection=False)
            for name in EVENT_TYPES:
                c.on(name, _handler(rec, name), namespace=ns)
            try:
                c.connect(
                    base_url(cfg["host"], cfg["port"]),
                    namespaces=[ns],
                    transports=["websocket"],
                    wait_timeout=10,
                )
                for msg in _subscribe_msgs(cfg["symbol"], cfg["depth"]):
                    ack = c.call("subscribe", msg, namespace=ns, timeout=10)
                    if not (isinstance(ack, dict) and ack.get("ok") is True):
                        raise RuntimeError(f"subscribe {msg} answered {ack!r}")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                try:
                    c.disconnect()
                except Exception:
                    pass
                continue
            clients.append(c)
            recs.append(rec)
        ready_q.put(("ready", os.getpid(), len(clients), errors))
        cpu0, wall0 = time.process_time(), time.monotonic()
        stop_evt.wait()
        cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
        closed = sum(1 for c in clients if not c.connected)
        for c in clients:
            try:
                c.disconnect()
            except Exception:
                pass
        out_q.put(("result", os.getpid(), [r.export() for r in recs], cpu, closed))
    except BaseException as exc:
        ready_q.put(("error", os.getpid(), 0, [f"{type(exc).__name__}: {exc}"]))
        out_q.put(("result", os.getpid(), [], 0.0, 0))


def iso_to_epoch(text: str) -> float | None:
    """``"2026-11-24T17:51:32.123456Z"`` -> seconds since the epoch; None if unreadable."""
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def parse_orders(answers: list, t0: float, wall_offset: float = 0.0) -> tuple[list[dict], dict]:
    """The sender's answers as order dicts: send time, ids, trades, sequence, timestamp.

    ``wall_offset`` is ``time.time() - time.monotonic()``: with it the order report's
    server ``timestamp`` (when the engine accepted the order) becomes ``t_receipt`` on
    the monotonic clock the subscribers stamp events with (same machine, same clock).
    """
    orders = []
    info = {"answers": len(answers), "rejected": 0, "http_errors": 0, "with_sequence": 0}
    for sched, sent, answered, status, body in answers:
        if status >= 500:
            info["http_errors"] += 1
            continue
        if status != 200:
            info["rejected"] += 1
            continue
        try:
            rep = json.loads(body)
        except ValueError:
            info["http_errors"] += 1
            continue
        seq = rep.get("sequence")
        if isinstance(seq, int):
            info["with_sequence"] += 1
        trades = [str(t.get("trade_id")) for t in rep.get("trades") or []]
        wall = iso_to_epoch(str(rep.get("timestamp", "")))
        orders.append(
            {
                "t_sched": t0 + sched,
                "t_sent": t0 + sent,
                "t_answer": t0 + answered,
                "t_receipt": None if wall is None else wall - wall_offset,
                "order_id": rep.get("order_id"),
                "status": rep.get("status"),
                "trades": trades,
                "sequence": seq if isinstance(seq, int) else None,
                "timestamp": str(rep.get("timestamp", ""))[:26],
                "changed": bool(trades) or rep.get("status") in ("new", "partially_filled"),
            }
        )
    return orders, info


def first_at_or_after(
    events: list[tuple[int, float, str]], orders: list[dict], by_seq: bool, ref: str = "t_sched"
):
    """For each book-changing order, the arrival time of the first event at least as new,
    minus the order's ``ref`` time (``t_sched`` or ``t_receipt``).

    Returns ``(latencies, missing)``. The events' running maximum of the key is
    non-decreasing, so a binary search finds the first event whose key reaches the
    order's.
    """
    keys = []
    best = None
    for seq, _t, ts in events:
        k = seq if by_seq else ts
        best = k if best is None or k > best else best
        keys.append(best)
    times = [t for _s, t, _ts in events]
    lats, missing = [], 0
    for o in orders:
        if not o["changed"] or o.get(ref) is None:
            continue
        k = o["sequence"] if by_seq else o["timestamp"]
        if k is None or k == "":
            continue
        i = bisect.bisect_left(keys, k)
        if i >= len(keys):
            missing += 1
        else:
            lats.append(times[i] - o[ref])
    return lats, missing


def analyze(orders: list[dict], subs: list[dict], by_seq: bool) -> dict:
    """Latency per event type over all subscribers, losses, regressions."""
    res = {"method": "sequence" if by_seq else "timestamp", "subscribers": len(subs)}
    trade_ids = {tid: o["t_sched"] for o in orders for tid in o["trades"]}
    trade_receipt = {tid: o.get("t_receipt") for o in orders for tid in o["trades"]}
    all_lat = {k: [] for k in EVENT_TYPES}
    from_receipt = {k: [] for k in EVENT_TYPES}
    lost = missing_bbo = missing_l2 = 0
    subs_with_loss = 0
    worst_p99 = {k: None for k in EVENT_TYPES}
    for s in subs:
        lat_t = []
        miss = 0
        for tid, ts in trade_ids.items():
            t = s["trades"].get(tid)
            if t is None:
                miss += 1
            else:
                lat_t.append(t - ts)
                if trade_receipt[tid] is not None:
                    from_receipt["trade"].append(t - trade_receipt[tid])
        lost += miss
        subs_with_loss += 1 if miss else 0
        lat_b, mb = first_at_or_after(s["bbo"], orders, by_seq)
        lat_l, ml = first_at_or_after(s["l2"], orders, by_seq)
        missing_bbo += mb
        missing_l2 += ml
        from_receipt["bbo"].extend(first_at_or_after(s["bbo"], orders, by_seq, "t_receipt")[0])
        from_receipt["l2_update"].extend(first_at_or_after(s["l2"], orders, by_seq, "t_receipt")[0])
        for k, v in (("trade", lat_t), ("bbo", lat_b), ("l2_update", lat_l)):
            all_lat[k].extend(v)
            p = summarize(v)["p99"]
            if p is not None and (worst_p99[k] is None or p > worst_p99[k]):
                worst_p99[k] = p
    res["latency_ms"] = {k: summarize(v) for k, v in all_lat.items()}
    res["from_receipt_ms"] = {k: summarize(v) for k, v in from_receipt.items()}
    res["worst_subscriber_p99_ms"] = worst_p99
    res["trades_expected_per_subscriber"] = len(trade_ids)
    res["lost_trades"] = lost
    res["subscribers_with_lost_trades"] = subs_with_loss
    res["duplicate_trades"] = sum(s["dup_trades"] for s in subs)
    res["bbo_not_reflected"] = missing_bbo
    res["l2_not_reflected"] = missing_l2
    res["sequence_regressions"] = {k: sum(s["regressions"][k] for s in subs) for k in ("bbo", "l2_update")}
    res["events_received"] = sum(s["events"] for s in subs)
    res["bbo_events_per_subscriber"] = (sum(len(s["bbo"]) for s in subs) / len(subs)) if subs else 0
    res["l2_events_per_subscriber"] = (sum(len(s["l2"]) for s in subs) / len(subs)) if subs else 0
    res["_samples"] = all_lat
    return res


def run_scenario(args, host: str, port: int, spec, n_subs: int, server_pid) -> dict:
    """One scenario: start subscribers, send for --duration, settle, collect, analyze."""
    cfg = {
        "host": host,
        "port": port,
        "namespace": args.namespace,
        "symbol": spec.symbol,
        "depth": args.depth,
    }
    nproc = max(1, min(args.sub_processes or min(2, cpu_count()), n_subs))
    per = [n_subs // nproc + (1 if i < n_subs % nproc else 0) for i in range(nproc)]
    ctx = mp.get_context("fork")
    ready_q, out_q = ctx.Queue(), ctx.Queue()
    stop_evt = ctx.Event()
    target = sub_main_raw if args.client == "raw" else sub_main_sio
    procs = [ctx.Process(target=target, args=(cfg, k, ready_q, stop_evt, out_q), daemon=True) for k in per]
    for p in procs:
        p.start()
    connected, errors = 0, []
    try:
        for _ in procs:
            try:
                kind, _pid, n, errs = ready_q.get(timeout=30)
            except queue.Empty:
                raise RuntimeError("subscribers did not connect within 30 s") from None
            connected += n
            errors += errs
        if connected < n_subs:
            raise RuntimeError(
                f"only {connected} of {n_subs} subscribers connected: " + "; ".join(sorted(set(errors))[:3])
            )
        time.sleep(0.3)  # let the subscription snapshots arrive
        keys = getattr(args, "keys", None) or [None]
        factory = CrossingFactory(
            spec, args.seed, tag=f"md{int(time.time()) % 100000:05d}", accounts=len(keys)
        )
        scfg = {
            "host": host,
            "port": port,
            "mode": "rest",
            "rate": args.rate,
            "duration": args.duration,
            "connections": args.connections,
            "timeout": args.timeout,
            "drain": args.drain,
            "arrival": "uniform",
            "seed": args.seed,
            "workers": 1,
            "specs": [spec],
            "mix": {"limit": 1.0},
            "batch_size": 1,
            "tag": "md",
            "factory_obj": factory,
            "keep_answers": True,
            "keys": keys,
        }
        sender = HttpWorker(scfg, 0)
        if sender.connect_all() == 0:
            raise RuntimeError(f"sender could not connect to {host}:{port}")
        sampler, machine = ProcSampler(server_pid), SystemSampler()
        sampler.start()
        machine.start()
        t0 = time.monotonic() + 0.05
        wall_offset = time.time() - time.monotonic()
        if not args.quiet:
            print(
                f"  {n_subs} subscriber(s) in {nproc} process(es): sending {args.rate:g} "
                f"orders/s for {args.duration:g} s ...",
                file=sys.stderr,
                flush=True,
            )
        sres = sender.run(t0)
        time.sleep(args.settle)
        server = sampler.stop()
        machine_use = machine.stop()
    finally:
        stop_evt.set()
    subs, sub_cpu, closed = [], [], 0
    for _ in procs:
        try:
            _k, _pid, recs, cpu, ncl = out_q.get(timeout=30)
        except queue.Empty:
            break
        subs.extend(recs)
        sub_cpu.append(round(cpu * 100, 1))
        closed += ncl
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
    orders, info = parse_orders(sender.keep, t0, wall_offset)
    by_seq = info["with_sequence"] > 0 and info["with_sequence"] == len(orders)
    res = analyze(orders, subs, by_seq)
    post = [sres["lat"][i] for i in range(len(sres["lat"])) if sres["outcome"][i] != ERROR]
    delays = [
        sres["sent"][i] - sres["sched"][i]
        for i in range(len(sres["sent"]))
        if sres["sent"][i] == sres["sent"][i]
    ]
    res.update(
        {
            "subscribers": n_subs,
            "subscriber_processes": nproc,
            "client": args.client,
            "offered_rate": args.rate,
            "duration_s": args.duration,
            "orders_scheduled": len(sres["sched"]),
            "orders_answered": len(post),
            "order_errors": sum(1 for o in sres["outcome"] if o == ERROR),
            "orders": info,
            "orders_changing_book": sum(1 for o in orders if o["changed"]),
            "post_latency_ms": summarize(post),
            "send_delay_ms": summarize(delays),
            "subscriber_cpu_percent": sub_cpu,
            "subscribers_disconnected": closed,
            "server": server,
            "machine": machine_use,
        }
    )
    return res


def format_results(results: list[dict]) -> str:
    """Side-by-side table of the scenarios."""
    cols = [f"{r['subscribers']} sub" + ("s" if r["subscribers"] != 1 else "") for r in results]
    w = 30
    lines = [
        "=== market-data latency, ms from the order's scheduled send time (and from its server receipt) ===",
        f"{'':<{w}}" + "".join(f"{c:>26}" for c in cols),
    ]

    def row(label, vals):
        lines.append(f"{label:<{w}}" + "".join(f"{v:>26}" for v in vals))

    row("offered orders/s", [f"{r['offered_rate']:g} for {r['duration_s']:g} s" for r in results])
    row("orders answered / errors", [f"{r['orders_answered']} / {r['order_errors']}" for r in results])
    row(
        "POST /order p50 / p99",
        [f"{fmt_ms(r['post_latency_ms']['p50'])} / {fmt_ms(r['post_latency_ms']['p99'])}" for r in results],
    )
    row(
        "send delay p50 / p99",
        [f"{fmt_ms(r['send_delay_ms']['p50'])} / {fmt_ms(r['send_delay_ms']['p99'])}" for r in results],
    )
    row("match bbo/l2 by", [r["method"] for r in results])
    for k in EVENT_TYPES:
        row(
            f"{k} p50 / p99 / max",
            [
                f"{fmt_ms(r['latency_ms'][k]['p50'])} / {fmt_ms(r['latency_ms'][k]['p99'])} / "
                f"{fmt_ms(r['latency_ms'][k]['max'])}"
                for r in results
            ],
        )
        row(f"{k} samples", [f"{r['latency_ms'][k]['count']:,}" for r in results])
        row(
            "  from receipt p50 / p99",
            [
                f"{fmt_ms(r['from_receipt_ms'][k]['p50'])} / {fmt_ms(r['from_receipt_ms'][k]['p99'])}"
                for r in results
            ],
        )
    row("worst subscriber p99 (trade)", [fmt_ms(r["worst_subscriber_p99_ms"]["trade"]) for r in results])
    row("trades expected per sub", [f"{r['trades_expected_per_subscriber']:,}" for r in results])
    row(
        "lost trades (subs with loss)",
        [f"{r['lost_trades']} ({r['subscribers_with_lost_trades']})" for r in results],
    )
    row("duplicate trades", [str(r["duplicate_trades"]) for r in results])
    row("bbo / l2 never reflected", [f"{r['bbo_not_reflected']} / {r['l2_not_reflected']}" for r in results])
    row(
        "sequence regressions",
        [f"{r['sequence_regressions']['bbo']} / {r['sequence_regressions']['l2_update']}" for r in results],
    )
    row(
        "bbo / l2 events per sub",
        [f"{r['bbo_events_per_subscriber']:,.0f} / {r['l2_events_per_subscriber']:,.0f}" for r in results],
    )
    row("events received, all subs", [f"{r['events_received']:,}" for r in results])
    row(
        "subscriber CPU % (per proc)",
        ["+".join(f"{c:.0f}" for c in r["subscriber_cpu_percent"]) for r in results],
    )
    row(
        "server CPU % of a core",
        [f"{r['server']['cpu_percent']:.0f}" if r.get("server") else "-" for r in results],
    )
    row(
        "server CPU us per order",
        [
            f"{r['server']['cpu_s'] * 1e6 / r['orders_answered']:,.0f}"
            if r.get("server") and r["server"].get("cpu_s") is not None and r["orders_answered"]
            else "-"
            for r in results
        ],
    )
    row(
        "machine busy % (all cores)",
        [f"{r['machine']['busy_percent']:.0f}" if r.get("machine") else "-" for r in results],
    )
    row(
        "CPU / IO pressure %",
        [
            f"{r['machine'].get('cpu_pressure_percent') or 0:.0f} / {r['machine'].get('io_pressure_percent') or 0:.0f}"
            if r.get("machine")
            else "-"
            for r in results
        ],
    )
    row("subscribers disconnected", [str(r["subscribers_disconnected"]) for r in results])
    return "\n".join(lines)


def verdict(results: list[dict], target_p99_ms: float | None) -> tuple[bool, str]:
    """PASS when no scenario lost a trade, saw a sequence regression, an order error or a
    disconnect, and (with a target) the trade and bbo p99 are within it."""
    bad, good = [], []
    for r in results:
        tag = f"{r['subscribers']} subs"
        regs = sum(r["sequence_regressions"].values())
        for ok, msg in (
            (r["lost_trades"] == 0, f"{r['lost_trades']} lost trades"),
            (regs == 0, f"{regs} sequence regressions"),
            (r["order_errors"] == 0, f"{r['order_errors']} order errors"),
            (r["subscribers_disconnected"] == 0, f"{r['subscribers_disconnected']} subscribers disconnected"),
        ):
            if not ok:
                bad.append(f"{tag}: {msg}")
        if target_p99_ms is not None:
            for k in ("trade", "bbo"):
                p = r["latency_ms"][k]["p99"]
                msg = f"{tag} {k} p99 {fmt_ms(p)} ms"
                (good if p is not None and p <= target_p99_ms else bad).append(msg)
    if bad:
        return False, "FAIL: " + "; ".join(bad)
    target = f" (target {target_p99_ms:g} ms)" if target_p99_ms is not None else ""
    return True, (
        "PASS: no lost trades, sequence regressions, order errors or disconnects"
        + ("; " + ", ".join(good) + target if good else "")
    )


def plot(path: str, results: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(EVENT_TYPES), figsize=(15, 4.5), sharey=True)
    for ax, k in zip(axes, EVENT_TYPES, strict=True):
        for r in results:
            vals = sorted(v * 1000 for v in r["_samples"][k])
            if not vals:
                continue
            n = len(vals)
            ax.plot(
                [max(v, 1e-3) for v in vals],
                [(i + 1) / n * 100 for i in range(n)],
                label=f"{r['subscribers']} subs (p99 {fmt_ms(r['latency_ms'][k]['p99'])} ms)",
            )
        ax.set_xscale("log")
        ax.set_title(k)
        ax.set_xlabel("ms from scheduled send (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("cumulative %")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default="http://127.0.0.1:5000")
    ap.add_argument("--allow-remote", action="store_true")
    ap.add_argument(
        "--allow-rate-limit",
        action="store_true",
        help="run even though the server's rate limit (X-RateLimit-Limit) is below --rate",
    )
    ap.add_argument("--symbol", default="BTC-USDT")
    ap.add_argument("--rate", type=float, default=500.0, help="orders/s offered (default 500)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending (default 10)")
    ap.add_argument(
        "--subscribers",
        default="1",
        help="subscriber count, or a comma list of scenarios such as 1,50 (default 1)",
    )
    ap.add_argument(
        "--sub-processes",
        type=int,
        default=None,
        help="processes the subscribers are spread over (default 2)",
    )
    ap.add_argument(
        "--client",
        choices=("raw", "socketio"),
        default="raw",
        help="subscriber client: lean raw WebSocket (default) or python-socketio",
    )
    ap.add_argument("--namespace", default="/market")
    ap.add_argument("--depth", type=int, default=10, help="l2_updates depth (default 10)")
    ap.add_argument(
        "--connections",
        type=int,
        default=16,
        help="sender connections (default 16: each waits for its order's durable answer, so too few "
        "turn the sender into the bottleneck; 'send delay' in the table shows it)",
    )
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--drain", type=float, default=5.0)
    ap.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds to wait for events after the last answer (default 1)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--target-p99-ms",
        type=float,
        default=None,
        help="FAIL when the p99 of trade or bbo events is above this",
    )
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--plot", metavar="OUT.png")
    ap.add_argument("--quiet", action="store_true")
    accounts.add_options(ap, accounts_default=2)
    return ap


def validate(args) -> tuple[str, int, list[int]]:
    """Raises ValueError (or UnsafeTargetError) with a message for the user."""
    host, port = check_url(args.url, args.allow_remote)
    if not 0 < args.rate <= 100_000:
        raise ValueError("--rate must be within (0, 100000]")
    if not 0 < args.duration <= 3600:
        raise ValueError("--duration must be within (0, 3600]")
    try:
        subs = [int(x) for x in args.subscribers.split(",") if x.strip()]
    except ValueError:
        raise ValueError("--subscribers takes integers such as 1,50") from None
    if not subs or any(not 1 <= s <= 1000 for s in subs):
        raise ValueError("--subscribers: each count within [1, 1000]")
    if args.sub_processes is not None and args.sub_processes < 1:
        raise ValueError("--sub-processes must be >= 1")
    if args.connections < 1 or args.settle < 0 or args.drain < 0 or args.timeout <= 0:
        raise ValueError("--connections >= 1, --settle/--drain >= 0, --timeout > 0")
    return host, port, subs


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        host, port, scenarios = validate(args)
    except ValueError as exc:
        ap.print_usage(sys.stderr)
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return 2
    from advanced_load_test import get_json

    headers: dict = {}
    try:
        get_json(host, port, "/health", headers=headers)
        _st, listing = get_json(host, port, "/symbols")
        _st, bbo = get_json(host, port, f"/bbo/{args.symbol}")
    except OSError as exc:
        print(f"error: {base_url(host, port)} is unreachable: {exc}", file=sys.stderr)
        return 2
    limited = rate_limit_problem(
        {k.lower(): v for k, v in headers.items()}.get("x-ratelimit-limit"), args.rate
    )
    if limited and not args.allow_rate_limit:
        print(f"error: {limited}", file=sys.stderr)
        return 2
    try:
        specs, _notes = build_specs([args.symbol], listing, {args.symbol: bbo if _st == 200 else None})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        keys = accounts.resolve_keys(args, host, port, base_url(host, port), f"md{os.getpid()}")
    except (accounts.KeysError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if keys.needed and len(keys.keys) < 2:
        print(
            "note: one account for makers and takers: self-trade prevention stops every trade",
            file=sys.stderr,
        )
    args.keys = keys.keys
    server_pid = find_server_pid(port)
    results = []
    try:
        for n in scenarios:
            try:
                results.append(run_scenario(args, host, port, specs[0], n, server_pid))
            except RuntimeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            time.sleep(0.5)
    finally:
        keys.close()
    print(format_results(results))
    if any(r["method"] == "timestamp" for r in results):
        print(
            "note: the order reports carry no 'sequence'; bbo/l2 events were matched by "
            "server timestamp (first event stamped at or after the order report)"
        )
    for r in results:
        delay = r["send_delay_ms"]["p99"]
        if delay is not None and delay > SENDER_BOTTLENECK_MS:
            print(
                f"note: {r['subscribers']} subs: sends waited up to {fmt_ms(delay)} ms (p99) for one of the "
                f"{args.connections} sender connections: the sender, not the server, set part of the "
                "latency; raise --connections"
            )
    passed, line = verdict(results, args.target_p99_ms)
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "tool": "md_latency",
                    "url": base_url(host, port),
                    "symbol": args.symbol,
                    "argv": accounts.redact_argv(sys.argv[1:] if argv is None else list(argv)),
                    "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
                    "verdict": {"passed": passed, "line": line},
                },
                f,
                indent=1,
            )
        print(f"wrote {args.json}")
    if args.plot:
        plot(
            args.plot,
            results,
            f"market-data latency, {args.symbol}, {args.rate:g} orders/s, "
            f"{args.client} subscribers - {base_url(host, port)}",
        )
        print(f"wrote {args.plot}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
