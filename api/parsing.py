"""Request parsing and validation at the edge: bytes -> exact JSON -> engine ints.

Everything a client can get wrong is refused here with an ``EngineError``
naming the field, before the engine (and its lock) is touched, so an invalid
request changes nothing.

JSON is parsed with ``msgspec`` (``float_hook=Decimal``, ~3x faster than the
standard library): a JSON number keeps its exact text and never passes through
a binary float. ``NaN``/``Infinity``/``-Infinity`` are not JSON and are refused
(``INVALID_JSON``), as are lone UTF-16 surrogate escapes (``"\\ud800"``) and
nesting deeper than the parser allows. An integer too long for ``msgspec``
(over 4300 digits) makes the body be parsed again by the standard library, with
the same results as ``msgspec`` everywhere else (integers stay ``int`` up to
Python's 4300-digit limit, longer ones become ``Decimal`` and are refused by
their field check; surrogates and constants are refused as above).

Socket.IO payloads go through the very same function (``SOCKET_JSON``), so an
event answers exactly as its REST twin: a payload that is not valid JSON, or
larger than REST's body limit for that event (``order``/``cancel`` 64 KiB,
``orders`` 1 MiB), is handed to the event handler as a ``BadPayload`` carrying
REST's ``INVALID_JSON`` or ``PAYLOAD_TOO_LARGE`` error, instead of making
python-socketio drop the packet without an acknowledgement.

Field rules of an order (``POST /order``, each element of ``POST /orders``,
Socket.IO ``order``), checked in this order:

=================  ===================================================================
symbol             required string, a configured symbol (else ``UNKNOWN_SYMBOL`` 400)
side               required, ``"buy"`` or ``"sell"``
order_type         required, ``"market"``, ``"limit"``, ``"ioc"``, ``"fok"``,
                   ``"stop_loss"``, ``"stop_limit"``, ``"take_profit"`` or
                   ``"take_profit_limit"``
quantity           required (but see quote_quantity), decimal string or JSON number,
                   positive multiple of lot_size
price              required for limit/ioc/fok/stop_limit/take_profit_limit, positive
                   multiple of tick_size; must be absent or null for market,
                   stop_loss and take_profit
stop_price         required for the four stop kinds, refused on the others; a
                   positive multiple of tick_size
display_quantity   limit only: a positive multiple of lot_size below quantity
post_only          limit only (``false``/null accepted on any type): a JSON boolean
expire_time        limit, stop_limit, take_profit_limit: ISO 8601 UTC
                   (``2026-12-04T15:00:00Z``, up to 9 fraction digits, ``Z`` or
                   ``+00:00``), in the future
quote_quantity     market only, instead of quantity (exactly one of them): a
                   positive multiple of tick_size * lot_size (the notional's grid)
client_order_id    optional string, at most 64 printable characters, or null
stp                optional self-trade prevention: ``"cancel_taker"`` (default),
                   ``"cancel_maker"``, ``"cancel_both"`` or ``"none"``; applies only
                   to orders with an account (``--auth on``)
=================  ===================================================================
Unknown extra fields are ignored. An order with none of the new fields and
one of the four original types takes the fast path; the others
``_parse_other``. Amend bodies: ``parse_amend``.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import msgspec

from api.errors import BadRequest, InvalidJson, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from engine.errors import EngineError, OrderNotFound, UnknownSymbol, ValidationError
from engine.matcher import MatchingEngine
from engine.order import (
    BUY,
    FOK,
    IOC,
    LIMIT,
    LIMIT_STOP_TYPES,
    MARKET,
    SELL,
    STOP_LIMIT,
    STOP_LOSS,
    STOP_TYPES,
    STP_CANCEL_TAKER,
    TAKE_PROFIT,
    TAKE_PROFIT_LIMIT,
    OrderType,
    SelfTradePrevention,
    Side,
)
from engine.symbols import MAX_UNITS, SymbolSpec, parse_decimal

MAX_ORDER_BODY = 64 * 1024  # bytes, POST /order and POST /cancel
MAX_BULK_BODY = 1024 * 1024  # bytes, POST /orders
MAX_CLIENT_ORDER_ID = 64
_MAX_ID_DIGITS = 19  # ids are < 2**63

_SIDES = {"buy": BUY, "sell": SELL}
_ORDER_TYPES = {"market": MARKET, "limit": LIMIT, "ioc": IOC, "fok": FOK}
_STP = {m.value: m for m in SelfTradePrevention}
_OTHER_TYPES = {
    "stop_loss": STOP_LOSS,
    "stop_limit": STOP_LIMIT,
    "take_profit": TAKE_PROFIT,
    "take_profit_limit": TAKE_PROFIT_LIMIT,
}
# The fields of the order types beyond the four: a body with any of them takes _parse_other.
_OTHER_FIELDS = frozenset(("stop_price", "display_quantity", "post_only", "expire_time", "quote_quantity"))
_ISO_UTC = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:00)")


# -- JSON --------------------------------------------------------------------
def _refuse_constant(name: str):
    raise InvalidJson(f"{name} is not valid JSON; send numbers as decimal strings")


def _exact_int(text: str):
    # What msgspec gives, beyond its range: an int while Python can convert the
    # text (4300 digits), else a Decimal that the field checks refuse.
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


_fast_decoder = msgspec.json.Decoder(float_hook=Decimal)
_slow_decoder = json.JSONDecoder(parse_float=Decimal, parse_int=_exact_int, parse_constant=_refuse_constant)
_encode = msgspec.json.encode


def loads_exact(text: str | bytes):
    """Parse JSON exactly (numbers -> ``Decimal``/``int``): REST bodies and
    Socket.IO payloads alike.

    Raises:
        InvalidJson: malformed, not UTF-8, a lone surrogate escape, too deeply
            nested, or NaN/Infinity.
    """
    try:
        return _fast_decoder.decode(text)
    except msgspec.ValidationError:
        pass  # an integer beyond msgspec's range: the slow, exact path below
    except msgspec.DecodeError as e:  # (the base class of ValidationError)
        raise InvalidJson(f"request body is not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise InvalidJson("request body is not valid UTF-8") from None
    except RecursionError:
        raise InvalidJson("request body is nested too deeply") from None
    try:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        value = _slow_decoder.decode(text)
    except InvalidJson:
        raise
    except UnicodeDecodeError:
        raise InvalidJson("request body is not valid UTF-8") from None
    except RecursionError:
        raise InvalidJson("request body is nested too deeply") from None
    except ValueError:
        raise InvalidJson("request body is not valid JSON") from None
    try:
        # The standard library accepts a lone surrogate escape, msgspec does not:
        # refuse it here too (it could not be answered or logged as UTF-8 either).
        # Rare path (a >4300-digit integer), so the cost of encoding is no matter.
        _encode(value)
    except UnicodeEncodeError:
        raise InvalidJson("request body is not valid JSON (a lone UTF-16 surrogate escape)") from None
    except RecursionError:
        raise InvalidJson("request body is nested too deeply") from None
    return value


class BadPayload:
    """A Socket.IO event payload that REST would refuse before parsing it as an
    order, as its handler receives it: ``error`` is REST's ``InvalidJson`` or
    ``PayloadTooLarge`` for the same text."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidJson | PayloadTooLarge) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"BadPayload({self.error.message!r})"


