"""Durability seen from outside, with real servers (``python api/app.py``,
eventlet, the journal writer process): nothing of a command is visible before
its record is durable (no dirty reads), and a journal fault halts trading
visibly and leaves no trace of the commands it failed (fail-stop).

The journal writer child is held with SIGSTOP (a disk that does not answer)
or killed with SIGKILL (the child dies); the disk fills up on a small tmpfs;
the journal is deleted under the server. See Documentation/DURABILITY.md,
"What a client can see".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import socketio

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.server

BTC = "BTC-USDT"
ETH = "ETH-USDT"


def _request(url: str, body=None, timeout: float = 10.0):
    """``(status, JSON body)``; ``(None, None)`` when no answer came in ``timeout``."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except (TimeoutError, OSError) as e:
        if "timed out" in str(e):
            return None, None
        raise


def _order(side: str, price: str, quantity: str = "0.001", symbol: str = BTC) -> dict:
    return {"symbol": symbol, "side": side, "order_type": "limit", "quantity": quantity, "price": price}


def _writer_pid(server: ServerProcess) -> int:
    """The server's journal writer child (its only child process)."""
    pid = server.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(p) for p in f.read().split()]
    assert len(children) == 1, children
    return children[0]


def _gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1][0] == "Z":
                    return  # a zombie: dead, its parent has not reaped it yet
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still runs")


class _Background:
    """A request that runs in a thread (it is expected to hang)."""

    def __init__(self, url: str, body, timeout: float = 30.0) -> None:
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(url, body, timeout), daemon=True)
        self.thread.start()

    def _run(self, url, body, timeout) -> None:
        try:
            self.result = _request(url, body, timeout)
        except OSError as e:  # the server was killed under it
            self.result = ("error", str(e))

    def join(self, timeout: float = 15.0):
        self.thread.join(timeout)
        return self.result


class _Watcher:
    """A /market client subscribed to everything of ``BTC-USDT``."""

    def __init__(self, url: str) -> None:
        self.events: list = []
        self.sio = socketio.Client(reconnection=False)
        for name in ("l2_update", "bbo", "trade", "order_event"):
            self.sio.on(name, self._keep(name), namespace="/market")
        self.sio.connect(url, namespaces=["/market"], transports=["websocket"], wait_timeout=5)
        for kind in ("l2_updates", "bbo", "trades", "order_events"):
            ack = self.sio.call("subscribe", {"type": kind, "symbol": BTC}, namespace="/market", timeout=5)
            assert ack == {"ok": True}, ack

    def _keep(self, name):
        return lambda data: self.events.append((name, data))

    def seen(self) -> tuple[set, set, set]:
        """Sequences, order ids and trade ids this client was shown."""
        sequences, orders, trades = set(), set(), set()
        for name, data in list(self.events):
            if name in ("l2_update", "bbo"):
                sequences.add(data["sequence"])
            elif name == "trade":
                trades.add(data["trade_id"])
            else:
                orders.add(data["order"]["order_id"])
        return sequences, orders, trades

    def close(self) -> None:
        self.sio.disconnect()


def _shown_by_reads(url: str, order_ids) -> tuple[set, set, set]:
    """Sequences, order ids and trade ids the public reads show now (an
    answer that is not 200 shows nothing)."""
    sequences, orders, trades = set(), set(), set()
    for path in (f"/book/{BTC}", f"/bbo/{BTC}"):
        status, body = _request(url + path, timeout=10)
        if status == 200:
            sequences.add(body["sequence"])
    status, body = _request(url + f"/trades/{BTC}", timeout=10)
    if status == 200:
        trades.update(t["trade_id"] for t in body["trades"])
        orders.update(t[k] for t in body["trades"] for k in ("maker_order_id", "taker_order_id"))
    status, body = _request(url + "/statistics", timeout=10)
    if status == 200:
        sequences.add(body["symbols"][BTC]["sequence"])
    for oid in order_ids:
        status, body = _request(url + f"/order/{oid}", timeout=10)
        if status == 200:
            orders.add(body["order_id"])
    return sequences, orders, trades


