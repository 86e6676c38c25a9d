"""The service: application factory and command line.

    python api/app.py [--host 127.0.0.1] [--port 5000] [--debug] [--data-dir ./data]
                      [--auth on|off] [--admin-token-file FILE]
                      [--rate-limit 10000] [--rate-limiter builtin|flask-limiter]
                      [--async-mode eventlet|threading]
                      [--fsync batch|always|off] [--journal-writer process|inline]
                      [--allow-empty] [--read-timeout 2.0] [--journal-check-interval 1.0]
                      [--symbols-config FILE]
                      [--cors-origins '*'] [--demo]
                      [--max-connections 10000] [--max-connections-per-client 256]
                      [--idle-timeout 30] [--header-timeout 10] [--body-timeout 30]
                      [--send-queue-bytes N] [--send-queue-bytes-per-ip N] [--handshake-limit N]
                      [--sessions-per-ip N] [--ping-interval S] [--ping-timeout S]
                      [--message-queue redis://HOST:PORT/DB [--queue-channel NAME]]
                      [--role engine|edge] [--proxy-hops N]
                      [--edge-fanout direct|queue] [--edge-stream-interval S]

One port serves REST (``api/rest.py``), Socket.IO (``api/market.py``: the
``/market`` data namespace and the ``/trade`` order-entry namespace) and the
browser page at ``/`` (``api/frontend.py``). The HTTP server's connection
caps, deadlines and refusals are ``api/httpserver.py``'s.

Scaling out (``Documentation/SCALING.md``): with ``--message-queue`` this
process (the engine role, the default) also publishes everything it publishes
on ``/market`` to the queue (``api/mq.py``); ``--role edge`` runs a market-data
edge instead (``api/edge.py``: no engine, no journal, a mirror fed by the
queue). Without ``--message-queue`` nothing changes and no Redis is needed.

``create_app(config) -> (app, socketio)``; the same objects are reachable as
``app.extensions["socketio"]`` and ``app.extensions["exchange"]``. Config keys
(all optional):

=================  ==============  ==================================================
key                default         meaning
=================  ==============  ==================================================
data_dir           ``./data``      state that survives restarts; ``audit.log`` lives here
auth               ``off``         ``on``: private requests need an API key (``api/auth.py``)
                                   and the engine trades with balances
                                   (``MatchingEngine(funds=True)``; ``api/funds.py``).
                                   The factory's default is ``off`` (tests, embedding);
                                   the command line's is ``on``
admin_token_file   None            the admin token's file; None: ``DATA_DIR/admin.token``
                                   (created 0600 at the first start)
rate_limit         10000           requests per minute per client (API key or IP); 0 = off
rate_limiter       ``builtin``     ``builtin`` (api/ratelimit.py) or ``flask-limiter``
async_mode         ``threading``   Socket.IO async mode (``main`` defaults to eventlet,
                                   after monkey-patching)
fsync              ``batch``       durability policy handed to ``storage.Store``
journal_writer     None            ``process`` or ``inline`` (``storage.Store``'s
                                   ``writer``); None: the policy's default
store              True            False: no durability; an object: use it as the store
allow_empty        False           start on a used data dir whose journal is gone
                                   (``storage.Store``; else ``JournalMissing``)
read_timeout       2.0             seconds a read waits for its state to be durable
                                   before answering 503 (``api.service``)
journal_check_interval 1.0         seconds between checks that the journal file is
                                   still there and whole (``Store.check_journal``);
                                   0 = off (the writers still check before each ack)
audit              True            False: no audit log
symbols            defaults        a list of ``SymbolSpec``
symbols_config     None            a JSON file of symbols (``engine.symbols.load_symbols``)
cors_origins       ``*``           CORS origins for REST and Socket.IO (str or list)
send_queue_bytes   4 MiB           bytes waiting for one Socket.IO client before it is
                                   disconnected as a slow consumer; 0 = unbounded
                                   (``api/sessions.py``)
send_queue_ip      32 MiB          the same for all sessions of one client IP together
                                   (the furthest behind is disconnected); 0 = unbounded
handshake_limit    600             new Engine.IO sessions per minute per client IP;
                                   0 = off
sessions_per_ip    256             open Engine.IO sessions per client IP; 0 = off
ping_interval      25              Engine.IO ping interval (s); a session that stops
ping_timeout       20              answering is closed ``ping_timeout`` s after a ping
engine             None            a ``MatchingEngine`` to use instead of a new one (its
                                   locks and its ``funds`` are the caller's choice; see
                                   ``symbol_lock_factory``)
message_queue      None            ``redis://HOST:PORT/DB``: publish the feed for edges
queue_channel      ``matchbook``   the Redis pub/sub channel (the same on every process)
proxy_hops         0               trusted proxies in front (nginx: 1): the client address
                                   (rate limits) is then read from ``X-Forwarded-For``
FRONTEND_DIR       -               passed to the frontend blueprint (tests)
=================  ==============  ==================================================

``close_app(app)`` stops the background writers and closes the store (final
snapshot); ``main`` calls it on SIGTERM/SIGINT.

eventlet: the monkey-patching must precede every import of flask, flask_socketio
and threading, so when this file runs as a script the very first lines scan
``sys.argv`` for ``--async-mode`` and patch before anything else. Everything else
is async-mode agnostic: only ``socketio.start_background_task``/``socketio.sleep``.
"""

