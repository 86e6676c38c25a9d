"""Every failure becomes the contract's error envelope, mapped in one place.

    Exception                              code                     HTTP
     +-- EngineError (engine/errors.py)
     |    +-- ValidationError               VALIDATION_ERROR         400
     |    +-- UnknownSymbol                 UNKNOWN_SYMBOL           400 in a body (field set),
     |    |                                                          404 on a path (field None)
     |    +-- OrderNotFound                 ORDER_NOT_FOUND          404
     |    +-- OrderNotOpen                  ORDER_NOT_OPEN           409
     |    +-- AccountExists                 ACCOUNT_EXISTS           409
     |    +-- AccountNotFound               ACCOUNT_NOT_FOUND        404
     |    +-- KeyNotFound                   KEY_NOT_FOUND            404
     |    +-- InsufficientFunds             INSUFFICIENT_FUNDS       400
     |    +-- ApiError (here: HTTP-level)   its own ``status_code``
     |         +-- BadRequest               BAD_REQUEST              400 (body framing: shorter
     |         |                                                         than its Content-Length,
     |         |                                                         malformed chunks)
     |         +-- InvalidJson              INVALID_JSON             400
     |         +-- RequestTimeout           REQUEST_TIMEOUT          408 (body deadline passed)
     |         +-- PayloadTooLarge          PAYLOAD_TOO_LARGE        413
     |         +-- UnsupportedMediaType     UNSUPPORTED_MEDIA_TYPE   415
     |         +-- ServiceUnavailable       SERVICE_UNAVAILABLE      503 (trading halted after a
     |                                                               journal fault, or a read
     |                                                               whose state is not durable
     |                                                               in time)
     |         +-- Unauthenticated          UNAUTHENTICATED          401
     +-- werkzeug HTTPException             NOT_FOUND 404, METHOD_NOT_ALLOWED 405,
     |                                      PAYLOAD_TOO_LARGE 413, UNSUPPORTED_MEDIA_TYPE 415,
     |                                      INVALID_JSON 400, RATE_LIMITED 429, ...
     +-- anything else                      INTERNAL_ERROR           500 (traceback logged,
                                                                         never sent)

Body: ``{"error": {"code", "message"[, "field"]}}`` -- ``field`` only where one
field is at fault. No handler ever puts a traceback in a response, also not
with ``--debug`` (``PROPAGATE_EXCEPTIONS`` is forced off by the app factory).
"""

from __future__ import annotations

import logging

import msgspec
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from engine.errors import (
    AccountExists,
    AccountNotFound,
    EngineError,
    InsufficientFunds,
    KeyNotFound,
    OrderNotFound,
    OrderNotOpen,
    UnknownSymbol,
    ValidationError,
)

log = logging.getLogger(__name__)


class ApiError(EngineError):
    """An HTTP-level refusal that is not about the order itself (body framing)."""

    code = "API_ERROR"
    status_code = 400


class BadRequest(ApiError):
    """The request's body is not framed as announced (``api/httpserver.py``)."""

    code = "BAD_REQUEST"
    status_code = 400


class RequestTimeout(ApiError):
    """The request's body did not arrive within its deadline (``api/httpserver.py``)."""

    code = "REQUEST_TIMEOUT"
    status_code = 408


class InvalidJson(ApiError):
    code = "INVALID_JSON"
    status_code = 400


class PayloadTooLarge(ApiError):
    code = "PAYLOAD_TOO_LARGE"
    status_code = 413


