#!/usr/bin/env python3
"""Open-loop load test of the matching engine's order entry (REST, bulk REST, Socket.IO).

    python tests/advanced_load_test.py --rate 1000 --duration 60
    python tests/advanced_load_test.py --rate 500 --duration 60 --target-p99-ms 10 --plot load.png
    python tests/advanced_load_test.py --rate max --duration 10 --baseline      # ceilings
    python tests/advanced_load_test.py --mode batch --batch-size 50 --rate 30000 --duration 10
    python tests/advanced_load_test.py --mode ws --rate 1000 --duration 20

Requests are scheduled at the offered rate whatever the server does, and latency is
measured from each request's *scheduled* send time, so queueing caused by a slow
server is counted (no coordinated omission). Several worker processes drive raw
keep-alive sockets (or python-socketio clients for ``--mode ws``), so the generator is
not the bottleneck. The run stops by itself after ``--duration`` plus at most
``--drain`` seconds; only loopback targets are accepted unless ``--allow-remote``.
A server whose rate limit (``X-RateLimit-Limit``, on by default) is below the offered
rate is refused with a hint (start it with ``--rate-limit 0``) unless ``--allow-rate-limit``.

A server with ``--auth on`` wants an API key on every order: give ``--api-key KEY``
(repeat it for several accounts) or let the tool make ``--accounts`` accounts of its
own with the admin token of ``--data-dir`` / ``--admin-token-file`` (their keys are
revoked at the end). Orders go to the accounts in turn (``loadlib/accounts.py``).
With ``--auth off`` nothing changes.

Exit status: 0 PASS, 1 FAIL (a check of the verdict line failed), 2 usage error or
server unreachable. Documentation/LOAD_TESTING.md explains every figure.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadlib import accounts, report  # noqa: E402
from loadlib.orders import DEFAULT_SPECS, build_specs  # noqa: E402
from loadlib.procs import ProcSampler, SystemSampler, find_server_pid  # noqa: E402
from loadlib.runner import cpu_count, run_phase  # noqa: E402
from loadlib.safety import base_url, check_url, rate_limit_problem  # noqa: E402
from loadlib.schedule import DEFAULT_MIX, parse_mix, parse_rate  # noqa: E402

MAX_DURATION = 3600.0
MAX_RATE = 1_000_000.0
CONNECTIONS = 8
# REST flat out (--rate max, closed loop). A durable order holds its connection
# until the fsync of its group, and the server commits together only the orders in
# flight: with 8 connections ~3 share a group, with 64 ~30, and per group the server
# pays a hub round, a frame and an ack. The orders' ceiling rises with the
# connections (every run reached its plateau with 64); GET /health's and POST
# /ping's do not move (PERFORMANCE.md, section 3).
MAX_REST_CONNECTIONS = 64


def positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def non_negative_float(text: str) -> float:
    v = float(text)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 PASS, 1 FAIL, 2 usage error or server unreachable.",
    )
    ap.add_argument(
        "--rate",
        default="1000",
        help="offered orders/s (open loop), or 'max' for a closed loop flat out (default 1000)",
    )
    ap.add_argument(
        "--duration",
        type=positive_float,
        default=10.0,
        help=f"seconds of load (default 10, at most {MAX_DURATION:g})",
    )
    ap.add_argument(
        "--mode",
        choices=("rest", "batch", "ws"),
        default="rest",
        help="rest: POST /order per order; batch: POST /orders with --batch-size "
        "orders; ws: Socket.IO 'order'/'cancel' with acknowledgements",
    )
    ap.add_argument(
        "--connections",
        type=positive_int,
        default=None,
        help=f"total keep-alive connections / Socket.IO clients (default {CONNECTIONS}; "
        f"{MAX_REST_CONNECTIONS} for --mode rest --rate max, where durable orders need that many "
        "in flight to reach the server's ceiling)",
    )
    ap.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help=f"worker processes (default {min(2, cpu_count())}, the CPU count up to 2)",
    )
    ap.add_argument(
        "--symbols",
        default=",".join(DEFAULT_SPECS),
        help="comma-separated symbols (default: the contract's four)",
    )
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"order kinds and weights (default {DEFAULT_MIX})")
    ap.add_argument("--seed", type=int, default=1, help="seed of the order stream (default 1)")
    ap.add_argument(
        "--url", default="http://127.0.0.1:5000", help="server base URL (default http://127.0.0.1:5000)"
    )
    ap.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target that is not loopback (only for machines you own)",
    )
    ap.add_argument(
        "--allow-rate-limit",
        action="store_true",
        help="run even though the server's rate limit (X-RateLimit-Limit) is below the offered rate",
    )
    ap.add_argument(
        "--batch-size",
        type=positive_int,
        default=50,
        help="orders per POST /orders in batch mode (default 50)",
    )
    ap.add_argument("--batch-path", default="/orders", help=argparse.SUPPRESS)
    ap.add_argument(
        "--namespace", default="/trade", help="Socket.IO namespace of order entry in ws mode (default /trade)"
    )
    ap.add_argument(
        "--ws-client",
        choices=("socketio", "raw"),
        default="socketio",
        help="ws mode client: python-socketio (default) or the lean raw WebSocket client "
        "(a tenth of the CPU per order)",
    )
    ap.add_argument(
        "--arrival",
        choices=("uniform", "poisson"),
        default="uniform",
        help="evenly spaced sends (default) or Poisson arrivals",
    )
    ap.add_argument(
        "--timeout",
        type=positive_float,
        default=5.0,
        help="seconds before an unanswered request is an error (default 5)",
    )
    ap.add_argument(
        "--drain",
        type=non_negative_float,
        default=5.0,
        help="seconds after --duration to wait for answers (default 5)",
    )
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="first load the framework's own ceilings the same way (same rate in requests/s, "
        "connections, processes, duration): GET /health, and POST /ping with the orders' "
        "bodies (a trivial JSON POST); then the orders, and compare",
    )
    ap.add_argument(
        "--baseline-only", action="store_true", help="load only the baselines (the framework's own ceilings)"
    )
    ap.add_argument(
        "--baseline-endpoint",
        choices=("both", "ping", "health"),
        default="both",
        help="which baselines --baseline loads: POST /ping, GET /health or both (default)",
    )
    ap.add_argument(
        "--target-p99-ms", type=positive_float, default=None, help="FAIL when the p99 latency is above this"
    )
    ap.add_argument(
        "--target-rate",
        type=positive_float,
        default=None,
        help="FAIL when fewer orders/s than this are answered",
    )
    ap.add_argument(
        "--max-errors", type=int, default=0, help="FAIL when there are more errors than this (default 0)"
    )
    ap.add_argument(
        "--min-baseline-ratio",
        type=float,
        default=None,
        help="with --baseline: FAIL when requests/s are below this share of the baseline's "
        "(POST /ping's when it is loaded, else GET /health's; e.g. 0.8)",
    )
    ap.add_argument("--json", metavar="OUT", help="write the summary as JSON")
    ap.add_argument("--plot", metavar="OUT.png", help="write latency/rate plots (PNG)")
    ap.add_argument("--no-progress", action="store_true", help="no progress line")
    accounts.add_options(ap)
    return ap


def validate(args) -> dict:
    """Check the arguments and return the derived settings.

    Raises:
        ValueError: with a message for the user (also UnsafeTargetError).
    """
    host, port = check_url(args.url, args.allow_remote)
    rate = parse_rate(args.rate)
    if rate is not None and rate > MAX_RATE:
        raise ValueError(f"--rate above {MAX_RATE:g}/s is not a load test of this machine")
    if args.duration > MAX_DURATION:
        raise ValueError(f"--duration is at most {MAX_DURATION:g} s")
    mix = parse_mix(args.mix)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise ValueError("--symbols is empty")
    if len(set(symbols)) != len(symbols):
        raise ValueError("--symbols lists a symbol twice")
    notes = []
    if args.mode == "batch" and mix["cancel"] > 0:
        mix = dict(mix, cancel=0.0)
        total = sum(mix.values())
        if total <= 0:
            raise ValueError("batch mode sends orders only; the mix has nothing but cancels")
        mix = {k: v / total for k, v in mix.items()}
        notes.append("batch mode: POST /orders takes orders only, cancels left out of the mix")
    if args.baseline and args.baseline_only:
        raise ValueError("--baseline and --baseline-only exclude each other")
    if args.min_baseline_ratio is not None and not args.baseline:
        raise ValueError("--min-baseline-ratio needs --baseline")
    connections = args.connections or (
        MAX_REST_CONNECTIONS if rate is None and args.mode == "rest" else CONNECTIONS
    )
    processes = args.processes or min(2, cpu_count())
    if processes > connections:
        processes = connections
    if rate is not None and args.mode == "batch" and rate / args.batch_size < 0.1:
        raise ValueError("--rate / --batch-size is below one request per 10 s")
    return {
        "host": host,
        "port": port,
        "rate": rate,
        "mix": mix,
        "symbols": symbols,
        "connections": connections,
        "processes": processes,
        "notes": notes,
    }


def get_json(host: str, port: int, path: str, timeout: float = 3.0, headers: dict | None = None):
    """``(status, parsed body or None)`` of one GET; raises OSError when unreachable.
    ``headers``, when given, receives the answer's headers."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        if headers is not None:
            headers.update(r.getheaders())
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, None
    finally:
        conn.close()


