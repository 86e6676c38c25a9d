"""A lean Socket.IO v5 / Engine.IO v4 client over one raw WebSocket, for measurement.

Why not python-socketio's client: it runs two threads per connection and tops out at
~2.5-3k events/s per process on this machine, so 50 subscribers at a few hundred
events/s each would measure the client, not the server. This client is a plain
non-blocking socket that one ``selectors`` loop can multiplex by the dozen; it parses
only what the probe needs from each event (the event name and one or two fields, by
regular expression on the frame text) and timestamps the frame as it is read.

Scope: websocket transport only (no polling), text frames, no compression, one
namespace per connection, no reconnection. Enough for a server built on
python-socketio / Flask-SocketIO; any protocol surprise raises ``SioProtocolError``.

Wire format used (Socket.IO v5 over Engine.IO v4):
    server  0{"sid": ..., "pingInterval": ...}      Engine.IO open
    client  40/market,                               connect to the namespace
    server  40/market,{"sid": ...}                   connected (44... = refused)
    server  2            client  3                   ping / pong
    client  42/market,7["subscribe",{...}]           emit with ack id 7
    server  43/market,7[{"ok":true}]                 the acknowledgement
    server  42/market,["trade",{...}]                an event
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class SioProtocolError(Exception):
    """The server said something this client does not understand."""


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """One client-to-server WebSocket frame (FIN set, masked as RFC 6455 requires)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    # XOR with the repeated key via one big-integer operation (fast, no per-byte loop).
    rep = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")
    return head + key + masked


def parse_frames(buf: bytearray):
    """Split complete server frames off the front of ``buf``.

    Returns ``(frames, consumed)`` with frames a list of ``(fin, opcode, payload)``.

    Raises:
        SioProtocolError: a masked server frame (servers must not mask).
    """
    frames = []
    pos = 0
    n = len(buf)
    while n - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        if b1 & 0x80:
            raise SioProtocolError("server frames must not be masked")
        length = b1 & 0x7F
        hdr = 2
        if length == 126:
            if n - pos < 4:
                break
            length = struct.unpack_from("!H", buf, pos + 2)[0]
            hdr = 4
        elif length == 127:
            if n - pos < 10:
                break
            length = struct.unpack_from("!Q", buf, pos + 2)[0]
            hdr = 10
        if n - pos < hdr + length:
            break
        start = pos + hdr
        frames.append((b0 & 0x80, b0 & 0x0F, bytes(buf[start : start + length])))
        pos = start + length
    return frames, pos


