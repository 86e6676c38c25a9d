"""``api.sessions.SessionGuard`` on real Engine.IO sockets (threading mode, no
network): the send-queue accounting, the slow-consumer disconnect, the
handshake middleware. The same behaviour through a real server and real
clients is in ``test_slow_consumers.py``."""

from __future__ import annotations

import json
import logging
import time

import pytest
from engineio import packet
from engineio.socket import Socket
from flask import Flask
from flask_socketio import SocketIO

from api.sessions import SessionGuard


def make_guard(**limits) -> SessionGuard:
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading")
    guard = SessionGuard(socketio, **limits)
    guard.install()
    return guard


def open_session(guard: SessionGuard, sid: str = "s1", address: str = "10.0.0.1") -> Socket:
    eio = guard.eio
    sock = Socket(eio, sid)
    eio.sockets[sid] = sock
    sock.send(packet.Packet(packet.OPEN, {"sid": sid}))  # as Engine.IO does before the connect event
    eio.handlers["connect"](sid, {"REMOTE_ADDR": address})
    sock.connected = True
    return sock


def written(sock: Socket) -> None:
    """The transport takes what is queued and comes back for more (a NOOP, queued
    outside the accounting as Engine.IO does during an upgrade, ends the wait)."""
    sock.poll()
    sock.queue.put(packet.Packet(packet.NOOP))
    sock.poll()


def message(n: int) -> packet.Packet:
    """A MESSAGE packet of exactly ``n`` bytes on the wire (``4`` + data)."""
    return packet.Packet(packet.MESSAGE, "x" * (n - 1))


def test_pending_counts_queued_bytes_and_the_batch_being_written():
    guard = make_guard(max_queue_bytes=10_000)
    sock = open_session(guard)
    box = guard.boxes["s1"]
    opened = box.pending
    assert opened > 0  # the OPEN packet queued before the connect event counts
    sock.send(message(100))
    sock.send(message(200))
    assert box.pending == opened + 300
    batch = sock.poll()  # the transport takes everything: still being written
    assert len(batch) == 3
    assert box.pending == opened + 300 and box.in_hand == opened + 300
    sock.send(message(50))
    assert box.pending == opened + 350
    sock.poll()  # it came back for more: the first batch was written
    assert box.pending == 50 and box.in_hand == 50


def test_a_client_past_the_limit_is_disconnected_counted_and_its_queue_emptied(caplog):
    guard = make_guard(max_queue_bytes=1_000)
    sock = open_session(guard, sid="secret-session-id-123", address="10.0.0.9")
    written(sock)  # nothing waits now
    for _ in range(10):
        sock.send(message(100))  # exactly at the limit: fine
    assert guard.slow_consumers == 0
    with caplog.at_level(logging.WARNING, logger="api.sessions"):
        sock.send(message(100))  # 1,000 waiting + 100 > 1,000
    assert guard.slow_consumers == 1
    assert all(p is None for p in list(sock.queue.queue))  # freed at once (at most the close mark)
    deadline = time.monotonic() + 5
    while not sock.closed and time.monotonic() < deadline:  # closed by a background task
        time.sleep(0.01)
    assert sock.closed
    assert "secret-session-id-123" not in guard.boxes
    assert guard.peers == {}
    lines = [r.getMessage() for r in caplog.records if r.name == "api.sessions"]
    assert len(lines) == 1
    assert "10.0.0.9" in lines[0] and "1100 bytes waiting, limit 1000" in lines[0]
    assert "secret-session-id-123" not in lines[0]
    sock.send(message(100))  # nothing more is queued for it
    assert sock.queue.qsize() <= 1  # at most the close mark
    assert guard.stats()["slow_consumers_disconnected"] == 1


def test_a_lone_event_larger_than_the_limit_still_goes_to_a_client_that_keeps_up():
    guard = make_guard(max_queue_bytes=1_000)
    sock = open_session(guard)
    written(sock)
    sock.send(message(5_000))  # nothing waiting: delivered, not a reason to disconnect
    assert guard.slow_consumers == 0
    assert [len(p.encode()) for p in sock.poll()] == [5_000]


