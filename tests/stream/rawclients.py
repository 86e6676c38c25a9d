"""Raw clients for the slow-consumer and handshake tests and their benchmark
(``tests/stream/bench_sessions.py``): an Engine.IO long-polling client, a reading
subscriber over ``tests/loadlib/rawsio.py``, an order flow that trades, the
server's RSS."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

from tests.loadlib.rawsio import RawSio

BTC = "BTC-USDT"
EIO = "/socket.io/?EIO=4&transport=polling"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def get_json(server, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


class Poller:
    """An Engine.IO long-polling client over one keep-alive HTTP connection."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        self.sid = None

    def handshake(self) -> tuple[int, dict, str]:
        self.conn.request("GET", EIO)
        r = self.conn.getresponse()
        body = r.read().decode()
        if r.status == 200:
            self.sid = json.loads(body[1:])["sid"]
        return r.status, dict(r.getheaders()), body

    def post(self, *packets: str) -> int:
        body = "\x1e".join(packets).encode()
        self.conn.request(
            "POST", f"{EIO}&sid={self.sid}", body=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
        )
        r = self.conn.getresponse()
        r.read()
        return r.status

    def get(self) -> tuple[int, list[str]]:
        self.conn.request("GET", f"{EIO}&sid={self.sid}")
        r = self.conn.getresponse()
        return r.status, r.read().decode().split("\x1e")

    def close(self) -> None:
        self.conn.close()


def flow_orders(port: int, seconds: float, stop: threading.Event, rate: float = 0) -> list[str]:
    """Trade for ``seconds``: a sell rests at 30000, a buy takes it (one trade
    and two book changes per pair), flat out or at ``rate`` orders/s. Returns
    the trade ids of the answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    trade_ids: list[str] = []
    started = time.monotonic()
    deadline = started + seconds
    headers = {"Content-Type": "application/json"}
    sent = 0
    try:
        while time.monotonic() < deadline and not stop.is_set():
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            sent += 2
            for side in ("sell", "buy"):
                body = {
                    "symbol": BTC,
                    "side": side,
                    "order_type": "limit",
                    "price": "30000.00",
                    "quantity": "0.001",
                }
                conn.request("POST", "/order", body=json.dumps(body), headers=headers)
                report = json.loads(conn.getresponse().read())
                trade_ids += [t["trade_id"] for t in report.get("trades", ())]
    finally:
        conn.close()
    return trade_ids


def post_ladder(port: int) -> None:
    """100 bid and 100 ask levels away from the traded price: every ``l2_update``
    of depth 100 is then a few KB."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    orders = []
    for i in range(100):
        orders.append(
            {
                "symbol": BTC,
                "side": "buy",
                "order_type": "limit",
                "price": f"{29000 + i}.00",
                "quantity": "0.5",
            }
        )
        orders.append(
            {
                "symbol": BTC,
                "side": "sell",
                "order_type": "limit",
                "price": f"{31000 + i}.00",
                "quantity": "0.5",
            }
        )
    conn.request("POST", "/orders", body=json.dumps(orders), headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()


SUBSCRIPTIONS = (
    {"type": "trades", "symbol": BTC},
    {"type": "l2_updates", "symbol": BTC, "depth": 100},
    {"type": "bbo", "symbol": BTC},
)


class Reader(threading.Thread):
    """A subscriber that reads everything: keeps the trade ids it receives."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = RawSio("127.0.0.1", port)
        self.client.connect()
        for sub in SUBSCRIPTIONS:
            assert self.client.call("subscribe", sub) == {"ok": True}
        self.trade_ids: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        c = self.client
        c.sock.settimeout(0.2)
        pending = list(c.early)
        while not self.stop.is_set() and not c.closed:
            for pkt in pending:
                if pkt.startswith('42/market,["trade"'):
                    self.trade_ids.append(re.search(r'"trade_id":"(\d+)"', pkt).group(1))
            try:
                chunk = c.sock.recv(1 << 20)
            except TimeoutError:
                pending = []
                continue
            if not chunk:
                break
            c.buf += chunk
            pending = c._drain()