# The event name at the head of a Socket.IO event array: ``["name", ...``.
_EVENT_HEAD = re.compile(r'\s*\[\s*("(?:[^"\\]|\\.){0,200}")\s*[,\]]')


# The REST body limit of each Socket.IO order-entry event (``api/trade_ws.py``).
_EVENT_BODY_LIMITS = {"order": MAX_ORDER_BODY, "cancel": MAX_ORDER_BODY, "orders": MAX_BULK_BODY}
_SMALLEST_LIMIT = MAX_ORDER_BODY // 4  # no text of fewer characters has more UTF-8 bytes


def _event_head(text: str) -> tuple[str | None, int]:
    """The event name of a Socket.IO event array and where its arguments begin,
    or ``(None, 0)``."""
    head = _EVENT_HEAD.match(text)
    if head is None:
        return None, 0
    try:
        name = json.loads(head.group(1))
        name.encode("utf-8")
    except ValueError:  # (UnicodeEncodeError included)
        return None, 0
    return name, head.end()


class SocketJSON:
    """The JSON codec handed to Socket.IO (``SocketIO(json=SOCKET_JSON)``): exact
    numbers in (``loads_exact``, as REST), standard compact text out."""

    @staticmethod
    def loads(text, *args, **kwargs):
        """Decode a packet's JSON part. An event whose arguments are not valid
        JSON (too deep, NaN, a lone surrogate, malformed) becomes
        ``[name, BadPayload(error)]``, so that its handler answers the error
        through the acknowledgement; anything else invalid raises ``ValueError``
        (python-socketio drops the packet: there is no event to answer)."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8", "replace")
        if len(text) > _SMALLEST_LIMIT:
            # REST's size limits, before parsing (the arguments' UTF-8 length;
            # a payload this large is rare, so encoding it to measure is no matter)
            name, head_end = _event_head(text)
            limit = _EVENT_BODY_LIMITS.get(name)
            if limit is not None:
                size = len(text.encode("utf-8", "surrogatepass")) - head_end - 1
                if size > limit:
                    return [
                        name,
                        BadPayload(
                            PayloadTooLarge(f"request body is {size} bytes; the limit here is {limit}")
                        ),
                    ]
        try:
            return loads_exact(text)
        except InvalidJson as e:
            name, head_end = _event_head(text)
            if name is None:
                raise ValueError(f"Socket.IO packet is not valid JSON: {e.message}") from None
            error = e
            try:  # REST's words for the arguments alone (positions count from their start)
                loads_exact(text[head_end : len(text.rstrip()) - 1])
            except InvalidJson as own:
                error = own
            return [name, BadPayload(error)]

    @staticmethod
    def dumps(obj, *args, **kwargs):
        # Always compact (python-socketio asks for that anyway); msgspec is ~4x faster.
        return _encode(obj).decode()


SOCKET_JSON = SocketJSON


def read_json_body(request, max_bytes: int):
    """The request's body as exact JSON, after the size and media-type checks.

    Reads the WSGI environ directly: werkzeug's ``content_length``/``mimetype``/
    ``stream`` properties cost ~20 us per request, this ~2 us. A chunked body
    (no ``Content-Length``; eventlet and Werkzeug dechunk it) is read bounded.

    Raises:
        PayloadTooLarge: the body (declared or actual) exceeds ``max_bytes``.
        UnsupportedMediaType: the content type is not ``application/json``.
        InvalidJson: empty or unparsable body.
        BadRequest: a body shorter than its Content-Length, or malformed chunks.
        RequestTimeout: the body did not arrive within the server's deadline.
    """
    environ = request.environ
    declared = environ.get("CONTENT_LENGTH")
    length = None
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidJson("Content-Length is not a number") from None
        if length < 0:
            raise BadRequest("Content-Length must be a non-negative integer")
        if length > max_bytes:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit here is {max_bytes}")
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        if length is not None:
            data = environ["wsgi.input"].read(length) if length else b""
            if len(data) < length:
                raise BadRequest(
                    f"the request body ended after {len(data)} of the {length} bytes its Content-Length announced"
                )
        elif (
            environ.get("wsgi.input_terminated")
            or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            # No length (chunked; the server dechunks): read at most one byte more than allowed.
            data = environ["wsgi.input"].read(max_bytes + 1)
            if len(data) > max_bytes:
                raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        else:
            data = b""
    except EngineError:
        raise
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive in time") from None
    except (OSError, ValueError):
        # A server that does not map its own framing errors (Werkzeug's DechunkedInput).
        raise BadRequest("the request body could not be read (malformed chunked encoding?)") from None
    if not data.strip():
        raise InvalidJson("request body is empty; send a JSON object")
    return loads_exact(data)


# -- orders ------------------------------------------------------------------
class OrderCommand(NamedTuple):
    """A validated order, in engine units."""

    symbol: str
    spec: SymbolSpec
    side: Side
    order_type: OrderType
    quantity: int
    price: int | None
    client_order_id: str | None
    stp: SelfTradePrevention = STP_CANCEL_TAKER
    extras: dict | None = None  # the new fields, as ``MatchingEngine.submit`` keywords


class _Grid(NamedTuple):
    """A spec's tick and lot as ``coef * 10**exp`` integers, and the texts already
    converted (``text -> units``; prices near the touch and common sizes repeat)."""

    spec: SymbolSpec
    tick_coef: int
    tick_exp: int
    lot_coef: int
    lot_exp: int
    ticks: dict
    lots: dict


_MAX_CACHED = 4096  # texts per grid and kind; the dict is emptied when full


def _coef_exp(step: Decimal) -> tuple[int, int]:
    _sign, digits, exp = step.as_tuple()
    return int("".join(map(str, digits))), exp


_grids: dict[int, _Grid] = {}


def _grid(spec: SymbolSpec) -> _Grid:
    grid = _grids.get(id(spec))
    if grid is None or grid.spec is not spec:
        grid = _grids[id(spec)] = _Grid(spec, *_coef_exp(spec.tick_size), *_coef_exp(spec.lot_size), {}, {})
    return grid


def _units(value, coef: int, exp: int) -> int | None:
    """``value / (coef * 10**exp)`` for a plain decimal string (or a small int) that
    is a positive whole multiple of the step within ``MAX_UNITS``; else None, and the
    spec's ``Decimal`` conversion decides (with its error messages). Integer
    arithmetic only: ~4x cheaper than ``Decimal`` parsing and ``divmod``, same result
    wherever it answers (``SymbolSpec`` accepts exactly this text:
    ``[0-9]{1,20}(\\.[0-9]{1,20})?``)."""
    if type(value) is str:
        whole, dot, frac = value.partition(".")
        if not (0 < len(whole) <= 20 and whole.isascii() and whole.isdigit()):
            return None
        if dot:
            if not (0 < len(frac) <= 20 and frac.isascii() and frac.isdigit()):
                return None
            digits = int(whole + frac)
            shift = -len(frac) - exp
        else:
            digits = int(whole)
            shift = -exp
    elif type(value) is int and 0 < value < 10**20:
        digits = value
        shift = -exp
    else:
        return None
    if shift >= 0:
        units, rest = divmod(digits * 10**shift, coef)
    else:
        units, rest = divmod(digits, coef * 10**-shift)
    if rest or not 0 < units <= MAX_UNITS:
        return None
    return units


def _cached_units(value, cache: dict, coef: int, exp: int) -> int | None:
    """``_units`` through ``cache`` for strings (a dict lookup instead of ~0.8 us)."""
    if type(value) is not str:
        return _units(value, coef, exp)
    units = cache.get(value)
    if units is None:
        units = _units(value, coef, exp)
        if units is not None:
            if len(cache) >= _MAX_CACHED:
                cache.clear()
            cache[value] = units
    return units


def _required(body: dict, name: str):
    value = body.get(name)
    if value is None:
        raise ValidationError(f"{name} is required", name)
    return value


def parse_order(engine: MatchingEngine, body) -> OrderCommand:
    """Validate an order body and convert it to engine units.

    Runtime complexity: O(length of the numeric fields).

    Raises:
        ValidationError: naming the field at fault (or none for a non-object body).
        UnknownSymbol: the symbol is not configured (field ``symbol``, HTTP 400).
    """
    if not isinstance(body, dict):
        raise ValidationError("an order must be a JSON object")
    # Runs for every element of a bulk request, so the common case is inlined:
    # plain lookups first, ``_required`` only on the way to an error, and the
    # grids' text caches read here before ``_cached_units`` is called.
    get = body.get
    symbol = get("symbol")
    if type(symbol) is not str:
        _required(body, "symbol")
        raise ValidationError("symbol must be a string", "symbol")
    market = engine.markets.get(symbol)
    if market is None:
        raise UnknownSymbol(symbol, "symbol")
    spec = market.spec

    side = get("side")
    side = _SIDES.get(side) if type(side) is str else None
    if side is None:
        _required(body, "side")
        raise ValidationError("side must be 'buy' or 'sell'", "side")

    order_type = get("order_type")
    order_type = _ORDER_TYPES.get(order_type) if type(order_type) is str else None
    if order_type is None or not _OTHER_FIELDS.isdisjoint(body):
        return _parse_other(body, symbol, spec, side)

    grid = _grid(spec)
    quantity = get("quantity")
    lots = grid.lots.get(quantity) if type(quantity) is str else None
    if lots is None:
        lots = _cached_units(_required(body, "quantity"), grid.lots, grid.lot_coef, grid.lot_exp)
        if lots is None:
            lots = spec.quantity_to_lots(quantity, "quantity")

    price = get("price")
    if order_type is MARKET:
        if price is not None:
            raise ValidationError("a market order takes no price", "price")
        ticks = None
    else:
        if price is None:
            raise ValidationError(f"price is required for a {order_type.value} order", "price")
        ticks = grid.ticks.get(price) if type(price) is str else None
        if ticks is None:
            ticks = _cached_units(price, grid.ticks, grid.tick_coef, grid.tick_exp)
            if ticks is None:
                ticks = spec.price_to_ticks(price, "price")

    client_order_id = body.get("client_order_id")
    if client_order_id is not None:
        _check_client_order_id(client_order_id)

    stp = get("stp")
    stp = STP_CANCEL_TAKER if stp is None else _parse_stp(stp)
    return OrderCommand(symbol, spec, side, order_type, lots, ticks, client_order_id, stp)


def _parse_stp(value) -> SelfTradePrevention:
    """An order's ``stp`` field. Raises ValidationError (field ``stp``)."""
    stp = _STP.get(value) if type(value) is str else None
    if stp is None:
        raise ValidationError("stp must be 'cancel_taker', 'cancel_maker', 'cancel_both' or 'none'", "stp")
    return stp


