"""The edges' direct fan-out (api/fanout.py) without a server: frames, the
direct write and its fallbacks, one write per client per pass, order."""

from __future__ import annotations

import socket

import pytest

from api.fanout import DIRECT, DirectWriter, FanOut, RawFrame, text_frame
from api.market import _FRAME


def _rfc6455_text_frame(data: bytes) -> bytes:
    """A server's unmasked, final text frame, byte by byte as RFC 6455 §5.2 has it."""
    n = len(data)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 1 << 16:
        head = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return head + data


@pytest.mark.parametrize("size", [0, 5, 125, 126, 200, 65535, 65536, 70000])
def test_text_frame_is_a_servers_rfc6455_frame(size):
    # (Compared with the RFC rather than with eventlet.websocket's _pack_message:
    # importing eventlet.websocket into the test process left it with green
    # primitives that hung a later test's threaded HTTP server.)
    data = ("x" * size).encode()
    assert text_frame(data) == _rfc6455_text_frame(data)


class FakeQueue:
    def __init__(self) -> None:
        self.items: list = []

    def qsize(self) -> int:
        return len(self.items)


class FakeConnection:
    """What DirectWriter uses of an Engine.IO Socket."""

    def __init__(self) -> None:
        self.queue = FakeQueue()
        self.closed = False
        self.upgraded = True

    def send(self, pkt) -> None:
        self.queue.items.append(pkt)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.settimeout(2)
    yield a, b
    a.close()
    b.close()


def _writer(pair) -> tuple[DirectWriter, FakeConnection]:
    connection = FakeConnection()
    writer = DirectWriter(connection, pair[0])
    writer.ready = True
    return writer, connection


def test_a_write_goes_straight_to_the_socket_when_nothing_waits(pair):
    writer, connection = _writer(pair)
    writer.write(b"abc")
    assert pair[1].recv(10) == b"abc" and connection.queue.items == [] and writer.direct == 3


def test_a_write_goes_behind_what_waits_in_the_queue_or_a_write_in_progress(pair):
    writer, connection = _writer(pair)
    connection.queue.items.append("ping")
    writer.write(b"abc")
    assert connection.queue.items[0] == "ping" and connection.queue.items[1].__dict__[_FRAME] == b"abc"
    connection.queue.items.clear()
    writer.writing = True  # the writer task is inside a write (it may be blocked there)
    writer.write(b"def")
    assert [p.data for p in connection.queue.items] == [b"def"]
    pair[1].setblocking(False)
    with pytest.raises(BlockingIOError):
        pair[1].recv(10)  # nothing went directly


def test_what_the_socket_does_not_take_is_queued_as_one_frame_counted_by_its_size(pair):
    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer, connection = _writer(pair)
    data = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers take
    writer.write(data)
    assert 0 < writer.direct < len(data)
    (rest,) = connection.queue.items
    assert isinstance(rest, RawFrame) and len(rest.encode_cache) == len(data) - writer.direct
    writer.write(b"after")  # the queue is not empty: behind the rest
    assert connection.queue.items[-1].data == b"after"
    received = bytearray()
    while len(received) < writer.direct:
        received += pair[1].recv(1 << 20)
    assert bytes(received) + rest.data == data  # nothing lost, nothing reordered


def test_a_dead_client_is_shut_down_and_written_no_more(pair):
    writer, connection = _writer(pair)
    pair[1].close()
    for _ in range(3):
        writer.write(b"x" * 100_000)
    assert writer.dead and connection.queue.items == []


class FakeServer:
    """python-socketio's Server as FanOut uses it: packet_class, manager, eio."""

    def __init__(self, rooms: dict, sockets: dict) -> None:
        from socketio import packet

        self.packet_class = packet.Packet
        self.rooms = rooms
        self.eio = type("Eio", (), {"sockets": sockets})()
        self.manager = self
        self.fallback: list = []

    def get_participants(self, namespace, room):
        names = room if isinstance(room, list) else [room]
        seen = {}
        for name in names:
            for sid in self.rooms.get(name, ()):
                seen[sid] = sid
        return seen.items()

    def _send_eio_packet(self, eio_sid, pkt) -> None:
        self.fallback.append((eio_sid, pkt.encode()))