class UnsupportedMediaType(ApiError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status_code = 415


HALTED = "trading is halted: the journal cannot be written (GET /health has the reason)"


class ServiceUnavailable(ApiError):
    """The service cannot do this now: trading is halted (the journal failed;
    ``GET /health`` says why), or a read's state did not become durable within
    the read timeout. Nothing was changed."""

    code = "SERVICE_UNAVAILABLE"
    status_code = 503


class Unauthenticated(ApiError):
    """No valid API key (private endpoints) or admin token (admin endpoints).
    One message for missing, malformed, unknown and revoked credentials: the
    answer does not tell a guesser which it was."""

    code = "UNAUTHENTICATED"
    status_code = 401

    def __init__(self, message: str = "a valid X-API-Key header is required") -> None:
        super().__init__(message)


_STATUS = {
    ValidationError: 400,
    OrderNotFound: 404,
    OrderNotOpen: 409,
    AccountExists: 409,
    AccountNotFound: 404,
    KeyNotFound: 404,
    InsufficientFunds: 400,
}

# werkzeug's HTTP errors -> our codes; unlisted ones use their own name in UPPER_SNAKE.
_HTTP_CODES = {
    400: "INVALID_JSON",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}


def http_status(error: EngineError) -> int:
    """The HTTP status of an ``EngineError``: the one mapping of the service."""
    if isinstance(error, ApiError):
        return error.status_code
    if isinstance(error, UnknownSymbol):
        # Raised with ``field="symbol"`` for a body, ``field=None`` for a path.
        return 400 if error.field else 404
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 400


def envelope(code: str, message: str, field: str | None = None) -> dict:
    """``{"error": {"code", "message"[, "field"]}}``."""
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def rate_limited_message(description: str) -> str:
    """The message of ``RATE_LIMITED``, REST (429) and Socket.IO alike."""
    return f"rate limit exceeded ({description}); retry later"


def internal_error_envelope() -> dict:
    return envelope("INTERNAL_ERROR", "internal error; the server log has the details")


_encode = msgspec.json.encode


def call_or_envelope(command, argument, doing: str) -> dict:
    """``command(argument)``, or its failure as the contract's error envelope:
    an ``EngineError``'s own, anything else logged (with ``doing``) and
    ``INTERNAL_ERROR``. For answers that are not HTTP responses (Socket.IO
    acknowledgements, a bulk answer's elements)."""
    try:
        return command(argument)
    except EngineError as e:
        return e.to_dict()
    except Exception:
        log.exception("unexpected error %s", doing)
        return internal_error_envelope()


def json_response(body, status: int = 200, headers=None) -> Response:
    """A compact JSON response, encoded by msgspec (~4x faster than ``json.dumps``;
    key order as built, no sorting)."""
    return Response(_encode(body), status=status, headers=headers, mimetype="application/json")


def json_bytes_response(data: bytes, status: int = 200) -> Response:
    """A response whose JSON body is already encoded (``Exchange.place_order_json``)."""
    return Response(data, status=status, mimetype="application/json")


def _engine_error(error: EngineError) -> Response:
    return json_response(error.to_dict(), http_status(error))


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status)
    if code is None:
        code = "".join(c if c.isalnum() else "_" for c in (error.name or "ERROR")).upper()
    if status == 429:
        message = rate_limited_message(error.description)
    elif status == 404:
        message = "no such resource"
    elif status == 405:
        message = "method not allowed on this resource"
    elif status == 413:
        message = "request body too large"
    else:
        message = error.description or error.name
    headers = {}
    # Keep the headers werkzeug computed (Allow on 405, Retry-After on 429...).
    if status == 405:
        allow = getattr(error, "valid_methods", None)
        if allow:
            headers["Allow"] = ", ".join(allow)
    if status == 429:
        retry = getattr(error, "retry_after", None)
        headers["Retry-After"] = str(retry) if retry else "60"
    return json_response(envelope(code, message), status, headers)


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):  # pragma: no cover - routed above by Flask
        return _http_error(error)
    log.exception("unhandled error in request")
    return json_response(internal_error_envelope(), 500)


def register(app: Flask) -> None:
    """Install the handlers on ``app`` (and force tracebacks out of responses)."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    app.config["TRAP_BAD_REQUEST_ERRORS"] = False
    app.register_error_handler(EngineError, _engine_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