def test_nothing_is_visible_before_it_is_durable_and_no_id_is_reused_after_a_crash(tmp_path):
    """The issue's reproduction: with the writer stopped, an order hangs
    (right), and nothing of it may be visible -- not in the book, BBO, trades,
    statistics, ``GET /order`` or any stream; after SIGKILL of both and a
    restart the ids and sequences that anybody saw are never given again."""
    data_dir = str(tmp_path / "data")
    server = ServerProcess(data_dir).start()
    watcher = None
    try:
        status, maker = _request(server.url + "/order", _order("sell", "100.00"))
        assert status == 200
        _, before = _request(server.url + f"/book/{BTC}")
        watcher = _Watcher(server.url)
        time.sleep(0.3)
        writer = _writer_pid(server)
        os.kill(writer, signal.SIGSTOP)
        # crosses the resting sell: a trade, a filled maker, a new sequence
        hanging = _Background(server.url + "/order", _order("buy", "100.00"))
        resting = _Background(server.url + "/order", _order("buy", "90.00", symbol=BTC))
        time.sleep(1.0)
        assert hanging.result is None and resting.result is None, "an order was acknowledged"
        guesses = range(int(maker["order_id"]) - 2, int(maker["order_id"]) + 6)
        seen_seq, seen_orders, seen_trades = _shown_by_reads(server.url, guesses)
        time.sleep(0.5)
        s, o, t = watcher.seen()
        seen_seq |= s
        seen_orders |= o
        seen_trades |= t
        assert max(seen_seq) <= before["sequence"], f"a sequence beyond the durable one was shown: {seen_seq}"
        assert seen_orders <= {maker["order_id"]}, f"an order that is not durable was shown: {seen_orders}"
        assert not seen_trades, f"a trade that is not durable was shown: {seen_trades}"
        server.kill()
        os.kill(writer, signal.SIGKILL)
        _gone(writer)
    finally:
        if watcher is not None:
            watcher.close()
        server.stop()

    with ServerProcess(data_dir) as again:
        status, report = _request(again.url + "/order", _order("buy", "80.00"))
        assert status == 200
        _, book = _request(again.url + f"/book/{BTC}")
        assert report["order_id"] not in seen_orders
        assert book["sequence"] not in seen_seq


def test_reads_of_a_symbol_with_a_command_in_flight_wait_for_it(tmp_path):
    """The barrier waits for the record, not for the timeout: a read issued
    while the writer is stopped answers as soon as the writer resumes, with
    the command in it."""
    with ServerProcess(tmp_path / "data") as server:
        writer = _writer_pid(server)
        os.kill(writer, signal.SIGSTOP)
        try:
            pending = _Background(server.url + "/order", _order("buy", "95.00"))
            time.sleep(0.3)
            book = _Background(server.url + f"/book/{BTC}", None)
            other = _request(server.url + f"/book/{ETH}", timeout=5)
            assert other[0] == 200, "a quiet symbol must not wait"
            time.sleep(0.3)
            assert book.result is None
        finally:
            os.kill(writer, signal.SIGCONT)
        status, body = book.join()
        assert status == 200 and body["bids"] == [["95.00", "0.00100"]]
        assert pending.join()[0] == 200


def _halted(url: str) -> dict:
    status, health = _request(url + "/health")
    assert status == 503, (status, health)
    assert health["status"] == "halted" and health["reason"], health
    return health


def _unavailable(result) -> None:
    status, body = result
    assert status == 503, result
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE", body


def test_the_writer_dying_halts_trading_and_the_failed_order_leaves_no_trace(tmp_path):
    data_dir = str(tmp_path / "data")
    server = ServerProcess(data_dir).start()
    try:
        status, maker = _request(server.url + "/order", _order("sell", "100.00"))
        assert status == 200
        _, eth = _request(server.url + "/order", _order("buy", "10.00", symbol=ETH))
        writer = _writer_pid(server)
        os.kill(writer, signal.SIGSTOP)
        taker = _Background(server.url + "/order", _order("buy", "100.00"))
        time.sleep(0.5)
        os.kill(writer, signal.SIGKILL)
        _unavailable(taker.join())
        health = _halted(server.url)
        assert "exited unexpectedly" in health["reason"]
        # every command is refused
        _unavailable(_request(server.url + "/order", _order("buy", "1.00")))
        _unavailable(_request(server.url + "/orders", [_order("buy", "1.00")]))
        _unavailable(_request(server.url + "/cancel", {"order_id": maker["order_id"]}))
        sio = socketio.Client(reconnection=False)
        sio.connect(server.url, namespaces=["/trade"], transports=["websocket"], wait_timeout=5)
        try:
            ack = sio.call("order", _order("buy", "1.00"), namespace="/trade", timeout=5)
        finally:
            sio.disconnect()
        assert ack["error"]["code"] == "SERVICE_UNAVAILABLE", ack
        # reads: the last durable state, or 503; never the failed order
        status, book = _request(server.url + f"/book/{BTC}")
        assert status == 503 or book["asks"] == [["100.00", "0.00100"]], book
        status, trades = _request(server.url + f"/trades/{BTC}")
        assert status == 503 or trades["trades"] == [], trades
        status, order = _request(server.url + f"/order/{maker['order_id']}")
        assert status == 503 or order["status"] == "new", order
        # a symbol the failure did not touch still answers its (durable) state
        status, book = _request(server.url + f"/book/{ETH}")
        assert status == 200 and book["bids"] == [["10.00", "0.0010"]]
        assert _request(server.url + f"/order/{eth['order_id']}")[0] == 200
    finally:
        server.stop()
    assert server.proc.returncode is not None

    with ServerProcess(data_dir) as again:
        assert _request(again.url + "/health")[1]["status"] == "ok"
        _, book = _request(again.url + f"/book/{BTC}")
        assert book["asks"] == [["100.00", "0.00100"]] and book["bids"] == []
        assert _request(again.url + f"/trades/{BTC}")[1]["trades"] == []
        assert _request(again.url + f"/order/{maker['order_id']}")[1]["status"] == "new"


