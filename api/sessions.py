"""Engine.IO session limits: slow consumers, handshake rate, sessions per address.

One client must not be able to grow the server's memory without bound through
Socket.IO. The ways it could, and the limit on each (``SessionGuard``):

Slow consumers (``max_queue_bytes``, default 4 MiB)
    Engine.IO queues every packet for a client (``engineio.socket.Socket.queue``)
    until its transport takes it: the WebSocket writer (blocked in ``sendall``
    while the client does not read) or the next long-polling ``GET`` (which a
    client may never send while it keeps answering pings over ``POST``). A
    subscriber that does not read would hold every trade and book update
    published since, forever (1-2 MB/s per client at 300 orders/s). Here each session
    counts the bytes handed to it and not yet written: the packets in its queue
    plus the batch its transport took last and is still writing (a batch counts
    until the transport comes back for the next one: then it was written). A
    packet that would take that above the limit is not queued; the client is
    disconnected instead -- its queue emptied (the memory is freed at once), its
    TCP connection shut down (a writer blocked in ``sendall`` fails at once),
    its session closed (Socket.IO's disconnect handlers run: it leaves its
    rooms). One log line (the client's address and the figures; never the
    session id, which is the polling transport's credential) and
    ``slow_consumers_disconnected`` in ``/statistics``. Trades are never
    dropped from a stream that goes on: a client either receives everything in
    order or is disconnected (and then knows it must recover, e.g. with
    ``GET /trades``). A single packet larger than the limit still goes to a
    client with nothing waiting, so a low limit cannot lock out the large
    ``l2_update`` of a deep subscription.

Slow consumers of one address (``max_queue_bytes_per_ip``, default 32 MiB)
    The bytes waiting for all sessions of one client address together are
    capped too: otherwise one address could hold ``max_sessions_per_ip`` full
    queues (256 x 4 MiB). When a packet would take the address past its
    budget, the address's session furthest behind is disconnected as above
    (the packet is then not queued if that session was its recipient).

Handshake rate (``handshake_limit`` per ``handshake_window`` s, default 600/min)
    A handshake (a ``GET`` of the Engine.IO path without ``sid``: a new session,
    polling or WebSocket) is counted per client address by the same fixed-window
    limiter as REST (``api.ratelimit.RateLimiter``, its own instance) before
    Engine.IO sees it; over the limit it is answered ``429 RATE_LIMITED`` with
    the contract's envelope and ``Retry-After`` and costs nothing more.

Sessions per address (``max_sessions_per_ip``, default 256)
    Open sessions are counted per client address (Engine.IO's ``connect`` and
    ``disconnect`` events); a handshake beyond the limit gets the same ``429``.
    An abandoned session -- a polling handshake that never polls again -- is
    freed by Engine.IO's ping timeout (it is sent a ping after ``ping_interval``
    and closed ``ping_timeout`` later, at the service task's next round); until
    then it counts against its address, which bounds what one address can hold.

Cost: a handshake pays a dict lookup or two; a packet queued for a client pays
``len`` of its (cached) encoding and an addition or two (under a lock in
threading mode), and the same again when its transport takes it: ~0.5 us a
packet in a micro-benchmark, not measurable in the fan-out's CPU per order
(``Documentation/PERFORMANCE.md``, section 8).

Threading: in eventlet mode the per-packet accounting takes no lock (green
threads are never preempted and it never yields); in threading mode a
``threading.Lock`` guards it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket as _socket
import sys
import threading
import time

from api.errors import envelope
from api.ratelimit import RateLimiter

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_QUEUE_BYTES_PER_IP = 32 * 1024 * 1024
DEFAULT_HANDSHAKE_LIMIT = 600  # per window, per client address
DEFAULT_HANDSHAKE_WINDOW = 60
DEFAULT_MAX_SESSIONS_PER_IP = 256

# The app factories' config keys for these limits and their defaults (``api.app``
# for the engine, ``api.edge`` for an edge), read by ``guard_from_config``;
# ``ping_interval``/``ping_timeout`` go to the ``SocketIO`` object.
CONFIG_DEFAULTS = {
    "send_queue_bytes": DEFAULT_MAX_QUEUE_BYTES,
    "send_queue_ip": DEFAULT_MAX_QUEUE_BYTES_PER_IP,
    "handshake_limit": DEFAULT_HANDSHAKE_LIMIT,
    "sessions_per_ip": DEFAULT_MAX_SESSIONS_PER_IP,
    "ping_interval": 25,
    "ping_timeout": 20,
}


def config_from_args(args) -> dict:
    """``CONFIG_DEFAULTS``' keys from ``api/app.py``'s parsed command line."""
    return {
        "send_queue_bytes": args.send_queue_bytes,
        "send_queue_ip": args.send_queue_bytes_per_ip,
        "handshake_limit": args.handshake_limit,
        "sessions_per_ip": args.sessions_per_ip,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
    }


SESSIONS_RETRY_AFTER = 10  # seconds, for a refusal because of open sessions


def _make_lock(async_mode: str):
    """``None`` in eventlet mode (green threads are never preempted and the
    accounting never yields: a lock would only cost, ~150-300 ns a packet here),
    else a ``threading.Lock``."""
    return None if async_mode == "eventlet" else threading.Lock()


def _raw_socket(ws):
    """The TCP socket under Engine.IO's WebSocket object: eventlet's
    ``WebSocket.socket``, or simple-websocket's (threading mode) ``.ws.sock``."""
    if ws is None:
        return None
    for obj in (ws, getattr(ws, "ws", None)):
        for attr in ("socket", "sock", "_sock"):
            raw = getattr(obj, attr, None)
            if raw is not None and hasattr(raw, "shutdown"):
                return raw
    return None