def _check_client_order_id(client_order_id) -> None:
    if type(client_order_id) is not str:
        raise ValidationError("client_order_id must be a string", "client_order_id")
    if len(client_order_id) > MAX_CLIENT_ORDER_ID:
        raise ValidationError(
            f"client_order_id must be at most {MAX_CLIENT_ORDER_ID} characters", "client_order_id"
        )
    if not client_order_id.isprintable():
        raise ValidationError("client_order_id must be printable text", "client_order_id")


def parse_expire_time(value, field: str = "expire_time") -> int:
    """ISO 8601 UTC text -> ns since the epoch, exactly (no float).

    Raises:
        ValidationError: not a string of the form ``YYYY-MM-DDTHH:MM:SS[.f]Z``
        (or ``+00:00``), or not a valid date and time.
    """
    match = _ISO_UTC.fullmatch(value) if type(value) is str else None
    if match is None:
        raise ValidationError(f'{field} must be ISO 8601 UTC text like "2026-12-04T15:00:00Z"', field)
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        raise ValidationError(f"{field} is not a valid date and time", field) from None
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    nanos = int((fraction or "").ljust(9, "0")) if fraction else 0
    return seconds * 1_000_000_000 + nanos


def _parse_other(body: dict, symbol: str, spec: SymbolSpec, side: Side) -> OrderCommand:
    """``parse_order`` for the order types beyond the four and for orders with
    their fields (see the module docstring's table). Slower than the fast
    path, and thorough: every field on the wrong type is refused by name.

    Raises:
        ValidationError: naming the field at fault.
    """
    get = body.get
    name = get("order_type")
    order_type = (_ORDER_TYPES.get(name) or _OTHER_TYPES.get(name)) if type(name) is str else None
    if order_type is None:
        _required(body, "order_type")
        raise ValidationError(
            "order_type must be 'market', 'limit', 'ioc', 'fok', 'stop_loss', 'stop_limit', "
            "'take_profit' or 'take_profit_limit'",
            "order_type",
        )
    kind = order_type.value
    is_limit = order_type is LIMIT

    post_only = get("post_only")
    if post_only is not None and type(post_only) is not bool:
        raise ValidationError("post_only must be true or false", "post_only")
    post_only = bool(post_only)
    if post_only and not is_limit:
        raise ValidationError(f"post_only belongs to limit orders, not {kind}", "post_only")

    display = get("display_quantity")
    if display is not None and not is_limit:
        raise ValidationError(f"display_quantity belongs to limit orders, not {kind}", "display_quantity")

    expire = get("expire_time")
    if expire is not None and not (is_limit or order_type in LIMIT_STOP_TYPES):
        raise ValidationError(
            f"expire_time belongs to limit, stop_limit and take_profit_limit orders, not {kind}",
            "expire_time",
        )

    quote = get("quote_quantity")
    if quote is not None and order_type is not MARKET:
        raise ValidationError(f"quote_quantity belongs to market orders, not {kind}", "quote_quantity")

    stop = get("stop_price")
    if order_type in STOP_TYPES:
        if stop is None:
            raise ValidationError(f"stop_price is required for a {kind} order", "stop_price")
        stop_ticks = spec.price_to_ticks(stop, "stop_price")
    elif stop is not None:
        raise ValidationError(f"stop_price belongs to stop and take-profit orders, not {kind}", "stop_price")
    else:
        stop_ticks = None

    quantity = get("quantity")
    if quote is not None:
        if quantity is not None:
            raise ValidationError("give quantity or quote_quantity, not both", "quote_quantity")
        lots = None
        amount = parse_decimal_units(quote, spec, "quote_quantity")
    else:
        lots = spec.quantity_to_lots(_required(body, "quantity"), "quantity")
        amount = None

    price = get("price")
    if order_type is MARKET or order_type is STOP_LOSS or order_type is TAKE_PROFIT:
        if price is not None:
            raise ValidationError(f"a {kind} order takes no price", "price")
        ticks = None
    else:
        if price is None:
            raise ValidationError(f"price is required for a {kind} order", "price")
        ticks = spec.price_to_ticks(price, "price")

    display_lots = None
    if display is not None:
        display_lots = spec.quantity_to_lots(display, "display_quantity")
        if display_lots >= lots:
            raise ValidationError("display_quantity must be below quantity", "display_quantity")

    expire_ns = None
    if expire is not None:
        expire_ns = parse_expire_time(expire)
        if expire_ns <= time.time_ns():
            raise ValidationError("expire_time must be in the future", "expire_time")

    client_order_id = get("client_order_id")
    if client_order_id is not None:
        _check_client_order_id(client_order_id)

    extras = {}
    if stop_ticks is not None:
        extras["stop_price"] = stop_ticks
    if display_lots is not None:
        extras["display_quantity"] = display_lots
    if post_only:
        extras["post_only"] = True
    if expire_ns is not None:
        extras["expire_time"] = expire_ns
    if amount is not None:
        extras["quote_quantity"] = amount
    stp = get("stp")
    stp = STP_CANCEL_TAKER if stp is None else _parse_stp(stp)
    return OrderCommand(symbol, spec, side, order_type, lots, ticks, client_order_id, stp, extras or None)