class FakeSocketIO:
    def __init__(self, server) -> None:
        self.server = server
        self.emitted: list = []

    def emit(self, *args, **kwargs) -> None:
        self.emitted.append((args, kwargs))


def test_a_pass_writes_each_clients_frames_once_in_order_and_polling_clients_get_the_usual_path():
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        conns = {}
        for i, (a, b) in enumerate(pairs):
            a.setblocking(False)
            b.settimeout(2)
            c = FakeConnection()
            w = DirectWriter(c, a)
            w.ready = True
            c.__dict__[DIRECT] = w
            conns[f"s{i}"] = c
        conns["polling"] = FakeConnection()  # no DirectWriter: python-socketio's path
        server = FakeServer({"trades:X": ["s0", "s1", "polling"], "bbo:X": ["s0"], "s1": ["s1"]}, conns)
        fan = FanOut(FakeSocketIO(server), "/market")
        fan.begin()
        fan.emit("trade", {"trade_id": "1"}, namespace="/market", to="trades:X")
        fan.emit("bbo", {"sequence": 2}, namespace="/market", to=["bbo:X", "trades:X"])  # s0 once
        fan.emit("trade", {"trade_id": "3"}, namespace="/market", to="trades:X")
        for _a, b in pairs:
            b.setblocking(False)
            with pytest.raises(BlockingIOError):
                b.recv(10)  # nothing before the end of the pass
            b.settimeout(2)
        fan.end()
        t1 = text_frame(b'42/market,["trade",{"trade_id":"1"}]')
        bbo = text_frame(b'42/market,["bbo",{"sequence":2}]')
        t3 = text_frame(b'42/market,["trade",{"trade_id":"3"}]')
        assert pairs[0][1].recv(1000) == t1 + bbo + t3  # one write, in emit order
        assert pairs[1][1].recv(1000) == t1 + bbo + t3
        assert fan.writes == 2 and fan.frames == 6
        assert [p for _, p in server.fallback] == [
            '42/market,["trade",{"trade_id":"1"}]',
            '42/market,["bbo",{"sequence":2}]',
            '42/market,["trade",{"trade_id":"3"}]',
        ]
        fan.emit("bbo", {"sequence": 4}, namespace="/market", to="s1")  # outside a pass: at once
        assert pairs[1][1].recv(1000) == text_frame(b'42/market,["bbo",{"sequence":4}]')
        fan.emit("x", {}, namespace="/trade", to="s1")  # another namespace: the Flask-SocketIO emit
        assert fan._socketio.emitted == [(("x", {}), {"namespace": "/trade", "to": "s1"})]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_after_a_partial_write_a_frame_the_reader_sends_itself_goes_behind_the_rest(pair):
    """eventlet's reader answers a client's WebSocket ping with ``ws._send`` on
    its own; with half a frame of ours on the wire that pong would cut into it."""
    from api.fanout import _attach

    class FakeWs:
        client = False

        def __init__(self, fd) -> None:
            self.socket = type("GreenSocket", (), {"fd": fd})()
            self.sent: list[bytes] = []

        def _get_permessage_deflate_enc(self):
            return None

        def _pack_message(self, message):
            return text_frame(message.encode())

        def _send(self, data) -> None:
            self.sent.append(data)

    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    connection = FakeConnection()
    connection.poll = lambda: []
    ws = FakeWs(pair[0])
    _attach(connection, ws)
    writer = connection.__dict__[DIRECT]
    writer.ready = True
    data = b"y" * (1 << 20)
    writer.write(data)
    (rest,) = connection.queue.items
    assert writer.split is rest.data and 0 < writer.direct < len(data)
    pong = b"\x8a\x00"
    ws._send(pong)  # the reader's answer to a ping: queued behind the rest, not written
    assert ws.sent == [] and connection.queue.items[-1].data == pong
    ws._send(rest.data + pong)  # the writer task writes the rest (and what followed it)
    assert ws.sent == [rest.data + pong] and writer.split is None
    ws._send(pong)  # nothing half-written any more: written at once
    assert ws.sent[-1] == pong
