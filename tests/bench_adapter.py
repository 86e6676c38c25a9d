"""Adapter for ../shared/bench (compare.sh / bench.py): drives this project's
``MatchingEngine`` through its public API, producing full results (order
state, trades with ids and fees, sequences). The workload's ticks and lots
map 1:1 onto a symbol with tick 0.01 and lot 0.001, so converting them to
what the engine takes is a table lookup."""

import os
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.errors import EngineError  # noqa: E402
from engine.matcher import MatchingEngine  # noqa: E402
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, NEW, PARTIALLY_FILLED, SELL  # noqa: E402
from engine.symbols import SymbolSpec  # noqa: E402

PACKAGE = "this project (engine/)"
NATIVE = False
SEMANTICS = {"L": "native", "M": "native", "I": "native", "F": "native", "C": "native"}

_SIDES = {"B": BUY, "S": SELL}
_TYPES = {"L": LIMIT, "M": MARKET, "I": IOC, "F": FOK}


class Adapter:
    def __init__(self, symbols=1):
        specs = [
            SymbolSpec(f"SYM{i}", f"SYM{i}", "USDT", Decimal("0.01"), Decimal("0.001"))
            for i in range(symbols)
        ]
        self.engine = MatchingEngine(specs)
        self.names = [s.symbol for s in specs]
        # the workload's ids are its own; map them to the engine's
        self.ids = {}
        self.trades = 0
        self.volume = 0

    def submit(self, op):
        kind, sym, oid, side, price, qty = op
        if kind == "C":
            engine_id = self.ids.pop(oid, None)
            if engine_id is not None:
                try:
                    self.engine.cancel(engine_id)
                except EngineError:
                    pass
            return
        order_type = _TYPES[kind]
        result = self.engine.submit(
            self.names[sym], _SIDES[side], order_type, qty, None if kind == "M" else price
        )
        status = result.status
        if status is NEW or status is PARTIALLY_FILLED:  # it rests: remember its engine id
            self.ids[oid] = result.order.order_id
        trades = result.trades
        if trades:
            self.trades += len(trades)
            self.volume += result.filled

    def result(self):
        return {"trades": self.trades, "volume": self.volume}
