"""Property tests with every order type: random streams of limit, market,
IOC, FOK, stops and take-profits of the four kinds, icebergs, post-only,
quote-amount market orders, amends and cancels.

* the engine's invariants hold after every command (never crossed or
  locked, totals, stops not left due, ...) and no taker trades through its
  limit;
* an iceberg's hidden quantity is never visible: every level's depth is the
  sum of what its orders show, an iceberg shows at most its display quantity;
* replaying the journal records of a stream gives an identical engine;
* a stateful comparison with the naive reference exchange
  (``tests/engine/reference.py``) after every step.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.errors import EngineError, OrderNotOpen, ValidationError
from engine.order import CANCELLED, FILLED, PENDING, OrderType
from storage.journal import GENESIS, amend_row, apply_record, cancel_row, decode, encode, submit_row
from tests.engine.helpers import SIDES, SYM, depth, make_engine
from tests.engine.reference import NaiveExchange, Refused

PRICES = st.integers(95, 105)
QUANTITIES = st.integers(1, 12)
KINDS = ["limit", "limit", "market", "ioc", "fok", "stop_loss", "stop_limit", "take_profit", "take_profit_limit",
         "iceberg", "post_only", "quote"]  # fmt: skip

order_op = st.tuples(st.just("order"), st.sampled_from(["buy", "sell"]), st.sampled_from(KINDS), QUANTITIES,
                     PRICES, PRICES, st.integers(1, 4), st.integers(50, 1500))  # fmt: skip
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 10**6))
amend_op = st.tuples(st.just("amend"), st.integers(0, 10**6), st.sampled_from(["quantity", "price", "stop_price"]),
                     st.integers(1, 14), PRICES)  # fmt: skip
streams = st.lists(st.one_of(order_op, order_op, order_op, cancel_op, amend_op), max_size=70)


def order_args(kind, quantity, price, stop, display, quote):
    """(order_type, quantity, price, keyword extras) for the engine."""
    if kind in ("stop_loss", "take_profit"):
        return OrderType(kind), quantity, None, {"stop_price": stop}
    if kind in ("stop_limit", "take_profit_limit"):
        return OrderType(kind), quantity, price, {"stop_price": stop}
    if kind == "iceberg":
        return OrderType.LIMIT, quantity + display, price, {"display_quantity": display}
    if kind == "post_only":
        return OrderType.LIMIT, quantity, price, {"post_only": True}
    if kind == "quote":
        return OrderType.MARKET, None, None, {"quote_quantity": quote}
    return OrderType(kind), quantity, None if kind == "market" else price, {}


def run(engine, ops, rows=None):
    """Apply ``ops`` with explicit timestamps; append journal rows to ``rows``;
    yield (op, result) for each accepted order."""
    ids = []
    clock = 1_000
    for op in ops:
        clock += 1
        if op[0] in ("cancel", "amend"):
            live = [i for i in ids if engine.orders[i].is_open]
            if not live:
                continue
            order_id = live[op[1] % len(live)]
            try:
                if op[0] == "cancel":
                    result = engine.cancel(order_id, timestamp=clock)
                    row = cancel_row
                else:
                    result = engine.amend(order_id, **{op[2]: op[3] if op[2] == "quantity" else op[4]},
                                          timestamp=clock)  # fmt: skip
                    row = amend_row
            except (ValidationError, OrderNotOpen):
                continue
            if rows is not None:
                rows.append(row(len(rows) + 1, result))
            yield op, result
            continue
        _, side, kind, quantity, price, stop, display, quote = op
        order_type, qty, px, extra = order_args(kind, quantity, price, stop, display, quote)
        try:
            result = engine.submit_extended(SYM, SIDES[side], order_type, qty, px, timestamp=clock, **extra)
        except ValidationError:
            continue
        ids.append(result.order.order_id)
        if rows is not None:
            rows.append(submit_row(len(rows) + 1, result))
        yield op, result


def visible_check(engine):
    """Depth is what the orders show; an iceberg shows at most its display quantity."""
    book = engine.market(SYM).book
    for side in (book.bids, book.asks):
        for level in side.values():
            shown = 0
            for order in level.live_orders():
                part = book.visible(order)
                if order.display_quantity is not None:
                    assert part <= order.display_quantity
                shown += part
            assert shown == level.total
    bids, asks = depth(engine, 1000)
    assert sum(q for _, q in bids + asks) == sum(book.visible(o) for o in book.orders.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_invariants_with_every_order_type(ops):
    engine = make_engine()
    for op, result in run(engine, ops):
        engine.check()
        visible_check(engine)
        if op[0] == "cancel":
            continue
        entries = [result, *result.triggered]
        for entry in entries:
            taker = entry.order
            for trade in entry.trades:
                assert trade.quantity > 0 and trade.price == trade.maker.price
                if taker.price is not None and taker.order_type.value not in (
                    "stop_loss",
                    "take_profit",
                    "market",
                ):
                    assert (
                        trade.price <= taker.price
                        if taker.side.value == "buy"
                        else trade.price >= taker.price
                    )
        if op[0] == "order":
            order = result.order
            if order.post_only and result.status is CANCELLED:
                assert not result.trades and order.cancel_reason == "post_only"
            if order.quote_quantity is not None:
                assert order.notional <= order.quote_quantity and order.filled == order.quantity
            if order.status is CANCELLED:
                assert order.cancel_reason is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_journal_replay_is_identical(ops):
    engine = make_engine()
    rows: list = []
    list(run(engine, ops, rows))
    replayed = make_engine()
    if rows:
        lines, _ = encode(rows, GENESIS)
        for line in lines.splitlines():
            apply_record(replayed, decode(line))
    replayed.check()
    assert replayed.snapshot() == engine.snapshot()
    clone = make_engine()
    clone.restore(engine.snapshot())
    assert clone.snapshot() == engine.snapshot()


STATUS = {"new": "open", "partially_filled": "open", "pending": "pending", "filled": "filled",
          "cancelled": "cancelled"}  # fmt: skip


class EngineVersusNaiveExchange(RuleBasedStateMachine):
    """Every command goes to the engine and to the naive reference exchange;
    trades, depth, pending stops and every order's status must agree."""

    def __init__(self):
        super().__init__()
        self.engine = make_engine()
        self.model = NaiveExchange()
        self.ids: list[int] = []
        self.clock = 1_000

    def _trades(self, result):
        return [(t.maker.order_id, t.taker.order_id, t.price, t.quantity) for t in result.all_trades()]

    @rule(op=order_op)
    def order(self, op):
        _, side, kind, quantity, price, stop, display, quote = op
        order_type, qty, px, extra = order_args(kind, quantity, price, stop, display, quote)
        self.clock += 1
        before = len(self.model.trades)
        order_id = self.engine.snapshot()["next_order_id"]
        try:
            model_filled = self.model.submit(
                order_id, side, order_type.value, qty, px, extra.get("stop_price"), extra.get("display_quantity"),
                extra.get("post_only", False), extra.get("quote_quantity"),
            )  # fmt: skip
        except Refused:
            try:
                self.engine.submit_extended(
                    SYM, SIDES[side], order_type, qty, px, timestamp=self.clock, **extra
                )
            except ValidationError:
                return
            raise AssertionError("the engine accepted what the model refuses") from None
        result = self.engine.submit_extended(
            SYM, SIDES[side], order_type, qty, px, timestamp=self.clock, **extra
        )
        assert result.order.order_id == order_id
        assert result.filled == model_filled
        assert self._trades(result) == self.model.trades[before:]
        self.ids.append(order_id)

    @precondition(lambda self: self.ids)
    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick):
        order_id = self.ids[pick % len(self.ids)]
        live = self.model.cancel(order_id)
        try:
            self.engine.cancel(order_id)
            assert live, "engine cancelled an order the model says is closed"
        except OrderNotOpen:
            assert not live, "engine refused to cancel a live order"

    @precondition(lambda self: self.ids)
    @rule(pick=st.integers(0, 10**6), field=st.sampled_from(["quantity", "price", "stop_price"]),
          quantity=st.integers(1, 14), price=PRICES)  # fmt: skip
    def amend(self, pick, field, quantity, price):
        order_id = self.ids[pick % len(self.ids)]
        order = self.engine.orders[order_id]
        value = quantity if field == "quantity" else price
        self.clock += 1
        before = len(self.model.trades)
        try:
            self.model.amend(order_id, order.filled, **{{"stop_price": "stop"}.get(field, field): value})
        except Refused:
            try:
                self.engine.amend(order_id, **{field: value}, timestamp=self.clock)
            except EngineError:
                return
            raise AssertionError(f"the engine accepted an amend the model refuses: {field}={value}") from None
        result = self.engine.amend(order_id, **{field: value}, timestamp=self.clock)
        assert self._trades(result) == self.model.trades[before:]

    @invariant()
    def agree(self):
        engine = self.engine
        engine.check()
        assert depth(engine, 1000) == self.model.depth()
        for order_id in self.ids:
            order = engine.orders[order_id]
            assert STATUS[order.status.value] == self.model.status[order_id], order_id
        pending = {o.order_id for o in engine.market(SYM).stops.orders.values() if o.status is PENDING}
        assert pending == {p["id"] for p in self.model.pending}
        filled = {o for o in self.ids if engine.orders[o].status is FILLED}
        assert filled == {o for o in self.ids if self.model.status[o] == "filled"}


EngineVersusNaiveExchange.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestEngineVersusNaiveExchange = EngineVersusNaiveExchange.TestCase
