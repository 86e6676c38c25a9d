"""One careless or hostile Socket.IO client against a real server (eventlet):

* a subscriber that never reads (over WebSocket, or over long-polling: it never
  polls, but keeps answering pings) is disconnected once ``--send-queue-bytes``
  are waiting for it, counted and logged, and the server's memory stays bounded;
  a subscriber that reads, in the same run, receives every trade;
* a handshake flood from one address is answered ``429`` with the envelope and
  ``Retry-After``, costs little memory, and another address is still served;
* an abandoned polling handshake is reaped (ping timeout) and its address may
  open sessions again.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

import pytest

from tests.loadlib.rawsio import RawSio
from tests.serverproc import ServerProcess
from tests.stream.rawclients import (
    BTC,
    EIO,
    SUBSCRIPTIONS,
    Poller,
    Reader,
    flow_orders,
    get_json,
    post_ladder,
    rss_kib,
)

pytestmark = pytest.mark.server


@pytest.mark.parametrize("async_mode", ["eventlet", "threading"])
def test_subscribers_that_do_not_read_are_disconnected_and_readers_get_every_trade(tmp_path, async_mode):
    limit = 256 * 1024
    args = ("--send-queue-bytes", str(limit), "--async-mode", async_mode)
    with ServerProcess(tmp_path / "data", *args) as server:
        post_ladder(server.port)
        reader = Reader(server.port)
        reader.start()

        # WebSocket: subscribes, then never reads again (a tiny receive buffer), only pongs.
        silent = RawSio("127.0.0.1", server.port)
        silent.connect()
        for sub in SUBSCRIPTIONS:
            assert silent.call("subscribe", sub) == {"ok": True}
        silent.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        # Long-polling: subscribes, then never polls again, only pongs (POST).
        poller = Poller(server.port)
        assert poller.handshake()[0] == 200
        assert poller.post("40/market,") == 200
        assert poller.get()[0] == 200
        for i, sub in enumerate(SUBSCRIPTIONS, 1):
            assert poller.post(f"42/market,{i}" + json.dumps(["subscribe", sub])) == 200
        acks = []
        while len(acks) < len(SUBSCRIPTIONS):
            status, packets = poller.get()
            assert status == 200
            acks += [p for p in packets if p.startswith("43/market,")]

        rss_before = rss_kib(server.proc.pid)
        stop = threading.Event()
        orders_stop = threading.Event()
        result: dict = {}

        def send():
            result["trade_ids"] = flow_orders(server.port, 30.0, orders_stop)

        def pong():  # both answer pings without reading what is sent to them
            while not stop.wait(1.0):
                try:
                    silent.send_text("3")
                except OSError:
                    pass
                try:
                    poller.post("3")
                except (OSError, http.client.HTTPException):
                    pass

        sender = threading.Thread(target=send)
        ponger = threading.Thread(target=pong, daemon=True)
        sender.start()
        ponger.start()
        # Orders flow for 8 s, longer (up to 30 s) on a slow machine until both
        # non-readers fell behind by the limit (the kernel's socket buffers fill first).
        started = time.monotonic()
        while sender.is_alive():
            sender.join(0.5)
            if time.monotonic() - started >= 8:
                if get_json(server, "/statistics")["streaming"].get("slow_consumers_disconnected", 0) >= 2:
                    orders_stop.set()
        sender.join(30)
        rss_after = rss_kib(server.proc.pid)
        stop.set()
        ponger.join(10)

        trade_ids = result["trade_ids"]
        assert len(trade_ids) > 500
        deadline = time.monotonic() + 10
        while len(reader.trade_ids) < len(trade_ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.stop.set()
        reader.join(5)

        stats = get_json(server, "/statistics")["streaming"]
        # the polling session is gone: its next poll is refused
        poller.close()
        poller.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        assert poller.get()[0] == 400
        log = server.output()

    # the reader got every trade, once, in order
    assert reader.trade_ids == trade_ids
    # both non-readers were disconnected, counted and logged (without their session ids)
    assert stats["slow_consumers_disconnected"] == 2, stats
    assert stats["clients"]["/market"] == 1
    assert stats["subscriptions"] == {f"l2_updates:{BTC}:100": 1, f"bbo:{BTC}": 1, f"trades:{BTC}": 1}
    assert log.count("slow consumer disconnected") == 2
    assert "(websocket)" in log and "(polling)" in log
    assert poller.sid not in log
    # memory stayed bounded: within a few times the cap (without it: ~1 MB/s per client)
    grown = rss_after - rss_before
    assert grown < 8 * 1024, f"server RSS grew by {grown} KiB"
    # the WebSocket was closed by the server: what it holds ends in EOF
    silent.sock.settimeout(5)
    while silent.sock.recv(1 << 20):
        pass
    silent.sock.close()
    poller.close()


def test_handshake_flood_gets_429_and_other_clients_are_served(tmp_path):
    with ServerProcess(tmp_path / "data", "--handshake-limit", "300", "--sessions-per-ip", "100") as server:
        rss_before = rss_kib(server.proc.pid)
        statuses: dict[int, int] = {}
        refusal = None
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for _ in range(3000):
            conn.request("GET", EIO)
            r = conn.getresponse()
            body = r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status == 429 and refusal is None:
                refusal = (dict(r.getheaders()), json.loads(body))
        conn.close()
        rss_after = rss_kib(server.proc.pid)

        # another address is still served: a full Socket.IO session, and REST
        other = Poller(server.port, source="127.0.0.2")
        status, _, body = other.handshake()
        assert status == 200, body
        assert other.post("40/market,") == 200
        assert other.post('42/market,1["subscribe",{"type":"bbo","symbol":"BTC-USDT"}]') == 200
        seen = []
        while not any(p.startswith("43/market,1") for p in seen):
            status, packets = other.get()
            assert status == 200
            seen += packets
        assert '43/market,1[{"ok":true}]' in seen
        other.close()
        health = get_json(server, "/health")
        stats = get_json(server, "/statistics")["streaming"]

    assert statuses[200] == 100, statuses  # the sessions cap: the first 100 open, nothing else
    assert statuses[429] == 2900, statuses
    headers, envelope = refusal
    assert envelope["error"]["code"] == "RATE_LIMITED"
    assert set(envelope["error"]) == {"code", "message"}
    assert int(headers["Retry-After"]) >= 1
    assert headers["Content-Type"] == "application/json"
    assert health["status"] == "ok"
    assert stats["handshakes_refused"] == 2900
    grown = rss_after - rss_before
    assert grown < 8 * 1024, f"server RSS grew by {grown} KiB"


def test_handshake_rate_limit_per_address(tmp_path):
    with ServerProcess(tmp_path / "data", "--handshake-limit", "50", "--sessions-per-ip", "0") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        codes = []
        for _ in range(80):
            conn.request("GET", EIO)
            r = conn.getresponse()
            r.read()
            codes.append(r.status)
        # a browser can read the refusal: Engine.IO's CORS headers come with it
        conn.request("GET", EIO, headers={"Origin": "http://example.test"})
        r = conn.getresponse()
        r.read()
        assert r.status == 429
        assert r.getheader("Access-Control-Allow-Origin") == "http://example.test"
        conn.close()
        stats = get_json(server, "/statistics")["streaming"]
    # a fixed window: 50 pass (or up to 100 if the minute turned during the loop), then 429
    assert codes[:50] == [200] * 50
    assert 429 in codes
    assert stats["handshakes_refused_rate"] == codes.count(429) + 1


def test_abandoned_polling_handshakes_are_reaped(tmp_path):
    args = ("--ping-interval", "1", "--ping-timeout", "1", "--sessions-per-ip", "20")
    with ServerProcess(tmp_path / "data", *args) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

        def handshake() -> int:
            conn.request("GET", EIO)
            r = conn.getresponse()
            r.read()
            return r.status

        assert [handshake() for _ in range(20)] == [200] * 20
        assert handshake() == 429  # the address holds its share
        assert get_json(server, "/statistics")["streaming"]["engineio_sessions"] == 20
        # never polled again: pinged after 1 s, closed 1 s later, reaped by the service task
        deadline = time.monotonic() + 15
        while (
            get_json(server, "/statistics")["streaming"]["engineio_sessions"] and time.monotonic() < deadline
        ):
            time.sleep(0.25)
        stats = get_json(server, "/statistics")["streaming"]
        assert stats["engineio_sessions"] == 0
        assert stats["session_addresses"] == 0
        assert handshake() == 200
        conn.close()


def test_engineio_log_lines_never_carry_a_session_id():
    from api.sessions import RedactSessionIds

    record = logging.LogRecord(
        "engineio.server", logging.ERROR, __file__, 1, "Invalid session %s", ("AbC-12_xyzQWERTY0000",), None
    )
    assert RedactSessionIds().filter(record)
    assert record.getMessage() == "Invalid session <redacted>"
    other = logging.LogRecord(
        "engineio.server",
        logging.ERROR,
        __file__,
        1,
        "Cannot send to sid %s",
        ("AbC-12_xyzQWERTY0000",),
        None,
    )
    RedactSessionIds().filter(other)
    assert "AbC-12" not in other.getMessage()


COALESCING_SCRIPT = r"""
import warnings
warnings.filterwarnings("ignore")
import eventlet
eventlet.monkey_patch()
import json, sys
sys.path.insert(0, sys.argv[2])
import eventlet.wsgi
from api.app import close_app, create_app
from tests.loadlib.rawsio import RawSio

