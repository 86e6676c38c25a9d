"""The audit log: one JSON line per order, trade, cancel and rejection, in
``<data-dir>/audit.log`` (rotated by size, ``RotatingFileHandler``).

Off the order path: recording is a ``deque.append`` of the engine's records
(no formatting, no IO); a background task (``socketio.start_background_task``
in the server, so it is async-mode agnostic) wakes every ``interval`` seconds,
formats what accumulated and writes it as one block. ``flush()`` does the same
synchronously (tests, shutdown). Formatting later is safe because it reads only
the immutable parts of an ``Order`` and the snapshot fields of the result
(``SubmitResult.status/filled/notional``, ``Trade.maker_filled``).

Line shapes (``ts`` is the event's time, ISO 8601 UTC; amounts are decimal strings)::

    {"ts","event":"order","order_id","client_order_id","symbol","side","order_type",
     "price","quantity","status","filled_quantity","average_price","sequence"}
    {"ts","event":"trade","trade_id","symbol","price","quantity","aggressor_side",
     "maker_order_id","taker_order_id","maker_fee","taker_fee"}
    {"ts","event":"cancel","order_id","symbol","side","price","remaining_quantity","sequence"}
    {"ts","event":"rejection","request":"order"|"cancel","code","message","field","symbol","body"}
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from logging.handlers import RotatingFileHandler

from api.formatting import iso

log = logging.getLogger(__name__)

_BODY_FIELDS = ("symbol", "side", "order_type", "quantity", "price", "client_order_id", "order_id")


class Audit:
    """Buffered, rotated JSON-lines audit trail."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backup_count: int = 5,
        interval: float = 0.05,
    ) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.interval = interval
        self._handler = RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._pending: deque = deque()
        self._write_lock = threading.Lock()
        self._running = False
        self._closed = False
        self.lines_written = 0

    # -- recording (hot path: O(1), no IO) ------------------------------------
    def submit(self, spec, result) -> None:
        self._pending.append((0, spec, result))

    def cancel(self, spec, result) -> None:
        self._pending.append((1, spec, result))

    def rejection(self, request: str, body, error) -> None:
        self._pending.append((2, request, (body, error, time.time_ns())))

    # -- writing ----------------------------------------------------------------
    def start(self, start_task, sleep) -> None:
        """Run the writer as a background task (``socketio.start_background_task``)."""
        if self._running or self._closed:
            return
        self._running = True
        start_task(self._run, sleep)

    def _run(self, sleep) -> None:
        while self._running:
            sleep(self.interval)
            try:
                self.flush()
            except Exception:  # keep the writer alive; the log says why
                log.exception("audit log write failed")

    def flush(self) -> int:
        """Format and write everything recorded so far. Returns the line count."""
        with self._write_lock:
            pending = self._pending
            if not pending:
                return 0
            lines = []
            popleft = pending.popleft
            while pending:
                kind, a, b = popleft()
                if kind == 0:
                    _submit_lines(lines, a, b)
                elif kind == 1:
                    lines.append(_cancel_line(a, b))
                else:
                    lines.append(_rejection_line(a, *b))
            # One record per batch: one write and one flush, one rollover check.
            record = logging.LogRecord("audit", logging.INFO, __file__, 0, "\n".join(lines), None, None)
            self._handler.handle(record)
            self.lines_written += len(lines)
            return len(lines)

    def close(self) -> None:
        """Stop the writer, write what is left, close the file."""
        self._running = False
        self._closed = True
        self.flush()
        self._handler.close()


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


def _submit_lines(lines: list, spec, result) -> None:
    order = result.order
    lines.append(
        _dumps(
            {
                "ts": iso(order.timestamp),
                "event": "order",
                "order_id": str(order.order_id),
                "client_order_id": order.client_order_id,
                "symbol": order.symbol,
                "side": order.side.value,
                "order_type": order.order_type.value,
                "price": spec.format_price(order.price),
                "quantity": spec.format_quantity(order.quantity),
                "status": result.status.value,
                "filled_quantity": spec.format_quantity(result.filled),
                "average_price": spec.format_average_price(result.notional, result.filled),
                "sequence": result.sequence,
            }
        )
    )
    for t in result.trades:
        lines.append(
            _dumps(
                {
                    "ts": iso(t.timestamp),
                    "event": "trade",
                    "trade_id": str(t.trade_id),
                    "symbol": t.symbol,
                    "price": spec.format_price(t.price),
                    "quantity": spec.format_quantity(t.quantity),
                    "aggressor_side": t.aggressor_side.value,
                    "maker_order_id": str(t.maker.order_id),
                    "taker_order_id": str(t.taker.order_id),
                    "maker_fee": spec.format_fee(t.maker_fee),
                    "taker_fee": spec.format_fee(t.taker_fee),
                }
            )
        )


def _cancel_line(spec, result) -> str:
    order = result.order
    return _dumps(
        {
            "ts": iso(result.timestamp),
            "event": "cancel",
            "order_id": str(order.order_id),
            "symbol": order.symbol,
            "side": order.side.value,
            "price": spec.format_price(order.price),
            "remaining_quantity": spec.format_quantity(order.quantity - order.filled),
            "sequence": result.sequence,
        }
    )


def _rejection_line(request: str, body, error, ts: int) -> str:
    fields = {}
    if isinstance(body, dict):
        for name in _BODY_FIELDS:
            if name in body:
                fields[name] = str(body[name])[:80]
    return _dumps(
        {
            "ts": iso(ts),
            "event": "rejection",
            "request": request,
            "code": getattr(error, "code", "INTERNAL_ERROR"),
            "message": getattr(error, "message", str(error))[:200],
            "field": getattr(error, "field", None),
            "symbol": fields.get("symbol"),
            "body": fields,
        }
    )
