"""REST throughput of a real server, side by side in one run (a benchmark script,
not a test): ``GET /health`` (the framework's ceiling), ``POST /order``, and
``POST /order`` with the rate limiter on (a limit never reached) -- with ``wrk``
when installed (``apt-get install -y wrk``), else an ``http.client`` loop.

    .venv/bin/python tests/api/bench_rest.py [--duration 5] [--connections 4]
        [--async-mode eventlet|threading] [--fsync batch]

Orders alternate buy/sell at one price, so they trade and the book stays small.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
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
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
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
    return {"rps": n / duration, "p50": None, "p99": None, "non2xx": bad}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--async-mode", default="eventlet")
    p.add_argument("--fsync", default="batch")
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    have_wrk = shutil.which("wrk") is not None
    order = json.dumps(
        {"symbol": "BTC-USDT", "side": "buy", "order_type": "limit", "quantity": "0.01", "price": "30000.00"}
    ).encode()

    def run(label, extra, cases):
        tmp = tempfile.mkdtemp(prefix="bench-rest-")
        server = ServerProcess(tmp, "--async-mode", args.async_mode, "--fsync", args.fsync, *extra).start()
        try:
            for name, path, lua, body in cases:
                if have_wrk:
                    r = wrk(server.url, path, lua, args.duration, args.connections)
                else:
                    r = loop(server.port, "POST" if body else "GET", path, body, args.duration)
                print(
                    f"{label:<22} {name:<16} {r['rps']:>9.0f} req/s  p50 {r['p50']}  p99 {r['p99']}  non-2xx {r['non2xx']}"
                )
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    cases = [
        ("GET /health", "/health", None, None),
        ("POST /order", "/order", ORDER_LUA % "/order", order),
    ]
    print(
        f"async_mode={args.async_mode} fsync={args.fsync} connections={args.connections} "
        f"duration={args.duration}s tool={'wrk' if have_wrk else 'http.client'}"
    )
    run(
        "rate limit off",
        [],
        cases + [("POST /orders", "/orders", BULK_LUA % args.batch, None)] if have_wrk else cases,
    )
    # ServerProcess passes --rate-limit 0 first; a later flag wins in argparse.
    run("builtin limiter", ["--rate-limit", "1000000000"], cases)
    run("flask-limiter", ["--rate-limit", "1000000000", "--rate-limiter", "flask-limiter"], cases)


if __name__ == "__main__":
    main()
