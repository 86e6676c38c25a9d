"""Property tests over random operation streams, and a stateful comparison
with the naive reference book (``tests/engine/reference.py``)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.errors import OrderNotOpen
from engine.order import CANCELLED, FILLED
from tests.engine.helpers import SIDES, SYM, TYPES, depth, make_engine
from tests.engine.reference import NaiveBook

PRICES = st.integers(95, 105)  # a narrow band, so orders cross often
QUANTITIES = st.integers(1, 12)

order_op = st.tuples(
    st.just("order"),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "limit", "limit", "market", "ioc", "fok"]),
    QUANTITIES,
    PRICES,
)
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 60))
streams = st.lists(st.one_of(order_op, order_op, cancel_op), max_size=80)


def run(engine, ops):
    """Apply ``ops``; yield (op, result) for orders."""
    ids = []
    for op in ops:
        if op[0] == "cancel":
            if ids:
                order_id = ids[op[1] % len(ids)]
                try:
                    engine.cancel(order_id)
                except OrderNotOpen:
                    pass
            continue
        _, side, kind, quantity, price = op
        result = engine.submit(SYM, SIDES[side], TYPES[kind], quantity, None if kind == "market" else price)
        ids.append(result.order.order_id)
        yield op, result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_invariants_hold_after_every_command(ops):
    engine = make_engine()
    for (_, side, kind, quantity, price), result in run(engine, ops):
        engine.check()  # never crossed or locked, level totals, FIFO, best prices
        order = result.order
        assert result.filled + (order.quantity - result.filled) == quantity
        assert 0 <= result.filled <= quantity
        filled = 0
        for trade in result.trades:
            assert trade.quantity > 0  # no zero-quantity trades
            assert trade.price == trade.maker.price  # prints at the maker's price
            if kind != "market":  # no trade-through of the taker's limit
                assert trade.price <= price if side == "buy" else trade.price >= price
            filled += trade.quantity
        assert filled == result.filled
        prices = [t.price for t in result.trades]  # best level first
        assert prices == sorted(prices, reverse=(side == "sell"))
        if kind == "fok":
            assert result.filled in (0, quantity)  # all or nothing
            if result.filled == 0:
                assert not result.book_changed
        if kind in ("market", "ioc", "fok"):
            assert order.order_id not in engine.market(SYM).book.orders  # never rests


@settings(max_examples=200, deadline=None)
@given(streams)
def test_quantity_is_conserved(ops):
    """Lots in = lots resting + 2 * lots traded + lots cancelled or dropped."""
    engine = make_engine()
    submitted = 0
    for (_, _, _, quantity, _), _ in run(engine, ops):
        submitted += quantity
    book = engine.market(SYM).book
    resting = sum(o.remaining for o in book.orders.values())
    traded = sum(t.quantity for t in engine.market(SYM).trades)
    removed = sum(o.remaining for o in engine.orders.values() if o.status is CANCELLED)
    assert submitted == resting + 2 * traded + removed
    bids, asks = depth(engine, 1000)
    assert sum(q for _, q in bids + asks) == resting


@settings(max_examples=150, deadline=None)
@given(streams)
def test_snapshot_restore_preserves_everything(ops):
    engine = make_engine()
    list(run(engine, ops))
    clone = make_engine()
    clone.restore(engine.snapshot())
    clone.check()
    assert clone.snapshot() == engine.snapshot()
    # and both continue identically
    follow = [("order", "buy", "market", 30, 0), ("order", "sell", "limit", 3, 100)]
    a = [(r.status, r.filled, [t.trade_id for t in r.trades]) for _, r in run(engine, follow)]
    b = [(r.status, r.filled, [t.trade_id for t in r.trades]) for _, r in run(clone, follow)]
    assert a == b


class EngineVersusNaiveBook(RuleBasedStateMachine):
    """Every command goes to the engine and to the naive book; trades, fills
    and depth must agree after each step."""

    def __init__(self):
        super().__init__()
        self.engine = make_engine()
        self.model = NaiveBook()
        self.ids: list[int] = []

    @rule(
        side=st.sampled_from(["buy", "sell"]),
        kind=st.sampled_from(["limit", "market", "ioc", "fok"]),
        quantity=QUANTITIES,
        price=PRICES,
    )
    def order(self, side, kind, quantity, price):
        price = None if kind == "market" else price
        result = self.engine.submit(SYM, SIDES[side], TYPES[kind], quantity, price)
        order_id = result.order.order_id
        filled = self.model.submit(order_id, side, kind, quantity, price)
        assert result.filled == filled
        expected = self.model.trades[len(self.model.trades) - len(result.trades) :] if result.trades else []
        got = [(t.maker.order_id, order_id, t.price, t.quantity) for t in result.trades]
        assert got == expected
        expected_status = FILLED if filled == quantity else None
        if expected_status:
            assert result.status is FILLED
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

    @invariant()
    def books_agree(self):
        self.engine.check()
        assert depth(self.engine, 1000) == self.model.depth()


EngineVersusNaiveBook.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestEngineVersusNaiveBook = EngineVersusNaiveBook.TestCase
