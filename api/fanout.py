"""Direct fan-out: a market-data edge writes each client's frames of a pass with
one non-blocking ``send``, without Engine.IO's per-client queue and writer task.

Why (``Documentation/PERFORMANCE.md``, section 13): an edge with 2,000
subscribers spent ~18 us of CPU per delivery, and a sampling profile of one
under ``tests/bench_cluster.py`` (1,000 subscribers, 500 orders/s) put ~80% of
it in the machinery *around* the write, not in the write: per delivery, python-
socketio's ``emit`` hands the (shared, encoded once) packet to each member's
Engine.IO ``Socket.send`` (a ping check, a log call, the session guard's
accounting, an eventlet ``Queue.put`` that schedules a timer to wake the
client's writer task); the hub fires the timer and switches to that writer;
the writer's ``poll`` takes the packet (``get``, ``task_done``, accounting)
and ``sendall`` writes it (the system call: ~17% of the edge's CPU); then the
hub switches back. With ~1.6 events per client per pass, that is one queue
hand-off, two green switches and one system call per event.

What this does instead, for WebSocket clients only:

* ``FanOut.emit`` (the publisher's ``socketio.emit``) encodes the Socket.IO
  packet once and packs its WebSocket frame once (unmasked, uncompressed: the
  same bytes for every client), and for each member appends the frame to that
  client's ``DirectWriter``;
* between ``begin()`` and ``end()`` (one publisher pass) the frames wait; at
  ``end()`` each client's frames of the pass go out in **one** ``send`` on its
  non-blocking TCP socket: one system call per client per pass, no queue, no
  timer, no green switch. Outside a pass (a subscription's snapshot) a frame
  goes out at once, after anything the client still has pending;
* a write never blocks and never reorders: when the client's Engine.IO queue
  holds anything, or its writer task is in the middle of a write (both: a slow
  client, or Engine.IO's own packets -- pings, acknowledgements), or the socket
  takes only part of the bytes, the rest goes through the queue as one
  pre-packed frame (``RawFrame``), behind what is there, and the client's
  later frames follow it there until the queue is empty again (a frame that
  eventlet's reader writes itself -- the answer to a client's WebSocket ping --
  goes behind a half-written frame's rest too). So the session
  guard (``api/sessions.py``) still counts every byte that waits in the
  server for a client, and disconnects a slow consumer as before (its socket
  shut down: a direct write then fails, and the session ends);
* clients on long-polling, with permessage-deflate, or before their upgrade
  has finished get python-socketio's path, unchanged.

The writer task of each WebSocket client still runs (pings, acknowledgements,
and whatever the direct path had to queue); ``install_direct_fanout`` starts
it with ``api.market``'s coalescing ``poll`` (``_sending_poll``) and records
when it is writing.

Ordering: per client, frames go out in the order they were emitted: direct
bytes are written only when nothing of the client waits in the server, and
pending frames of a pass are written before any frame emitted outside it.
Under eventlet a pass never yields between ``begin`` and ``end`` (no lock held
by another green thread waits on IO), so nothing else writes to a client
meanwhile.
"""

from __future__ import annotations

import logging
import socket as _socket
import struct

from engineio import packet as eio_packet
from socketio import packet as sio_packet

from api.market import _FRAME, _sending_poll, install_websocket_hook

log = logging.getLogger(__name__)

DIRECT = "_direct_writer"  # attribute of an Engine.IO Socket: its DirectWriter


def text_frame(data: bytes) -> bytes:
    """One server-to-client WebSocket text frame (FIN, unmasked, uncompressed:
    RFC 6455 section 5.2). O(len)."""
    n = len(data)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + data
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


class RawFrame(eio_packet.Packet):
    """WebSocket frame bytes queued for Engine.IO's writer (``api.market``'s
    coalescing ``poll`` writes ``_FRAME`` as is); sized like any packet for the
    session guard (``encode_cache``)."""

    def __init__(self, frame: bytes) -> None:
        self.packet_type = eio_packet.MESSAGE
        self.data = frame
        self.binary = True
        self.encode_cache = frame
        setattr(self, _FRAME, frame)


class DirectWriter:
    """One WebSocket client's direct path (see the module docstring)."""

    __slots__ = ("connection", "fd", "ready", "writing", "dead", "pending", "direct", "queued", "split")

    def __init__(self, connection, fd) -> None:
        self.connection = connection  # engineio.socket.Socket
        self.fd = fd  # the non-blocking TCP socket under eventlet's green socket
        self.ready = False  # the writer task runs (the upgrade is complete)
        self.writing = False  # the writer task is inside a write (it may be blocked in it)
        self.dead = False
        self.pending: list[bytes] = []  # frames of the current pass
        self.direct = 0  # bytes written directly
        self.queued = 0  # bytes that went through the queue
        # The rest of a frame the socket took only part of (queued first): until the
        # writer task has written it, no other frame may go to this socket directly.
        self.split: bytes | None = None

    def usable(self) -> bool:
        return self.ready and not self.dead and not self.connection.closed

    def write(self, data: bytes) -> None:
        """Send ``data`` now if nothing of this client waits in the server,
        else (or the part the socket did not take) behind it, through the queue."""
        connection = self.connection
        if self.dead or connection.closed:
            return
        if self.writing or connection.queue.qsize():
            self._enqueue(data)
            return
        try:
            sent = self.fd.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the client went away, or the guard shut the socket (slow consumer)
            self._broken()
            return
        self.direct += sent
        if sent < len(data):
            rest = data[sent:] if sent else data
            if sent:
                self.split = rest
            self._enqueue(rest)

    def flush(self) -> None:
        pending = self.pending
        if pending:
            self.pending = []
            self.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _enqueue(self, data: bytes) -> None:
        self.queued += len(data)
        self.connection.send(RawFrame(data))  # the session guard's accounting, then the queue

    def _broken(self) -> None:
        self.dead = True
        self.pending = []
        try:
            self.fd.shutdown(_socket.SHUT_RDWR)  # the reader ends: Engine.IO closes the session
        except OSError:
            pass