def _mount_tmpfs(path: str, size: str) -> None:
    os.makedirs(path, exist_ok=True)
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, text=True
    )
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {run.stderr.strip()}")


def _fill(path: str) -> None:
    """Fill the file system of ``path`` up to the last byte."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"x")
        except OSError:
            pass


def test_a_full_disk_halts_trading_and_the_failed_orders_leave_no_trace(tmp_path):
    mount = str(tmp_path / "small")
    _mount_tmpfs(mount, "2m")
    try:
        data_dir = os.path.join(mount, "data")
        server = ServerProcess(data_dir)
        server.log_path = str(tmp_path / "server.out")  # not on the full disk
        server.start()
        acked = []
        try:
            for i in range(5):
                status, report = _request(server.url + "/order", _order("buy", f"{50 + i}.00"))
                assert status == 200
                acked.append(report)
            _fill(os.path.join(mount, "filler"))
            # the journal's last page may still hold a few records: go on until one fails
            answers = []
            for i in range(200):
                answers.append(_request(server.url + "/order", _order("buy", f"{40 - i * 0.1:.2f}")))
                if answers[-1][0] != 200:
                    break
            acked += [report for status, report in answers if status == 200]
            failed = answers[len(acked) - 5 :]
            assert failed, "the disk never filled up"
            for _ in range(3):
                failed.append(_request(server.url + "/order", _order("sell", "10.00")))
            for result in failed:
                _unavailable(result)
            health = _halted(server.url)
            assert "No space left on device" in health["reason"], health
            status, book = _request(server.url + f"/book/{BTC}?levels=1000")
            assert status == 503 or len(book["bids"]) == len(acked), book
        finally:
            server.stop()
        os.unlink(os.path.join(mount, "filler"))
        again = ServerProcess(data_dir)
        again.log_path = str(tmp_path / "again.out")
        with again:
            _, book = _request(again.url + f"/book/{BTC}?levels=1000")
            assert sorted(p for p, _ in book["bids"]) == sorted(r["price"] for r in acked)
            assert book["asks"] == [] and _request(again.url + f"/trades/{BTC}")[1]["trades"] == []
            status, report = _request(again.url + "/order", _order("buy", "1.00"))
            assert status == 200 and int(report["order_id"]) > int(acked[-1]["order_id"])
    finally:
        subprocess.run(["umount", "-l", mount], capture_output=True)


def test_a_journal_deleted_under_the_server_halts_it_and_a_restart_refuses_to_start_empty(tmp_path):
    data_dir = str(tmp_path / "data")
    server = ServerProcess(data_dir).start()
    try:
        assert _request(server.url + "/order", _order("buy", "50.00"))[0] == 200
        for name in os.listdir(data_dir):
            if name.startswith("journal-"):
                os.unlink(os.path.join(data_dir, name))
        # noticed while idle (the background check), and no order is acknowledged after it
        deadline = time.monotonic() + 5
        while _request(server.url + "/health")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        health = _halted(server.url)
        assert "deleted" in health["reason"], health
        _unavailable(_request(server.url + "/order", _order("buy", "51.00")))
    finally:
        server.stop()

    refused = ServerProcess(data_dir)
    with pytest.raises(RuntimeError, match="journal"):
        refused.start()
    assert refused.proc.returncode not in (None, 0)
    assert "--allow-empty" in refused.output()
    with ServerProcess(data_dir, "--allow-empty") as again:
        assert _request(again.url + "/health")[1]["status"] == "ok"


def test_an_order_right_after_the_journal_is_deleted_is_not_acknowledged(tmp_path):
    """The writer checks its file before every acknowledgement: no order is
    acknowledged into a deleted journal, not even before the periodic check."""
    data_dir = str(tmp_path / "data")
    with ServerProcess(data_dir, "--journal-check-interval", "0") as server:
        assert _request(server.url + "/order", _order("buy", "50.00"))[0] == 200
        for name in os.listdir(data_dir):
            if name.startswith("journal-"):
                os.unlink(os.path.join(data_dir, name))
        _unavailable(_request(server.url + "/order", _order("buy", "51.00")))
        _halted(server.url)


def test_a_fresh_data_dir_starts_and_a_used_one_keeps_starting(tmp_path):
    data_dir = str(tmp_path / "data")
    with ServerProcess(data_dir) as server:
        assert _request(server.url + "/health")[0] == 200
    with ServerProcess(data_dir) as server:  # used, journal intact (empty)
        assert _request(server.url + "/order", _order("buy", "50.00"))[0] == 200
    with ServerProcess(data_dir) as server:
        assert _request(server.url + f"/book/{BTC}")[1]["bids"] == [["50.00", "0.00100"]]
    shutil.rmtree(data_dir)
    with ServerProcess(data_dir) as server:  # an empty dir again: a fresh start
        assert _request(server.url + f"/book/{BTC}")[1]["bids"] == []
