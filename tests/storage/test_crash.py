"""``kill -9`` a real server under a steady stream of orders, restart it on the
same data dir: every acknowledged order, cancel and trade is there, exactly.

Client threads send orders and cancels over keep-alive HTTP and remember every
acknowledgement (HTTP 200 received). After SIGKILL at a seeded random moment
the server is restarted and checked against an independent replay of its
journal (parsed here with ``json``, replayed through the engine, formatted
with ``api.formatting``):

* every acknowledged submit is journaled with the same fields, timestamp and
  trade ids, and its acknowledgement equals the replayed report;
* every acknowledged cancel is journaled;
* at most one unacknowledged record per client (its response was in flight);
* ``GET /order``, ``GET /book`` and ``GET /trades`` equal the replay;
* new orders continue the ids; after a clean stop the data dir verifies.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from decimal import Decimal

import pytest

from api import formatting
from engine.matcher import MatchingEngine
from engine.order import OrderType, Side
from storage.journal import as_dict
from storage.verify import verify
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.server

SYMBOLS = ("BTC-USDT", "ETH-USDT")
CLIENTS = 4


class Client(threading.Thread):
    """One keep-alive connection, one request in flight at a time."""

    def __init__(self, port: int, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.rng = random.Random(seed)
        self.seed = seed
        self.stop = stop
        self.acked_orders: list[dict] = []
        self.acked_cancels: list[dict] = []
        self.open_ids: list[str] = []
        self.failures = 0

    def _post(self, conn, path: str, body: dict):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    def _order(self) -> dict:
        rng = self.rng
        symbol = rng.choice(SYMBOLS)
        lot = "0.00001" if symbol == "BTC-USDT" else "0.0001"
        order_type = rng.choice(["limit"] * 6 + ["market", "ioc", "fok"])
        body = {
            "symbol": symbol,
            "side": rng.choice(["buy", "sell"]),
            "order_type": order_type,
            "quantity": str(Decimal(lot) * rng.randint(1, 20)),
        }
        if order_type != "market":
            body["price"] = f"{100 + rng.randint(-4, 4)}.{rng.choice(['00', '50'])}"
        if rng.random() < 0.3:
            body["client_order_id"] = f"c{self.seed}-{rng.randrange(10**6)}"
        return body

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                if self.open_ids and self.rng.random() < 0.3:
                    order_id = self.open_ids.pop(self.rng.randrange(len(self.open_ids)))
                    status, answer = self._post(conn, "/cancel", {"order_id": order_id})
                    if status == 200:
                        self.acked_cancels.append(answer)
                    else:
                        assert answer["error"]["code"] in ("ORDER_NOT_OPEN",), answer
                else:
                    body = self._order()
                    status, answer = self._post(conn, "/order", body)
                    assert status == 200, answer
                    self.acked_orders.append({"request": body, "answer": answer})
                    if answer["status"] in ("new", "partially_filled"):
                        self.open_ids.append(answer["order_id"])
            except (OSError, http.client.HTTPException, ValueError):
                return  # the server is gone: this request's answer is lost


def _journal(data_dir: str) -> list[dict]:
    records = []
    for name in sorted(os.listdir(data_dir)):
        if name.startswith("journal-") and name.endswith(".jsonl"):
            with open(os.path.join(data_dir, name), encoding="ascii") as f:
                records.extend(as_dict(json.loads(line)) for line in f)
    assert [r["n"] for r in records] == list(range(1, len(records) + 1))
    return records


def _replay(records: list[dict]):
    engine = MatchingEngine()
    submits = {}
    for r in records:
        if r["op"] == "s":
            result = engine.submit(
                r["symbol"],
                Side(r["side"]),
                OrderType(r["order_type"]),
                r["quantity"],
                r["price"],
                r["client_order_id"],
                timestamp=r["timestamp"],
                order_id=r["order_id"],
                trade_ids=r["trade_ids"],
            )
            submits[r["order_id"]] = formatting.submit_report(engine.spec(r["symbol"]), result)
        else:
            engine.cancel(r["order_id"], timestamp=r["timestamp"])
    return engine, submits


def _get(conn, path: str):
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize(
    "seed, restart, writer",
    [
        (1, "after the clients", "inline"),
        (2, "after the clients", "process"),
        (3, "after the clients", "inline"),
        (4, "at once", "process"),
        (5, "at once", "inline"),
    ],
)
def test_sigkill_loses_nothing_acknowledged(tmp_path, seed, restart, writer):
    # "at once": the new server starts the moment the old one is dead, while
    # its journal writer process may still be writing, fsyncing and holding
    # the data dir's LOCK; recovery waits for it and must see all it wrote.
    data_dir = str(tmp_path / "data")
    rng = random.Random(seed)
    server = ServerProcess(data_dir, "--journal-writer", writer).start()
    stop = threading.Event()
    clients = [Client(server.port, seed * 100 + i, stop) for i in range(CLIENTS)]
    try:
        for c in clients:
            c.start()
        time.sleep(rng.uniform(0.4, 1.6))  # a random moment under load
        server.kill()
        if restart == "at once":
            server = ServerProcess(data_dir, "--journal-writer", writer).start()  # recovery happens here
    finally:
        stop.set()
        if restart != "at once":
            server.stop()
    for c in clients:
        c.join(10)

    acked_orders = [a for c in clients for a in c.acked_orders]
    acked_cancels = [a for c in clients for a in c.acked_cancels]
    assert len(acked_orders) > 20, "the stream never got going"

    if restart != "at once":
        server = ServerProcess(data_dir, "--journal-writer", writer).start()  # recovery happens here
    try:
        records = _journal(data_dir)
        by_order = {r["order_id"]: r for r in records if r["op"] == "s"}
        cancels = {r["order_id"] for r in records if r["op"] == "c"}
        engine, reports = _replay(records)

        for ack in acked_orders:
            answer = ack["answer"]
            oid = int(answer["order_id"])
            assert oid in by_order, f"acknowledged order {oid} is not in the journal"
            assert reports[oid] == answer, f"order {oid}: the replay differs from its acknowledgement"
            r = by_order[oid]
            assert (r["symbol"], r["side"], r["order_type"]) == tuple(
                ack["request"][k] for k in ("symbol", "side", "order_type")
            )
            assert r["client_order_id"] == ack["request"].get("client_order_id")
        for answer in acked_cancels:
            assert int(answer["order_id"]) in cancels, f"acknowledged cancel of {answer['order_id']} is lost"
        unacked = len(records) - len(acked_orders) - len(acked_cancels)
        print(
            f"seed {seed}: {len(records)} journaled, {len(acked_orders)} orders + {len(acked_cancels)} cancels acknowledged, {unacked} in flight"
        )
        assert 0 <= unacked <= CLIENTS, f"{unacked} journaled records were never acknowledged"

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for ack in acked_orders:
            oid = int(ack["answer"]["order_id"])
            status, now = _get(conn, f"/order/{oid}")
            order = engine.orders[oid]
            assert status == 200 and now == formatting.order_report(engine.spec(order.symbol), order)
        for symbol in SYMBOLS:
            spec = engine.spec(symbol)
            sequence, bids, asks = engine.depth(symbol, 1000)
            status, book = _get(conn, f"/book/{symbol}?levels=1000")
            assert status == 200
            assert book["sequence"] == sequence
            assert book["bids"] == formatting.levels(spec, bids) and book["asks"] == formatting.levels(
                spec, asks
            )
            status, trades = _get(conn, f"/trades/{symbol}?limit=1000")
            expected = [formatting.trade_dict(spec, t) for t in engine.recent_trades(symbol, 1000)]
            assert trades["trades"] == expected
        # ids continue after the journal's, never reused
        conn.request(
            "POST",
            "/order",
            json.dumps(
                {
                    "symbol": "SOL-USDT",
                    "side": "buy",
                    "order_type": "limit",
                    "quantity": "0.001",
                    "price": "1.00",
                }
            ),
            {"Content-Type": "application/json"},
        )
        fresh_id = int(json.loads(conn.getresponse().read())["order_id"])
        assert fresh_id == max(by_order) + 1
        conn.close()
    finally:
        server.stop()  # clean: final snapshot
    report = verify(data_dir, out=lambda *a: None)
    assert report["ok"], report["problems"]