if __name__ == "__main__":
    import os as _os
    import sys as _sys

    def _scan_async_mode(argv: list[str]) -> str:
        for i, arg in enumerate(argv):
            if arg == "--async-mode" and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith("--async-mode="):
                return arg.split("=", 1)[1]
        return "eventlet"

    if _scan_async_mode(_sys.argv[1:]) == "eventlet":
        import warnings

        # Known and documented (bugfix-only maintenance; see STACK.md): not news at every start.
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        import eventlet

        eventlet.monkey_patch()
    # Run as a script: the project root (the parent of api/) goes on sys.path.
    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    if _root not in _sys.path:
        _sys.path.insert(0, _root)

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_cors import CORS  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402

from api import accounts_rest, errors, frontend, httpserver, rest, trade_ws  # noqa: E402
from api.audit import Audit  # noqa: E402
from api.auth import ADMIN_TOKEN_FILE, Auth, first_run_text, load_or_create_token  # noqa: E402
from api.market import init_socketio  # noqa: E402
from api.parsing import MAX_BULK_BODY, SOCKET_JSON  # noqa: E402
from api.ratelimit import RateLimiter  # noqa: E402
from api.service import Exchange  # noqa: E402
from api.sessions import CONFIG_DEFAULTS as SESSION_DEFAULTS  # noqa: E402
from api.sessions import (  # noqa: E402
    DEFAULT_HANDSHAKE_LIMIT,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_BYTES_PER_IP,
    DEFAULT_MAX_SESSIONS_PER_IP,
    guard_from_config,
)
from api.sessions import config_from_args as session_config  # noqa: E402
from engine.matcher import MatchingEngine  # noqa: E402
from engine.symbols import load_symbols  # noqa: E402
from storage import Store, StoreError  # noqa: E402

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASYNC_MODES = ("eventlet", "threading")
DEFAULTS = {
    "data_dir": "./data",
    "auth": "off",  # the command line's default is "on" (parse_args)
    "admin_token_file": None,
    "rate_limit": 10_000,
    "rate_limiter": "builtin",
    "async_mode": "threading",
    "fsync": "batch",
    "journal_writer": None,
    "store": True,
    "allow_empty": False,
    "read_timeout": 2.0,
    "journal_check_interval": 1.0,
    "audit": True,
    "symbols": None,
    "symbols_config": None,
    "cors_origins": "*",
    "engine": None,
    **SESSION_DEFAULTS,
    "message_queue": None,
    "queue_channel": "matchbook",
    "proxy_hops": 0,
}


