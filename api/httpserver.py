"""The HTTP server layer: connection limits, deadlines, and the contract's
envelope on every refusal the server itself makes, in both async modes.

One hostile or careless client must not stop the service for everyone else.
Stock eventlet (``eventlet.wsgi.server``) held at most 1,024 connections (its
green pool; the 1,025th waited in the listen backlog, and with it every other
client), had no idle timeout and no request deadline (a client that sends one
header byte a second held its connection for ever), and wrote its own
refusals (400, 414, ...) as plain text. This module supplies what
``api/app.py``'s ``serve`` hands to the server: ``protocol=`` for eventlet
(a subclass of ``eventlet.wsgi.HttpProtocol``), ``request_handler=`` for
threading mode (a subclass of Werkzeug's ``WSGIRequestHandler``).

Limits (``Limits``; command line options added by ``add_arguments``):

=========================  ==========  ==================================================
option                     default     meaning
=========================  ==========  ==================================================
--max-connections          10000       connections held at once, all clients; one more is
                                       answered ``503 SERVICE_UNAVAILABLE`` and closed.
                                       Lowered at start to what ``RLIMIT_NOFILE`` allows
                                       (the soft limit is first raised to the hard one)
--max-connections-per      256         connections from one client address (IPv4 address
-client                                or full IPv6 address); one more is answered
                                       ``429 TOO_MANY_CONNECTIONS`` and closed; 0 = no cap
--idle-timeout             30 s        a connection on which no byte of a request arrives
                                       for this long (a new one, or a keep-alive one
                                       between requests) is closed, silently
--header-timeout           10 s        from the first byte of a request, its request line
                                       and headers must be complete within this (a
                                       deadline, not a per-read timeout: a byte a second
                                       does not extend it); else ``408 REQUEST_TIMEOUT``
--body-timeout             30 s        from the end of the headers, the whole body must
                                       arrive within this; else ``408 REQUEST_TIMEOUT``
=========================  ==========  ==================================================

A response write that makes no progress for ``--body-timeout`` s (a client
that does not read its answers) ends the connection too.

An upgraded WebSocket (Socket.IO) is exempt from the idle timeout and the
deadlines once its handshake request is read: it is long-lived by design, and
Engine.IO's pings find a dead peer. It still counts against both connection
caps, as does a long-polling Engine.IO client.

Refusals by the HTTP layer (all close the connection; body is the contract's
``{"error": {"code", "message"}}``, ``Content-Type: application/json``):

=====  ==========================  ========================================================
HTTP   code                        when
=====  ==========================  ========================================================
400    BAD_REQUEST                 malformed request line; bad or repeated Content-Length;
                                   Content-Length together with Transfer-Encoding; a body
                                   shorter than its Content-Length; a malformed chunked body
408    REQUEST_TIMEOUT             the header or body deadline passed
414    URI_TOO_LONG                request line of ``MAX_REQUEST_LINE`` bytes or more
429    TOO_MANY_CONNECTIONS        over the per-address cap (``Retry-After: 1``)
431    HEADER_TOO_LARGE            a header line of ``MAX_HEADER_LINE`` bytes or more, more
                                   than ``MAX_HEADER_BYTES`` of headers, or more than
                                   ``MAX_HEADERS`` header lines
501    NOT_IMPLEMENTED             a Transfer-Encoding other than ``chunked``
503    SERVICE_UNAVAILABLE         over ``--max-connections`` (``Retry-After: 1``)
505    HTTP_VERSION_NOT_SUPPORTED  HTTP/2 or later on this HTTP/1.1 port
=====  ==========================  ========================================================

After a refusal the server half-closes and reads what the client still sends
for up to ``REFUSAL_LINGER`` s before closing (``_linger``): closing with
unread bytes would reset the connection, and a client still sending (curl with
a long URL) would lose the answer.

Chunked bodies are decoded strictly in both modes (``_Input`` for eventlet,
``_StrictDechunked`` for Werkzeug): a size of 1-16 hex digits on a line of at
most ``MAX_CHUNK_LINE`` bytes, CRLF after each chunk, a bounded trailer.

The body errors (short body, malformed chunks, body deadline) are raised while
the application reads ``wsgi.input``, as ``api.errors.BadRequest`` /
``RequestTimeout``, so Flask's one error handler answers them;
``api.parsing.read_json_body`` maps a bare ``OSError``/``TimeoutError`` the
same way (in threading mode the body deadline surfaces as ``TimeoutError``,
and a short body as a short read).

How the deadlines work: the request's bytes are read through
``_DeadlineReader``, a raw stream under the connection's ``BufferedReader``
that sets the socket's timeout to what is left of the current deadline before
each ``recv`` (the phase moves idle -> head on the first byte, head -> body
when the headers are parsed) and back to the write timeout after it. No extra
green thread, no sweeper: under eventlet ``settimeout`` is an attribute write,
and a ``recv`` that has to wait arms one hub timer, as on any green socket with
a timeout (``tests/bench_connections.py --overhead``: within the noise).

Threading mode (Werkzeug's development server, ``--async-mode threading``)
gets the same caps, deadlines, header limits and envelopes. What differs:
Werkzeug closes every connection after one response (no keep-alive, so the
idle timeout only covers a new connection's first request), and each
connection is an OS thread (~10,000 threads fit here, but they cost more than
green threads; see Documentation/PERFORMANCE.md).
"""

