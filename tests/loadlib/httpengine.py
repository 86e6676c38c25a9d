"""One worker process of the HTTP load: an open-loop scheduler over keep-alive sockets.

A single thread runs a ``selectors`` loop over ``connections`` non-blocking sockets:

* requests become *due* at their scheduled time (``schedule.py``) and queue up in a
  FIFO backlog;
* every idle connection takes the oldest due request at once; one request in flight
  per connection (HTTP/1.1 without pipelining);
* a response completes the request: latency = arrival time - **scheduled** time (so a
  request that waited in the backlog because every connection was busy counts its
  wait), service time = arrival time - actual send time;
* a request not answered within ``timeout`` seconds is an error (``timeout``) and its
  connection is replaced; when the run's ``duration`` is over, no new request is
  scheduled, and what is still queued or in flight gets ``drain`` more seconds before
  it is counted as ``not completed``.

With ``rate=None`` (``--rate max``) the loop is closed instead: each connection sends
its next request as soon as the previous one is answered, to find the ceiling.

The result of a worker is a plain dict of arrays (see ``Recorder.result``) merged by
``runner.py``.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import time
from array import array
from collections import Counter, deque

from .http11 import ProtocolError, build_request, parse_response, parse_response_eof
from .orders import OrderFactory, cancel_json, order_json
from .schedule import start_together, worker_schedule

OK, REJECT, ERROR = 0, 1, 2
# Request kinds recorded per request (index into KIND_NAMES).
KIND_NAMES = ("limit", "market", "ioc", "fok", "cancel", "batch", "health", "ping")
KIND_INDEX = {"L": 0, "M": 1, "I": 2, "F": 3, "C": 4, "B": 5, "H": 6, "P": 7}
# The code every request of a mode is recorded under, where it has one.
MODE_CODE = {"health": "H", "ping": "P", "batch": "B"}
RESTING = (b"new", b"partially_filled")

# Shared progress counters, one row per worker (see runner.py).
P_SENT, P_DONE, P_OK, P_REJ, P_ERR, P_TRADES, P_BACKLOG = range(7)
N_PROGRESS = 7

_ORDER_ID = re.compile(rb'"order_id"\s*:\s*"([^"]*)"')
_STATUS = re.compile(rb'"status"\s*:\s*"([a-z_]+)"')


def error_code(body: bytes) -> str:
    """The contract's ``error.code`` of an error body, or ``?`` if it has none."""
    try:
        err = json.loads(body).get("error")
        return str(err.get("code")) if isinstance(err, dict) else "?"
    except (ValueError, AttributeError):
        return "?"


class Recorder:
    """Per-request records and per-order outcome counts of one worker."""

    def __init__(self):
        self.sched = array("d")  # scheduled send time, s since t0
        self.sent = array("d")  # actual send time, s since t0 (NaN if never sent)
        self.lat = array("d")  # answer time - scheduled time, s (NaN without answer)
        self.svc = array("d")  # answer time - send time, s (NaN without answer)
        self.kind = array("b")
        self.outcome = array("b")  # OK / REJECT / ERROR of the request as a whole
        self.orders = array("i")  # orders carried (1, or the batch size)
        self.trades = array("i")  # trades in the answer
        self.counts: Counter = Counter()  # per-order outcome label -> count
        self.order_outcomes = [0, 0, 0]  # orders ok / rejected / errored

    def add(self, sched, sent, answered, kind, outcome, n_orders, trades):
        self.sched.append(sched)
        self.sent.append(sent)
        nan = float("nan")
        self.lat.append(answered - sched if answered is not None else nan)
        self.svc.append(answered - sent if answered is not None and sent == sent else nan)
        self.kind.append(kind)
        self.outcome.append(outcome)
        self.orders.append(n_orders)
        self.trades.append(trades)

    def result_of_worker(self, cpu0: float, wall0: float, max_backlog: int, connect_errors: int) -> dict:
        """``result()`` plus what a worker adds at its end: the most requests
        that waited for a connection, failed connects, and its pid, process
        CPU and wall seconds since ``cpu0`` / ``wall0``."""
        out = self.result()
        out["max_backlog"] = max_backlog
        out["connect_errors"] = connect_errors
        out["pid"] = os.getpid()
        out["cpu_s"] = time.process_time() - cpu0
        out["wall_s"] = time.monotonic() - wall0
        return out

    def result(self) -> dict:
        return {
            "sched": self.sched,
            "sent": self.sent,
            "lat": self.lat,
            "svc": self.svc,
            "kind": self.kind,
            "outcome": self.outcome,
            "orders": self.orders,
            "trades": self.trades,
            "counts": dict(self.counts),
            "order_outcomes": list(self.order_outcomes),
        }