def symbol_lock_factory(async_mode: str):
    """The factory of the engine's per-symbol locks for ``async_mode``.

    threading: ``threading.RLock``. Requests run on OS threads, which the lock
    excludes from each other.

    eventlet: the C ``RLock`` of the unpatched ``_thread`` module. After
    monkey-patching, ``threading.RLock`` is eventlet's green lock, written in
    Python: two acquisitions per order (``Exchange._submit`` and
    ``engine.submit``), each with ``get_ident`` calls, were ~10% of the CPU of
    a bulk order. The C lock costs a few dozen nanoseconds, but **its owner is
    the OS thread**, and every green thread runs on the same one: a second
    green thread would "re-enter" a lock the first holds instead of waiting.
    What excludes green threads from each other is that eventlet never
    preempts: a green thread switches only when it yields to the hub (IO,
    ``sleep``, a contended green lock or event). So this is correct exactly
    while **no critical section under a symbol lock yields**, which holds
    today and must stay so:

    * ``engine`` (``submit``, ``cancel``, ``depth``, ``bbo``,
      ``recent_trades``, ``snapshot``): pure Python, no IO, no callbacks.
    * ``Exchange`` holds the lock around ``engine.submit``/``cancel`` and the
      store's ``log_submit``/``log_cancel`` (a ticket, the symbol's last
      ticket in a dict and a list append, no IO; ``wait``, which yields for group commit and waits for the journal
      writer process (or, inline, fsyncs in ``tpool``), is
      called after the lock is released), and around ``order_report`` in
      ``get_order`` (formatting only).
    * ``storage.Store.snapshot`` holds every symbol lock while it copies the
      engine and takes its own ``_mu``, which no green thread holds across a
      yield (``Condition.wait`` releases it), so it never waits there; the
      files are written after the locks are released.
    * ``api.auth.Auth``'s admin commands hold every symbol lock
      (``engine.all_locks()``) around the registry change and the store's
      ``log_command`` (a ticket and a list append); ``wait`` comes after.
    * ``api.market``'s publisher reads books through ``engine.depth``/``bbo``
      (under its own green lock, which is taken outside any symbol lock).
    * The read barrier (``Exchange._visible``, the publisher's durability
      gate) reads the symbol's ticket and may wait for the journal *after*
      the symbol lock is released, never under it.

    Any new code under ``engine.lock(symbol)`` must keep to this: no IO, no
    ``sleep``, no green lock or event that could be contended, no ``tpool``.
    ``tests/api/test_symbol_locks.py`` runs the order paths, the store with
    group commit and snapshots, and book reads in concurrent green threads and
    fails if one ever enters a critical section another holds.
    """
    if async_mode != "eventlet":
        return threading.RLock
    from eventlet import patcher

    return patcher.original("_thread").RLock


def _make_store(config: dict, data_dir: str, yield_fn):
    """The durability layer; None when disabled, or an injected object (tests)."""
    store = config["store"]
    if store is False or store is None:
        return None
    if store is not True:
        return store
    return Store(
        data_dir,
        fsync=config["fsync"],
        yield_fn=yield_fn,
        writer=config["journal_writer"],
        allow_empty=bool(config["allow_empty"]),
    )


def _watch_journal(store, sleep, interval: float) -> None:
    """The background check of the journal file (``Store.check_journal``):
    a journal deleted, replaced or truncated under an idle server is noticed
    within ``interval`` and halts trading (the writers also check their file
    before every acknowledgement, so none is given after it). Ends when the
    store closes or fails."""
    while store.serving:
        sleep(interval)
        if store.serving and not store.check_journal():
            return


class _GroupCommitYield:
    """The store's ``yield_fn``: the inline writer's group-commit leader yields so
    that concurrent requests journal their records into its batch before the
    fsync. (The writer process under eventlet does not use it: the first
    request with an unsent record yields once with ``sleep(0)`` and sends for
    everyone, see ``Store._green_wait``; records that arrive while the child
    fsyncs wait in its pipe and share its next fsync.)

    One ``sleep(0)`` lets the requests that were already runnable journal theirs;
    a request whose body arrived meanwhile needs another pass. So it yields again
    while the previous pass journaled records (``Exchange.journaled`` moved), at
    most ``max_passes`` times; a lone request yields once, as before. Every fsync
    saved is one ``tpool`` round trip less (~130 us of CPU on top of the fsync's
    own ~66 us here) and, flat out, one less moment with every connection idle.
    Measured (eventlet, wrk -c8 flat out on ``POST /order``, fsync batch, side by
    side): 6.6 -> 7.1 records per fsync (a fixed two passes gave 7.9 but costs a
    lone request a second pass).
    """

    def __init__(self, sleep, max_passes: int = 4) -> None:
        self.sleep = sleep
        self.max_passes = max_passes
        self.exchange: Exchange | None = None  # set once the exchange exists

    def __call__(self) -> None:
        sleep = self.sleep
        exchange = self.exchange
        if exchange is None:
            sleep(0)
            return
        seen = exchange.journaled
        for _ in range(self.max_passes):
            sleep(0)
            now = exchange.journaled
            if now == seen:
                return
            seen = now