def test_an_address_over_its_budget_loses_its_session_furthest_behind(caplog):
    guard = make_guard(max_queue_bytes=1_000, max_queue_bytes_per_ip=1_500)
    far = open_session(guard, "far", "10.0.0.5")
    near = open_session(guard, "near", "10.0.0.5")
    other = open_session(guard, "other", "10.0.0.6")
    for sock in (far, near, other):
        written(sock)
    for _ in range(9):
        far.send(message(100))
    for _ in range(5):
        near.send(message(100))
    for _ in range(9):
        other.send(message(100))  # another address: its own budget
    assert guard.peers["10.0.0.5"].pending == 1_400
    far_box, near_box = guard.boxes["far"], guard.boxes["near"]
    with caplog.at_level(logging.WARNING, logger="api.sessions"):
        near.send(message(200))  # 1,600 > 1,500: "far" goes, the packet for "near" is queued
    assert guard.slow_consumers == 1 and guard.slow_consumers_per_ip == 1
    assert far_box.closing and not near_box.closing
    assert near_box.pending == 700
    assert guard.peers["10.0.0.5"].pending == 700
    assert not guard.boxes["other"].closing
    (line,) = [r.getMessage() for r in caplog.records if r.name == "api.sessions"]
    assert "10.0.0.5" in line and "limit per address 1500" in line
    # the budget follows the writes: what was taken and written no longer counts
    written(near)
    assert guard.peers["10.0.0.5"].pending == 0
    deadline = time.monotonic() + 5
    while "far" in guard.boxes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(guard.boxes) == {"near", "other"}
    stats = guard.stats()
    assert stats["slow_consumers_disconnected_per_ip"] == 1
    assert stats["session_addresses"] == 2


def test_limit_zero_leaves_the_session_untouched():
    guard = make_guard(max_queue_bytes=0, max_queue_bytes_per_ip=0)
    sock = open_session(guard)
    assert "send" not in vars(sock) and "poll" not in vars(sock)
    for _ in range(100):
        sock.send(message(1_000))
    assert guard.slow_consumers == 0


def handshake(app, query: str = "EIO=4&transport=polling", address: str = "10.0.0.1", method: str = "GET"):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/socket.io/",
        "QUERY_STRING": query,
        "REMOTE_ADDR": address,
    }
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def passed(environ, start_response):
    start_response("200 OK", [])
    return [b"passed"]


def test_handshakes_over_the_rate_get_429_with_the_envelope_and_retry_after():
    guard = make_guard(handshake_limit=3, max_sessions_per_ip=0)
    app = guard.wsgi(passed)
    assert [handshake(app)[0] for _ in range(3)] == ["200 OK"] * 3
    status, headers, body = handshake(app)
    assert status.startswith("429")
    assert headers["Content-Type"] == "application/json"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert int(headers["Content-Length"]) == len(body)
    error = json.loads(body)["error"]
    assert error["code"] == "RATE_LIMITED" and "handshakes" in error["message"]
    # requests of an existing session, other methods and other addresses are not handshakes
    assert handshake(app, "EIO=4&transport=polling&sid=abc")[2] == b"passed"
    assert handshake(app, "sid=abc&EIO=4")[2] == b"passed"
    assert handshake(app, method="POST")[2] == b"passed"
    assert handshake(app, address="10.0.0.2")[2] == b"passed"
    assert guard.stats()["handshakes_refused_rate"] == 1


def test_handshakes_beyond_the_open_sessions_per_address_get_429():
    guard = make_guard(handshake_limit=0, max_sessions_per_ip=2)
    app = guard.wsgi(passed)
    open_session(guard, "a", "10.0.0.1")
    assert handshake(app)[2] == b"passed"
    second = open_session(guard, "b", "10.0.0.1")
    status, headers, body = handshake(app)
    assert status.startswith("429") and headers["Retry-After"] == "10"
    assert "sessions" in json.loads(body)["error"]["message"]
    assert handshake(app, address="10.0.0.2")[2] == b"passed"
    second.close(wait=False, abort=True)  # a session ends: its address may open another
    assert handshake(app)[2] == b"passed"
    assert guard.stats()["handshakes_refused_sessions"] == 1


@pytest.mark.parametrize(
    "field", ["max_queue_bytes", "max_queue_bytes_per_ip", "handshake_limit", "max_sessions_per_ip"]
)
def test_negative_limits_are_refused(field):
    with pytest.raises(ValueError):
        make_guard(**{field: -1})