from __future__ import annotations

import io
import logging
import re
import resource
import socket
import threading
import time
from dataclasses import dataclass, replace

from api.errors import BadRequest, RequestTimeout
from engine.errors import EngineError

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_MAX_PER_CLIENT = 256
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
MAX_REQUEST_LINE = 8192  # bytes, as eventlet's url_length_limit
MAX_HEADER_LINE = 8192
MAX_HEADER_BYTES = 65536
MAX_HEADERS = 100
MAX_DISCARD = 64 * 1024  # unread body bytes skipped to keep a connection; more: close it
MAX_CHUNK_LINE = 1024
FD_RESERVE = 256  # descriptors kept for the journal, snapshots, logs, the listener
REFUSAL_LINGER = 1.0  # s: after a refusal, read what the client sends before closing
LINGER_BYTES = 1 << 20
LISTEN_BACKLOG = 2048  # connections waiting for accept (the kernel caps it at somaxconn)
RETRY_AFTER = "1"
REFUSAL_LOG_INTERVAL = 60.0  # s between two log lines about refused connections

_STATUS_CODES = {
    400: ("Bad Request", "BAD_REQUEST"),
    408: ("Request Timeout", "REQUEST_TIMEOUT"),
    413: ("Content Too Large", "PAYLOAD_TOO_LARGE"),
    414: ("URI Too Long", "URI_TOO_LONG"),
    417: ("Expectation Failed", "EXPECTATION_FAILED"),
    429: ("Too Many Requests", "TOO_MANY_CONNECTIONS"),
    431: ("Request Header Fields Too Large", "HEADER_TOO_LARGE"),
    501: ("Not Implemented", "NOT_IMPLEMENTED"),
    503: ("Service Unavailable", "SERVICE_UNAVAILABLE"),
    505: ("HTTP Version Not Supported", "HTTP_VERSION_NOT_SUPPORTED"),
}


@dataclass(frozen=True)
class Limits:
    """The server's connection limits and deadlines (seconds); see the module docstring."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_client: int = DEFAULT_MAX_PER_CLIENT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT


def add_arguments(parser) -> None:
    """Add the ``Limits`` options to an ``argparse`` parser."""
    g = parser.add_argument_group("connections (api/httpserver.py)")
    g.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"connections held at once (default {DEFAULT_MAX_CONNECTIONS}; lowered to fit the fd limit)",
    )
    g.add_argument(
        "--max-connections-per-client",
        type=int,
        metavar="N",
        default=DEFAULT_MAX_PER_CLIENT,
        help=f"connections per client address (default {DEFAULT_MAX_PER_CLIENT}; 0 = no cap)",
    )
    g.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="S",
        help="close a connection on which no request starts for S seconds (default 30)",
    )
    g.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help="a request's line and headers within S seconds of its first byte, else 408 (default 10)",
    )
    g.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="S",
        help="a request's body within S seconds of its headers, else 408; also the longest a response "
        "write may wait for the client to read (default 30)",
    )


def limits_from_args(parser, args) -> Limits:
    """The ``Limits`` of parsed arguments (``parser.error`` on a nonsensical value)."""
    if args.max_connections < 1:
        parser.error("--max-connections must be >= 1")
    if args.max_connections_per_client < 0:
        parser.error("--max-connections-per-client must be >= 0")
    for name in ("idle_timeout", "header_timeout", "body_timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return Limits(
        args.max_connections,
        args.max_connections_per_client,
        args.idle_timeout,
        args.header_timeout,
        args.body_timeout,
    )


def refusal_room(max_connections: int) -> int:
    """Connections beyond ``max_connections`` that may be open at once while
    they are refused (each for up to ``REFUSAL_LINGER`` s)."""
    return max(64, max_connections // 16)


def fit_fd_limit(limits: Limits) -> Limits:
    """Make room for ``limits.max_connections`` open sockets (and those being
    refused): raise the soft ``RLIMIT_NOFILE`` towards the hard limit if needed
    (logged), and lower ``max_connections`` (with a warning) if even the hard
    limit is too low. (Running out of descriptors would be worse than a
    refusal: eventlet's accept loop ends on ``EMFILE``.)"""
    wanted = limits.max_connections + refusal_room(limits.max_connections) + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d for %d connections",
                     soft, new, limits.max_connections)  # fmt: skip
            soft = new
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d: %s", soft, e)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fit = max(1, min((soft - FD_RESERVE) * 16 // 17, soft - FD_RESERVE - 64))
        log.warning(
            "the open-file limit (%d) holds %d connections, not %d: serving at most %d (raise `ulimit -n`)",
            soft, fit, limits.max_connections, fit,
        )  # fmt: skip
        return replace(limits, max_connections=fit)
    return limits


