#!/usr/bin/env python3
"""Monitoring, profiling and load-level sweeps of the matching engine service.

    python tests/monitoring_suite.py --test monitor [--url URL] [--pid PID] [--iterations 60]
    python tests/monitoring_suite.py --test profile [--ops 200000] [--layer engine|exchange]
    python tests/monitoring_suite.py --test comprehensive [--levels 250,500,1000,2000]
                                     [--level-duration 10] [--out-dir load-report]

monitor
    A refreshing table of the server's ``GET /statistics`` (numeric fields, with their
    change per second) and of its process: CPU % (of one core), RSS, threads, open
    files and connections. The server process is ``--pid`` or whoever listens on the
    URL's port. ``--iterations`` samples, ``--interval`` seconds apart.
profile
    Runs the engine in this process under cProfile on the shared seeded workload
    (``../shared/bench/workload.py``'s ``generate()``, through ``tests/bench_adapter.py``;
    a small built-in generator when those files are missing) and prints the top
    functions by own time and by cumulative time, after an unprofiled pass that gives
    the real ops/s. ``--layer exchange`` profiles the service core instead
    (``api.service.Exchange.place_order`` / ``cancel_order``: parsing, matching and
    report formatting, no HTTP, no journal).
comprehensive
    Runs ``tests/advanced_load_test.py`` at each of ``--levels`` orders/s (plus
    closed-loop ceilings of ``GET /health``, of ``POST /ping`` and of orders) against the
    URL and writes ``report.md``, ``levels.json``, a latency-vs-load plot and each
    level's own plot into ``--out-dir``. With ``--auth on`` the orders need accounts:
    ``--api-key`` / ``--api-key-file``, or the admin token (``--data-dir``,
    ``--admin-token-file``) with which the suite makes ``--accounts`` accounts once for
    all its runs (they get the keys in a 0600 file, never on their command line).

Loopback targets only unless ``--allow-remote``; every run is bounded.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from loadlib import accounts  # noqa: E402
from loadlib.procs import find_server_pid  # noqa: E402
from loadlib.runner import cpu_count  # noqa: E402
from loadlib.safety import base_url, check_url  # noqa: E402
from loadlib.stats import fmt_ms  # noqa: E402

SHARED_WORKLOAD = os.path.join(ROOT, "..", "shared", "bench", "workload.py")
DEFAULT_FILTER = (
    r"^(engine\.(orders|cancels|trades|rejections|resting_orders)$"
    r"|latency\.[^.]+\.(p50|p99)(_us|_ms)?$"
    r"|streaming\.(connected_clients|deliveries|queue_depth|events_emitted\.\w+"
    r"|latency\.[^.]+\.(p50|p99)(_us|_ms)?)$"
    r"|storage\.(records|fsyncs|batches|bytes)$"
    r"|uptime_seconds$)"
)


# ---------------------------------------------------------------- monitor
def flatten(obj, prefix: str = "") -> dict:
    """Nested dicts -> ``{"a.b.c": leaf}`` (lists are skipped)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flatten(v, key))
            elif not isinstance(v, list):
                out[key] = v
    return out