def parse_decimal_units(value, spec: SymbolSpec, field: str) -> int:
    """A quote amount -> notional units (multiples of ``tick_size * lot_size``).

    Raises:
        ValidationError: not a plain positive decimal, finer than that grid, or too large.
    """
    amount = parse_decimal(value, field)
    step = spec.tick_size * spec.lot_size
    units, rest = divmod(amount, step)
    if rest != 0:
        raise ValidationError(f"{field} {amount} is not a multiple of {step.normalize()}", field)
    if units <= 0:
        raise ValidationError(f"{field} must be at least {step.normalize()}", field)
    if units > MAX_UNITS * MAX_UNITS:
        raise ValidationError(f"{field} {amount} is too large", field)
    return int(units)


def parse_amend(engine: MatchingEngine, body) -> tuple[int, int | None, int | None, int | None]:
    """An amend body ``{"order_id", "quantity"?, "price"?, "stop_price"?}`` ->
    ``(order_id, lots, ticks, stop ticks)`` on the order's symbol's grid.

    Raises:
        ValidationError: not an object, nothing to change, a value off the grid.
        OrderNotFound: the id names no order this engine knows.
    """
    if not isinstance(body, dict):
        raise ValidationError("an amend must be a JSON object")
    order_id = parse_order_id(body.get("order_id"))
    order = engine.orders.get(order_id)
    if order is None:
        raise OrderNotFound(order_id)
    spec = engine.markets[order.symbol].spec
    get = body.get
    quantity, price, stop = get("quantity"), get("price"), get("stop_price")
    if quantity is None and price is None and stop is None:
        raise ValidationError("nothing to amend: give quantity, price or stop_price", "quantity")
    lots = None if quantity is None else spec.quantity_to_lots(quantity, "quantity")
    ticks = None if price is None else spec.price_to_ticks(price, "price")
    stop_ticks = None if stop is None else spec.price_to_ticks(stop, "stop_price")
    return order_id, lots, ticks, stop_ticks


