"""Memory soak: does the server's memory grow beyond what it keeps on purpose?

Starts a real server (127.0.0.1, fresh data dir, --rate-limit 0), drives it with
``advanced_load_test.py`` at a steady rate for ``--duration`` seconds, and every
``--every`` seconds samples the server's RSS and what it deliberately keeps:
resting orders and the orders remembered in memory (``orders_in_memory``: open plus
the most recent closed ones, capped by the engine's ``order_history``). Trades and
latency samples are kept in bounded deques.

At the end it fits RSS = a + b * orders_in_memory by least squares (``b``: the
memory each kept order explains) and reports, for the last third of the run, the
RSS change beyond what the change in kept orders explains. RSS is a high-water
mark (CPython keeps freed arenas for reuse), so a transient peak, such as writing
a snapshot of the whole engine, shows as a step that later allocations reuse.

    python tests/soak.py --duration 600 --rate 300 [--auth on] [--json OUT] [--plot OUT.png]

``--auth on`` starts the server with accounts; the load runner then makes its own
accounts with the admin token of the server's data dir (default ``--auth off``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.serverproc import ServerProcess  # noqa: E402


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def statistics(url: str) -> dict:
    with urllib.request.urlopen(url + "/statistics", timeout=10) as r:
        return json.load(r)


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--data-dir", default=None, help="default: a fresh temporary dir")
    ap.add_argument("--auth", choices=("on", "off"), default="off", help="the server's --auth (default off)")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args()

    import tempfile

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="soak-")
    samples = []
    server_args = ["--auth", "on"] if args.auth == "on" else []  # ServerProcess: off unless told
    with ServerProcess(data_dir, *server_args) as server:
        load = subprocess.Popen(
            [
                sys.executable,
                os.path.join(ROOT, "tests", "advanced_load_test.py"),
                "--url",
                server.url,
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--no-progress",
                "--mix",
                "limit=60,market=10,ioc=10,fok=5,cancel=15",
                "--data-dir",
                data_dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t0 = time.monotonic()
        try:
            while load.poll() is None:
                stats = statistics(server.url)["engine"]
                sample = {
                    "t": round(time.monotonic() - t0, 1),
                    "rss_mib": round(rss_bytes(server.proc.pid) / 2**20, 1),
                    "orders": stats["orders"],
                    "resting": stats["resting_orders"],
                    "in_memory": stats["orders_in_memory"],
                    "trades": stats["trades"],
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                time.sleep(args.every)
        finally:
            if load.poll() is None:
                load.kill()
    if len(samples) < 4:
        print("too few samples")
        return 1
    a, b = fit([s["in_memory"] for s in samples], [s["rss_mib"] * 2**20 for s in samples])
    tail = samples[len(samples) * 2 // 3 :]
    rss_change = (tail[-1]["rss_mib"] - tail[0]["rss_mib"]) * 2**20
    kept_change = tail[-1]["in_memory"] - tail[0]["in_memory"]
    summary = {
        "duration_s": args.duration,
        "rate": args.rate,
        "orders": samples[-1]["orders"],
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_end_mib": samples[-1]["rss_mib"],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "orders_in_memory_end": samples[-1]["in_memory"],
        "bytes_per_kept_order": round(b),
        # the last third of the run: RSS change beyond what the change in kept
        # orders explains at the fitted cost per order (positive = unexplained growth)
        "last_third_rss_change_mib": round(rss_change / 2**20, 1),
        "last_third_kept_orders_change": kept_change,
        "last_third_unexplained_mib": round((rss_change - b * kept_change) / 2**20, 1),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "samples": samples}, f, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        ts = [s["t"] / 60 for s in samples]
        ax.plot(ts, [s["rss_mib"] for s in samples], label="server RSS (MiB)")
        ax.plot(
            ts,
            [(a + b * s["in_memory"]) / 2**20 for s in samples],
            "--",
            label=f"explained by kept orders ({round(b)} B each)",
        )
        ax.set_xlabel("minutes")
        ax.set_ylabel("MiB")
        ax2 = ax.twinx()
        ax2.plot(ts, [s["in_memory"] for s in samples], color="grey", alpha=0.5, label="orders in memory")
        ax2.set_ylabel("orders kept in memory")
        ax.legend(loc="upper left")
        ax.set_title(f"soak: {args.rate:g} orders/s for {args.duration / 60:g} min")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
