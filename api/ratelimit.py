"""Per-client request rate limit: a fixed one-minute window per client.

The client is what ``key_fn(request)`` names: by default its IP address; the
app factory passes ``api.auth.Auth.rate_key``, which counts a request with a
valid API key against that key and any other against its address (an invalid
key is not a way out of the address's limit).

Why not Flask-Limiter: measured through real eventlet servers side by side
(``tests/api/bench_rest.py``: limit off / this limiter / Flask-Limiter 4.1 with
in-memory storage, limits never reached, interleaved rounds), Flask-Limiter cost
150-250 us of server CPU per request (+57% on ``POST /order``, +94% on
``GET /health``; req/s -40% to -50%), far above the ~10% we allow. This limiter
is a dict lookup and an increment under a lock: within the noise of that run.

Semantics
    Windows are aligned to the wall clock (``floor(now / 60)``); every client's
    count starts at zero when a new window begins, so at most ``2 * limit``
    requests can pass in any 60 s span straddling a boundary (the usual
    fixed-window trade-off). Memory: one entry per client seen in the current
    window (the table is emptied when the window turns).

Every answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (epoch seconds when the window ends); a refused request
gets ``429 RATE_LIMITED`` with ``Retry-After`` (seconds). Only Flask routes
count (REST and the page), not Socket.IO traffic.
"""

from __future__ import annotations

import math
import threading
import time

from flask import Flask, request
from werkzeug.exceptions import TooManyRequests

_ENVIRON_KEY = "matching.ratelimit"


class RateLimiter:
    """``limit`` requests per ``window`` seconds per client (``key_fn``)."""

    def __init__(self, limit: int, window: int = 60, clock=time.time, key_fn=None) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive (0 means: do not install a limiter)")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._key_fn = key_fn or _remote_addr
        self._lock = threading.Lock()
        self._current = -1
        self._counts: dict[str, int] = {}
        self.refused = 0

    def hit(self, key: str) -> tuple[bool, int, int]:
        """Count one request of ``key``: ``(allowed, remaining, reset_epoch)``. O(1)."""
        now = self._clock()
        current = int(now // self.window)
        with self._lock:
            if current != self._current:
                self._current = current
                self._counts = {}
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        reset = (current + 1) * self.window
        if count > self.limit:
            self.refused += 1
            return False, 0, reset
        return True, self.limit - count, reset

    def init_app(self, app: Flask) -> None:
        app.before_request(self._before)
        app.after_request(self._after)
        app.extensions["rate_limiter"] = self

    def _before(self) -> None:
        allowed, remaining, reset = self.hit(self._key_fn(request))
        request.environ[_ENVIRON_KEY] = (remaining, reset)
        if not allowed:
            retry = max(1, math.ceil(reset - self._clock()))
            raise TooManyRequests(f"{self.limit} per {self.window} seconds", retry_after=retry)

    def _after(self, response):
        state = request.environ.get(_ENVIRON_KEY)
        if state is not None:
            headers = response.headers
            headers["X-RateLimit-Limit"] = str(self.limit)
            headers["X-RateLimit-Remaining"] = str(state[0])
            headers["X-RateLimit-Reset"] = str(state[1])
        return response


def _remote_addr(request) -> str:
    return request.remote_addr or "-"
