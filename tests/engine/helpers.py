"""Small builders shared by the engine tests."""

from decimal import Decimal

from engine.matcher import MatchingEngine
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, SELL
from engine.symbols import SymbolSpec

SYM = "TEST-USDT"
TYPES = {"limit": LIMIT, "market": MARKET, "ioc": IOC, "fok": FOK}
SIDES = {"buy": BUY, "sell": SELL}


def make_engine(**kwargs) -> MatchingEngine:
    """One symbol, tick 1 and lot 1 so prices and quantities read as written."""
    spec = SymbolSpec(SYM, "TEST", "USDT", Decimal("1"), Decimal("1"), Decimal("0.001"), Decimal("0.002"))
    return MatchingEngine([spec], **kwargs)


def submit(engine, side, order_type, quantity, price=None, symbol=SYM):
    result = engine.submit(symbol, SIDES[side], TYPES[order_type], quantity, price)
    engine.check()
    return result


def limit(engine, side, quantity, price):
    return submit(engine, side, "limit", quantity, price)


def depth(engine, levels=50):
    _, bids, asks = engine.depth(SYM, levels)
    return bids, asks


def fills(result):
    """[(maker_order_id, price, quantity)] of a submit result."""
    return [(t.maker.order_id, t.price, t.quantity) for t in result.trades]