def _cors(app: Flask, origins) -> None:
    """flask-cors for every request that carries an ``Origin`` header.

    A request without ``Origin`` is not a CORS request (curl, load generators,
    same-origin navigation), and browsers ignore ``Access-Control-*`` headers on
    it; flask-cors's after-request hook costs ~25 us per request (path regexes,
    eager debug-log formatting), so it is skipped for those.
    """
    CORS(app, origins=origins)
    hooks = app.after_request_funcs.get(None, [])
    for i, hook in enumerate(hooks):
        if getattr(hook, "__name__", "") == "cors_after_request":

            def cors_if_origin(response, _hook=hook):
                if "HTTP_ORIGIN" in request.environ:
                    return _hook(response)
                return response

            hooks[i] = cors_if_origin


def _rate_limiter(app: Flask, per_minute: int, kind: str, key_fn=None):
    """The per-client limit: ``builtin`` (``api/ratelimit.py``, the default) or
    ``flask-limiter`` (kept selectable to reproduce the cost measurement that made
    us replace it; see ``api/ratelimit.py``)."""
    if kind == "flask-limiter":
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address

        limiter = Limiter(
            (lambda: key_fn(request)) if key_fn is not None else get_remote_address,
            app=app,
            default_limits=[f"{per_minute} per minute"],
            storage_uri="memory://",
            strategy="fixed-window",
            headers_enabled=True,
        )
        app.extensions["rate_limiter"] = limiter
        return limiter
    if kind != "builtin":
        raise ValueError(f"unknown rate limiter {kind!r}")
    limiter = RateLimiter(per_minute, key_fn=key_fn)
    limiter.init_app(app)
    return limiter


def trust_proxies(app: Flask, hops: int) -> None:
    """Behind ``hops`` trusted reverse proxies (the cluster's nginx: 1), take the
    client's address from the last ``hops`` entries of ``X-Forwarded-For``, so
    that rate limits count per client, not per proxy. Outside the Socket.IO
    middleware, so handshakes see it too. Never without a proxy that sets the
    header: a client could then name any address."""
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)


