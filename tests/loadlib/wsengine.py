"""One worker process of the Socket.IO order-entry load (``--mode ws``).

``connections`` python-socketio clients (websocket transport only) connect to the
order-entry namespace (``/trade`` by default). The main thread follows the open-loop
schedule and emits ``order`` (the ``POST /order`` body) or ``cancel``
(``{"order_id"}``) with an acknowledgement callback, round-robin over the clients;
several requests may be in flight on one client (Socket.IO multiplexes them).
Acknowledgements arrive on the clients' own threads; they only timestamp the answer
and queue it, the main thread does the bookkeeping (so records are never written by
two threads at once).

Latency = acknowledgement time - scheduled time, as for HTTP.

With API keys (``cfg["keys"]``, ``--auth on``) client ``i`` of worker ``w`` connects
with ``auth={"api_key": keys[(w + i * workers) % len(keys)]}`` (so the workers
together use every key they can); the orders go to the worker's accounts in turn,
each emitted by one of its account's clients, and a cancel by a client of the
account that placed the order.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import deque

from .httpengine import (
    ERROR,
    KIND_INDEX,
    N_PROGRESS,
    OK,
    P_BACKLOG,
    P_DONE,
    P_ERR,
    P_OK,
    P_REJ,
    P_SENT,
    P_TRADES,
    REJECT,
    Recorder,
)
from .orders import OrderFactory, order_dict
from .safety import base_url
from .schedule import start_together, worker_schedule

RESTING = ("new", "partially_filled")


class WsWorker:
    """See the module docstring; ``cfg`` as for ``HttpWorker`` plus ``namespace``."""

    def __init__(self, cfg: dict, worker: int, progress=None):
        self.cfg = cfg
        self.worker = worker
        self.progress = progress
        self.ns = cfg.get("namespace", "/trade")
        self.url = base_url(cfg["host"], cfg["port"])
        self.clients = []
        self.rec = Recorder()
        keys = cfg.get("keys") or [None]
        workers = cfg.get("workers", 1)
        # The key of each of this worker's clients, and the worker's accounts (distinct keys).
        self.slot_keys = [keys[(worker + i * workers) % len(keys)] for i in range(cfg["connections"])]
        self.keys = list(dict.fromkeys(self.slot_keys)) or [None]
        self.n_accounts = len(self.keys)
        self.client_account: list[int] = []  # per connected client
        self.factory = OrderFactory(
            cfg["specs"], cfg["mix"], cfg["seed"], worker, cfg["tag"], accounts=self.n_accounts
        )
        self.done: deque = deque()  # (seq, answer_time, args) from the client threads
        self.inflight: dict[int, tuple] = {}  # seq -> (sched, sent, code, client_index)
        self.counters = [0] * N_PROGRESS
        self.trades = 0
        self.connect_errors = 0
        self.connect_error_text = ""

    def connect_all(self) -> int:
        import socketio

        # Acks arrive on the clients' reader threads: with the default 5 ms GIL switch
        # interval they queue behind each other and add 5-10 ms steps to the latency.
        sys.setswitchinterval(0.0002)

        ok = 0
        for key in self.slot_keys:
            account = self.keys.index(key)
            c = socketio.Client(reconnection=False, request_timeout=10)
            try:
                c.connect(
                    self.url,
                    namespaces=[self.ns],
                    transports=["websocket"],
                    wait_timeout=10,
                    auth={"api_key": key} if key else None,
                )
            except Exception as exc:  # socketio.exceptions.ConnectionError and friends
                self.connect_errors += 1
                self.connect_error_text = str(exc)
                continue
            self.clients.append(c)
            self.client_account.append(account)
            ok += 1
        return ok

    def client_cycles(self) -> list:
        """Per account, a round-robin over its clients (all clients for one left without any)."""
        everyone = range(len(self.clients))
        cycles = []
        for a in range(self.n_accounts):
            mine = [ci for ci in everyone if self.client_account[ci] == a]
            cycles.append(itertools.cycle(mine or list(everyone)))
        return cycles

    def _callback(self, seq: int):
        done = self.done
        mono = time.monotonic

        def cb(*args):
            done.append((seq, mono(), args))

        return cb

    def _finish(self, seq: int, t: float, args: tuple) -> None:
        req = self.inflight.pop(seq, None)
        if req is None:
            return  # answered after its timeout
        sched, sent, code, _ = req
        rec = self.rec
        answer = args[0] if args else None
        trades = 0
        if isinstance(answer, dict) and "error" in answer:
            err = answer["error"]
            label = f"{err.get('code', '?') if isinstance(err, dict) else '?'} (ack)"
            outcome = REJECT
            self.counters[P_REJ] += 1
        elif isinstance(answer, dict):
            outcome = OK
            label = "ok"
            trades = len(answer.get("trades") or ())
            if code == "L" and answer.get("status") in RESTING and answer.get("order_id"):
                self.factory.remember(str(answer["order_id"]), self.client_account[req[3]])
            self.counters[P_OK] += 1
        else:
            outcome = ERROR
            label = "unexpected ack payload"
            self.counters[P_ERR] += 1
        rec.counts[label] += 1
        rec.order_outcomes[outcome] += 1
        rec.add(sched, sent, t - self.t0, KIND_INDEX[code], outcome, 1, trades)
        self.trades += trades
        self.counters[P_DONE] += 1

    def _error(self, sched, sent, code, label) -> None:
        self.rec.add(sched, sent, None, KIND_INDEX[code], ERROR, 1, 0)
        self.rec.counts[label] += 1
        self.rec.order_outcomes[ERROR] += 1
        self.counters[P_DONE] += 1
        self.counters[P_ERR] += 1

    def _expire(self, limit: float) -> None:
        """Fail the requests in flight that were sent before ``limit`` (seconds
        since the start) and got no acknowledgement."""
        for seq in [s for s, r in self.inflight.items() if r[1] < limit]:
            st, sent, code, _ = self.inflight.pop(seq)
            self._error(st, sent, code, "timeout (no ack)")

    def _publish(self, backlog: int) -> None:
        """Update the counters and copy them to the shared progress array."""
        self.counters[P_BACKLOG] = backlog
        self.counters[P_TRADES] = self.trades
        if self.progress is not None:
            base = self.worker * N_PROGRESS
            self.progress[base : base + N_PROGRESS] = self.counters

    def _give_up(self, next_t, sched) -> None:
        """The drain timeout: every request in flight and every one still
        scheduled (from ``next_t`` on) counts as an error."""
        for st, sent, code, _ in list(self.inflight.values()):
            self._error(st, sent, code, "not completed (drain timeout)")
        self.inflight.clear()
        while next_t is not None:
            self._error(next_t, float("nan"), "L", "not sent (drain timeout)")
            next_t = sched.next_time()

    def run(self, t0: float) -> dict:
        self.t0 = t0
        cfg = self.cfg
        cpu0, wall0 = start_together(t0)
        end = t0 + cfg["duration"]
        deadline = end + cfg["drain"]
        timeout = cfg["timeout"]
        monotonic = time.monotonic
        closed_loop = cfg["rate"] is None
        # Closed loop: one request in flight per client, like the HTTP engine's.
        window = len(self.clients) if closed_loop else None
        sched, next_t = worker_schedule(cfg, self.worker, cfg["rate"])
        seqs = itertools.count()
        rrs = self.client_cycles()
        progress = self.progress
        last_pub = last_scan = t0
        lag_max = 0.0
        factory = self.factory
        ns = self.ns
        while True:
            now = monotonic()
            rel = now - t0
            while self.done:
                self._finish(*self.done.popleft())
            if closed_loop:
                due = []
                if now < end:
                    due = [rel] * max(0, window - len(self.inflight))
            else:
                due = []
                while next_t is not None and next_t <= rel:
                    due.append(next_t)
                    next_t = sched.next_time()
            for st in due:
                lag_max = max(lag_max, rel - st)
                code, fields = factory.next()
                seq = next(seqs)
                ci = next(rrs[factory.account])
                client = self.clients[ci]
                sent = monotonic() - t0
                self.inflight[seq] = (st, sent, code, ci)
                self.counters[P_SENT] += 1
                try:
                    if code == "C":
                        client.emit(
                            "cancel", {"order_id": fields[0]}, namespace=ns, callback=self._callback(seq)
                        )
                    else:
                        client.emit("order", order_dict(fields), namespace=ns, callback=self._callback(seq))
                except Exception as exc:  # disconnected client, bad namespace
                    self.inflight.pop(seq, None)
                    self._error(st, sent, code, f"emit failed: {type(exc).__name__}")
            if now - last_scan > 0.05 and self.inflight:
                last_scan = now
                self._expire(rel - timeout)
            if progress is not None and now - last_pub > 0.1:
                last_pub = now
                self._publish(len(self.inflight))
            finished = next_t is None and (not closed_loop or now >= end)
            if finished and not self.inflight and not self.done:
                break
            if now >= deadline:
                self._give_up(next_t, sched)
                break
            if self.done:
                continue
            if next_t is not None:
                wait = min(t0 + next_t - monotonic(), 0.005)
            else:
                wait = 0.001 if closed_loop else 0.005
            if wait > 0:
                time.sleep(wait)
        self._publish(0)
        for c in self.clients:
            try:
                c.disconnect()
            except Exception:
                pass
        out = self.rec.result_of_worker(cpu0, wall0, 0, self.connect_errors)
        out["extra"] = {"max_schedule_lag_s": lag_max}
        return out


class RawWsWorker(WsWorker):
    """``--ws-client raw``: the same load over ``rawsio.RawSio`` connections.

    One ``select`` loop per process drives every connection (no threads): emits are
    ``42/trade,<id>["order",{...}]`` frames written at the scheduled time, and the
    acknowledgements are timestamped as they are read. About a tenth of the CPU per
    order of python-socketio's client, so the generator leaves the cores to the server.
    """

    def connect_all(self) -> int:
        import selectors

        from .rawsio import RawSio

        self.sel = selectors.SelectSelector()
        ok = 0
        for key in self.slot_keys:
            account = self.keys.index(key)
            c = RawSio(self.cfg["host"], self.cfg["port"], self.ns, auth={"api_key": key} if key else None)
            try:
                c.connect()
            except Exception as exc:  # OSError, SioProtocolError
                self.connect_errors += 1
                self.connect_error_text = str(exc)
                c.close()
                continue
            c.set_nonblocking()
            self.sel.register(c.sock, selectors.EVENT_READ, c)
            c.pending = {}  # ack id -> our seq
            self.clients.append(c)
            self.client_account.append(account)
            ok += 1
        return ok

    def _collect(self, c, t: float) -> None:
        """Turn the acknowledgements that arrived on ``c`` into finished requests."""
        c.on_readable()  # events on /trade (none expected) are ignored
        if c.acks:
            pending = c.pending
            for ack, args in list(c.acks.items()):
                seq = pending.pop(ack, None)
                if seq is not None:
                    self._finish(seq, t, args if isinstance(args, list) else [args])
            c.acks.clear()

    def run(self, t0: float) -> dict:
        from .orders import cancel_json, order_json

        self.t0 = t0
        cfg = self.cfg
        cpu0, wall0 = start_together(t0)
        end = t0 + cfg["duration"]
        deadline = end + cfg["drain"]
        timeout = cfg["timeout"]
        monotonic = time.monotonic
        closed_loop = cfg["rate"] is None
        sched, next_t = worker_schedule(cfg, self.worker, cfg["rate"])
        clients = self.clients
        window = len(clients)
        seqs = itertools.count()
        rrs = self.client_cycles()
        progress = self.progress
        last_pub = last_scan = t0
        factory = self.factory
        prefix = f"42{self.ns}," if self.ns != "/" else "42"
        sel = self.sel
        while True:
            now = monotonic()
            rel = now - t0
            if closed_loop:
                due = [rel] * max(0, window - len(self.inflight)) if now < end else []
            else:
                due = []
                while next_t is not None and next_t <= rel:
                    due.append(next_t)
                    next_t = sched.next_time()
            for st in due:
                code, fields = factory.next()
                seq = next(seqs)
                ci = next(rrs[factory.account])
                c = clients[ci]
                ack = c.next_ack
                c.next_ack += 1
                if code == "C":
                    text = f'{prefix}{ack}["cancel",{cancel_json(fields)}]'
                else:
                    text = f'{prefix}{ack}["order",{order_json(fields)}]'
                sent = monotonic() - t0
                self.counters[P_SENT] += 1
                if c.closed:
                    self._error(st, sent, code, "connection closed")
                    continue
                self.inflight[seq] = (st, sent, code, ci)
                c.pending[ack] = seq
                try:
                    c.send_text(text)
                except OSError:
                    c.closed = True
                    self.inflight.pop(seq, None)
                    self._error(st, sent, code, "connection error")
            if now - last_scan > 0.05 and self.inflight:
                last_scan = now
                self._expire(rel - timeout)
            if progress is not None and now - last_pub > 0.1:
                last_pub = now
                self._publish(len(self.inflight))
            finished = next_t is None and (not closed_loop or now >= end)
            if finished and not self.inflight:
                break
            if now >= deadline:
                self._give_up(next_t, sched)
                break
            if next_t is not None:
                wait = max(0.0, min(t0 + next_t - monotonic(), 0.05))
            else:
                wait = 0.05
            for key, _ in sel.select(wait):
                c = key.data
                self._collect(c, monotonic())
                if c.closed:
                    sel.unregister(key.fileobj)
                    for seq in list(c.pending.values()):
                        req = self.inflight.pop(seq, None)
                        if req is not None:
                            self._error(req[0], req[1], req[2], "connection closed")
                    c.pending.clear()
        self._publish(0)
        for c in clients:
            c.close()
        return self.rec.result_of_worker(cpu0, wall0, 0, self.connect_errors)
