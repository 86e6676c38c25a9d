"""A simulated market for the demo: one market maker and a trickle of takers.

    python tools/demo_market.py [--url http://127.0.0.1:5000] [--rate 20] [--duration 0] [--seed 1]

The market maker keeps a ladder of bids and asks (``--levels`` per side) around a
mid price that random-walks on every symbol the server lists (GET /symbols). It
cancels quotes that the mid has moved away from, fills in missing levels and
refreshes old quotes now and then. Takers send small ``market`` and ``ioc``
orders against it, so trades print, the book moves and the chart draws candles.

Everything goes through the public REST interface of the server at ``--url``
(POST /order, POST /cancel, and GET /symbols, /bbo, /trades to start from the
market as it is) over one keep-alive ``http.client`` connection; nothing else is
contacted. Non-loopback hosts are refused unless ``--allow-remote`` is given.

Accounts: with ``--auth on`` (GET /account without a key answers 401) the market
maker and each of the ``--takers`` trade as separate accounts, so that they trade
with each other and never hit self-trade prevention. Their keys come from
``--api-key`` (given once per account: the first is the maker's, the others the
takers'), or else the demo makes them itself through the admin endpoints, with the
admin token of ``--data-dir`` (default ``./data``) or ``--admin-token-file``: accounts
``demo-maker`` and ``demo-taker-1``... (created at the first run, a new key for
each at every later one; the keys it made are revoked on the way out). With
``--auth off`` no key is needed and none is sent.

Requests are paced at ``--rate`` per second in total. A 429 answer makes the demo
wait for ``Retry-After``; a refused connection (server not up yet, or restarting)
is retried with a back-off. ``--duration 0`` runs until Ctrl-C or SIGTERM; on the
way out the maker cancels its resting quotes (best effort, a few seconds at most).
Prices and quantities are whole ticks and lots of each symbol's grid, computed in
integers and formatted as decimal strings: no float ever reaches a request.
The run is deterministic for a given ``--seed`` and the same server answers.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import ipaddress
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_admin():
    """``api/admin.py`` (stdlib only) by its path, whatever ``api`` means on ``sys.path``
    (under pytest ``tests/api`` may come first)."""
    name = "matchbook_api_admin"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "api", "admin.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_admin = _load_admin()
AdminClient, AdminError, read_admin_token = _admin.AdminClient, _admin.AdminError, _admin.read_admin_token

log = logging.getLogger("demo_market")

# Where a symbol starts when the server has no book and no trades for it yet.
# Unknown symbols start at 100 (in quote units).
START_PRICES = {"BTC": "30000", "ETH": "2000", "BNB": "300", "SOL": "100"}


class ServerUnavailable(Exception):
    """The server could not be reached (refused, reset, timed out)."""


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after}s")
        self.retry_after = retry_after


class Client:
    """JSON over one keep-alive HTTP connection to the one server given."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self.conn = cls(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self, method: str, path: str, body: dict | None = None, key: str | None = None
    ) -> tuple[int, dict | None]:
        """One request, with ``X-API-Key: key`` when a key is given; returns (status, JSON body or None).

        Raises ServerUnavailable when the server cannot be reached and
        RateLimited on 429. Any other status is returned to the caller.
        """
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if key:
            headers["X-API-Key"] = key
        for attempt in (1, 2):  # a kept-alive connection the server closed: retry once on a new one
            conn = self._connect()
            try:
                conn.request(method, self.prefix + path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise ServerUnavailable(str(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ServerUnavailable(str(exc) or type(exc).__name__) from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            data = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            data = None
        if response.status == 429:
            try:
                retry_after = float(response.getheader("Retry-After", "1"))
            except ValueError:
                retry_after = 1.0
            raise RateLimited(min(max(retry_after, 0.1), 60.0))
        return response.status, data


@dataclass
class Quote:
    order_id: str
    side: str
    price: int  # ticks
    lots: int  # remaining, as far as the maker knows
    placed: float  # monotonic time


@dataclass
class Market:
    """The maker's view of one symbol, in integer ticks and lots."""

    symbol: str
    tick: Decimal
    lot: Decimal
    price_decimals: int
    qty_decimals: int
    mid: int  # ticks
    step: int  # ticks between ladder levels
    lot_target: int  # typical quote size in lots
    quotes: dict[str, Quote] = field(default_factory=dict)

    def price_text(self, ticks: int) -> str:
        return f"{ticks * self.tick:.{self.price_decimals}f}"

    def qty_text(self, lots: int) -> str:
        return f"{lots * self.lot:.{self.qty_decimals}f}"

    def ticks(self, text: str | Decimal) -> int:
        return int(Decimal(text) / self.tick)

    def lots(self, text: str | Decimal) -> int:
        return int(Decimal(text) / self.lot)


def _decimals(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)


class Demo:
    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        # API keys with --auth on (None: no key is sent, --auth off).
        self.maker_key: str | None = None
        self.taker_keys: list[str | None] = [None]
        self.made_keys: list[str] = []  # made through the admin endpoints: revoked at the end
        self.admin: AdminClient | None = None
        self.rng = random.Random(args.seed)
        self.markets: list[Market] = []
        self.counts = {
            "orders": 0,
            "cancels": 0,
            "trades": 0,
            "rejected": 0,
            "rate_limited": 0,
            "unreachable": 0,
        }
        self.sequence = 0
        self.stopping = False
        # --duration bounds the whole run, waiting for an unreachable server included.
        self.deadline = time.monotonic() + args.duration if args.duration else None

    # -- plumbing -------------------------------------------------------------
    def call(
        self, method: str, path: str, body: dict | None = None, key: str | None = None
    ) -> tuple[int, dict | None]:
        """A request that waits out rate limits and unreachable servers.

        Returns (0, None) when it gave up because the demo is stopping or its
        time is up.
        """
        backoff = 0.5
        while not self.done():
            try:
                return self.client.request(method, path, body, key)
            except RateLimited as exc:
                self.counts["rate_limited"] += 1
                log.warning("rate limited by the server; waiting %.1f s", exc.retry_after)
                self.sleep(exc.retry_after)
            except ServerUnavailable as exc:
                self.counts["unreachable"] += 1
                log.warning("server %s unreachable (%s); retrying in %.1f s", self.args.url, exc, backoff)
                self.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return 0, None

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.done() and time.monotonic() < end:
            time.sleep(max(0.0, min(0.1, end - time.monotonic())))

    def done(self) -> bool:
        return self.stopping or (self.deadline is not None and time.monotonic() >= self.deadline)

    def client_id(self, role: str) -> str:
        self.sequence += 1
        return f"demo-{role}-{self.args.seed}-{self.sequence}"

    # -- start ------------------------------------------------------------------
    def load_markets(self) -> bool:
        """Read the symbols and starting prices; False when stopped before the server answered."""
        status, data = self.call("GET", "/symbols")
        if status == 0:
            return False
        if status != 200 or not data:
            raise SystemExit(f"GET /symbols failed: {status} {data}")
        wanted = set(self.args.symbols.split(",")) if self.args.symbols else None
        for spec in data["symbols"]:
            if wanted and spec["symbol"] not in wanted:
                continue
            tick, lot = Decimal(str(spec["tick_size"])), Decimal(str(spec["lot_size"]))
            mid_price = self.starting_price(spec["symbol"], spec.get("base", ""))
            mid = max(1, int(mid_price / tick))
            # Ladder levels about 2 bp apart (at least one tick); quotes worth
            # about 2,000 quote units each (at least one lot).
            step = max(1, int(mid * Decimal("0.0002")))
            lot_target = max(1, int(Decimal(2000) / (mid_price * lot)))
            self.markets.append(
                Market(spec["symbol"], tick, lot, _decimals(tick), _decimals(lot), mid, step, lot_target)
            )
        if not self.markets:
            raise SystemExit("no symbols to trade")
        log.info(
            "trading %s at %.1f requests/s",
            ", ".join(f"{m.symbol}@{m.price_text(m.mid)}" for m in self.markets),
            self.args.rate,
        )
        return True

    def setup_accounts(self) -> bool:
        """Keys for the maker and the takers when the server wants them; False when stopped.

        Raises:
            SystemExit: keys are needed and neither ``--api-key`` nor an admin token
                gives working ones.
        """
        status, _ = self.call("GET", "/account")
        if status == 0:
            return False
        if status != 401:  # 200: --auth off (one shared account); 404: a server without accounts
            if self.args.api_key:
                log.info("the server needs no API key (GET /account answered %s); trading without", status)
            return True
        if self.args.api_key:
            keys = list(self.args.api_key)
            self.maker_key, self.taker_keys = keys[0], keys[1:] or keys[:1]
            if len(keys) == 1:
                log.warning("one --api-key for maker and takers: self-trade prevention cancels their trades")
        else:
            try:
                token = read_admin_token(self.args.data_dir, self.args.admin_token_file)
                self.admin = AdminClient(self.args.url, token, allow_remote=self.args.allow_remote)
                self.maker_key = self.account_key("demo-maker")
                self.taker_keys = [self.account_key(f"demo-taker-{i + 1}") for i in range(self.args.takers)]
            except AdminError as exc:
                raise SystemExit(
                    f"the server wants API keys (--auth on): give --api-key KEY per account, or the "
                    f"admin token so that the demo makes its own accounts: {exc}"
                ) from None
        for role, key in [("maker", self.maker_key)] + [("taker", k) for k in self.taker_keys]:
            status, body = self.call("GET", "/account", key=key)
            if status == 0:
                return False
            if status != 200 or not body:
                raise SystemExit(f"the {role}'s API key was refused by GET /account ({status}): {body}")
            log.info("%s: account %s (%s)", role, body.get("name"), body.get("account_id"))
        return True

    def account_key(self, name: str) -> str:
        """A new key of the account ``name``: the account is created at the first run."""
        try:
            # funded at creation far beyond what the simulation spends (api.admin.LOAD_DEPOSIT)
            answer = self.admin.create_account(name, self.admin.load_deposits())
        except AdminError as exc:
            if exc.code != "ACCOUNT_EXISTS":
                raise
            accounts = self.admin.list_accounts().get("accounts") or []
            ids = [a["account_id"] for a in accounts if a.get("name") == name]
            if not ids:
                raise
            answer = self.admin.new_key(ids[0])
        self.made_keys.append(answer["api_key"])
        return answer["api_key"]

    def revoke_made_keys(self) -> None:
        """Revoke the keys this run made (the accounts and their orders' history stay)."""
        for key in self.made_keys:
            try:
                self.admin.revoke_key(key)
            except AdminError as exc:
                log.warning("could not revoke a key the demo made: %s", exc)
                break
        self.made_keys.clear()

    def starting_price(self, symbol: str, base: str) -> Decimal:
        """Mid of the current book, else the last trade, else a default."""
        status, bbo = self.call("GET", f"/bbo/{symbol}")
        if status == 200 and bbo and bbo.get("best_bid") and bbo.get("best_ask"):
            return (Decimal(bbo["best_bid"]["price"]) + Decimal(bbo["best_ask"]["price"])) / 2
        status, trades = self.call("GET", f"/trades/{symbol}?limit=1")
        if status == 200 and trades and trades.get("trades"):
            return Decimal(trades["trades"][-1]["price"])
        return Decimal(START_PRICES.get(base, "100"))

    # -- the market maker ---------------------------------------------------------
    def walk(self, m: Market) -> None:
        """Move the mid: a small geometric random walk, a few bp per step."""
        shock = self.rng.gauss(0.0, self.args.volatility)
        m.mid = max(m.step * (self.args.levels + 2), int(m.mid * math.exp(shock)))

    def stale(self, m: Market, q: Quote) -> bool:
        """A quote too close to (or through) the mid, or too deep."""
        half = m.step // 2 + 1
        depth = m.step * (self.args.levels + 3)
        if q.side == "buy":
            return q.price > m.mid - half or q.price < m.mid - depth
        return q.price < m.mid + half or q.price > m.mid + depth

    def missing_level(self, m: Market) -> tuple[str, int] | None:
        """A (side, price) slot of the ladder that has no quote, nearest first."""
        taken = {(q.side, round(abs(q.price - m.mid) / m.step)) for q in m.quotes.values()}
        for k in range(1, self.args.levels + 1):
            for side in self.rng.sample(["buy", "sell"], 2):
                if (side, k) not in taken:
                    jitter = self.rng.randint(-(m.step // 4), m.step // 4)
                    offset = k * m.step + jitter
                    return side, (m.mid - offset if side == "buy" else m.mid + offset)
        return None

    def maker_step(self, m: Market) -> None:
        """One request of upkeep: cancel a stale quote, else add a level, else refresh one."""
        if self.rng.random() < 0.3:
            self.walk(m)
        stale = [q for q in m.quotes.values() if self.stale(m, q)]
        if stale:
            self.cancel(m, min(stale, key=lambda q: q.placed))
            return
        slot = self.missing_level(m)
        if slot is not None:
            side, price = slot
            # Deeper levels tend to be larger, as on a real book.
            depth_factor = 1 + abs(price - m.mid) / (m.step * self.args.levels)
            lots = max(1, int(m.lot_target * depth_factor * self.rng.uniform(0.3, 1.7)))
            self.place(m, side, "limit", lots, price, role="mm")
            return
        if m.quotes:
            self.cancel(m, self.rng.choice(list(m.quotes.values())))

    def place(self, m: Market, side: str, order_type: str, lots: int, price: int | None, role: str) -> None:
        key = self.maker_key if role == "mm" else self.rng.choice(self.taker_keys)
        body = {
            "symbol": m.symbol,
            "side": side,
            "order_type": order_type,
            "quantity": m.qty_text(lots),
            "client_order_id": self.client_id(role),
        }
        if price is not None:
            body["price"] = m.price_text(price)
        status, report = self.call("POST", "/order", body, key)
        if status == 0:
            return
        if status != 200 or not report:
            self.counts["rejected"] += 1
            log.warning("order refused (%s): %s -> %s", status, body, report)
            return
        self.counts["orders"] += 1
        for trade in report.get("trades", []):
            self.counts["trades"] += 1
            self.maker_filled(m, trade)
        if role == "mm" and report.get("status") in ("new", "partially_filled"):
            m.quotes[report["order_id"]] = Quote(
                report["order_id"], side, price, m.lots(report["remaining_quantity"]), time.monotonic()
            )

    def maker_filled(self, m: Market, trade: dict) -> None:
        """A taker of ours hit one of our quotes: reduce what we think rests there."""
        quote = m.quotes.get(trade["maker_order_id"])
        if quote is None:
            return
        quote.lots -= m.lots(trade["quantity"])
        if quote.lots <= 0:
            del m.quotes[quote.order_id]

    def cancel(self, m: Market, quote: Quote) -> None:
        status, body = self.call("POST", "/cancel", {"order_id": quote.order_id}, self.maker_key)
        if status == 0:
            return
        if status == 200:
            self.counts["cancels"] += 1
            m.quotes.pop(quote.order_id, None)
        elif status in (404, 409):  # filled by someone else meanwhile, or gone
            m.quotes.pop(quote.order_id, None)
        else:
            self.counts["rejected"] += 1
            log.warning("cancel %s refused (%s): %s", quote.order_id, status, body)

    # -- takers -----------------------------------------------------------------------
    def taker_step(self, m: Market) -> None:
        """A small market or IOC order, leaning with the last move of the mid."""
        side = self.rng.choice(["buy", "sell"])
        lots = max(1, int(m.lot_target * self.rng.expovariate(1.5)))
        if self.rng.random() < 0.6:
            self.place(m, side, "market", lots, None, role="tk")
        else:
            reach = self.rng.randint(1, 3) * m.step
            price = m.mid + reach if side == "buy" else max(1, m.mid - reach)
            self.place(m, side, "ioc", lots, price, role="tk")

    # -- run ----------------------------------------------------------------------------
    def run(self) -> None:
        if not self.load_markets() or not self.setup_accounts():
            log.info("stopped before the server answered")
            return
        interval = 1.0 / self.args.rate
        started = time.monotonic()
        next_at = started
        last_report = started
        while not self.done():
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(next_at - now, 0.1))
                continue
            next_at = max(next_at + interval, now - 1.0)  # no burst after a stall
            m = self.rng.choice(self.markets)
            if self.rng.random() < self.args.taker_share and m.quotes:
                self.taker_step(m)
            else:
                self.maker_step(m)
            if now - last_report >= 10:
                last_report = now
                log.info("%s", self.summary())
        self.shutdown()

    def summary(self) -> str:
        resting = sum(len(m.quotes) for m in self.markets)
        return " ".join(f"{k}={v}" for k, v in self.counts.items()) + f" resting={resting}"

    def shutdown(self) -> None:
        """Cancel our resting quotes: a few seconds at most, server permitting."""
        deadline = time.monotonic() + self.args.cleanup_seconds
        self.client.close()
        self.client.timeout = 1.0  # the server may be going away too: never hang on the way out
        quotes = [(m, q) for m in self.markets for q in list(m.quotes.values())]
        if quotes and not self.args.keep_quotes:
            log.info("cancelling %d resting quotes", len(quotes))
            for m, q in quotes:
                if time.monotonic() > deadline:
                    log.warning("gave up cancelling after %.0f s", self.args.cleanup_seconds)
                    break
                try:
                    status, _ = self.client.request(
                        "POST", "/cancel", {"order_id": q.order_id}, self.maker_key
                    )
                except (ServerUnavailable, RateLimited):
                    break
                if status in (200, 404, 409):
                    m.quotes.pop(q.order_id, None)
        self.client.close()
        if self.made_keys:
            self.revoke_made_keys()
        log.info("done: %s", self.summary())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:5000", help="the server (default %(default)s)")
    p.add_argument(
        "--rate", type=float, default=20.0, help="requests per second in total (default %(default)s)"
    )
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until Ctrl-C (default)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument("--levels", type=int, default=8, help="ladder levels per side (default %(default)s)")
    p.add_argument("--symbols", default="", help="comma-separated subset (default: all from GET /symbols)")
    p.add_argument("--taker-share", type=float, default=0.2, help="share of requests that are taker orders")
    p.add_argument(
        "--volatility", type=float, default=0.0003, help="std-dev of a mid move (default %(default)s)"
    )
    p.add_argument("--keep-quotes", action="store_true", help="leave the quotes resting on exit")
    p.add_argument("--cleanup-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    p.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="with --auth on: an account's API key, once per account (the maker's first, then the takers')",
    )
    p.add_argument(
        "--data-dir",
        default="data",
        help="the server's data dir, for its admin.token (default ./data): the demo makes its own accounts",
    )
    p.add_argument("--admin-token-file", help="the admin token's file, when the server was given one")
    p.add_argument(
        "--takers", type=int, default=2, help="taker accounts made with the admin token (default 2)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be positive")
    if args.levels < 1:
        p.error("--levels must be at least 1")
    if args.takers < 1:
        p.error("--takers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s demo %(levelname)s %(message)s",
    )
    client = Client(args.url)
    if not args.allow_remote and not is_loopback(client.host):
        log.error("refusing to trade against non-loopback host %s (use --allow-remote)", client.host)
        return 2
    demo = Demo(client, args)

    def stop(signum, frame):  # SIGTERM from the service that started us, or Ctrl-C
        demo.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    demo.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
