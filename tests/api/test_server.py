"""The real server (``python api/app.py``) as a process on 127.0.0.1, through
``requests``: default eventlet mode, a threading-mode smoke test, restart with
the data dir, clean shutdown, the rate limit and bulk latency."""

from __future__ import annotations

import json
import os
import signal
import statistics
import time

import pytest
import requests

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.server

BTC = "BTC-USDT"


def order(url, side, order_type, quantity, price=None, symbol=BTC):
    body = {"symbol": symbol, "side": side, "order_type": order_type, "quantity": quantity}
    if price is not None:
        body["price"] = price
    r = requests.post(url + "/order", json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("eventlet")) as s:
        yield s


def test_full_order_flow(server):
    url = server.url
    assert requests.get(url + "/health", timeout=5).json()["status"] == "ok"
    assert len(requests.get(url + "/symbols", timeout=5).json()["symbols"]) == 4
    maker = order(url, "sell", "limit", "0.5", "30000.00")
    taker = order(url, "buy", "market", "0.2")
    assert taker["status"] == "filled"
    trade = taker["trades"][0]
    assert (trade["price"], trade["maker_order_id"], trade["taker_fee"]) == (
        "30000.00",
        maker["order_id"],
        "12.00000000",
    )
    book = requests.get(url + f"/book/{BTC}?levels=5", timeout=5).json()
    assert book["asks"] == [["30000.00", "0.30000"]]
    bbo = requests.get(url + f"/bbo/{BTC}", timeout=5).json()
    assert bbo["sequence"] == book["sequence"] and bbo["best_ask"]["quantity"] == "0.30000"
    trades = requests.get(url + f"/trades/{BTC}?limit=1", timeout=5).json()["trades"]
    assert trades[-1]["trade_id"] == trade["trade_id"]
    assert requests.get(url + f"/order/{maker['order_id']}", timeout=5).json()["status"] == "partially_filled"
    cancelled = requests.post(url + "/cancel", json={"order_id": maker["order_id"]}, timeout=5).json()
    assert cancelled["status"] == "cancelled"
    stats = requests.get(url + "/statistics", timeout=5).json()
    assert stats["symbols"][BTC]["trades"] >= 1 and "latency" in stats