# -- refusals ------------------------------------------------------------------------
def error_response(
    status: int, message: str, code: str | None = None, retry_after: str | None = None
) -> bytes:
    """A complete ``HTTP/1.1`` response carrying the contract's envelope, with
    ``Connection: close`` (every refusal of the HTTP layer closes)."""
    import msgspec  # the encoder the application uses; imported here to keep the module light

    reason, default_code = _STATUS_CODES.get(status, ("Error", "BAD_REQUEST"))
    body = msgspec.json.encode({"error": {"code": code or default_code, "message": message}})
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Refusal(Exception):
    """The request is refused by the HTTP layer (before the application)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConnectionCounter:
    """Connections held, in total and per client address.

    ``acquire(host)`` returns None (counted; the caller must ``release``) or a
    refusal response (not counted). Refusals are logged at most once per
    ``REFUSAL_LOG_INTERVAL`` s, with how many there were. Runtime complexity: O(1).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.per_host: dict[str, int] = {}
        self.refused = 0
        self._unlogged = 0
        self._next_log = 0.0
        self._mu = threading.Lock()  # threading mode; uncontended (no yield inside) under eventlet
        self._full = error_response(
            503,
            f"the server holds its maximum of {limits.max_connections} connections; retry later",
            retry_after=RETRY_AFTER,
        )
        self._over_cap = error_response(
            429,
            f"this address holds its maximum of {limits.max_per_client} connections; close one or retry later",
            retry_after=RETRY_AFTER,
        )

    def acquire(self, host: str) -> bytes | None:
        limits = self.limits
        with self._mu:
            if self.total >= limits.max_connections:
                refusal = self._full
            elif limits.max_per_client and self.per_host.get(host, 0) >= limits.max_per_client:
                refusal = self._over_cap
            else:
                self.per_host[host] = self.per_host.get(host, 0) + 1
                self.total += 1
                return None
            self.refused += 1
            self._unlogged += 1
            now = time.monotonic()
            if now < self._next_log:
                return refusal
            self._next_log = now + REFUSAL_LOG_INTERVAL
            count, self._unlogged = self._unlogged, 0
        log.warning(
            "refused %d connection(s) since the last such line (the last from %s: %s; %d held in all)",
            count,
            host,
            "server full"
            if refusal is self._full
            else f"over the cap of {limits.max_per_client} per address",
            self.total,
        )
        return refusal

    def release(self, host: str) -> None:
        with self._mu:
            self.total -= 1
            held = self.per_host[host] - 1
            if held:
                self.per_host[host] = held
            else:
                del self.per_host[host]


def _linger(sock) -> None:
    """Half-close, then read and drop what the client still sends, for up to
    ``REFUSAL_LINGER`` s and ``LINGER_BYTES``, before the caller closes. Closing
    with unread bytes in the socket makes the kernel reset the connection, and
    a reset can destroy the refusal before the client has read it."""
    try:
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + REFUSAL_LINGER
        dropped = 0
        while (left := end - time.monotonic()) > 0 and dropped < LINGER_BYTES:
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                break
            dropped += len(data)
    except OSError:
        pass


