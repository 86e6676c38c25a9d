"""tools/demo_market.py without a browser: pacing against errors, the loopback guard,
and a short run against a real server (marked ``server``).

It lives beside the browser tests because the demo exists for the page; the
page-level check (a living market on screen) is in ``test_trading_page.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from browser_server import ROOT, Server, free_port

sys.path.insert(0, os.path.join(ROOT, "tools"))
import demo_market  # noqa: E402

SCRIPT = os.path.join(ROOT, "tools", "demo_market.py")
SYMBOLS = {
    "symbols": [
        {"symbol": "BTC-USDT", "base": "BTC", "quote": "USDT", "tick_size": "0.01", "lot_size": "0.00001"}
    ]
}


class FakeServer:
    """Answers GET /symbols with 429 ``refusals`` times, then 200."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.seen: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                fake.seen.append(self.path)
                if fake.refusals > 0:
                    fake.refusals -= 1
                    self.reply(
                        429,
                        {"error": {"code": "RATE_LIMITED", "message": "slow down"}},
                        {"Retry-After": "0.2"},
                    )
                else:
                    self.reply(200, SYMBOLS)

            def reply(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_demo(url: str, *extra: str) -> demo_market.Demo:
    args = demo_market.parse_args(["--url", url, *extra])
    return demo_market.Demo(demo_market.Client(url), args)


def test_waits_out_429_with_retry_after():
    with FakeServer(refusals=2) as fake:
        demo = make_demo(fake.url)
        started = time.monotonic()
        status, body = demo.call("GET", "/symbols")
        assert status == 200 and body["symbols"][0]["symbol"] == "BTC-USDT"
        assert demo.counts["rate_limited"] == 2
        assert time.monotonic() - started >= 0.4  # two Retry-After: 0.2 waits
        assert fake.seen == ["/symbols"] * 3


def test_unreachable_server_is_retried_until_the_duration_ends():
    demo = make_demo(f"http://127.0.0.1:{free_port()}", "--duration", "1.5")
    started = time.monotonic()
    demo.run()  # nothing listens: it retries with back-off, then gives up at the deadline
    assert 1.4 <= time.monotonic() - started < 5
    assert demo.counts["unreachable"] >= 2
    assert demo.counts["orders"] == 0


def test_refuses_a_non_loopback_url_without_contacting_it():
    assert demo_market.main(["--url", "http://192.0.2.1:5000", "--duration", "1"]) == 2
    assert demo_market.is_loopback("127.0.0.1") and demo_market.is_loopback("::1")
    assert demo_market.is_loopback("localhost")
    assert not demo_market.is_loopback("192.0.2.1")


@pytest.mark.server
def test_short_run_against_a_real_server_trades_and_cleans_up(tmp_path):
    server = Server(str(tmp_path / "data")).start()
    try:
        cmd = [sys.executable, SCRIPT, "--url", server.url, "--rate", "100", "--duration", "4", "--seed", "3"]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "rejected=0" in run.stderr.splitlines()[-1], run.stderr[-2000:]
        stats = requests.get(server.url + "/statistics", timeout=5).json()["symbols"]
        assert sum(s["trades"] for s in stats.values()) > 0
        # On the way out it cancelled every quote it had resting.
        for symbol in stats:
            book = requests.get(f"{server.url}/book/{symbol}?levels=50", timeout=5).json()
            assert book["bids"] == [] and book["asks"] == [], symbol
    finally:
        server.stop()


def admin_names(server) -> list[str]:
    from browser_helpers import admin_client  # imports playwright: only where needed

    return [a["name"] for a in admin_client(server).list_accounts()["accounts"]]


@pytest.mark.server
def test_with_auth_on_maker_and_takers_trade_as_separate_accounts(tmp_path):
    server = Server(str(tmp_path / "data"), "--auth", "on").start()
    try:
        cmd = [sys.executable, SCRIPT, "--url", server.url, "--rate", "100", "--duration", "4", "--seed", "3",
               "--data-dir", server.data_dir]  # fmt: skip
        for _ in range(2):  # the second run finds the accounts and makes new keys for them
            run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            assert "rejected=0" in run.stderr.splitlines()[-1], run.stderr[-2000:]
            for role in (
                "maker: account demo-maker",
                "taker: account demo-taker-1",
                "taker: account demo-taker-2",
            ):
                assert role in run.stderr
        stats = requests.get(server.url + "/statistics", timeout=5).json()["symbols"]
        assert sum(s["trades"] for s in stats.values()) > 0  # no self-trade prevention between them
        names = admin_names(server)
        assert sorted(n for n in names if n.startswith("demo-")) == [
            "demo-maker",
            "demo-taker-1",
            "demo-taker-2",
        ]
    finally:
        server.stop()


@pytest.mark.server
def test_with_auth_on_and_no_token_the_demo_says_what_it_needs(tmp_path):
    server = Server(str(tmp_path / "data"), "--auth", "on").start()
    try:
        cmd = [sys.executable, SCRIPT, "--url", server.url, "--duration", "3", "--data-dir", str(tmp_path)]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0
        assert "--api-key" in run.stderr and "admin token" in run.stderr
    finally:
        server.stop()


@pytest.mark.server
def test_make_demo_path_server_with_demo_flag_and_auth_on(tmp_path):
    """``make demo`` is ``api/app.py --demo``: with --auth on its demo trades as its own accounts."""
    server = Server(str(tmp_path / "data"), "--auth", "on", "--demo").start()
    try:
        deadline = time.monotonic() + 30
        trades = 0
        while time.monotonic() < deadline and trades == 0:
            time.sleep(0.5)
            stats = requests.get(server.url + "/statistics", timeout=5).json()["symbols"]
            trades = sum(s["trades"] for s in stats.values())
        assert trades > 0, server.output()[-3000:]
        assert {"demo-maker", "demo-taker-1", "demo-taker-2"} <= set(admin_names(server))
    finally:
        server.stop()
