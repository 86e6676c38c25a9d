"""The HTTP layer against one hostile or careless client (``api/httpserver.py``),
over raw sockets to a real server process: idle connections by the thousand, a
slowloris, the per-address cap, many Socket.IO clients from one address, a body
shorter than its Content-Length, malformed chunks, and the envelope on every
refusal the HTTP layer makes itself.

Different clients are different loopback source addresses (127.0.0.2, ...):
Linux routes all of 127.0.0.0/8 to the loopback interface, so a socket bound
to 127.0.0.9 reaches the server on 127.0.0.1 from "another machine".
"""

from __future__ import annotations

import json
import resource
import select
import socket
import subprocess
import sys
import time

import pytest
import requests
import socketio

from tests.serverproc import ROOT, ServerProcess

pytestmark = pytest.mark.server

BTC = "BTC-USDT"
ORDER = b'{"symbol":"BTC-USDT","side":"buy","order_type":"limit","quantity":"1","price":"100.00"}'


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_response(s: socket.socket, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One response (status, lower-case headers, body); the body by Content-Length."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def exchange(
    port: int, data: bytes, source: str = "127.0.0.1", half_close: bool = False, timeout: float = 10.0
):
    s = connect(port, source)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return read_response(s, timeout)
    finally:
        s.close()


def assert_envelope(status, headers, body, want_status: int, want_code: str) -> dict:
    assert status == want_status, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == want_code and error["message"], error
    return error


def is_open(s: socket.socket) -> bool:
    """The server has not closed ``s`` (nothing to read, no EOF)."""
    s.settimeout(0.05)
    try:
        return s.recv(1) != b""
    except TimeoutError:
        return True
    except OSError:
        return False


def health_seconds(port: int, source: str = "127.0.0.1") -> float:
    t = time.monotonic()
    status, _, body = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n", source, timeout=5)
    assert status == 200 and json.loads(body)["status"] == "ok"
    return time.monotonic() - t


def place_order(port: int, source: str = "127.0.0.1") -> dict:
    request = (
        b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(ORDER), ORDER)
    )
    status, _, body = exchange(port, request, source, timeout=5)
    assert status == 200, body
    return json.loads(body)


def sequence(server) -> int:
    return requests.get(server.url + f"/book/{BTC}", timeout=5).json()["sequence"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("hardening")) as s:
        yield s


@pytest.fixture(scope="module")
def quick_deadlines(tmp_path_factory):
    """Header and body deadlines of 2 s (instead of 10 and 30)."""
    args = ("--header-timeout", "2", "--body-timeout", "2")
    with ServerProcess(tmp_path_factory.mktemp("deadlines"), *args) as s:
        yield s


@pytest.fixture(scope="module", params=["eventlet", "threading"])
def any_mode_server(request, tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp(request.param), "--async-mode", request.param) as s:
        yield s


def _enough_fds(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"this test opens {n} sockets; the fd limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


# -- point 4: connections ------------------------------------------------------------
def test_1100_idle_sockets_do_not_stop_health_and_orders(tmp_path):
    """Stock eventlet served 1,024 connections: the 1,025th, and every client
    after it, waited for ever. 1,100 idle sockets from 11 addresses (100 each,
    under the default per-address cap), held open; /health and an order from
    another address are answered at once, and the idle ones are still held."""
    _enough_fds(1100 + 256)
    with ServerProcess(tmp_path) as server:
        idle = []
        try:
            for i in range(1100):
                idle.append(connect(server.port, f"127.0.0.{2 + i // 100}"))
            time.sleep(0.5)  # let the server accept them all
            assert health_seconds(server.port) < 2.0
            assert place_order(server.port)["status"] == "new"
            assert all(is_open(s) for s in idle[-50:])
        finally:
            for s in idle:
                s.close()


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path, mode):
    """(Werkzeug, threading mode, closes after every response: there only a new
    connection's wait for its first request is timed.)"""
    with ServerProcess(tmp_path, "--idle-timeout", "1", "--async-mode", mode) as server:
        fresh = connect(server.port, "127.0.0.2")
        kept = connect(server.port, "127.0.0.2")
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(kept)[0] == 200  # now idle between keep-alive requests
        time.sleep(0.3)
        assert is_open(fresh)
        time.sleep(1.7)
        for s in (fresh, kept):
            s.settimeout(2)
            assert s.recv(1) == b"", "the server closes an idle connection without a word"
            s.close()