def _refuse(sock, response: bytes) -> None:
    """Send a refusal on a connection no handler reads, and linger."""
    try:
        sock.settimeout(REFUSAL_LINGER)
        sock.sendall(response)
    except OSError:
        return
    _linger(sock)


def _host(address) -> str:
    return address[0] if isinstance(address, tuple) and address else "unix"


# -- deadlines -----------------------------------------------------------------------
_IDLE, _HEAD, _BODY = 0, 1, 2


class _Deadlines:
    """Where a connection's current request is, and until when it may take.

    ``after`` is the socket timeout between reads of this module (for the
    application's writes, and None for an upgraded WebSocket)."""

    __slots__ = ("limits", "phase", "deadline", "after")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.phase = _IDLE
        self.deadline = 0.0
        self.after: float | None = limits.body_timeout

    def idle(self) -> None:
        self.phase = _IDLE
        self.deadline = time.monotonic() + self.limits.idle_timeout
        self.after = self.limits.body_timeout

    def head(self) -> None:
        """The first byte of a request is here (no-op when already past it)."""
        if self.phase == _IDLE:
            self.phase = _HEAD
            self.deadline = time.monotonic() + self.limits.header_timeout

    def body(self, upgrade: bool) -> None:
        self.phase = _BODY
        self.deadline = time.monotonic() + self.limits.body_timeout
        if upgrade:
            self.after = None


class _DeadlineReader(io.RawIOBase):
    """A socket as a raw stream whose every ``recv`` waits at most until the
    current deadline (then ``TimeoutError``)."""

    def __init__(self, sock, deadlines: _Deadlines) -> None:
        self.sock = sock
        self.d = deadlines

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        d = self.d
        left = d.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock = self.sock
        sock.settimeout(left)
        try:
            n = sock.recv_into(buffer)
        finally:
            sock.settimeout(d.after)
        if n and d.phase == _IDLE:
            d.head()
        return n


class _HeaderReader:
    """The connection's reader while the headers are parsed: refuses a header
    line of ``MAX_HEADER_LINE`` bytes or more and more than ``MAX_HEADER_BYTES``
    in all (``http.client`` itself refuses more than ``MAX_HEADERS`` lines)."""

    __slots__ = ("fp", "total")

    def __init__(self, fp) -> None:
        self.fp = fp
        self.total = 0

    def readline(self, size: int = -1) -> bytes:
        line = self.fp.readline(MAX_HEADER_LINE)
        if len(line) >= MAX_HEADER_LINE:
            raise _Refusal(431, f"a header line is {MAX_HEADER_LINE} bytes or longer")
        self.total += len(line)
        if self.total > MAX_HEADER_BYTES:
            raise _Refusal(431, f"the request headers exceed {MAX_HEADER_BYTES} bytes")
        return line


def _check_framing(headers) -> bool:
    """Refuse a request whose body length is ambiguous (the request-smuggling
    cases); True when the body is chunked."""
    lengths = headers.get_all("Content-Length") or []
    encodings = headers.get_all("Transfer-Encoding") or []
    if len(lengths) > 1:
        raise _Refusal(400, "more than one Content-Length header")
    if lengths:
        value = lengths[0].strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise _Refusal(400, "Content-Length must be a non-negative integer")
        if encodings:
            raise _Refusal(400, "Content-Length and Transfer-Encoding are not allowed together")
    if encodings:
        if len(encodings) > 1 or encodings[0].strip().lower() != "chunked":
            raise _Refusal(501, "the only Transfer-Encoding supported is chunked")
        return True
    return False


def _is_upgrade(headers) -> bool:
    return headers.get("Upgrade", "").strip().lower() == "websocket"


def _send_error_envelope(handler, code, message=None, explain=None) -> None:
    """``BaseHTTPRequestHandler.send_error`` with the contract's envelope (it
    writes an HTML page); used by both handlers."""
    handler.close_connection = True
    handler.linger = True
    status = int(code)
    if message is None:
        message = _STATUS_CODES.get(status, ("error",))[0]
    if status == 431:
        message = f"the request headers are too large ({message.lower()})"
    try:
        handler.wfile.write(error_response(status, str(message)[:200]))
        handler.wfile.flush()
    except OSError:
        pass


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def _chunk_size(line: bytes) -> int:
    if not line.endswith(b"\n"):
        raise BadRequest("malformed chunked body: a chunk-size line is cut short or too long")
    size = line.rstrip(b"\r\n").split(b";", 1)[0].strip(b" \t")
    if not _CHUNK_SIZE.fullmatch(size):
        raise BadRequest("malformed chunked body: a chunk size is not a hexadecimal number")
    return int(size, 16)