class _LastResort:
    """WSGI guard outside Flask and the Socket.IO middleware: anything that still
    escapes becomes the contract's 500 envelope instead of a server's traceback page
    (eventlet's WSGI server sends tracebacks to clients by default)."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started = False

        def tracking_start_response(*args):
            nonlocal started
            started = True
            return start_response(*args)

        try:
            return self.wsgi_app(environ, tracking_start_response)
        except Exception:
            log.exception("unhandled error outside the Flask request handling")
            body = errors.json_response(errors.internal_error_envelope(), 500).get_data()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            # PEP 3333: a second start_response needs exc_info (and raises if headers went out).
            start_response("500 INTERNAL SERVER ERROR", headers, *((sys.exc_info(),) if started else ()))
            return [body]


def create_app(config: dict | None = None) -> tuple[Flask, SocketIO]:
    """Build the Flask app, its Socket.IO server and the exchange behind them.

    Recovers the engine from the store (``store.recover``) before returning, so the
    app serves the recovered state from its first request.
    """
    cfg = dict(DEFAULTS)
    cfg.update(config or {})
    if cfg["async_mode"] not in ASYNC_MODES:
        raise ValueError(f"async_mode must be one of {ASYNC_MODES}")
    data_dir = os.path.abspath(str(cfg["data_dir"]))
    os.makedirs(data_dir, exist_ok=True)

    engine = cfg["engine"]
    if engine is None:
        symbols = cfg["symbols"]
        if symbols is None and cfg["symbols_config"]:
            symbols = load_symbols(cfg["symbols_config"])
        # --auth on trades with balances (one lock over every symbol: see engine/matcher.py, "Funds");
        # --auth off is the original, keyless contract without them
        engine = MatchingEngine(
            symbols, lock_factory=symbol_lock_factory(cfg["async_mode"]), funds=cfg["auth"] == "on"
        )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BULK_BODY
    app.config["DATA_DIR"] = data_dir
    if "FRONTEND_DIR" in cfg:
        app.config["FRONTEND_DIR"] = cfg["FRONTEND_DIR"]
    app.json.sort_keys = False
    origins = cfg["cors_origins"]
    queue_options = {}
    if cfg["message_queue"]:
        from api.mq import engine_manager

        queue_options["client_manager"] = engine_manager(cfg["message_queue"], cfg["queue_channel"])
    socketio = SocketIO(
        app,
        async_mode=cfg["async_mode"],
        cors_allowed_origins=origins,
        json=SOCKET_JSON,
        logger=False,
        engineio_logger=False,
        ping_interval=cfg["ping_interval"],
        ping_timeout=cfg["ping_timeout"],
        **queue_options,
    )
    sessions = guard_from_config(socketio, cfg)

    group_commit_yield = _GroupCommitYield(socketio.sleep)
    store = _make_store(cfg, data_dir, group_commit_yield)
    if store is not None:
        summary = store.recover(engine)
        log.info("recovered from %s: %s", data_dir, summary)

    audit = Audit(os.path.join(data_dir, "audit.log")) if cfg["audit"] else None
    exchange = Exchange(engine, store=store, audit=audit, read_timeout=float(cfg["read_timeout"]))
    exchange.index.rebuild(engine)
    token_path = cfg["admin_token_file"] or os.path.join(data_dir, ADMIN_TOKEN_FILE)
    auth = Auth(
        engine, mode=cfg["auth"], admin_token_hash=load_or_create_token(token_path), store=store, audit=audit
    )
    auth.token_path = os.path.abspath(token_path)
    exchange.auth = auth
    group_commit_yield.exchange = exchange
    app.extensions["exchange"] = exchange
    app.extensions["store"] = store
    app.extensions["audit"] = audit
    app.extensions["auth"] = auth

    errors.register(app)
    _cors(app, origins)
    limiter = None
    if cfg["rate_limit"]:
        limiter = _rate_limiter(app, int(cfg["rate_limit"]), cfg["rate_limiter"], auth.rate_key)
    rest.register(app)
    accounts_rest.register(app)
    app.register_blueprint(frontend.bp)

    exchange.publisher = init_socketio(socketio, exchange, sessions=sessions, auth=auth)
    app.extensions["sessions"] = sessions
    if queue_options:
        from api.mq import attach_engine

        exchange.publisher = attach_engine(
            socketio, exchange, exchange.publisher, queue_options["client_manager"]
        )
    if limiter is not None:
        # /trade commands share the REST budget of their client address (api/trade_ws.py);
        # with flask-limiter (kept for a cost comparison only) they get a builtin one
        trade_ws.limit_commands(
            socketio, limiter if isinstance(limiter, RateLimiter) else RateLimiter(int(cfg["rate_limit"]))
        )
    app.wsgi_app = sessions.wsgi(app.wsgi_app)
    # outside the session guard, so that its per-address limits see the client behind the proxy
    trust_proxies(app, int(cfg["proxy_hops"]))
    # Good-till-time orders that expired while the server was down are expired
    # now, before any new command; later ones by the expiry task.
    expired = exchange.expire_due()
    if expired:
        log.info("expired %d good-till-time orders whose time passed while the server was down", len(expired))
    exchange.start_expiry_task = lambda: socketio.start_background_task(exchange.run_expiries, socketio.sleep)
    if exchange.next_expiry() is not None:
        exchange._ensure_expiry_task()
    app.wsgi_app = _LastResort(app.wsgi_app)
    if audit is not None:
        audit.start(socketio.start_background_task, socketio.sleep)
    interval = float(cfg["journal_check_interval"])
    if interval > 0 and hasattr(store, "check_journal"):
        socketio.start_background_task(_watch_journal, store, socketio.sleep, interval)
    return app, socketio


def close_app(app: Flask) -> None:
    """Stop background writing and close the store (its final snapshot). Idempotent."""
    ext = app.extensions
    if ext.get("closed"):
        return
    ext["closed"] = True
    ext["exchange"].closed = True  # ends the expiry task
    audit = ext.get("audit")
    if audit is not None:
        audit.close()
    store = ext.get("store")
    if store is not None:
        try:
            store.close(ext["exchange"].engine)
        except Exception:
            log.exception("closing the store failed")
    publisher = ext["exchange"].publisher
    close = getattr(publisher, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing the publisher failed")


# -- command line --------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="api/app.py", description="Matching engine service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--debug", action="store_true", help="verbose logs (never tracebacks in responses)")
    p.add_argument("--data-dir", default="./data")
    p.add_argument(
        "--auth",
        choices=("on", "off"),
        default="on",
        help="on: trading needs an API key (X-API-Key); off: no keys, one shared account",
    )
    p.add_argument(
        "--admin-token-file",
        default=None,
        help="the admin token's file (default DATA_DIR/admin.token; created 0600 if missing)",
    )
    p.add_argument(
        "--rate-limit", type=int, default=10_000, help="requests/minute per client (API key or IP); 0 = off"
    )
    p.add_argument(
        "--rate-limiter",
        choices=("builtin", "flask-limiter"),
        default="builtin",
        help="implementation of --rate-limit (flask-limiter: +60-90%% server CPU per request here)",
    )
    p.add_argument("--async-mode", choices=ASYNC_MODES, default="eventlet")
    p.add_argument("--fsync", choices=("batch", "always", "off"), default="batch")
    p.add_argument(
        "--journal-writer",
        choices=("process", "inline"),
        default=None,
        help="who chains, writes and fsyncs the journal (default: a child process for batch/always, inline for off)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="start even though the data dir was used before and its journal is gone (an empty market)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=2.0,
        help="seconds a read waits for the state it shows to be durable before answering 503",
    )
    p.add_argument(
        "--journal-check-interval",
        type=float,
        default=1.0,
        help="seconds between checks that the journal file is still there and whole; 0 = off",
    )
    p.add_argument("--symbols-config", default=None, help="JSON file of symbols")
    p.add_argument("--cors-origins", default="*", help="'*' or a comma-separated list of origins")
    p.add_argument("--demo", action="store_true", help="also run tools/demo_market.py against this server")
    p.add_argument(
        "--send-queue-bytes",
        type=int,
        default=DEFAULT_MAX_QUEUE_BYTES,
        help="bytes of events waiting for one Socket.IO client before it is disconnected as a slow "
        "consumer (default %(default)s; 0 = unbounded)",
    )
    p.add_argument(
        "--send-queue-bytes-per-ip",
        type=int,
        default=DEFAULT_MAX_QUEUE_BYTES_PER_IP,
        help="the same for all Socket.IO clients of one IP together; the one furthest behind is "
        "disconnected (default %(default)s; 0 = unbounded)",
    )
    p.add_argument(
        "--handshake-limit",
        type=int,
        default=DEFAULT_HANDSHAKE_LIMIT,
        help="new Socket.IO sessions per minute per client IP (default %(default)s; 0 = off)",
    )
    p.add_argument(
        "--sessions-per-ip",
        type=int,
        default=DEFAULT_MAX_SESSIONS_PER_IP,
        help="open Socket.IO sessions per client IP (default %(default)s; 0 = off)",
    )
    p.add_argument("--ping-interval", type=float, default=25.0, help="Engine.IO ping interval, s")
    p.add_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        help="s after a ping before an unresponsive (or abandoned) session is closed",
    )
    p.add_argument(
        "--role",
        choices=("engine", "edge"),
        default="engine",
        help="edge: serve market data and public reads from the message queue (no engine, no journal)",
    )
    p.add_argument(
        "--edge-fanout",
        choices=("direct", "queue"),
        default="direct",
        help="an edge's writes to its WebSocket clients: one send per client per pass (direct, "
        "api/fanout.py) or Engine.IO's writer task for every packet (queue: for comparison)",
    )
    p.add_argument(
        "--edge-stream-interval",
        type=float,
        default=0.01,
        metavar="SECONDS",
        help="an edge's passes for trades and order events: at most this apart (default 0.01; "
        "its book rooms keep their own interval, up to 0.05)",
    )
    p.add_argument(
        "--message-queue",
        default=None,
        metavar="redis://HOST:PORT/DB",
        help="share market data with edge processes through this Redis (never on a public interface)",
    )
    p.add_argument(
        "--queue-channel", default="matchbook", help="the Redis channel (the same on every process)"
    )
    p.add_argument(
        "--proxy-hops",
        type=int,
        default=0,
        help="trusted reverse proxies in front (nginx: 1): client addresses from X-Forwarded-For",
    )
    httpserver.add_arguments(p)
    args = p.parse_args(argv)
    if args.rate_limit < 0:
        p.error("--rate-limit must be >= 0")
    for name in ("send_queue_bytes", "send_queue_bytes_per_ip", "handshake_limit", "sessions_per_ip"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.ping_interval < 1 or args.ping_timeout <= 0:
        p.error("--ping-interval must be >= 1 (Engine.IO announces whole seconds), --ping-timeout > 0")
    if args.proxy_hops < 0:
        p.error("--proxy-hops must be >= 0")
    if args.message_queue and not args.message_queue.startswith(("redis://", "rediss://", "unix://")):
        p.error("--message-queue must be a redis://HOST:PORT/DB, rediss:// or unix:// URL")
    if args.role == "edge" and not args.message_queue:
        p.error("--role edge needs --message-queue redis://HOST:PORT/DB")
    if args.role == "edge" and args.demo:
        p.error("--demo runs against the engine, not an edge")
    args.limits = httpserver.limits_from_args(p, args)
    return args


GC_YOUNG_THRESHOLD = 20_000


def configure_gc() -> None:
    """Collect the young generation every ``GC_YOUNG_THRESHOLD`` container
    allocations instead of CPython's 700 (older generations keep their ratios).

    A bulk request allocates several hundred dicts and lists (the parsed body,
    the reports) that reference counting frees anyway, so at 700 the cyclic
    collector ran about once per request and reached the old generations,
    where the long-lived state sits, every few dozen requests. The engine's
    many objects (orders, trades, results) are ``gc=False`` structs, and
    little here makes reference cycles, so the young generation holds little
    garbage: collecting it rarely costs at most a few MB. Measured
    (``tests/api/bench_wsgi.py bulk --batch 100 --mix``, ``gc.callbacks``):
    the collector's share of the CPU fell from ~15% to ~3%. Called by
    ``main`` (a process-wide setting: not the application factory's
    business)."""
    _young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        # One line per HTTP request costs more than the request itself.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


class _Demo:
    """``tools/demo_market.py --url URL`` as a child process, started once the
    server answers and stopped (by its pid) with the server. ``extra``: more
    arguments (with ``--auth on``, the admin token's file, from which the demo
    opens the accounts it trades as)."""

    def __init__(self, socketio: SocketIO, host: str, port: int, extra: list[str] | None = None) -> None:
        self.extra = list(extra or [])
        self.socketio = socketio
        self.connect_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.stopped = False

    def start(self) -> None:
        self.socketio.start_background_task(self._run)

    def _run(self) -> None:
        script = os.path.join(ROOT, "tools", "demo_market.py")
        if not os.path.exists(script):
            log.warning("--demo: %s does not exist; no simulated market", script)
            return
        deadline = time.monotonic() + 30
        while not self.stopped and time.monotonic() < deadline:
            try:
                socket.create_connection((self.connect_host, self.port), timeout=1).close()
                break
            except OSError:
                self.socketio.sleep(0.2)
        if self.stopped:
            return
        url = f"http://{self.connect_host}:{self.port}"
        self.proc = subprocess.Popen([sys.executable, script, "--url", url, *self.extra], cwd=ROOT)
        log.info("--demo: started %s (pid %d)", script, self.proc.pid)

    def running(self) -> bool:
        return not self.stopped and self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.stopped = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _first_run(app: Flask, args: argparse.Namespace) -> None:
    """With ``--auth on``: on a data dir without accounts, open the demo account
    (its key goes to ``DATA_DIR/demo.key``, 0600), and print to the terminal --
    not to the log -- how to trade with a key. Neither key nor token is printed."""
    auth = app.extensions["auth"]
    if not auth.on:
        return
    data_dir = app.config["DATA_DIR"]
    fresh = len(auth.registry) == 0
    key_path = auth.first_run(data_dir)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
    created = fresh and key_path is not None
    text = first_run_text(
        f"http://{host}:{args.port}",
        key_path,
        auth.token_path,
        created,
        auth.demo_deposits() if created else None,
    )
    print(text, flush=True)


def _stop_then_resignal(demo: _Demo, signum: int) -> None:
    demo.stop()
    os.kill(os.getpid(), signum)


def serve(
    app: Flask,
    socketio: SocketIO,
    host: str,
    port: int,
    *,
    log_output: bool = False,
    limits: httpserver.Limits | None = None,
) -> None:
    """Serve REST, Socket.IO and the page on one port until interrupted.

    Both modes run ``api/httpserver.py``'s connection caps, deadlines and
    envelope refusals (``limits``, default ``httpserver.Limits()``).
    threading: ``socketio.run`` (Werkzeug), with TCP_NODELAY on each connection.
    eventlet: what ``socketio.run`` does, plus settings it cannot pass on:
    ``TCP_NODELAY`` on the listening socket (inherited by accepted ones) --
    without it a response larger than ~16 KB (a bulk answer) waits ~40 ms for
    the client's delayed ACK (Nagle) -- a listen backlog for bursts of
    connections, and ``debug=False`` for eventlet's WSGI server, which
    otherwise sends tracebacks to clients on a 500.
    Neither mode runs Flask's debugger or reloader.
    """
    limits = limits or httpserver.Limits()
    if socketio.async_mode == "eventlet":
        import eventlet
        import eventlet.green.socket

        family, _, _, _, address = eventlet.green.socket.getaddrinfo(host, port)[0]
        # reuse_port=False: eventlet shares ports by default, so a second server on a
        # busy port would start silently and split the clients between two exchanges
        listener = eventlet.listen(address, family, backlog=httpserver.LISTEN_BACKLOG, reuse_port=False)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        httpserver.serve_eventlet(listener, app, limits, log_output=log_output)
        return
    handler, _limits = httpserver.werkzeug_handler(limits, log_output=log_output)
    socketio.run(
        app,
        host=host,
        port=port,
        debug=False,  # Flask debug mode would add werkzeug's traceback pages
        use_reloader=False,
        log_output=log_output,
        allow_unsafe_werkzeug=True,
        request_handler=handler,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except StoreError as e:  # the data dir cannot be served (JournalMissing, CorruptJournal...)
        log.critical("cannot start: %s", e)
        return 2


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    configure_logging(args.debug)
    configure_gc()
    if args.role == "edge":
        return _main_edge(args)
    app, socketio = create_app(
        {
            "data_dir": args.data_dir,
            "auth": args.auth,
            "admin_token_file": args.admin_token_file,
            "rate_limit": args.rate_limit,
            "rate_limiter": args.rate_limiter,
            "async_mode": args.async_mode,
            "fsync": args.fsync,
            "journal_writer": args.journal_writer,
            "allow_empty": args.allow_empty,
            "read_timeout": args.read_timeout,
            "journal_check_interval": args.journal_check_interval,
            "symbols_config": args.symbols_config,
            **session_config(args),
            "message_queue": args.message_queue,
            "queue_channel": args.queue_channel,
            "proxy_hops": args.proxy_hops,
            "cors_origins": "*"
            if args.cors_origins.strip() == "*"
            else [o.strip() for o in args.cors_origins.split(",") if o.strip()],
        }
    )
    auth = app.extensions["auth"]
    demo_args = ["--admin-token-file", auth.token_path] if auth.on else []
    demo = _Demo(socketio, args.host, args.port, demo_args) if args.demo else None
    _first_run(app, args)

    def on_signal(signum, frame):
        if demo is not None and demo.running():
            # Stop the demo while the server still answers, so that it can cancel
            # its quotes; then the same signal again stops the server. A signal
            # handler must not block (under eventlet it may run in the hub).
            socketio.start_background_task(_stop_then_resignal, demo, signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if demo is not None:
        demo.start()
    log.info(
        "serving on http://%s:%d (async_mode=%s, data_dir=%s, rate_limit=%s/min, auth=%s)",
        args.host,
        args.port,
        args.async_mode,
        os.path.abspath(args.data_dir),
        args.rate_limit or "off",
        args.auth,
    )
    status = 0
    try:
        serve(app, socketio, args.host, args.port, log_output=args.debug, limits=args.limits)
    except KeyboardInterrupt:
        pass
    except OSError as e:  # typically: the port is taken
        log.error("cannot serve on %s:%d: %s", args.host, args.port, e.strerror or e)
        status = 1
    finally:
        log.info("shutting down")
        if demo is not None:
            demo.stop()
        close_app(app)
        log.info("stopped")
    return status


def redact_url(url: str | None) -> str | None:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``: a queue
    password never goes to a log."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _main_edge(args: argparse.Namespace) -> int:
    """``--role edge``: serve until SIGTERM/SIGINT (``api/edge.py``)."""
    from api.edge import close_edge_app, create_edge_app

    app, socketio = create_edge_app(
        {
            "message_queue": args.message_queue,
            "queue_channel": args.queue_channel,
            "async_mode": args.async_mode,
            "symbols_config": args.symbols_config,
            "rate_limit": args.rate_limit,
            "rate_limiter": args.rate_limiter,
            "proxy_hops": args.proxy_hops,
            "direct_fanout": args.edge_fanout == "direct",
            "stream_interval": args.edge_stream_interval,
            **session_config(args),
            "cors_origins": "*"
            if args.cors_origins.strip() == "*"
            else [o.strip() for o in args.cors_origins.split(",") if o.strip()],
        }
    )

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "edge serving on http://%s:%d (queue %s, channel %s)",
        args.host,
        args.port,
        redact_url(args.message_queue),
        args.queue_channel,
    )
    status = 0
    try:
        serve(app, socketio, args.host, args.port, log_output=args.debug, limits=args.limits)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        log.error("cannot serve on %s:%d: %s", args.host, args.port, e.strerror or e)
        status = 1
    finally:
        close_edge_app(app)
        log.info("edge stopped")
    return status


if __name__ == "__main__":
    from api.app import main as _main  # the importable module, so there is one copy of it

    sys.exit(_main())
