"""One error hierarchy for everything a caller can get wrong.

    EngineError                 code           HTTP (mapped once, in api/errors.py)
     +-- ValidationError        VALIDATION_ERROR   400
     +-- UnknownSymbol          UNKNOWN_SYMBOL     404 on paths, 400 in bodies
     +-- OrderNotFound          ORDER_NOT_FOUND    404
     +-- OrderNotOpen           ORDER_NOT_OPEN     409
     +-- AccountExists          ACCOUNT_EXISTS     409
     +-- AccountNotFound        ACCOUNT_NOT_FOUND  404
     +-- KeyNotFound            KEY_NOT_FOUND      404
     +-- InsufficientFunds      INSUFFICIENT_FUNDS 400

A caller's mistake is one of these values; broken internal state is an
``AssertionError`` (see ``OrderBook.check``), never an ``EngineError``.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error a caller can provoke; carries the contract's fields."""

    code = "ENGINE_ERROR"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        """The contract's error envelope: ``{"error": {"code", "message"[, "field"]}}``."""
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class ValidationError(EngineError):
    """A request field is missing, malformed, off the tick/lot grid or out of range."""

    code = "VALIDATION_ERROR"


class UnknownSymbol(EngineError):
    """The symbol is not traded here."""

    code = "UNKNOWN_SYMBOL"

    def __init__(self, symbol: object, field: str | None = "symbol") -> None:
        super().__init__(f"unknown symbol {str(symbol)[:40]!r}", field)


class OrderNotFound(EngineError):
    """No order has this id."""

    code = "ORDER_NOT_FOUND"

    def __init__(self, order_id: object) -> None:
        super().__init__(f"order {str(order_id)[:40]!r} not found", "order_id")


class OrderNotOpen(EngineError):
    """The order exists but is already filled or cancelled."""

    code = "ORDER_NOT_OPEN"

    def __init__(self, order_id: object, status: str) -> None:
        super().__init__(f"order {order_id} is {status}, not open", "order_id")


class AccountExists(EngineError):
    """An account of this name exists already."""

    code = "ACCOUNT_EXISTS"

    def __init__(self, name: str) -> None:
        super().__init__(f"an account named {name!r} exists already", "name")


class AccountNotFound(EngineError):
    """No account has this id."""

    code = "ACCOUNT_NOT_FOUND"

    def __init__(self, account_id: object) -> None:
        super().__init__(f"account {str(account_id)[:40]!r} not found", "account_id")


class KeyNotFound(EngineError):
    """No API key matches (admin revocation of a key that was never issued)."""

    code = "KEY_NOT_FOUND"

    def __init__(self, field: str = "api_key") -> None:
        super().__init__("no such API key", field)


class InsufficientFunds(EngineError):
    """An order, amend or withdrawal needs more than the account has available."""

    code = "INSUFFICIENT_FUNDS"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