def _chunk_end(rfile) -> None:
    if rfile.readline(3) not in (b"\r\n", b"\n"):
        raise BadRequest("malformed chunked body: a chunk is not followed by CRLF")


def _read_trailers(rfile) -> None:
    total = 0
    while True:
        line = rfile.readline(MAX_HEADER_LINE)
        if not line.endswith(b"\n"):
            raise BadRequest("malformed chunked body: cut short in its trailer")
        if line in (b"\r\n", b"\n"):
            return
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise BadRequest("malformed chunked body: its trailer is too large")


class _StrictDechunked(io.RawIOBase):
    """``wsgi.input`` of a chunked request in threading mode, with the rules of
    the eventlet side (``_Input._strict_chunked_read``) instead of Werkzeug's
    ``DechunkedInput``, which takes any ``int(line, 16)`` (``0x57``, ``+5``, ``5_0``)."""

    def __init__(self, rfile) -> None:
        self.rfile = rfile
        self.left = -1  # bytes left in the current chunk; -1: before the first size line
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = 0
        rfile = self.rfile
        while n < len(view) and not self.done:
            if self.left <= 0:
                if self.left == 0:
                    _chunk_end(rfile)
                self.left = _chunk_size(rfile.readline(MAX_CHUNK_LINE))
                if self.left == 0:
                    _read_trailers(rfile)
                    self.done = True
                    break
            data = rfile.read(min(self.left, len(view) - n))
            if not data:
                raise BadRequest("malformed chunked body: it ends before its last chunk")
            view[n : n + len(data)] = data
            n += len(data)
            self.left -= len(data)
        return n