class FanOut:
    """What ``api.market.Publisher`` calls as ``socketio``: ``emit`` through
    the direct path (module docstring), everything else is the Flask-SocketIO
    object's. ``begin``/``end`` bracket a publisher pass."""

    def __init__(self, socketio, namespace: str) -> None:
        self._socketio = socketio
        self.namespace = namespace
        self._in_pass = False
        self._touched: list[DirectWriter] = []
        self.frames = 0  # frames fanned out directly (one per client per event)
        self.writes = 0  # flushes of a client's pass
        self.fallback = 0  # deliveries through python-socketio's path (polling, not ready yet)

    def __getattr__(self, name):
        return getattr(self._socketio, name)

    def begin(self) -> None:
        self._in_pass = True

    def end(self) -> None:
        """Write every client's frames of the pass, one ``send`` each."""
        self._in_pass = False
        touched, self._touched = self._touched, []
        self.writes += len(touched)
        for writer in touched:
            try:
                writer.flush()
            except Exception:  # one client's failure must not stop the others'
                log.exception("direct fan-out: a write failed")
                writer.dead = True

    def emit(self, event, data, namespace=None, to=None, **kwargs):
        server = self._socketio.server
        if kwargs or to is None or namespace != self.namespace:
            return self._socketio.emit(event, data, namespace=namespace, to=to, **kwargs)
        encoded = server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
        if not isinstance(encoded, str):  # binary attachments: python-socketio's path
            return self._socketio.emit(event, data, namespace=namespace, to=to)
        frame = None
        eio_pkt = None
        sockets = server.eio.sockets
        in_pass = self._in_pass
        touched = self._touched
        for _sid, eio_sid in server.manager.get_participants(namespace, to):
            connection = sockets.get(eio_sid)
            if connection is None:
                continue
            writer = connection.__dict__.get(DIRECT)
            if writer is None or not writer.usable():
                if eio_pkt is None:
                    eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
                self.fallback += 1
                server._send_eio_packet(eio_sid, eio_pkt)
                continue
            if frame is None:
                frame = text_frame(("4" + encoded).encode())
            self.frames += 1
            if in_pass:
                if not writer.pending:
                    touched.append(writer)
                writer.pending.append(frame)
            else:
                writer.flush()  # anything of a pass first (never reorder)
                writer.write(frame)

    def stats(self) -> dict:
        return {
            "direct_frames": self.frames,
            "direct_writes": self.writes,
            "fallback_deliveries": self.fallback,
        }


def install_direct_fanout(socketio) -> bool:
    """Give each WebSocket client of this (eventlet) server a ``DirectWriter``
    and ``api.market``'s coalescing writer (``install_frame_coalescing``'s,
    which this replaces). Returns False, changing nothing, outside eventlet
    mode or with other internals than expected (then ``FanOut`` falls back to
    python-socketio's path for every client)."""

    def detach(connection) -> None:
        writer = connection.__dict__.get(DIRECT)
        if writer is not None:
            writer.dead = True

    return install_websocket_hook(socketio, _attach, detach)


def _plain_socket(fd) -> bool:
    """Is ``fd`` the standard library's TCP socket (not TLS, not a green wrapper)?
    By name: under eventlet's monkey patching ``socket.socket`` is the green class
    and the fd under it comes from eventlet's pristine copy of the module."""
    kind = type(fd)
    return kind.__name__ == "socket" and kind.__module__ == "socket"


def _attach(connection, ws) -> None:
    """The coalescing writer for ``connection``, and its direct path when the
    frames are the shared ones (server side, no compression, a plain TCP socket)."""
    fd = getattr(getattr(ws, "socket", None), "fd", None)
    shared = not ws.client and ws._get_permessage_deflate_enc() is None
    if not shared or not _plain_socket(fd) or fd.gettimeout() != 0.0:  # TLS, or a blocking fd
        connection.poll = _sending_poll(connection, ws)
        return
    writer = DirectWriter(connection, fd)
    send = ws._send

    def tracked_send(data):
        # Every write of eventlet's WebSocket: the writer task's, and the reader's
        # replies to the client's own pings and close (which do not go through the
        # queue). While the rest of a half-written frame waits in the queue, any
        # other frame goes behind it there; the writer's write of that rest clears it.
        split = writer.split
        if split is not None and not data.startswith(split):
            writer._enqueue(data)
            return None
        writer.writing = True
        try:
            return send(data)
        finally:
            writer.writing = False
            if split is not None:
                writer.split = None

    ws._send = tracked_send
    poll = _sending_poll(connection, ws)

    def poll_and_mark():
        if connection.upgraded:  # the writer task runs: direct writes may start
            writer.ready = True
        return poll()

    connection.poll = poll_and_mark
    connection.__dict__[DIRECT] = writer