class Conn:
    __slots__ = ("sock", "buf", "req", "out", "retry_at", "reg")

    def __init__(self):
        self.sock = None
        self.buf = bytearray()
        self.req = None  # (sched, sent, kind_code, n_orders, account of an order) while busy
        self.out = b""  # bytes not yet written
        self.retry_at = 0.0
        self.reg = 0  # registered selector events


class HttpWorker:
    """The loop of one worker process (see the module docstring).

    ``cfg`` keys: host, port, mode (rest | batch | health | ping), rate (None = max), duration,
    connections, timeout, drain, arrival, seed, workers, specs, mix, batch_size, tag,
    batch_path, keys (API keys: ``[None]`` or absent when the server wants none; orders
    go to them in turn, a cancel with its order's key; GET /health and POST /ping
    never carry one).
    """

    def __init__(self, cfg: dict, worker: int, progress=None):
        self.cfg = cfg
        self.worker = worker
        self.progress = progress
        self.host, self.port = cfg["host"], cfg["port"]
        self.mode = cfg["mode"]
        self.timeout = cfg["timeout"]
        # select(2) takes microsecond timeouts; epoll and poll round up to whole
        # milliseconds, which would make every send up to 1 ms late.
        self.sel = selectors.SelectSelector()
        self.conns = [Conn() for _ in range(cfg["connections"])]
        self.idle: list[Conn] = []
        self.busy: set[Conn] = set()
        self.rec = Recorder()
        self.factory = cfg.get("factory_obj")
        self.keep = [] if cfg.get("keep_answers") else None  # (sched, sent, answered, status, body)
        keys = cfg.get("keys") or [None]
        self.key_headers = [f"X-API-Key: {k}\r\n" if k else "" for k in keys]
        self.batch_account = worker % len(keys)
        if self.factory is None and self.mode in ("rest", "batch", "ping"):
            self.factory = OrderFactory(
                cfg["specs"], cfg["mix"], cfg["seed"], worker, cfg["tag"], accounts=len(keys)
            )
        self.health_req = build_request("GET", "/health", self.host, self.port)
        self.trades = 0
        self.connect_errors = 0
        self.counters = [0] * N_PROGRESS  # published to ``progress`` every 0.1 s

    # ---- connections
    def _open(self, conn: Conn) -> bool:
        try:
            s = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError:
            self.connect_errors += 1
            conn.retry_at = time.monotonic() + 0.05
            return False
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conn.sock = s
        conn.buf.clear()
        conn.out = b""
        conn.reg = selectors.EVENT_READ
        self.sel.register(s, selectors.EVENT_READ, conn)
        return True

    def _close(self, conn: Conn) -> None:
        if conn.sock is not None:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            conn.sock = None
        conn.buf.clear()
        conn.out = b""

    def connect_all(self) -> int:
        """Open every connection before the start; returns how many succeeded."""
        ok = 0
        for c in self.conns:
            if self._open(c):
                ok += 1
                self.idle.append(c)
        return ok

    # ---- requests
    def _make(self):
        """The next request: ``(bytes, kind_code, n_orders, account)`` (account: the index
        of the key an order went with, None for other requests)."""
        mode = self.mode
        if mode == "health":
            return self.health_req, "H", 1, None
        f = self.factory
        if mode == "ping":
            # The orders phase's bodies (nothing rests, so no cancels), to POST /ping.
            _code, fields = f.next()
            body = order_json(fields).encode()
            return build_request("POST", "/ping", self.host, self.port, body), "P", 1, None
        if mode == "rest":
            code, fields = f.next()
            account = f.account
            key = self.key_headers[account]
            if code == "C":
                body = cancel_json(fields).encode()
                return build_request("POST", "/cancel", self.host, self.port, body, extra=key), "C", 1, None
            body = order_json(fields).encode()
            return build_request("POST", "/order", self.host, self.port, body, extra=key), code, 1, account
        n = self.cfg["batch_size"]
        parts = []
        for _ in range(n):
            code, fields = f.next()
            parts.append(order_json(fields))
        body = ("[" + ",".join(parts) + "]").encode()
        # One key per request: a batch belongs to one account, the batches go to them in turn.
        key = self.key_headers[self.batch_account]
        self.batch_account = (self.batch_account + 1) % len(self.key_headers)
        path = self.cfg["batch_path"]
        return build_request("POST", path, self.host, self.port, body, extra=key), "B", n, None

    def _send(self, conn: Conn, sched: float, now: float) -> None:
        data, code, n, meta = self._make()
        rel = now - self.t0
        conn.req = (sched, rel, code, n, meta)
        self.busy.add(conn)
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn, "connection error")
            return
        if sent < len(data):
            conn.out = data[sent:]
            self._want(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
        self.counters[P_SENT] += n

    def _want(self, conn: Conn, events: int) -> None:
        if conn.reg != events:
            self.sel.modify(conn.sock, events, conn)
            conn.reg = events

    def _on_write(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(conn, "connection error")
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._want(conn, selectors.EVENT_READ)

    def _on_read(self, conn: Conn, now: float) -> None:
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            if conn.req is not None:
                self._fail(conn, "connection error")
            else:
                self._close(conn)
            return
        if not data:
            if conn.req is not None:
                try:
                    res = parse_response_eof(conn.buf)
                except ProtocolError:
                    res = None
                if res is not None:
                    self._complete(conn, res[0], res[1], now)
                else:
                    self._fail(conn, "connection closed")
            self._close(conn)
            return
        if conn.req is None:
            return  # bytes nobody asked for: ignore
        conn.buf += data
        try:
            res = parse_response(conn.buf)
        except ProtocolError:
            self._fail(conn, "protocol error")
            return
        if res is None:
            return
        status, body, consumed, close = res
        del conn.buf[:consumed]
        self._complete(conn, status, body, now)
        if close:
            self._close(conn)

    def _fail_req(self, sched, sent, code, n, label) -> None:
        self.rec.add(sched, sent, None, KIND_INDEX[code], ERROR, n, 0)
        self.rec.counts[label] += n
        self.rec.order_outcomes[ERROR] += n
        self.counters[P_DONE] += n
        self.counters[P_ERR] += n

    def _fail(self, conn: Conn, label: str) -> None:
        """The request in flight on ``conn`` failed without an answer; drop the socket."""
        sched, sent, code, n, _ = conn.req
        conn.req = None
        self.busy.discard(conn)
        self._close(conn)
        self._fail_req(sched, sent, code, n, label)
        self.idle.append(conn)  # reopened on its next use

    def _complete(self, conn: Conn, status: int, body: bytes, now: float) -> None:
        sched, sent, code, n, account = conn.req
        conn.req = None
        self.busy.discard(conn)
        self.idle.append(conn)
        rec = self.rec
        trades = 0
        counts = rec.counts
        if 200 <= status < 300:
            outcome = OK
            if code == "B":
                ok_n, rej_n, trades = self._batch_outcomes(body, n)
                rec.order_outcomes[OK] += ok_n
                rec.order_outcomes[REJECT] += rej_n
                counts["ok"] += ok_n
                if rej_n:
                    outcome = REJECT if ok_n == 0 else OK
                    self.counters[P_REJ] += rej_n
                self.counters[P_OK] += ok_n
            else:
                if code not in ("H", "P"):
                    trades = body.count(b'"trade_id"')
                    if code == "L":
                        m = _STATUS.search(body)
                        if m and m.group(1) in RESTING:
                            oid = _ORDER_ID.search(body)
                            if oid:
                                self.factory.remember(oid.group(1).decode(), account)
                counts["ok"] += n
                rec.order_outcomes[OK] += n
                self.counters[P_OK] += n
        elif 400 <= status < 500:
            outcome = REJECT
            counts[f"{error_code(body)} ({status})"] += n
            rec.order_outcomes[REJECT] += n
            self.counters[P_REJ] += n
        else:
            outcome = ERROR
            counts[f"HTTP {status}"] += n
            rec.order_outcomes[ERROR] += n
            self.counters[P_ERR] += n
        rec.add(sched, sent, now - self.t0, KIND_INDEX[code], outcome, n, trades)
        if self.keep is not None:
            self.keep.append((sched, sent, now - self.t0, status, body))
        self.trades += trades
        self.counters[P_DONE] += n

    def _batch_outcomes(self, body: bytes, n: int):
        """(ok, rejected, trades) of a ``POST /orders`` answer; counts reject codes."""
        counts = self.rec.counts
        if b'"error"' not in body:
            return n, 0, body.count(b'"trade_id"')
        try:
            items = json.loads(body)
        except ValueError:
            counts["bad batch answer"] += n
            return 0, n, 0
        if isinstance(items, dict):  # an envelope such as {"results": [...]}
            items = items.get("results") or items.get("orders") or []
        ok = rej = trades = 0
        for item in items:
            err = item.get("error") if isinstance(item, dict) else None
            if err:
                rej += 1
                counts[f"{err.get('code', '?') if isinstance(err, dict) else '?'} (in batch)"] += 1
            else:
                ok += 1
                trades += len(item.get("trades") or ()) if isinstance(item, dict) else 0
        missing = n - ok - rej
        if missing > 0:
            counts["missing from batch answer"] += missing
            rej += missing
        return ok, rej, trades

    # ---- the loop
    def run(self, t0: float) -> dict:
        """Run the schedule that starts at monotonic time ``t0``; returns the records."""
        self.t0 = t0
        cfg = self.cfg
        cpu0, wall0 = start_together(t0)
        end = t0 + cfg["duration"]
        deadline = end + cfg["drain"]
        closed_loop = cfg["rate"] is None
        rate = None if closed_loop else cfg["rate"] / (cfg["batch_size"] if self.mode == "batch" else 1)
        sched, next_t = worker_schedule(cfg, self.worker, rate)
        backlog: deque = deque()
        idle, busy, sel = self.idle, self.busy, self.sel
        monotonic = time.monotonic
        counters = self.counters
        progress = self.progress
        base = self.worker * N_PROGRESS
        last_scan = last_pub = t0
        max_backlog = 0
        while True:
            now = monotonic()
            rel = now - t0
            if closed_loop:
                if now < end:
                    for _ in range(len(idle) - len(backlog)):
                        backlog.append(rel)
            else:
                while next_t is not None and next_t <= rel:
                    backlog.append(next_t)
                    next_t = sched.next_time()
            if len(backlog) > max_backlog:
                max_backlog = len(backlog)
            if backlog and idle:
                down = []
                while backlog and idle:
                    conn = idle.pop()
                    if conn.sock is None and (conn.retry_at > now or not self._open(conn)):
                        down.append(conn)  # reconnect later, after a short back-off
                        continue
                    self._send(conn, backlog.popleft(), now)
                idle.extend(down)
            if not backlog and not busy and (next_t is None) and (not closed_loop or now >= end):
                break
            if now >= deadline:
                for conn in list(busy):
                    self._fail(conn, "not completed (drain timeout)")
                code = MODE_CODE.get(self.mode, "L")
                n = cfg["batch_size"] if self.mode == "batch" else 1
                for s in backlog:
                    self._fail_req(s, float("nan"), code, n, "not sent (drain timeout)")
                backlog.clear()
                if next_t is not None:  # only possible if the drain is shorter than the lag
                    while next_t is not None:
                        self._fail_req(next_t, float("nan"), code, n, "not sent (drain timeout)")
                        next_t = sched.next_time()
                break
            if now - last_scan > 0.02 and busy:
                last_scan = now
                limit = now - self.timeout
                for conn in [c for c in busy if t0 + c.req[1] < limit]:
                    self._fail(conn, "timeout")
            if progress is not None and now - last_pub > 0.1:
                last_pub = now
                counters[P_BACKLOG] = len(backlog)
                counters[P_TRADES] = self.trades
                progress[base : base + N_PROGRESS] = counters
            # How long to wait for I/O.
            if backlog and idle:
                wait = 0.0
            elif next_t is not None and not backlog:
                wait = min(t0 + next_t - now, 0.05)
            else:
                wait = 0.05
            if not busy:
                # Nothing can arrive: sleep precisely instead of epoll's 1 ms granularity.
                if wait > 0:
                    time.sleep(wait)
                continue
            for key, mask in sel.select(wait if wait > 0 else 0):
                conn = key.data
                if mask & selectors.EVENT_WRITE and conn.out:
                    self._on_write(conn)
                if mask & selectors.EVENT_READ and conn.sock is not None:
                    self._on_read(conn, monotonic())
        counters[P_BACKLOG] = 0
        counters[P_TRADES] = self.trades
        if progress is not None:
            progress[base : base + N_PROGRESS] = counters
        for c in self.conns:
            self._close(c)
        return self.rec.result_of_worker(cpu0, wall0, max_backlog, self.connect_errors)