def rest_requests_per_second(args, rate: float | None) -> float | None:
    """The requests/s a run offers against the server's per-client rate limit
    (None: as fast as it can; 0: none). ``/trade`` commands count like REST
    requests (one per order or cancel)."""
    if args.baseline or args.baseline_only:
        return rate  # the /health phase offers the order rate as requests (or max)
    if rate is None:
        return None
    return rate / (args.batch_size if args.mode == "batch" else 1)


def discover(host: str, port: int, symbols: list[str]):
    """Read /symbols and each symbol's /bbo; ``(specs, notes)``."""
    notes = []
    try:
        st, listing = get_json(host, port, "/symbols")
        if st != 200:
            notes.append(f"GET /symbols answered {st}; using the contract's default grids")
            listing = None
    except OSError as exc:
        notes.append(f"GET /symbols failed ({exc}); using the contract's default grids")
        listing = None
    bbos = {}
    for sym in symbols:
        try:
            st, bbo = get_json(host, port, f"/bbo/{sym}")
            bbos[sym] = bbo if st == 200 else None
        except OSError:
            bbos[sym] = None
    specs, more = build_specs(symbols, listing, bbos)
    return specs, notes + more


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        v = validate(args)
    except ValueError as exc:
        ap.print_usage(sys.stderr)
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return 2
    host, port = v["host"], v["port"]
    url = base_url(host, port)
    headers: dict = {}
    try:
        st, health = get_json(host, port, "/health", headers=headers)
    except OSError as exc:
        print(f"error: {url}/health is unreachable: {exc}", file=sys.stderr)
        return 2
    if st != 200:
        print(f"warning: GET /health answered {st}", file=sys.stderr)
    limited = rate_limit_problem(
        {k.lower(): v for k, v in headers.items()}.get("x-ratelimit-limit"),
        rest_requests_per_second(args, v["rate"]),
    )
    if limited and not args.allow_rate_limit:
        print(f"error: {limited}", file=sys.stderr)
        return 2
    notes = list(v["notes"])
    specs = []
    if not args.baseline_only or args.baseline_endpoint != "health":  # POST /ping sends orders' bodies
        try:
            specs, more = discover(host, port, v["symbols"])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        notes += more
    tag = f"lt{int(time.time()) % 100000:05d}"
    keys = None
    if not args.baseline_only:  # the baselines (GET /health, POST /ping) need no account
        try:
            keys = accounts.resolve_keys(args, host, port, url, tag)
        except (accounts.KeysError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if keys.needed:
            notes.append(f"orders sent as {keys.describe()}")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    try:
        return run(args, v, url, specs, notes, tag, keys.keys if keys else [None], argv)
    finally:
        if keys is not None:
            keys.close()


def run(args, v: dict, url: str, specs: list, notes: list, tag: str, keys: list, argv) -> int:
    """The phases, the report, the verdict; returns the exit status."""
    host, port = v["host"], v["port"]
    cfg = {
        "host": host,
        "port": port,
        "rate": v["rate"],
        "duration": args.duration,
        "connections": v["connections"],
        "timeout": args.timeout,
        "drain": args.drain,
        "arrival": args.arrival,
        "seed": args.seed,
        "specs": specs,
        "mix": v["mix"],
        "batch_size": args.batch_size if args.mode == "batch" else 1,
        "batch_path": args.batch_path,
        "tag": tag,
        "namespace": args.namespace,
        "ws_client": args.ws_client,
        "keys": keys,
    }
    phases = []  # (label, engine, cfg)
    if args.baseline or args.baseline_only:
        hrate = None if v["rate"] is None else v["rate"] / cfg["batch_size"]
        for mode in ("health", "ping"):
            if args.baseline_endpoint in (mode, "both"):
                base = dict(cfg, mode=mode, rate=hrate, batch_size=1)
                phases.append((mode, "http", base))
    if not args.baseline_only:
        engine = "ws" if args.mode == "ws" else "http"
        phases.append(("orders", engine, dict(cfg, mode=args.mode)))

    server_pid = find_server_pid(port) if host.startswith("127.") or host == "::1" else None
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    done = []  # (summary, merged)
    for i, (label, engine, pcfg) in enumerate(phases):
        if i:
            time.sleep(1.0)  # let the server settle between phases
        sampler, machine = ProcSampler(server_pid), SystemSampler()
        sampler.start()
        machine.start()
        try:
            merged = run_phase(
                engine, pcfg, v["processes"], label=f"{label} ", show_progress=not args.no_progress
            )
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        merged["server"] = sampler.stop()
        merged["machine"] = machine.stop()
        s = report.analyze(merged, dict(pcfg, label=label))
        done.append((s, merged))

    main_s = done[-1][0]
    baselines = {s["mode"]: s for s, _ in done[:-1]} if args.baseline else {}
    # The target compares with POST /ping: a JSON POST, as order entry is.
    baseline_s = baselines.get("ping") or baselines.get("health")
    print()
    for s, _ in done:
        print(report.format_summary(s))
        print()
    for s in baselines.values():
        print(report.baseline_line(main_s, s))
    passed, line = report.verdict(
        main_s,
        args.target_p99_ms,
        args.target_rate,
        args.max_errors,
        baseline=baseline_s,
        min_baseline_ratio=args.min_baseline_ratio,
    )
    print(line)

    if args.json:
        out = {
            "tool": "advanced_load_test",
            "started": started,
            "url": url,
            "argv": accounts.redact_argv(sys.argv[1:] if argv is None else list(argv)),
            "machine": {
                "cpus": cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "notes": notes,
            "phases": [s for s, _ in done],
            "baseline_ratio": _ratio(main_s, baseline_s),
            "baseline_ratios": {mode: _ratio(main_s, s) for mode, s in baselines.items()},
            "verdict": {"passed": passed, "line": line},
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        rate = "max" if v["rate"] is None else f"{v['rate']:g}/s"
        title = (
            f"{args.mode} load, offered {rate}, {args.duration:g} s, "
            f"{v['processes']} processes x {v['connections']} connections - {url}"
        )
        if args.baseline_only:
            names = " and ".join(report.BASELINE_ENDPOINTS[s["mode"]] for s, _ in done)
            title = f"{names} baseline, offered {rate}, {args.duration:g} s - {url}"
        report.plot(args.plot, [done[-1]] + done[:-1], title)
        print(f"wrote {args.plot}")
    return 0 if passed else 1


def _ratio(orders: dict, baseline: dict | None) -> float | None:
    """The orders phase's requests/s as a share of a baseline phase's."""
    if not baseline or not baseline["achieved_rate"]:
        return None
    return orders["requests_rate"] / baseline["achieved_rate"]


if __name__ == "__main__":
    sys.exit(main())