# -- eventlet --------------------------------------------------------------------------
def eventlet_protocol(limits: Limits, counter: ConnectionCounter):
    """The ``protocol=`` class for ``eventlet.wsgi.server`` (imports eventlet)."""
    import eventlet.wsgi as ewsgi

    class _Input(ewsgi.Input):
        """``wsgi.input`` that refuses what stock eventlet let through: a body
        shorter than its Content-Length (it handed the application the part it
        got), a malformed chunked body (a ``ValueError`` that became a 500 with
        a traceback in the log), and a body past its deadline."""

        protocol = None  # the HttpProtocol, set by get_environ

        def _fail(self, error: EngineError) -> EngineError:
            self.protocol.close_connection = 1
            self.protocol.linger = True
            return error

        def read(self, length=None):
            if length is not None and length < 0:
                length = None
            try:
                if self.chunked_input:
                    return self._strict_chunked_read(self.rfile, length, False)
                left = self.content_length - self.position
                wanted = left if length is None else min(length, left)
                data = self._do_read(self.rfile.read, length)
            except EngineError as e:
                raise self._fail(e) from None
            except TimeoutError:
                raise self._fail(self._timeout()) from None
            except OSError as e:
                raise self._fail(
                    BadRequest(f"the request body could not be read ({e.__class__.__name__})")
                ) from None
            if len(data) < wanted:
                raise self._fail(
                    BadRequest(
                        f"the request body ended after {self.position} of the "
                        f"{self.content_length} bytes its Content-Length announced"
                    )
                )
            return data

        def readline(self, size=None):
            try:
                if self.chunked_input:
                    return self._strict_chunked_read(self.rfile, size, True)
                return super().readline(size)
            except EngineError as e:
                raise self._fail(e) from None
            except TimeoutError:
                raise self._fail(self._timeout()) from None
            except OSError as e:
                raise self._fail(
                    BadRequest(f"the request body could not be read ({e.__class__.__name__})")
                ) from None

        def _timeout(self) -> RequestTimeout:
            return RequestTimeout(f"the request body did not arrive within {limits.body_timeout:g} s")

        def _strict_chunked_read(self, rfile, length, use_readline):
            """Chunked decoding that refuses what it does not understand: a size
            that is not 1-16 hex digits, a size line over ``MAX_CHUNK_LINE``, a
            chunk not followed by CRLF, an early end, too many trailer bytes.
            (eventlet's own took ``int(line, 16)`` of an unbounded line.)"""
            if self.should_send_hundred_continue:
                self.send_hundred_continue_response()
                self.is_hundred_continue_response_sent = True
            if length == 0:
                return b""
            out = []
            while self.chunk_length != 0:
                if self.chunk_length < 0 or self.position == self.chunk_length:
                    if self.chunk_length > 0:
                        _chunk_end(rfile)
                    self.chunk_length = _chunk_size(rfile.readline(MAX_CHUNK_LINE))
                    self.position = 0
                    if self.chunk_length == 0:
                        _read_trailers(rfile)
                    continue
                n = self.chunk_length - self.position
                if length is not None and length < n:
                    n = length
                data = rfile.readline(n) if use_readline else rfile.read(n)
                if not data:
                    raise BadRequest("malformed chunked body: it ends before its last chunk")
                out.append(data)
                self.position += len(data)
                if length is not None:
                    length -= len(data)
                    if length == 0:
                        break
                if use_readline and data.endswith(b"\n"):
                    break
            return b"".join(out)

        def discard(self, buffer_size=16 << 10):
            """Skip an unread body to keep the connection, up to ``MAX_DISCARD``
            bytes; beyond that, or on any error, close the connection instead."""
            if not self.chunked_input and self.content_length - self.position > MAX_DISCARD:
                self.protocol.close_connection = 1
                return
            skipped = 0
            try:
                while skipped <= MAX_DISCARD:
                    data = self.read(buffer_size)
                    if not data:
                        return
                    skipped += len(data)
            except (EngineError, OSError):
                pass
            self.protocol.close_connection = 1

    class Protocol(ewsgi.HttpProtocol):
        """``eventlet.wsgi.HttpProtocol`` with the caps, the deadlines and the
        envelope (see the module docstring). ``handle_one_request`` is
        eventlet's, rewritten where it wrote plain-text refusals or read
        without a deadline; ``handle_one_response`` (the WSGI call) is
        eventlet's, unchanged."""

        linger = False  # set by a refusal: drain before closing (``_linger``)

        def __init__(self, conn_state, server) -> None:
            host = _host(conn_state[0])
            refusal = counter.acquire(host)
            if refusal is not None:
                _refuse(conn_state[1], refusal)
                return  # the server's link closes the socket
            try:
                super().__init__(conn_state, server)
            finally:
                counter.release(host)

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # (drops the socket's reference from makefile)
            self.deadlines = _Deadlines(limits)
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.deadlines))

        def send_error(self, code, message=None, explain=None) -> None:
            _send_error_envelope(self, code, message, explain)

        def finish(self) -> None:
            if self.linger:
                try:
                    self.wfile.flush()
                except OSError:
                    pass
                _linger(self.connection)
            super().finish()

        def _refuse(self, status: int, message: str) -> None:
            _send_error_envelope(self, status, message)

        def handle_one_request(self) -> None:
            if self.server.max_http_version:
                self.protocol_version = self.server.max_http_version
            deadlines = self.deadlines
            deadlines.idle()
            try:
                self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE)
            except TimeoutError:
                if deadlines.phase == _HEAD:
                    self._refuse(408, f"the request head did not arrive within {limits.header_timeout:g} s")
                self.close_connection = 1
                return
            except OSError:  # reset by the peer, or the server closing idle connections
                self.close_connection = 1
                return
            self.conn_state[2] = ewsgi.STATE_REQUEST
            if not self.raw_requestline:
                self.close_connection = 1
                return
            deadlines.head()
            if len(self.raw_requestline) >= MAX_REQUEST_LINE:
                self._refuse(414, f"the request line is {MAX_REQUEST_LINE} bytes or longer")
                return
            rfile = self.rfile
            try:
                self.rfile = _HeaderReader(rfile)
                if not self.parse_request():
                    self.close_connection = 1
                    return
                _check_framing(self.headers)  # (eventlet's get_environ then frames the body alike)
            except _Refusal as e:
                self._refuse(e.status, e.message)
                return
            except TimeoutError:
                self._refuse(408, f"the request head did not arrive within {limits.header_timeout:g} s")
                return
            except OSError:
                self.close_connection = 1
                return
            finally:
                self.rfile = rfile
            deadlines.body(_is_upgrade(self.headers))
            self.connection.settimeout(deadlines.after)
            self.environ = self.get_environ()
            self.application = self.server.app
            try:
                self.server.outstanding_requests += 1
                try:
                    self.handle_one_response()
                except OSError as e:
                    if ewsgi.support.get_errno(e) not in ewsgi.BROKEN_SOCK and not isinstance(
                        e, TimeoutError
                    ):
                        raise
                    self.close_connection = 1
            finally:
                self.server.outstanding_requests -= 1

        def get_environ(self):
            env = super().get_environ()
            stock = env["eventlet.input"]
            strict = _Input(
                stock.rfile,
                stock.content_length,
                stock._sock,
                wfile=stock.wfile,
                wfile_line=stock.wfile_line,
                chunked_input=stock.chunked_input,
            )
            strict.protocol = self
            env["wsgi.input"] = env["eventlet.input"] = strict
            return env

    return Protocol