def _batch_size(packets) -> int:
    """Bytes of the packets a transport took (``[]`` when the session ends)."""
    taken = 0
    for pkt in packets or ():
        cached = pkt.encode_cache
        taken += len(cached) if cached is not None else _size(pkt)
    return taken


def _size(pkt) -> int:
    """Bytes of an Engine.IO packet on the wire (its cached encoding; binary
    data as is: encoding it here would cache the wrong form for polling)."""
    data = pkt.data
    if pkt.binary:
        return len(data)
    return len(pkt.encode())


class Peer:
    """The sessions of one client address and the bytes waiting for all of them."""

    __slots__ = ("address", "boxes", "pending")

    def __init__(self, address: str) -> None:
        self.address = address
        self.boxes: set[Outbox] = set()
        self.pending = 0


class Outbox:
    """One Engine.IO session's accounting: bytes queued or being written."""

    __slots__ = ("peer", "sock", "pending", "in_hand", "closing", "ws", "transport")

    def __init__(self, peer: Peer, sock) -> None:
        self.peer = peer
        self.sock = sock
        self.pending = 0  # bytes queued and not yet written (the batch in hand included)
        self.in_hand = 0  # bytes of the batch the transport took last
        self.closing = False
        self.ws = None  # the WebSocket, once upgraded (to shut its TCP connection)
        self.transport = "polling"