def test_slowloris_gets_408_at_the_header_deadline_while_others_are_served(quick_deadlines):
    """Ten clients each send a header byte every 0.2 s (a per-read timeout would
    never fire); the server answers 408 at the 2 s deadline and closes, and
    answers everyone else meanwhile."""
    head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200
    server = quick_deadlines
    slow = {connect(server.port, "127.0.0.5"): None for _ in range(10)}
    start = time.monotonic()
    for i in range(len(head)):
        waiting = [s for s, answer in slow.items() if answer is None]
        if not waiting or time.monotonic() - start > 8:
            break
        readable, _, _ = select.select(waiting, [], [], 0)
        for s in readable:
            slow[s] = (time.monotonic() - start, read_response(s, 1))
        for s in waiting:
            if s not in readable:
                s.sendall(head[i : i + 1])
        assert health_seconds(server.port) < 1.0
        if i == 3:
            assert place_order(server.port)["status"] == "new"
        time.sleep(0.2)
    for s in slow:
        s.close()
    assert None not in slow.values()
    for seconds, (status, headers, body) in slow.values():
        assert 1.8 < seconds < 4.0
        assert_envelope(status, headers, body, 408, "REQUEST_TIMEOUT")


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_per_address_cap_refuses_the_extra_connection_and_serves_other_addresses(tmp_path, mode):
    with ServerProcess(tmp_path, "--max-connections-per-client", "20", "--async-mode", mode) as server:
        held = [connect(server.port, "127.0.0.7") for _ in range(20)]
        try:
            time.sleep(0.3)
            status, headers, body = exchange(
                server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n", "127.0.0.7"
            )
            assert_envelope(status, headers, body, 429, "TOO_MANY_CONNECTIONS")
            assert headers["retry-after"] == "1"
            for _ in range(3):
                exchange(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n", "127.0.0.7")
            time.sleep(0.2)
            lines = [line for line in server.output().splitlines() if "refused" in line]
            assert len(lines) == 1 and "127.0.0.7" in lines[0], (
                lines
            )  # one line a minute, not one per refusal
            assert health_seconds(server.port, "127.0.0.8") < 1.0
            assert place_order(server.port, "127.0.0.8")["status"] == "new"
            held.pop().close()
            time.sleep(0.3)
            assert health_seconds(server.port, "127.0.0.7") < 1.0  # a freed place is usable again
        finally:
            for s in held:
                s.close()


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_a_full_server_answers_503_and_recovers(tmp_path, mode):
    with ServerProcess(tmp_path, "--max-connections", "30", "--async-mode", mode) as server:
        held = [connect(server.port, f"127.0.0.{10 + i % 3}") for i in range(30)]
        try:
            time.sleep(0.3)
            status, headers, body = exchange(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            assert_envelope(status, headers, body, 503, "SERVICE_UNAVAILABLE")
            assert headers["retry-after"] == "1"
            held.pop().close()
            time.sleep(0.3)
            assert health_seconds(server.port) < 1.0
        finally:
            for s in held:
                s.close()


def _websocket_handshake(port: int, source: str) -> tuple[socket.socket, int]:
    s = connect(port, source)
    s.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    s.settimeout(10)
    data = s.recv(4096)
    return s, int(data.split(b" ", 2)[1])


def test_many_socketio_clients_from_one_address_take_only_their_share(tmp_path):
    """60 Engine.IO WebSockets from one address against a cap of 40: 40 are
    upgraded (and outlive the 1 s idle timeout: it is for HTTP requests), 20
    are refused 429; a Socket.IO client from another address still subscribes
    and gets its snapshot, and /health answers."""
    with ServerProcess(tmp_path, "--max-connections-per-client", "40", "--idle-timeout", "1") as server:
        sockets, statuses = [], []
        try:
            for _ in range(60):
                s, status = _websocket_handshake(server.port, "127.0.0.9")
                sockets.append(s)
                statuses.append(status)
            assert statuses.count(101) == 40 and statuses.count(429) == 20
            assert health_seconds(server.port) < 1.0
            assert place_order(server.port)["status"] == "new"
            client = socketio.Client(reconnection=False)
            got = []
            client.on("bbo", lambda data: got.append(data), namespace="/market")
            client.connect(server.url, namespaces=["/market"], transports=["websocket"], wait_timeout=5)
            try:
                ack = client.call("subscribe", {"type": "bbo", "symbol": BTC}, namespace="/market", timeout=5)
                assert ack == {"ok": True}
                deadline = time.monotonic() + 5
                while not got and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert got and got[0]["symbol"] == BTC
            finally:
                client.disconnect()
            time.sleep(1.5)
            upgraded = [s for s, status in zip(sockets, statuses, strict=True) if status == 101]
            assert all(is_open(s) for s in upgraded)
        finally:
            for s in sockets:
                s.close()


# -- point 7: raw HTTP ---------------------------------------------------------------
def _short(body: bytes, announced: int) -> bytes:
    return (
        b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (announced, body)
    )


def test_a_body_shorter_than_its_content_length_is_a_400_not_an_order(server):
    """The 87 bytes sent are a complete, valid order: stock eventlet handed them
    to the application, which placed it."""
    before = sequence(server)
    status, headers, body = exchange(server.port, _short(ORDER, 100), half_close=True)
    error = assert_envelope(status, headers, body, 400, "BAD_REQUEST")
    assert "87 of the 100 bytes" in error["message"]
    assert sequence(server) == before


def test_a_body_that_stalls_is_refused_at_the_body_deadline(quick_deadlines):
    server = quick_deadlines
    before = sequence(server)
    start = time.monotonic()
    status, headers, body = exchange(server.port, _short(ORDER, 100))
    assert 1.8 < time.monotonic() - start < 4.0
    assert_envelope(status, headers, body, 408, "REQUEST_TIMEOUT")
    assert sequence(server) == before


def _chunked(payload: bytes) -> bytes:
    return (
        b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + payload
    )


MALFORMED_CHUNKS = {
    "size-not-hex": b"zz\r\n" + ORDER + b"\r\n0\r\n\r\n",
    "size-negative": b"-5\r\n" + ORDER + b"\r\n0\r\n\r\n",
    "size-0x-prefix": b"0x57\r\n" + ORDER + b"\r\n0\r\n\r\n",
    "size-line-endless": b"5" * 5000,
    "chunk-longer-than-its-size": b"10\r\n" + ORDER + b"\r\n0\r\n\r\n",
    "ends-in-a-chunk": b"%x\r\n" % (len(ORDER) + 10) + ORDER,
    "no-last-chunk": b"%x\r\n" % len(ORDER) + ORDER + b"\r\n",
}


@pytest.mark.parametrize("payload", MALFORMED_CHUNKS.values(), ids=MALFORMED_CHUNKS.keys())
def test_a_malformed_chunked_body_is_a_400_without_a_traceback(any_mode_server, payload):
    server = any_mode_server
    before = sequence(server)
    status, headers, body = exchange(server.port, _chunked(payload), half_close=True)
    assert_envelope(status, headers, body, 400, "BAD_REQUEST")
    assert sequence(server) == before
    assert "Traceback" not in server.output()


def test_a_well_formed_chunked_body_still_places_its_order(any_mode_server):
    server = any_mode_server
    payload = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (40, ORDER[:40], len(ORDER) - 40, ORDER[40:])
    status, _, body = exchange(server.port, _chunked(payload))
    assert status == 200 and json.loads(body)["status"] == "new"


HTTP_LAYER_REFUSALS = {
    "content-length-not-a-number": (b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400, "BAD_REQUEST"),
    "content-length-negative": (b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, "BAD_REQUEST"),
    "content-length-twice": (
        b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "BAD_REQUEST"),
    "content-length-with-transfer-encoding": (
        b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400, "BAD_REQUEST"),
    "transfer-encoding-not-chunked": (
        b"POST /order HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "NOT_IMPLEMENTED"),
    "bad-request-line": (b"HELLO\r\n\r\n", 400, "BAD_REQUEST"),
    "bad-http-version": (b"GET /health HTTP/x.y\r\n\r\n", 400, "BAD_REQUEST"),
    "http-2": (b"GET /health HTTP/2.0\r\n\r\n", 505, "HTTP_VERSION_NOT_SUPPORTED"),
    "url-too-long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "URI_TOO_LONG"),
    "header-line-too-long": (
        b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "HEADER_TOO_LARGE"),
    "headers-too-large": (
        b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(10)) + b"\r\n",
        431, "HEADER_TOO_LARGE"),
    "too-many-headers": (
        b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
        431, "HEADER_TOO_LARGE"),
}  # fmt: skip


@pytest.mark.parametrize(
    "request_bytes,status,code", HTTP_LAYER_REFUSALS.values(), ids=HTTP_LAYER_REFUSALS.keys()
)
def test_every_http_layer_refusal_carries_the_envelope(any_mode_server, request_bytes, status, code):
    before = sequence(any_mode_server)
    got = exchange(any_mode_server.port, request_bytes)
    assert_envelope(*got, status, code)
    assert got[1]["connection"] == "close"
    assert sequence(any_mode_server) == before
    assert health_seconds(any_mode_server.port) < 1.0


def test_a_short_body_is_refused_in_both_modes(any_mode_server):
    before = sequence(any_mode_server)
    assert_envelope(*exchange(any_mode_server.port, _short(ORDER, 100), half_close=True), 400, "BAD_REQUEST")
    assert sequence(any_mode_server) == before
    assert "Traceback" not in any_mode_server.output()


FD_LIMIT_SCRIPT = """
import json, logging, resource, sys
sys.path.insert(0, sys.argv[1])
from api.httpserver import Limits, fit_fd_limit
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, int(sys.argv[2])))
fitted = fit_fd_limit(Limits())
print(json.dumps({"max": fitted.max_connections, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))
"""


@pytest.mark.parametrize("hard", [20_000, 4_096])
def test_the_fd_limit_is_raised_for_10000_connections_or_the_cap_fits_it(hard):
    _soft, real_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if real_hard != resource.RLIM_INFINITY and real_hard < hard:
        pytest.skip(f"the hard fd limit here is {real_hard}")
    run = subprocess.run(
        [sys.executable, "-c", FD_LIMIT_SCRIPT, ROOT, str(hard)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    *logged, last = run.stdout.strip().splitlines()
    fitted = json.loads(last)
    assert "raised the open-file limit (RLIMIT_NOFILE) from 1024" in logged[0]
    if hard == 20_000:
        assert fitted["max"] == 10_000 and fitted["soft"] >= 10_000 + 625 + 256
    else:
        assert fitted["soft"] == 4_096 and fitted["max"] < 4_096 - 256
        assert "serving at most" in logged[1]


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_a_refusal_reaches_a_client_that_is_still_sending(tmp_path, mode):
    """The server refuses after 8 KiB of a request line while the client is still
    sending (as curl does): closing at once would reset the connection, the
    client's next send fails and it never reads the answer; the server
    half-closes and reads the rest first."""
    with ServerProcess(tmp_path, "--async-mode", mode) as server:
        for _ in range(3):
            s = connect(server.port)
            try:
                s.sendall(b"GET /" + b"a" * 9000)
                time.sleep(0.2)  # the server has answered by now
                s.sendall(b" HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"b" * 100_000 + b"\r\n\r\n")
                time.sleep(0.1)
                s.sendall(b"c" * 100_000)
                assert_envelope(*read_response(s), 414, "URI_TOO_LONG")
            finally:
                s.close()


def test_a_client_that_does_not_read_its_answers_is_cut_off(tmp_path):
    """100 pipelined requests for a 160 KB file, and no reading: the server's
    writes stall once the socket buffers are full; after --body-timeout (1 s)
    without progress it closes (stock eventlet waited for ever, holding the
    connection and its green thread)."""
    with ServerProcess(tmp_path, "--body-timeout", "1") as server:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", server.port))
        request = b"GET /vendor/lightweight-charts.js HTTP/1.1\r\nHost: t\r\n\r\n"
        one = len(requests.get(server.url + "/vendor/lightweight-charts.js", timeout=5).content)
        s.sendall(request * 100)
        time.sleep(3)
        received = 0
        s.settimeout(10)
        try:
            while data := s.recv(1 << 20):
                received += len(data)
        except ConnectionResetError:
            pass
        s.close()
        assert one > 100_000
        assert received < 100 * one / 2
        assert health_seconds(server.port) < 1.0