def serve_eventlet(listener, app, limits: Limits, *, log_output: bool = False) -> None:
    """``eventlet.wsgi.server`` on ``listener`` with this module's protocol.

    The green pool is sized above ``max_connections`` so that a refusal (which
    runs in the pool for up to ``REFUSAL_LINGER`` s) finds room; when even that
    is full the accept loop waits, and new connections wait in the backlog."""
    import eventlet.wsgi

    limits = fit_fd_limit(limits)
    counter = ConnectionCounter(limits)
    log.info(
        "connections: at most %d (%s per client address); idle %gs, header %gs, body %gs",
        limits.max_connections,
        limits.max_per_client or "no cap",
        limits.idle_timeout,
        limits.header_timeout,
        limits.body_timeout,
    )
    eventlet.wsgi.server(
        listener,
        app,
        max_size=limits.max_connections + refusal_room(limits.max_connections),
        protocol=eventlet_protocol(limits, counter),
        url_length_limit=MAX_REQUEST_LINE,
        log_output=log_output,
        debug=False,
    )


# -- threading (Werkzeug) -----------------------------------------------------------------
def werkzeug_handler(limits: Limits, *, log_output: bool = False):
    """The ``request_handler=`` class for Werkzeug's server (threading mode),
    with TCP_NODELAY, the caps, the deadlines and the envelope. Returns
    ``(handler_class, limits)`` with ``limits`` fitted to the fd limit."""
    from werkzeug.serving import WSGIRequestHandler

    limits = fit_fd_limit(limits)
    counter = ConnectionCounter(limits)

    class Handler(WSGIRequestHandler):
        refused = False
        linger = False

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.host = _host(self.client_address)
            refusal = counter.acquire(self.host)
            if refusal is not None:
                self.refused = True
                _refuse(self.connection, refusal)
                return
            self.rfile.close()
            self.deadlines = _Deadlines(limits)
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.deadlines))

        def handle(self) -> None:
            if not self.refused:
                super().handle()

        def finish(self) -> None:
            try:
                if self.linger:
                    try:
                        self.wfile.flush()
                    except OSError:
                        pass
                    _linger(self.connection)
                super().finish()
            finally:
                if not self.refused:
                    counter.release(self.host)

        def send_error(self, code, message=None, explain=None) -> None:
            _send_error_envelope(self, code, message, explain)

        def make_environ(self):
            environ = super().make_environ()
            if environ.get("wsgi.input_terminated"):  # chunked (exactly: see _check_framing)
                environ["wsgi.input"] = _StrictDechunked(self.rfile)
            return environ

        def handle_one_request(self) -> None:
            deadlines = self.deadlines
            deadlines.idle()
            try:
                self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE)
            except TimeoutError:
                if deadlines.phase == _HEAD:
                    self.send_error(
                        408, f"the request head did not arrive within {limits.header_timeout:g} s"
                    )
                self.close_connection = True
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            deadlines.head()
            if len(self.raw_requestline) >= MAX_REQUEST_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414, f"the request line is {MAX_REQUEST_LINE} bytes or longer")
                return
            rfile = self.rfile
            try:
                self.rfile = _HeaderReader(rfile)
                if not self.parse_request():
                    self.close_connection = True
                    return
                _check_framing(self.headers)
            except _Refusal as e:
                self.send_error(e.status, e.message)
                return
            except TimeoutError:
                self.send_error(408, f"the request head did not arrive within {limits.header_timeout:g} s")
                return
            finally:
                self.rfile = rfile
            deadlines.body(_is_upgrade(self.headers))
            self.connection.settimeout(deadlines.after)
            self.run_wsgi()
            self.wfile.flush()

        def log_request(self, *args, **kwargs) -> None:
            if log_output:
                super().log_request(*args, **kwargs)

    Handler.counter = counter
    return Handler, limits
