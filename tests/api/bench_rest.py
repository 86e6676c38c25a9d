"""REST throughput of a real server, side by side in one run (a benchmark script,
not a test): ``GET /health`` (the framework's ceiling), ``POST /order`` and
``POST /orders``, each with the rate limit off, with the built-in limiter and
with Flask-Limiter (limits never reached). Three servers run at once and are
measured in interleaved rounds, medians reported, so that a busy machine
disturbs every configuration alike; the server's CPU time per request (from
/proc) is printed too: it is what another process's load disturbs least. Uses ``wrk`` when installed
(``apt-get install -y wrk``), else an ``http.client`` loop.

    .venv/bin/python tests/api/bench_rest.py [--duration 3] [--rounds 3] [--connections 4]
        [--async-mode eventlet|threading] [--fsync batch|always|off] [--batch 50]

Orders alternate buy/sell at one price, so they trade and the book stays small.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from serverproc import ServerProcess  # noqa: E402

ORDER_LUA = """
local n = 0
request = function()
  n = n + 1
  local side = (n %% 2 == 0) and "buy" or "sell"
  local body = '{"symbol":"BTC-USDT","side":"' .. side .. '","order_type":"limit","quantity":"0.01000","price":"30000.00"}'
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, body)
end
"""

BULK_LUA = """
request = function()
  local parts = {}
  for i = 1, %d do
    local side = (i %% 2 == 0) and "buy" or "sell"
    parts[i] = '{"symbol":"BTC-USDT","side":"' .. side .. '","order_type":"limit","quantity":"0.01000","price":"30000.00"}'
  end
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json"}, "[" .. table.concat(parts, ",") .. "]")
end
"""


def wrk(url: str, path: str, lua: str | None, duration: int, connections: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    script = None
    if lua:
        fd, script = tempfile.mkstemp(suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(lua)
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url + path], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "count": count,
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def loop(port: int, method: str, path: str, body: bytes | None, duration: float) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"} if body else {}
    n = bad = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        n += 1
        bad += r.status >= 300
    return {"rps": n / duration, "count": n, "p50": None, "p99": None, "non2xx": bad}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), robust to other load on the machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--async-mode", default="eventlet")
    p.add_argument("--fsync", default="batch")
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    have_wrk = shutil.which("wrk") is not None
    order = json.dumps(
        {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.01", "price": "30000.00"}
    ).encode()
    cases = [("GET /health", "/health", None, None), ("POST /order", "/order", ORDER_LUA % "/order", order)]
    if have_wrk:
        cases.append((f"POST /orders x{args.batch}", "/orders", BULK_LUA % args.batch, None))
    # ServerProcess passes --rate-limit 0 first; a later flag wins in argparse.
    configs = [
        ("rate limit off", []),
        ("builtin limiter", ["--rate-limit", "1000000000"]),
        ("flask-limiter", ["--rate-limit", "1000000000", "--rate-limiter", "flask-limiter"]),
    ]
    print(
        f"async_mode={args.async_mode} fsync={args.fsync} connections={args.connections} "
        f"{args.rounds} interleaved rounds of {args.duration}s, medians; tool={'wrk' if have_wrk else 'http.client'}; "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    servers = []
    try:
        for label, extra in configs:
            tmp = tempfile.mkdtemp(prefix="bench-rest-")
            servers.append(
                (
                    label,
                    tmp,
                    ServerProcess(
                        tmp, "--async-mode", args.async_mode, "--fsync", args.fsync, *extra
                    ).start(),
                )
            )
        results: dict = {}
        for _ in range(args.rounds):
            for label, _tmp, server in servers:
                for name, path, lua, body in cases:
                    cpu0 = cpu_seconds(server.proc.pid)
                    if have_wrk:
                        r = wrk(server.url, path, lua, args.duration, args.connections)
                    else:
                        r = loop(server.port, "POST" if body else "GET", path, body, args.duration)
                    r["cpu_us"] = (cpu_seconds(server.proc.pid) - cpu0) / max(1, r["count"]) * 1e6
                    results.setdefault((label, name), []).append(r)
    finally:
        for _label, tmp, server in servers:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    base = {}
    for (label, name), runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        base.setdefault(name, rps)
        bad = sum(r["non2xx"] for r in runs)
        p50 = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]["p50"]
        p99 = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]["p99"]
        cpu = statistics.median(r["cpu_us"] for r in runs)
        print(
            f"{label:<16} {name:<18} {rps:>8.0f} req/s ({rps / base[name]:>4.0%} of off)  "
            f"server CPU {cpu:>6.0f} us/req  p50 {p50}  p99 {p99}  non-2xx {bad}  "
            f"runs {[round(r['rps']) for r in runs]}"
        )
    h = statistics.median(r["rps"] for r in results[("rate limit off", "GET /health")])
    o = statistics.median(r["rps"] for r in results[("rate limit off", "POST /order")])
    print(f"POST /order / GET /health (limit off): {o / h:.0%} of the req/s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