app, socketio = create_app({"data_dir": sys.argv[1], "async_mode": "eventlet", "store": False, "audit": False,
                            "rate_limit": 0, "send_queue_bytes": 1 << 20})
listener = eventlet.listen(("127.0.0.1", 0))
port = listener.getsockname()[1]
eventlet.spawn(eventlet.wsgi.server, listener, app, log_output=False, debug=False)
eventlet.sleep(0.1)
out = {}

def client():
    c = RawSio("127.0.0.1", port)
    c.connect()
    out["ack"] = c.call("subscribe", {"type": "bbo", "symbol": "BTC-USDT"})
    eio = socketio.server.eio
    sock = next(iter(eio.sockets.values()))
    # the session's writer: the accounting's poll under the coalescing writer's
    out["poll"] = sock.poll.__name__
    out["box_transport"] = app.extensions["sessions"].boxes[sock.sid].transport
    c.close()

eventlet.spawn(client).wait()
close_app(app)
print(json.dumps(out))
"""


def test_frame_coalescing_still_drives_the_counted_websocket_writer(tmp_path):
    from tests.serverproc import ROOT, run_script_json

    out = run_script_json(COALESCING_SCRIPT, str(tmp_path), ROOT, timeout=60)
    assert out == {"ack": {"ok": True}, "poll": "poll_and_send", "box_transport": "websocket"}