def parse_order_id(value, field: str = "order_id") -> int:
    """An order id as issued (a decimal string; a JSON integer is accepted too).

    Raises:
        ValidationError: missing or of the wrong type (a body field).
        OrderNotFound: well-typed but cannot be an id this service issued.
    """
    if value is None:
        raise ValidationError(f"{field} is required", field)
    if type(value) is int:
        if value <= 0:
            raise OrderNotFound(value)
        return value
    if type(value) is not str:
        raise ValidationError(f"{field} must be a string", field)
    # Ids are issued as canonical decimals: "007" or "+7" name no order.
    if not (0 < len(value) <= _MAX_ID_DIGITS and value.isascii() and value.isdigit()) or value[0] == "0":
        raise OrderNotFound(value)
    return int(value)


def parse_cancel(body) -> int:
    """The order id of a cancel body ``{"order_id": "..."}``."""
    if not isinstance(body, dict):
        raise ValidationError("a cancel must be a JSON object")
    return parse_order_id(body.get("order_id"))


def parse_count(args, name: str, default: int, maximum: int) -> int:
    """A positive integer query parameter (``?levels=N``, ``?limit=N``), at most
    ``maximum``: any larger value, however many digits it has, is treated as
    ``maximum`` (not refused), as ``Documentation/API.md`` says.

    Runtime complexity: O(length of the text); no conversion of a long text.

    Raises:
        ValidationError: not a positive decimal integer (naming the parameter):
            empty, ``0``, a sign, a dot, spaces or non-ASCII digits.
    """
    text = args.get(name)
    if text is None:
        return default
    if not (text and text.isascii() and text.isdigit()):
        raise ValidationError(f"{name} must be a positive integer", name)
    digits = text.lstrip("0")
    if not digits:
        raise ValidationError(f"{name} must be a positive integer", name)
    if len(digits) > len(str(maximum)):
        return maximum
    return min(int(digits), maximum)