def as_number(v):
    """A float for numbers and numeric strings (decimal strings included), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def monitor(args, host: str, port: int) -> int:
    import psutil
    from advanced_load_test import get_json

    pid = args.pid or find_server_pid(port)
    proc = None
    if pid:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
        except psutil.Error:
            proc = None
    flt = re.compile(args.filter) if args.filter else (None if args.all else re.compile(DEFAULT_FILTER))
    tty = sys.stdout.isatty()
    prev, prev_t = None, None
    for i in range(args.iterations):
        t = time.monotonic()
        try:
            st, stats = get_json(host, port, "/statistics", timeout=max(1.0, args.interval))
        except OSError as exc:
            stats, st = {"error": str(exc)}, 0
        flat = flatten(stats) if isinstance(stats, dict) else {}
        lines = [
            f"{base_url(host, port)}/statistics  sample {i + 1}/{args.iterations}  "
            f"{_dt.datetime.now().strftime('%H:%M:%S')}  (HTTP {st})"
        ]
        if proc is not None:
            try:
                with proc.oneshot():
                    mem = proc.memory_info()
                    try:
                        nconn = len(proc.net_connections(kind="tcp"))
                    except psutil.Error:
                        nconn = -1
                    lines.append(
                        f"process {pid}: CPU {proc.cpu_percent(None):5.1f}% of a core   "
                        f"RSS {mem.rss / 2**20:7.1f} MB   threads {proc.num_threads()}   "
                        f"fds {proc.num_fds()}   tcp {nconn}"
                    )
            except psutil.Error as exc:
                lines.append(f"process {pid}: gone ({exc})")
                proc = None
        else:
            lines.append("process: unknown (give --pid, or run on the server's machine as its user)")
        lines.append(f"{'field':<58}{'value':>16}{'per s':>12}")
        dt = (t - prev_t) if prev_t is not None else None
        for key, val in flat.items():
            if flt is not None and not flt.search(key):
                continue
            num = as_number(val)
            rate = ""
            if num is not None and prev is not None and dt:
                old = as_number(prev.get(key))
                if old is not None and num != old and not re.search(r"(p\d+|max|mean|_us|_ms|depth)", key):
                    rate = f"{(num - old) / dt:,.1f}"
            shown = f"{num:,.2f}".rstrip("0").rstrip(".") if num is not None else str(val)
            lines.append(f"{key:<58}{shown:>16}{rate:>12}")
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        else:
            sys.stdout.write("\n".join(lines) + "\n\n")
        sys.stdout.flush()
        prev, prev_t = flat, t
        if i + 1 < args.iterations:
            time.sleep(max(0.0, args.interval - (time.monotonic() - t)))
    return 0


# ---------------------------------------------------------------- profile
def _load_module(path: str, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec.loader.exec_module(mod)
    return mod


def builtin_workload(n: int, seed: int):
    """A small stand-in for the shared workload: same op tuples, simpler mix."""
    import random

    rng = random.Random(seed)
    ops, live, mid = [], [], 100_000
    for oid in range(1, n + 1):
        r = rng.random()
        side = "B" if rng.random() < 0.5 else "S"
        if r < 0.25 and live:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            ops.append(("C", 0, live.pop(), side, 0, 0))
            continue
        if r < 0.35:
            ops.append(("M", 0, oid, side, 0, rng.randint(1, 20)))
            continue
        off = rng.randint(1, 10) if rng.random() < 0.88 else -rng.randint(0, 4)
        price = mid - off if side == "B" else mid + off
        ops.append(("L", 0, oid, side, price, rng.randint(1, 50)))
        live.append(oid)
    return ops, {"n": n, "seed": seed, "generator": "built-in"}


def load_workload(n: int, seed: int):
    if os.path.exists(SHARED_WORKLOAD):
        wl = _load_module(SHARED_WORKLOAD, "shared_workload")
        ops, info = wl.generate(n, seed)
        info = dict(info, generator=os.path.normpath(SHARED_WORKLOAD))
        return ops, info
    return builtin_workload(n, seed)


class ExchangeDriver:
    """Feeds workload ops to ``api.service.Exchange`` as contract bodies (no HTTP, no store)."""

    def __init__(self):
        sys.path.insert(0, ROOT)
        from decimal import Decimal

        from api.service import Exchange
        from engine.matcher import MatchingEngine
        from engine.symbols import SymbolSpec

        spec = SymbolSpec("SYM0", "SYM0", "USDT", Decimal("0.01"), Decimal("0.001"))
        self.exchange = Exchange(MatchingEngine([spec]))
        self.ids = {}
        self.trades = 0
        self.errors = 0

    @staticmethod
    def _fmt(units: int, decimals: int) -> str:
        s = str(units).rjust(decimals + 1, "0")
        return f"{s[:-decimals]}.{s[-decimals:]}"

    def submit(self, op):
        kind, _sym, oid, side, price, qty = op
        ex = self.exchange
        if kind == "C":
            order_id = self.ids.pop(oid, None)
            if order_id is not None:
                try:
                    ex.cancel_order({"order_id": order_id})
                except Exception:
                    self.errors += 1
            return
        body = {
            "symbol": "SYM0",
            "side": "buy" if side == "B" else "sell",
            "order_type": {"L": "limit", "M": "market", "I": "ioc", "F": "fok"}[kind],
            "quantity": self._fmt(qty, 3),
        }
        if kind != "M":
            body["price"] = self._fmt(price, 2)
        rep = ex.place_order(body)
        self.trades += len(rep["trades"])
        if rep["status"] in ("new", "partially_filled"):
            self.ids[oid] = rep["order_id"]

    def result(self):
        return {"trades": self.trades, "errors": self.errors}


def make_driver(layer: str):
    if layer == "exchange":
        return ExchangeDriver()
    adapter_path = os.path.join(HERE, "bench_adapter.py")
    if not os.path.exists(adapter_path):
        raise RuntimeError("tests/bench_adapter.py is missing: nothing shows how to drive the engine")
    mod = _load_module(adapter_path, "bench_adapter_for_profile")
    return mod.Adapter(1)


def profile(args) -> int:
    import cProfile
    import io
    import pstats

    ops, info = load_workload(args.ops, args.seed)
    print(
        f"workload: {info.get('generator')}, {len(ops):,} ops, seed {args.seed}"
        + (f", sha256 {info['sha256'][:16]}..." if "sha256" in info else "")
    )
    print(f"layer: {args.layer}  (python {platform.python_version()}, {cpu_count()} CPUs)")
    for rep in range(args.iterations):
        driver = make_driver(args.layer)
        submit = driver.submit
        t = time.perf_counter()
        for op in ops:
            submit(op)
        el = time.perf_counter() - t
        print(f"unprofiled pass {rep + 1}: {len(ops) / el:,.0f} ops/s ({el:.2f} s), result {driver.result()}")
    driver = make_driver(args.layer)
    submit = driver.submit
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for op in ops:
        submit(op)
    prof.disable()
    el = time.perf_counter() - t
    print(f"profiled pass: {len(ops) / el:,.0f} ops/s ({el:.2f} s; cProfile slows pure-Python code ~2-3x)")
    if args.profile_out:
        prof.dump_stats(args.profile_out)
        print(f"wrote {args.profile_out} (open with: python -m pstats {args.profile_out})")
    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf)
        st.strip_dirs().sort_stats(key).print_stats(args.top)
        text = buf.getvalue()
        start = text.find("   ncalls")
        print(f"\n--- top {args.top} functions by {title} ---")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())
    return 0


# ---------------------------------------------------------------- comprehensive
def run_load(
    url: str, extra: list[str], json_path: str, plot_path: str | None, allow_remote: bool, timeout: float
) -> dict | None:
    cmd = [
        sys.executable,
        os.path.join(HERE, "advanced_load_test.py"),
        "--url",
        url,
        "--json",
        json_path,
        "--no-progress",
        *extra,
    ]
    if plot_path:
        cmd += ["--plot", plot_path]
    if allow_remote:
        cmd.append("--allow-remote")
    print("$ " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd[1:]), flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print("  timed out", flush=True)
        return None
    if proc.returncode == 2 or not os.path.exists(json_path):
        print(f"  failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}", flush=True)
        return None
    with open(json_path) as f:
        return json.load(f)


# The closed-loop ceilings of the report: each run loads one phase, the one named.
CEILINGS = (
    ("health ceiling", ["--rate", "max", "--baseline-only", "--baseline-endpoint", "health"]),
    ("ping ceiling", ["--rate", "max", "--baseline-only", "--baseline-endpoint", "ping"]),
    ("orders ceiling", ["--rate", "max"]),
)


def comprehensive(args, url: str) -> int:
    os.makedirs(args.out_dir, exist_ok=True)
    levels = [float(x) for x in args.levels.split(",") if x.strip()]
    dur = args.level_duration
    common = ["--duration", f"{dur:g}", "--mode", args.mode, "--seed", str(args.seed)]
    if args.connections:
        common += ["--connections", str(args.connections)]
    if args.processes:
        common += ["--processes", str(args.processes)]
    timeout = dur * 2 + 60
    host, port = check_url(url, args.allow_remote)
    try:
        keys = accounts.resolve_keys(args, host, port, url, f"ms{os.getpid()}")
    except (accounts.KeysError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key_file = accounts.write_key_file(keys.keys, args.out_dir) if keys.needed else None
    if key_file:
        common += ["--api-key-file", key_file]
        print(f"orders sent as {keys.describe()}", flush=True)
    try:
        return comprehensive_runs(args, url, levels, common, timeout)
    finally:
        if key_file:
            os.unlink(key_file)
        keys.close()


def comprehensive_runs(args, url: str, levels: list[float], common: list[str], timeout: float) -> int:
    """The ceilings and the levels, then the report (see ``comprehensive``)."""

    def load(slug: str, extra: list[str]):
        """One run of the load runner; its JSON and plot are ``<slug>.json`` / ``.png``."""
        out = os.path.join(args.out_dir, slug)
        return run_load(url, common + extra, out + ".json", out + ".png", args.allow_remote, timeout)

    rows = []
    ceilings = {}
    for label, extra in CEILINGS:
        if args.no_ceilings:
            break
        slug = label.replace(" ", "_")
        out = load(slug, extra)
        if out:
            ceilings[label] = out["phases"][-1]
        time.sleep(1)
    for level in levels:
        for it in range(args.iterations):
            slug = f"level_{level:g}" + (f"_run{it + 1}" if args.iterations > 1 else "")
            extra = ["--rate", f"{level:g}"]
            if args.target_p99_ms:
                extra += ["--target-p99-ms", f"{args.target_p99_ms:g}"]
            out = load(slug, extra)
            if out:
                s = out["phases"][-1]
                rows.append(
                    {
                        "level": level,
                        "run": it + 1,
                        "summary": s,
                        "passed": out["verdict"]["passed"],
                        "png": f"{slug}.png",
                    }
                )
                lat = s["latency_ms"]
                print(
                    f"  -> achieved {s['achieved_rate']:,.0f}/s, p50 {fmt_ms(lat['p50'])} "
                    f"p99 {fmt_ms(lat['p99'])} max {fmt_ms(lat['max'])} ms, errors {s['errors']}",
                    flush=True,
                )
            time.sleep(1)
    with open(os.path.join(args.out_dir, "levels.json"), "w") as f:
        json.dump({"url": url, "levels": rows, "ceilings": ceilings}, f, indent=1)
    plot_levels(os.path.join(args.out_dir, "latency_vs_load.png"), rows, ceilings, args.mode)
    write_report(os.path.join(args.out_dir, "report.md"), args, url, rows, ceilings)
    print(f"wrote {os.path.join(args.out_dir, 'report.md')}")
    return 0 if rows and all(r["passed"] for r in rows) else 1


def plot_levels(path: str, rows: list[dict], ceilings: dict, mode: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    xs = [r["level"] for r in rows]
    for key, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-"), ("p99.9", "v-"), ("max", "x--")):
        ax1.plot(xs, [r["summary"]["latency_ms"][key] for r in rows], style, label=key)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("offered orders/s")
    ax1.set_ylabel("latency ms (from scheduled send)")
    ax1.set_title(f"latency vs offered load ({mode})")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.plot(xs, [r["summary"]["achieved_rate"] for r in rows], "o-", label="achieved")
    ax2.plot(xs, xs, "k--", lw=1, label="offered")
    for label, s in ceilings.items():
        ax2.axhline(
            s["achieved_rate"],
            ls=":",
            color={"health ceiling": "tab:red", "ping ceiling": "tab:orange"}.get(label, "tab:green"),
            label=f"{label} {s['achieved_rate']:,.0f}/s",
        )
    ax2.set_xlabel("offered orders/s")
    ax2.set_ylabel("answered per s")
    ax2.set_title("achieved vs offered")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _us(s: dict) -> str:
    v = s.get("server_cpu_us_per_request")
    return "-" if v is None else f"{v:,.0f}"


def _machine(s: dict) -> str:
    """'busy% (CPU pressure%, IO pressure%)' of a phase summary, or '-'."""
    m = s.get("machine") or {}
    if m.get("busy_percent") is None:
        return "-"
    out = f"{m['busy_percent']:.0f}"
    if m.get("cpu_pressure_percent") is not None:
        out += f" ({m['cpu_pressure_percent']:.0f}, {m['io_pressure_percent']:.0f})"
    return out


def write_report(path: str, args, url: str, rows: list[dict], ceilings: dict) -> None:
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    lines = [
        f"# Load levels ({args.mode})",
        "",
        f"{now}, {url}, {cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.level_duration:g} s per level, seed {args.seed}.",
        "",
        "Latency in ms from each request's scheduled send time (open loop, no "
        "coordinated omission); see Documentation/LOAD_TESTING.md.",
        "",
    ]
    if ceilings:
        lines += [
            "## Ceilings (closed loop, flat out)",
            "",
            "| what | answered/s | p50 | p99 | max | errors | server CPU % | server CPU µs/request | machine busy % (CPU, IO pressure %) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for label, s in ceilings.items():
            lat = s["latency_ms"]
            srv = (s.get("server") or {}).get("cpu_percent")
            mach = _machine(s)
            lines.append(
                f"| {label} | {s['achieved_rate']:,.0f} | {fmt_ms(lat['p50'])} | "
                f"{fmt_ms(lat['p99'])} | {fmt_ms(lat['max'])} | {s['errors']} | "
                f"{'-' if srv is None else f'{srv:.0f}'} | {_us(s)} | {mach} |"
            )
        o = ceilings.get("orders ceiling")
        for label, endpoint in (("health ceiling", "GET /health"), ("ping ceiling", "POST /ping")):
            base = ceilings.get(label)
            if o and base and base["achieved_rate"]:
                lines += [
                    "",
                    f"Orders ceiling = {o['achieved_rate'] / base['achieved_rate']:.0%} of the "
                    f"{endpoint} ceiling.",
                ]
        lines.append("")
    lines += [
        "## Levels (open loop)",
        "",
        "| offered/s | achieved/s | ok | rejected | errors | p50 | p90 | p99 | p99.9 | max "
        "| trades/s | server CPU % | server CPU µs/order | machine busy % (CPU, IO pressure %) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["summary"]
        lat = s["latency_ms"]
        srv = (s.get("server") or {}).get("cpu_percent")
        mach = _machine(s)
        lines.append(
            f"| {r['level']:,.0f} | {s['achieved_rate']:,.0f} | {s['ok']:,} | {s['rejected']:,} | "
            f"{s['errors']:,} | {fmt_ms(lat['p50'])} | {fmt_ms(lat['p90'])} | {fmt_ms(lat['p99'])} | "
            f"{fmt_ms(lat['p99.9'])} | {fmt_ms(lat['max'])} | {s['trades_rate']:,.0f} | "
            f"{'-' if srv is None else f'{srv:.0f}'} | {_us(s)} | {mach} | "
            f"{'PASS' if r['passed'] else 'FAIL'} |"
        )
    lines += ["", "![latency vs load](latency_vs_load.png)", ""]
    for r in rows:
        lines.append(f"- {r['level']:g}/s: [{r['png']}]({r['png']})")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--test", choices=("monitor", "profile", "comprehensive"), required=True)
    ap.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="monitor: samples (default 30); profile: unprofiled passes (default 1); "
        "comprehensive: runs per level (default 1)",
    )
    ap.add_argument("--url", default="http://127.0.0.1:5000")
    ap.add_argument("--allow-remote", action="store_true")
    ap.add_argument("--pid", type=int, default=None, help="server process id (monitor)")
    ap.add_argument("--interval", type=float, default=1.0, help="monitor: seconds between samples")
    ap.add_argument("--filter", default=None, help="monitor: regex of /statistics fields to show")
    ap.add_argument("--all", action="store_true", help="monitor: show every /statistics field")
    ap.add_argument("--ops", type=int, default=200_000, help="profile: workload size (default 200000)")
    ap.add_argument("--seed", type=int, default=42, help="profile/comprehensive seed (default 42)")
    ap.add_argument(
        "--layer",
        choices=("engine", "exchange"),
        default="engine",
        help="profile: the engine alone, or the service core around it",
    )
    ap.add_argument("--top", type=int, default=25, help="profile: functions to list (default 25)")
    ap.add_argument("--profile-out", default=None, help="profile: also write pstats data here")
    ap.add_argument(
        "--levels",
        default="250,500,1000,2000",
        help="comprehensive: offered orders/s per level (default 250,500,1000,2000)",
    )
    ap.add_argument(
        "--level-duration", type=float, default=10.0, help="comprehensive: seconds per level (default 10)"
    )
    ap.add_argument(
        "--mode",
        choices=("rest", "batch", "ws"),
        default="rest",
        help="comprehensive: order-entry mode (default rest)",
    )
    ap.add_argument("--connections", type=int, default=None)
    ap.add_argument("--processes", type=int, default=None)
    ap.add_argument("--target-p99-ms", type=float, default=None)
    ap.add_argument(
        "--no-ceilings", action="store_true", help="comprehensive: skip the two closed-loop ceiling runs"
    )
    ap.add_argument("--out-dir", default="load-report", help="comprehensive: output directory")
    accounts.add_options(ap)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        host, port = check_url(args.url, args.allow_remote)
        if args.iterations is not None and not 1 <= args.iterations <= 100_000:
            raise ValueError("--iterations must be within [1, 100000]")
        if args.interval <= 0 or args.ops < 1 or args.level_duration <= 0:
            raise ValueError("--interval, --ops and --level-duration must be positive")
        if args.level_duration > 600:
            raise ValueError("--level-duration is at most 600 s")
        if args.filter:
            re.compile(args.filter)
    except (ValueError, re.error) as exc:
        ap.print_usage(sys.stderr)
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.test == "monitor":
        args.iterations = args.iterations or 30
        return monitor(args, host, port)
    if args.test == "profile":
        args.iterations = args.iterations or 1
        return profile(args)
    args.iterations = args.iterations or 1
    return comprehensive(args, base_url(host, port))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