@pytest.mark.parametrize(
    "data,headers,status,code",
    [
        (b"not json", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
        (b'{"symbol":"BTC-USDT","side":"buy","order_type":"limit","quantity":NaN,"price":"1"}',
         {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
        (b"[]", {"Content-Type": "application/json"}, 400, "VALIDATION_ERROR"),
        (b'{"symbol":"BTC-USDT"}', {"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}', {"Content-Type": "application/json"}, 413,
         "PAYLOAD_TOO_LARGE"),
    ],
    ids=["not-json", "nan", "array", "text-plain", "2MB"],
)  # fmt: skip
def test_malformed_bodies_over_the_wire(server, data, headers, status, code):
    before = requests.get(server.url + f"/book/{BTC}", timeout=5).json()["sequence"]
    r = requests.post(server.url + "/order", data=data, headers=headers, timeout=10)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert "Traceback" not in r.text
    assert requests.get(server.url + f"/book/{BTC}", timeout=5).json()["sequence"] == before
    # The connection pool is still usable afterwards.
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


def _chunked_post(server, path: str, chunks):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, body=iter(chunks), headers={"Content-Type": "application/json"},
                     encode_chunked=True)  # fmt: skip
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_chunked_bodies_without_content_length(server):
    body = b'{"symbol":"BNB-USDT","side":"buy","order_type":"limit","quantity":"1","price":"500.00"}'
    status, report = _chunked_post(server, "/order", [body[:30], body[30:]])
    assert status == 200 and report["status"] == "new"
    status, error = _chunked_post(server, "/order", [b'{"pad":"'] + [b"x" * 65536] * 2 + [b'"}'])
    assert status == 413 and error["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_404_405_envelopes_and_cors(server):
    r = requests.get(server.url + "/nowhere", headers={"Origin": "http://a.example"}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert r.headers["Access-Control-Allow-Origin"] in ("*", "http://a.example")
    r = requests.delete(server.url + "/order", timeout=5)
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    r = requests.get(server.url + "/book/NOPE", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "UNKNOWN_SYMBOL"


def test_bulk_answer_is_not_delayed_by_nagle(server):
    orders = [
        {"symbol": "SOL-USDT", "side": "buy" if i % 2 else "sell", "order_type": "limit",
         "quantity": "0.010", "price": "150.00"}
        for i in range(100)
    ]  # fmt: skip
    times = []
    with requests.Session() as s:
        for _ in range(7):
            t = time.perf_counter()
            r = s.post(server.url + "/orders", json=orders, timeout=10)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()) == 100 and len(r.content) > 20_000
    # A delayed-ACK stall is ~40 ms per answer; 100 orders take a few ms to process.
    assert statistics.median(times) < 0.035, times


def test_socketio_order_entry_on_the_real_server(server):
    socketio = pytest.importorskip("socketio")
    client = socketio.SimpleClient()
    client.connect(server.url, namespace="/trade", transports=["websocket"], wait_timeout=5)
    try:
        ack = client.call(
            "order",
            {"symbol": "ETH-USDT", "side": "buy", "order_type": "limit", "quantity": 0.5, "price": "1000.00"},
            timeout=5,
        )  # fmt: skip
        assert ack["status"] == "new" and ack["quantity"] == "0.5000"
    finally:
        client.disconnect()


def test_threading_mode_smoke(tmp_path):
    with ServerProcess(tmp_path, "--async-mode", "threading") as s:
        maker = order(s.url, "sell", "limit", "1", "100.00")
        taker = order(s.url, "buy", "fok", "1", "100.00")
        assert taker["status"] == "filled" and taker["trades"][0]["maker_order_id"] == maker["order_id"]
        r = requests.post(s.url + "/orders", json=[{"symbol": BTC}], timeout=5)
        assert r.json()[0]["error"]["field"] == "side"
        r = requests.post(s.url + "/order", data=b"x" * (2 * 1024 * 1024),
                          headers={"Content-Type": "application/json"}, timeout=10)  # fmt: skip
        assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert requests.get(s.url + "/nowhere", timeout=5).json()["error"]["code"] == "NOT_FOUND"
        body = b'{"symbol":"BNB-USDT","side":"buy","order_type":"limit","quantity":"1","price":"500.00"}'
        assert _chunked_post(s, "/order", [body[:30], body[30:]])[0] == 200
    assert s.proc.returncode == 0


def test_rate_limit_on_the_real_server(tmp_path):
    # ServerProcess passes --rate-limit 0; the later flag wins.
    with ServerProcess(tmp_path, "--rate-limit", "3") as s:
        with requests.Session() as session:
            codes = [session.get(s.url + "/health", timeout=5) for _ in range(5)]
        # ServerProcess's readiness probe used one request of the window.
        assert [r.status_code for r in codes][-2:] == [429, 429]
        refused = codes[-1]
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["X-RateLimit-Limit"] == "3"


def test_sigterm_is_a_clean_shutdown_and_state_survives_a_restart(tmp_path):
    server = ServerProcess(tmp_path).start()
    durable = "WITHOUT durability" not in server.output()
    resting = order(server.url, "buy", "limit", "1", "100.00")
    order(server.url, "sell", "limit", "0.4", "100.00")
    seq = requests.get(server.url + f"/bbo/{BTC}", timeout=5).json()["sequence"]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    server.stop()
    assert "stopped" in server.output()
    audit = [json.loads(line) for line in open(os.path.join(tmp_path, "audit.log"), encoding="utf-8")]
    assert [a["event"] for a in audit] == ["order", "order", "trade"]
    if not durable:
        pytest.skip("storage.Store not available: no restart to check")

    with ServerProcess(tmp_path) as again:
        bbo = requests.get(again.url + f"/bbo/{BTC}", timeout=5).json()
        assert bbo["sequence"] == seq
        assert bbo["best_bid"] == {"price": "100.00", "quantity": "0.60000"}
        now = requests.get(again.url + f"/order/{resting['order_id']}", timeout=5).json()
        assert now["status"] == "partially_filled"
        new = order(again.url, "buy", "limit", "1", "90.00")
        assert int(new["order_id"]) > int(resting["order_id"]) + 1  # ids are never reused
        assert requests.get(again.url + f"/bbo/{BTC}", timeout=5).json()["sequence"] == seq + 1


def test_a_second_server_on_a_taken_port_refuses_to_start(server, tmp_path):
    # eventlet's listener shares ports by default: a second exchange once started
    # silently on the same port and took half the connections
    import subprocess
    import sys

    from tests.serverproc import ROOT

    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "api", "app.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(server.port),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "cannot serve on" in done.stderr and "Traceback" not in done.stderr


def test_demo_cancels_its_quotes_before_the_server_stops(tmp_path):
    with ServerProcess(tmp_path, "--demo") as srv:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = requests.get(srv.url + "/statistics", timeout=5).json()
            if stats["engine"]["resting_orders"] > 10:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the demo placed no quotes")
    # stopped by SIGTERM; restart without the demo on the same data dir
    with ServerProcess(tmp_path) as srv:
        stats = requests.get(srv.url + "/statistics", timeout=5).json()
        assert stats["engine"]["resting_orders"] == 0