class SessionGuard:
    """The limits of the module docstring for one Socket.IO server.

    ``install()`` hooks Engine.IO's ``connect``/``disconnect`` events;
    ``wsgi(app)`` returns the middleware that refuses handshakes;
    ``stats()`` the counters for ``/statistics``. A limit of 0 turns it off.
    """

    def __init__(
        self,
        socketio,
        *,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_queue_bytes_per_ip: int = DEFAULT_MAX_QUEUE_BYTES_PER_IP,
        handshake_limit: int = DEFAULT_HANDSHAKE_LIMIT,
        handshake_window: int = DEFAULT_HANDSHAKE_WINDOW,
        max_sessions_per_ip: int = DEFAULT_MAX_SESSIONS_PER_IP,
        path: str = "/socket.io",
        clock=time.time,
    ) -> None:
        for name, value in (
            ("max_queue_bytes", max_queue_bytes),
            ("max_queue_bytes_per_ip", max_queue_bytes_per_ip),
            ("handshake_limit", handshake_limit),
            ("max_sessions_per_ip", max_sessions_per_ip),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0: no limit)")
        self.socketio = socketio
        self.eio = socketio.server.eio
        self.max_queue_bytes = max_queue_bytes
        self.max_queue_bytes_per_ip = max_queue_bytes_per_ip
        self.max_sessions = max_sessions_per_ip
        self.handshakes = RateLimiter(handshake_limit, handshake_window, clock) if handshake_limit else None
        self.path = "/" + path.strip("/")
        self._clock = clock
        self._lock = _make_lock(self.eio.async_mode)
        self._table_lock = threading.Lock()  # boxes and peers: connect/disconnect only
        self.boxes: dict[str, Outbox] = {}
        self.peers: dict[str, Peer] = {}
        # counters
        self.slow_consumers = 0
        self.slow_consumers_per_ip = 0  # of which for the address's budget
        self.handshakes_refused = 0
        self.sessions_refused = 0
        self.sessions_opened = 0

    # -- Engine.IO events ----------------------------------------------------
    def install(self) -> None:
        """Wrap Engine.IO's ``connect`` and ``disconnect`` handlers (python-socketio's)."""
        handlers = self.eio.handlers
        on_connect = handlers.get("connect")
        on_disconnect = handlers.get("disconnect")

        def connect(sid, environ, *args):
            self._opened(sid, environ)
            ret = on_connect(sid, environ, *args) if on_connect is not None else None
            if ret is not None and ret is not True:  # refused: Engine.IO drops it without a disconnect
                self._closed(sid)
            return ret

        def disconnect(sid, *args):
            try:
                if on_disconnect is not None:
                    return on_disconnect(sid, *args)
            finally:
                self._closed(sid)

        handlers["connect"] = connect
        handlers["disconnect"] = disconnect
        logger = getattr(self.eio, "logger", None)
        if isinstance(logger, logging.Logger):
            redacting = [f for f in logger.filters if isinstance(f, RedactSessionIds)]
            if not redacting:
                logger.addFilter(RedactSessionIds())

    def _opened(self, sid: str, environ: dict) -> None:
        address = environ.get("REMOTE_ADDR") or "-"
        sock = self.eio.sockets.get(sid)
        with self._table_lock:
            peer = self.peers.get(address)
            if peer is None:
                peer = self.peers[address] = Peer(address)
            box = Outbox(peer, sock)
            peer.boxes.add(box)
            self.boxes[sid] = box
            self.sessions_opened += 1
        if sock is not None and (self.max_queue_bytes or self.max_queue_bytes_per_ip):
            self._watch(sock, box)

    def _closed(self, sid: str) -> None:
        with self._table_lock:
            box = self.boxes.pop(sid, None)
            if box is None:
                return
            peer = box.peer
            peer.boxes.discard(box)
            self._settle(box)
            if not peer.boxes:
                del self.peers[peer.address]

    def _settle(self, box: Outbox) -> None:
        """A session's bytes stop counting (it was disconnected or closed)."""
        lock = self._lock
        if lock is None:
            box.peer.pending -= box.pending
            box.pending = box.in_hand = 0
            return
        with lock:
            box.peer.pending -= box.pending
            box.pending = box.in_hand = 0

    # -- the outgoing queue of one session -------------------------------------
    def _watch(self, sock, box: Outbox) -> None:
        """Replace the session's ``send``, ``poll`` and WebSocket handler by
        accounting versions (instance attributes: Engine.IO calls them as
        ``self.send(...)`` etc., so its own packets -- pings, close -- count too)."""
        limit = self.max_queue_bytes or sys.maxsize
        ip_limit = self.max_queue_bytes_per_ip or sys.maxsize
        lock = self._lock
        peer = box.peer
        send = sock.send
        poll = sock.poll
        websocket_handler = sock._websocket_handler
        # what was queued before the connect event (the OPEN packet)
        box.pending = sum(_size(p) for p in list(getattr(sock.queue, "queue", ())) if p is not None)
        peer.pending += box.pending

        if lock is None:  # eventlet: no preemption, and nothing below yields

            def counting_send(pkt):
                if box.closing:
                    return  # disconnected as a slow consumer: nothing more is queued
                cached = pkt.encode_cache  # a room-wide packet is encoded once, for its first member
                size = len(cached) if cached is not None else _size(pkt)
                pending = box.pending
                if pending and pending + size > limit:
                    self._too_slow(box, pending + size)
                    return
                if peer.pending + size > ip_limit and self._over_ip_budget(box, size):
                    return
                box.pending = pending + size
                peer.pending += size
                send(pkt)

            def counting_poll():
                # The transport comes back for more: the batch it took last is written.
                done = box.in_hand if box.in_hand < box.pending else box.pending
                box.pending -= done
                peer.pending -= done
                box.in_hand = 0
                packets = poll()
                if not box.closing:  # (a disconnected session's bytes are settled)
                    box.in_hand = _batch_size(packets)
                return packets

        else:  # threading: senders on several threads

            def counting_send(pkt):
                if box.closing:
                    return
                cached = pkt.encode_cache
                size = len(cached) if cached is not None else _size(pkt)
                with lock:
                    pending = box.pending
                    over = pending and pending + size > limit
                    over_ip = not over and peer.pending + size > ip_limit
                    if not (over or over_ip):
                        box.pending = pending + size
                        peer.pending += size
                if over:
                    self._too_slow(box, pending + size)
                    return
                if over_ip:
                    if self._over_ip_budget(box, size):
                        return
                    with lock:
                        box.pending += size
                        peer.pending += size
                send(pkt)

            def counting_poll():
                with lock:
                    done = box.in_hand if box.in_hand < box.pending else box.pending
                    box.pending -= done
                    peer.pending -= done
                    box.in_hand = 0
                packets = poll()
                taken = _batch_size(packets)
                with lock:
                    if not box.closing:
                        box.in_hand = taken
                return packets

        def recording_websocket_handler(ws):
            box.ws = ws
            box.transport = "websocket"
            return websocket_handler(ws)

        # The frame-coalescing writer (api.market) finds the session through this.
        recording_websocket_handler.connection = sock
        sock.send = counting_send
        sock.poll = counting_poll
        sock._websocket_handler = recording_websocket_handler

    def _over_ip_budget(self, box: Outbox, size: int) -> bool:
        """``size`` more bytes for ``box`` would take its address past its
        budget: disconnect the address's session furthest behind. True when
        that is ``box`` itself (its packet is then not queued)."""
        peer = box.peer
        behind = [b for b in list(peer.boxes) if not b.closing and b.pending]
        if not behind:
            return False  # a lone packet larger than the budget: as for one session
        victim = max(behind, key=lambda b: b.pending)
        self.slow_consumers_per_ip += 1
        self._too_slow(victim, victim.pending, address_total=peer.pending + size)
        return victim is box

    def _too_slow(self, box: Outbox, would_be: int, address_total: int | None = None) -> None:
        """Disconnect a client whose queue would pass the limit (or whose
        address's would, and it is the furthest behind); free its queue now."""
        box.closing = True
        self.slow_consumers += 1
        peer = box.peer
        if address_total is None:
            log.warning(
                "slow consumer disconnected: Socket.IO client %s (%s) had %d bytes waiting, limit %d",
                peer.address,
                box.transport,
                would_be,
                self.max_queue_bytes,
            )
        else:
            log.warning(
                "slow consumer disconnected: Socket.IO client %s (%s) had %d bytes waiting, "
                "its address %d (%d sessions), limit per address %d",
                peer.address,
                box.transport,
                would_be,
                address_total,
                len(peer.boxes),
                self.max_queue_bytes_per_ip,
            )
        sock = box.sock
        queue = sock.queue
        closed_mark = False
        while True:  # empty the queue: the memory goes now, not when the session is reaped
            try:
                pkt = queue.get(block=False)
            except Exception:  # Empty (eventlet's or the standard library's)
                break
            queue.task_done()
            closed_mark = closed_mark or pkt is None
        if closed_mark:  # the session was closing already: its writer still needs the mark
            queue.put(None)
        self._settle(box)
        raw = _raw_socket(box.ws)
        if raw is not None:
            try:
                raw.shutdown(_socket.SHUT_RDWR)  # a writer blocked in sendall fails now
            except OSError:
                pass
        # Closing runs Socket.IO's disconnect handlers (rooms, the publisher's
        # bookkeeping): not from inside the emit that found the client too slow.
        self.socketio.start_background_task(self._close, sock)

    def _close(self, sock) -> None:
        try:
            if not sock.closed:
                sock.close(wait=False, abort=True, reason=self.eio.reason.SERVER_DISCONNECT)
        except Exception:
            log.exception("closing a slow consumer's session failed")

    # -- handshakes ------------------------------------------------------------
    def refusal(self, address: str) -> tuple[dict, int] | None:
        """``None`` when a new session from ``address`` may start, else the
        envelope and the ``Retry-After`` seconds of its 429. O(1)."""
        limiter = self.handshakes
        if limiter is not None:
            allowed, _remaining, reset = limiter.hit(address)
            if not allowed:
                self.handshakes_refused += 1
                retry = max(1, math.ceil(reset - self._clock()))
                message = (
                    f"too many Socket.IO handshakes from this address "
                    f"({limiter.limit} per {limiter.window} seconds); retry later"
                )
                return envelope("RATE_LIMITED", message), retry
        peer = self.peers.get(address)
        if self.max_sessions and peer is not None and len(peer.boxes) >= self.max_sessions:
            self.sessions_refused += 1
            message = (
                f"too many open Socket.IO sessions from this address ({self.max_sessions}); "
                "close one or retry later"
            )
            return envelope("RATE_LIMITED", message), SESSIONS_RETRY_AFTER
        return None

    def wsgi(self, app):
        """WSGI middleware in front of ``app`` (which contains the Socket.IO one)
        that answers refused handshakes itself."""
        path = self.path
        prefix = path + "/"

        def guarded(environ, start_response):
            if environ.get("REQUEST_METHOD") == "GET":
                p = environ.get("PATH_INFO", "")
                if (p == path or p.startswith(prefix)) and not _has_sid(environ.get("QUERY_STRING", "")):
                    refused = self.refusal(environ.get("REMOTE_ADDR") or "-")
                    if refused is not None:
                        body, retry = refused
                        data = json.dumps(body, separators=(",", ":")).encode()
                        headers = [
                            ("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))),
                            ("Retry-After", str(retry)),
                        ]
                        start_response("429 TOO MANY REQUESTS", headers + self._cors(environ))
                        return [data]
            return app(environ, start_response)

        return guarded

    def _cors(self, environ) -> list:
        """Engine.IO's CORS headers for this request (a browser can then read the
        429), when it computes them as python-engineio 4.x does."""
        if not environ.get("HTTP_ORIGIN"):
            return []
        cors_headers = getattr(self.eio, "_cors_headers", None)
        try:
            return list(cors_headers(environ)) if cors_headers is not None else []
        except Exception:  # an internal that changed: the 429 goes without them
            return []

    # -- statistics ------------------------------------------------------------
    def stats(self) -> dict:
        """Counters and limits (merged into ``/statistics``' ``streaming``)."""
        with self._table_lock:
            pending = [b.pending for b in self.boxes.values()]
            per_ip = [p.pending for p in self.peers.values()]
        return {
            "slow_consumers_disconnected": self.slow_consumers,
            "slow_consumers_disconnected_per_ip": self.slow_consumers_per_ip,
            "engineio_sessions": len(self.eio.sockets),
            "session_addresses": len(per_ip),
            "sessions_opened": self.sessions_opened,
            "handshakes_refused": self.handshakes_refused + self.sessions_refused,
            "handshakes_refused_rate": self.handshakes_refused,
            "handshakes_refused_sessions": self.sessions_refused,
            "send_queue_bytes": sum(pending),
            "send_queue_bytes_max": max(pending, default=0),
            "send_queue_bytes_max_ip": max(per_ip, default=0),
            "limits": {
                "max_queue_bytes": self.max_queue_bytes,
                "max_queue_bytes_per_ip": self.max_queue_bytes_per_ip,
                "handshakes_per_window": self.handshakes.limit if self.handshakes else 0,
                "handshake_window_seconds": self.handshakes.window if self.handshakes else 0,
                "max_sessions_per_ip": self.max_sessions,
            },
        }


class RedactSessionIds(logging.Filter):
    """Engine.IO logs refused requests with their session id ("Invalid session
    <sid>", at ERROR: also with its logger off). A polling session's id is its
    credential, so it never reaches our log: the id is replaced."""

    _SID = re.compile(r"\b(session |sid )[A-Za-z0-9_-]{8,}")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        if "session " in text or "sid " in text:
            record.msg = self._SID.sub(r"\1<redacted>", text)
            record.args = ()
        return True


def _has_sid(query: str) -> bool:
    """Whether an Engine.IO query string names a session (``sid=``)."""
    return query.startswith("sid=") or "&sid=" in query


def guard_from_config(socketio, cfg: dict) -> SessionGuard:
    """The ``SessionGuard`` of an app factory's config (``CONFIG_DEFAULTS``' keys),
    installed on ``socketio``."""
    guard = SessionGuard(
        socketio,
        max_queue_bytes=int(cfg["send_queue_bytes"]),
        max_queue_bytes_per_ip=int(cfg["send_queue_ip"]),
        handshake_limit=int(cfg["handshake_limit"]),
        max_sessions_per_ip=int(cfg["sessions_per_ip"]),
    )
    guard.install()
    return guard