class RawSio:
    """One connection to one namespace. Blocking handshake, then non-blocking reads.

    After ``connect()``, feed it from a selector loop: ``on_readable()`` returns the
    list of complete Socket.IO packets (as text) that arrived, after answering pings
    and collecting acknowledgements in ``acks``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        namespace: str = "/market",
        timeout: float = 10.0,
        auth: dict | None = None,
    ):
        self.host, self.port, self.ns = host, port, namespace
        self.auth = auth  # the CONNECT packet's payload: {"api_key": ...} with --auth on
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.partial: list[bytes] = []
        self.acks: dict[int, object] = {}
        self.next_ack = 1
        self.closed = False
        self.nonblocking = False
        self.early: list[str] = []  # event packets that arrived during call()
        self.event_prefix = f"42{namespace}," if namespace != "/" else "42"
        self.ack_prefix = f"43{namespace}," if namespace != "/" else "43"

    # ---- handshake (blocking)
    def connect(self) -> None:
        """Open the WebSocket, the Engine.IO session and the namespace.

        Raises:
            OSError: network errors.
            SioProtocolError: the server refused or spoke something else.
        """
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        key = base64.b64encode(os.urandom(16)).decode()
        hosthdr = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        s.sendall(
            (
                f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {hosthdr}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise SioProtocolError("connection closed during the WebSocket handshake")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise SioProtocolError(f"WebSocket upgrade refused: {head.splitlines()[0]!r}")
        self.buf += rest
        open_pkt = self._wait_packet(lambda p: p.startswith("0"))
        self.eio_open = json.loads(open_pkt[1:])
        payload = json.dumps(self.auth, separators=(",", ":")) if self.auth else ""
        self.send_text((f"40{self.ns}," if self.ns != "/" else "40") + payload)
        pkt = self._wait_packet(lambda p: p.startswith(("40", "44")))
        if pkt.startswith("44"):
            raise SioProtocolError(f"namespace {self.ns} refused: {pkt}")

    def _wait_packet(self, want) -> str:
        """Block until a packet matching ``want`` arrives (answering pings meanwhile)."""
        while True:
            for pkt in self._drain():
                if want(pkt):
                    return pkt
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SioProtocolError("connection closed during the Socket.IO handshake")
            self.buf += chunk

    def emit_with_ack(self, event: str, data) -> int:
        """Send an event with an acknowledgement id; returns the id (see ``acks``)."""
        ack = self.next_ack
        self.next_ack += 1
        self.send_text(f"{self.event_prefix}{ack}" + json.dumps([event, data], separators=(",", ":")))
        return ack

    def call(self, event: str, data):
        """Emit and block until the acknowledgement; returns its first argument."""
        ack = self.emit_with_ack(event, data)
        pending = []
        while ack not in self.acks:
            pending.extend(self._drain())
            if ack in self.acks:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SioProtocolError("connection closed while waiting for an acknowledgement")
            self.buf += chunk
        self.early.extend(pending)
        args = self.acks.pop(ack)
        return args[0] if args else None

    def set_nonblocking(self) -> None:
        """Switch to non-blocking reads for a selector loop (after the handshake)."""
        self.sock.setblocking(False)
        self.nonblocking = True

    def send_text(self, text: str) -> None:
        self._send(mask_frame(OP_TEXT, text.encode()))

    def _send(self, frame: bytes) -> None:
        if not self.nonblocking:
            self.sock.sendall(frame)
            return
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(frame)
        finally:
            self.sock.setblocking(False)

    # ---- reading
    def _drain(self) -> list[str]:
        """Complete packets in the buffer; answers pings; stores acks."""
        frames, used = parse_frames(self.buf)
        if used:
            del self.buf[:used]
        out = []
        for fin, op, payload in frames:
            if op == OP_PING:
                self._send_ctrl(OP_PONG, payload)
                continue
            if op == OP_CLOSE:
                self.closed = True
                continue
            if op == OP_PONG:
                continue
            if op in (OP_TEXT, OP_BIN) or op == OP_CONT:
                self.partial.append(payload)
                if not fin:
                    continue
                data = b"".join(self.partial)
                self.partial = []
            else:
                continue
            pkt = data.decode("utf-8", "replace")
            if pkt == "2":  # Engine.IO ping
                self.send_text("3")
                continue
            if pkt.startswith(self.ack_prefix):
                body = pkt[len(self.ack_prefix) :]
                i = 0
                while i < len(body) and body[i].isdigit():
                    i += 1
                if i:
                    self.acks[int(body[:i])] = json.loads(body[i:] or "[]")
                continue
            if pkt.startswith("41"):
                self.closed = True
                continue
            out.append(pkt)
        return out

    def _send_ctrl(self, op: int, payload: bytes) -> None:
        try:
            self._send(mask_frame(op, payload))
        except OSError:
            self.closed = True

    def on_readable(self) -> list[str]:
        """Read what is there (non-blocking) and return the complete event packets."""
        try:
            chunk = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            self.closed = True
            return []
        if not chunk:
            self.closed = True
            return []
        self.buf += chunk
        return self._drain()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.setblocking(True)
                self.sock.settimeout(0.5)
                self.sock.sendall(mask_frame(OP_TEXT, f"41{self.ns},".encode()))
                self.sock.sendall(mask_frame(OP_CLOSE, struct.pack("!H", 1000)))
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        self.closed = True
