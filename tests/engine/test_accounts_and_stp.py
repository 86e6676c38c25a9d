"""Accounts in the engine: the registry's rules, owners on orders, and
self-trade prevention (STP) in each mode, in the middle of a FIFO queue, for
FOK, and as a property: no self-trade ever prints unless the taker said
``none``."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.accounts import AccountRegistry
from engine.errors import AccountExists, AccountNotFound, KeyNotFound, OrderNotOpen, ValidationError
from engine.order import (
    BUY,
    CANCELLED,
    FILLED,
    FOK,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    STP_NONE,
)
from tests.engine.helpers import SYM, depth, make_engine

A, B = 1, 2
HASH1, HASH2 = "a" * 64, "b" * 64


def place(engine, account, side, kind, quantity, price=None, stp=STP_CANCEL_TAKER):
    result = engine.submit(SYM, side, kind, quantity, price, account_id=account, stp=stp)
    engine.check()
    return result


# -- the registry -----------------------------------------------------------------------
def test_registry_issues_ids_in_order_and_finds_active_keys_only():
    reg = AccountRegistry()
    alice = reg.create("alice", 10)
    bob = reg.create("bob.b-2_X", 11)
    assert (alice.account_id, bob.account_id) == (1, 2)
    reg.add_key(1, HASH1, 12)
    reg.add_key(1, HASH2, 13)
    assert reg.authenticate(HASH1)[0] is alice
    key, changed = reg.revoke(HASH1, 14)
    assert changed and key.revoked == 14
    assert reg.authenticate(HASH1) is None
    assert reg.authenticate(HASH2)[0] is alice  # the other key still works
    assert reg.revoke(HASH1, 15) == (key, False)  # idempotent, nothing changes
    assert key.revoked == 14
    reg.check()


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "ümlaut", "a/b", None, 7, "new\nline"])
def test_a_name_out_of_range_is_refused(name):
    reg = AccountRegistry()
    with pytest.raises(ValidationError) as e:
        reg.create(name, 1)
    assert e.value.field == "name"
    assert len(reg) == 0


def test_names_are_unique_and_a_refusal_changes_nothing():
    reg = AccountRegistry()
    reg.create("alice", 1)
    with pytest.raises(AccountExists):
        reg.create("alice", 2)
    assert reg.create("bob", 3).account_id == 2  # no id was spent on the refusal
    with pytest.raises(AccountNotFound):
        reg.add_key(9, HASH1, 4)
    with pytest.raises(ValidationError):
        reg.add_key(1, "not-a-hash", 4)
    reg.add_key(1, HASH1, 4)
    with pytest.raises(ValidationError):
        reg.add_key(2, HASH1, 5)  # one hash, one key
    with pytest.raises(KeyNotFound):
        reg.revoke(HASH2, 6)
    assert len(reg.keys) == 1
    reg.check()


def test_registry_snapshot_restores_equal_and_continues_ids():
    reg = AccountRegistry()
    reg.create("alice", 1)
    reg.add_key(1, HASH1, 2)
    reg.revoke(HASH1, 3)
    reg.create("bob", 4)
    other = AccountRegistry()
    other.restore(reg.snapshot())
    assert other.snapshot() == reg.snapshot()
    assert other.create("carol", 5).account_id == 3
    other.check()


def test_replayed_ids_must_increase():
    reg = AccountRegistry()
    reg.create("alice", 1, account_id=5)
    with pytest.raises(ValidationError):
        reg.create("bob", 2, account_id=5)
    assert reg.create("carol", 3).account_id == 6


# -- owners on orders ---------------------------------------------------------------------
def test_owners_are_interned_so_the_loop_can_compare_by_identity():
    engine = make_engine()
    big = 10**6 + 1  # beyond CPython's small-int cache
    r1 = place(engine, int(str(big)), SELL, LIMIT, 1, 100)
    r2 = place(engine, int(str(big)), SELL, LIMIT, 1, 101)
    assert r1.order.account_id is r2.order.account_id
    restored = make_engine()
    restored.restore(engine.snapshot())
    a, b = (restored.orders[r.order.order_id] for r in (r1, r2))
    assert a.account_id == big and a.account_id is b.account_id
    restored.check()


def test_an_unknown_stp_mode_is_refused_and_changes_nothing():
    engine = make_engine()
    with pytest.raises(ValidationError) as e:
        engine.submit(SYM, BUY, LIMIT, 1, 100, account_id=A, stp="cancel_everything")
    assert e.value.field == "stp"
    assert engine.orders == {} and engine.markets[SYM].sequence == 0


def test_cancel_reasons():
    engine = make_engine()
    resting = place(engine, A, SELL, LIMIT, 5, 100)
    assert resting.order.cancel_reason is None
    ioc = place(engine, B, BUY, IOC, 8, 100)
    assert (ioc.status, ioc.order.cancel_reason) == (CANCELLED, "unfilled")
    market = place(engine, B, BUY, MARKET, 1)
    assert market.order.cancel_reason == "unfilled"  # empty side
    fok = place(engine, B, BUY, FOK, 1, 99)
    assert fok.order.cancel_reason == "unfilled"
    other = place(engine, A, SELL, LIMIT, 5, 100)
    assert engine.cancel(other.order.order_id).order.cancel_reason == "user"
    rests = place(engine, B, BUY, LIMIT, 1, 100)
    assert rests.status is NEW and rests.order.cancel_reason is None
    filled = place(engine, A, SELL, LIMIT, 1, 100)
    assert filled.status is FILLED and filled.order.cancel_reason is None


# -- STP in the middle of a FIFO queue -----------------------------------------------------
def _queue(engine):
    """Asks at 100: B 2, A 3 (own), B 4; and B 5 at 101. Returns their ids."""
    b1 = place(engine, B, SELL, LIMIT, 2, 100).order
    a1 = place(engine, A, SELL, LIMIT, 3, 100).order
    b2 = place(engine, B, SELL, LIMIT, 4, 100).order
    b3 = place(engine, B, SELL, LIMIT, 5, 101).order
    return b1, a1, b2, b3


def test_stp_cancel_taker_stops_at_its_own_order_and_keeps_the_fills_before():
    engine = make_engine()
    b1, a1, b2, _ = _queue(engine)
    seq = engine.markets[SYM].sequence
    r = place(engine, A, BUY, LIMIT, 6, 101, stp=STP_CANCEL_TAKER)
    assert [(t.maker.order_id, t.quantity) for t in r.trades] == [(b1.order_id, 2)]
    assert r.status is CANCELLED and r.order.cancel_reason == "self_trade" and r.filled == 2
    assert r.cancelled == ()
    assert a1.status is NEW and a1.cancel_reason is None  # the own resting order stays, first in queue
    assert depth(engine)[1] == [(100, 7), (101, 5)]
    assert r.sequence == seq + 1 and r.book_changed
    assert not any(t.maker.account_id == t.taker.account_id for t in r.trades)


def test_stp_cancel_taker_first_in_queue_changes_nothing():
    engine = make_engine()
    place(engine, A, SELL, LIMIT, 3, 100)
    place(engine, B, SELL, LIMIT, 4, 100)
    seq = engine.markets[SYM].sequence
    r = place(engine, A, BUY, LIMIT, 5, 100)  # default: cancel_taker
    assert r.trades == [] and r.status is CANCELLED and r.order.cancel_reason == "self_trade"
    assert not r.book_changed and r.sequence == seq == engine.markets[SYM].sequence
    assert depth(engine)[1] == [(100, 7)]


def test_stp_cancel_maker_cancels_the_own_order_and_matches_on():
    engine = make_engine()
    b1, a1, b2, b3 = _queue(engine)
    r = place(engine, A, BUY, LIMIT, 8, 101, stp=STP_CANCEL_MAKER)
    assert [(t.maker.order_id, t.quantity) for t in r.trades] == [
        (b1.order_id, 2),
        (b2.order_id, 4),
        (b3.order_id, 2),
    ]
    assert r.cancelled == [a1] and a1.status is CANCELLED and a1.cancel_reason == "self_trade"
    assert r.status is FILLED and r.order.cancel_reason is None
    assert depth(engine)[1] == [(101, 3)]
    assert a1.order_id not in engine.markets[SYM].book.orders


def test_stp_cancel_maker_then_rests_uncrossed():
    engine = make_engine()
    a1 = place(engine, A, SELL, LIMIT, 3, 100).order
    r = place(engine, A, BUY, LIMIT, 5, 100, stp=STP_CANCEL_MAKER)
    assert r.trades == [] and r.cancelled == [a1]
    assert r.status is NEW and r.book_changed
    assert depth(engine) == ([(100, 5)], [])


def test_stp_cancel_both_cancels_the_maker_and_the_taker_remainder():
    engine = make_engine()
    b1, a1, b2, _ = _queue(engine)
    r = place(engine, A, BUY, LIMIT, 6, 101, stp=STP_CANCEL_BOTH)
    assert [(t.maker.order_id, t.quantity) for t in r.trades] == [(b1.order_id, 2)]
    assert r.cancelled == [a1] and a1.cancel_reason == "self_trade"
    assert r.status is CANCELLED and r.order.cancel_reason == "self_trade"
    assert depth(engine)[1] == [(100, 4), (101, 5)]


def test_stp_none_lets_the_account_trade_with_itself():
    engine = make_engine()
    b1, a1, b2, _ = _queue(engine)
    r = place(engine, A, BUY, LIMIT, 6, 100, stp=STP_NONE)
    assert [(t.maker.order_id, t.quantity) for t in r.trades] == [
        (b1.order_id, 2),
        (a1.order_id, 3),
        (b2.order_id, 1),
    ]
    assert r.cancelled == () and r.status is FILLED


def test_stp_is_decided_by_the_taker_and_skips_orders_without_owner():
    engine = make_engine()
    anonymous = engine.submit(SYM, SELL, LIMIT, 2, 100).order  # no account (auth off)
    mine = place(engine, A, SELL, LIMIT, 2, 100, stp=STP_NONE).order
    r = place(engine, A, BUY, LIMIT, 4, 100, stp=STP_CANCEL_MAKER)
    assert [t.maker.order_id for t in r.trades] == [anonymous.order_id]
    assert r.cancelled == [mine]  # the maker's own stp (none) does not matter
    no_owner = engine.submit(SYM, BUY, LIMIT, 1, 100)  # never prevented
    assert no_owner.status is NEW


def test_a_partially_filled_maker_cancelled_by_stp_leaves_the_level_total_right():
    engine = make_engine()
    a1 = place(engine, A, SELL, LIMIT, 5, 100).order
    place(engine, B, BUY, LIMIT, 2, 100)
    assert a1.status is PARTIALLY_FILLED
    place(engine, B, SELL, LIMIT, 4, 100)
    r = place(engine, A, BUY, LIMIT, 4, 100, stp=STP_CANCEL_MAKER)
    assert r.cancelled == [a1] and r.filled == 4
    assert depth(engine) == ([], [])


# -- FOK under STP ------------------------------------------------------------------------------
@pytest.mark.parametrize("stp", [STP_CANCEL_TAKER, STP_CANCEL_BOTH])
def test_fok_counts_only_what_rests_ahead_of_its_first_own_order(stp):
    engine = make_engine()
    b1, a1, b2, b3 = _queue(engine)  # ahead of A's order: 2 lots
    before = (depth(engine), engine.markets[SYM].sequence)
    killed = place(engine, A, BUY, FOK, 3, 101, stp=stp)
    assert killed.status is CANCELLED and killed.trades == [] and killed.cancelled == ()
    assert killed.order.cancel_reason == "unfilled"
    assert (depth(engine), engine.markets[SYM].sequence) == before  # own resting order included
    assert a1.status is NEW
    ok = place(engine, A, BUY, FOK, 2, 101, stp=stp)
    assert ok.status is FILLED and [t.maker.order_id for t in ok.trades] == [b1.order_id]
    assert ok.cancelled == () and a1.status is NEW


def test_fok_with_cancel_maker_counts_every_other_accounts_liquidity():
    engine = make_engine()
    b1, a1, b2, b3 = _queue(engine)  # others: 2 + 4 + 5 = 11
    before = (depth(engine), engine.markets[SYM].sequence)
    killed = place(engine, A, BUY, FOK, 12, 101, stp=STP_CANCEL_MAKER)
    assert killed.status is CANCELLED and killed.trades == [] and killed.cancelled == ()
    assert (depth(engine), engine.markets[SYM].sequence) == before
    assert a1.status is NEW  # a killed FOK cancels no own order
    ok = place(engine, A, BUY, FOK, 11, 101, stp=STP_CANCEL_MAKER)
    assert ok.status is FILLED and ok.filled == 11 and ok.cancelled == [a1]
    assert depth(engine) == ([], [])


def test_fok_with_stp_none_counts_everything():
    engine = make_engine()
    _queue(engine)
    assert place(engine, A, BUY, FOK, 14, 101, stp=STP_NONE).status is FILLED


# -- replay and snapshots ---------------------------------------------------------------------
def test_stp_replays_to_the_same_state():
    engine = make_engine(clock=iter(range(1, 10**6)).__next__)
    ops = []
    for account, side, kind, qty, price, stp in [
        (A, SELL, LIMIT, 3, 100, STP_CANCEL_TAKER),
        (B, SELL, LIMIT, 3, 100, STP_CANCEL_TAKER),
        (A, BUY, LIMIT, 5, 100, STP_CANCEL_MAKER),
        (B, BUY, IOC, 2, 100, STP_CANCEL_BOTH),
        (A, SELL, MARKET, 1, None, STP_CANCEL_BOTH),
    ]:
        r = place(engine, account, side, kind, qty, price, stp)
        ops.append((r.order, [t.trade_id for t in r.trades], r.sequence))
    replay = make_engine()
    for order, trade_ids, sequence in ops:
        r = replay.submit(
            SYM,
            order.side,
            order.order_type,
            order.quantity,
            order.price,
            timestamp=order.timestamp,
            order_id=order.order_id,
            trade_ids=trade_ids,
            account_id=order.account_id,
            stp=order.stp,
        )
        assert r.sequence == sequence
    assert replay.snapshot() == engine.snapshot()
    restored = make_engine()
    restored.restore(engine.snapshot())
    assert restored.snapshot() == engine.snapshot()
    restored.check()


def test_a_cancelled_order_cannot_be_cancelled_again_after_stp():
    engine = make_engine()
    a1 = place(engine, A, SELL, LIMIT, 3, 100).order
    place(engine, A, BUY, LIMIT, 3, 100, stp=STP_CANCEL_MAKER)
    with pytest.raises(OrderNotOpen):
        engine.cancel(a1.order_id)


# -- the property -------------------------------------------------------------------------------
STPS = [STP_CANCEL_TAKER, STP_CANCEL_MAKER, STP_CANCEL_BOTH, STP_NONE]
ops = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 3]),
        st.sampled_from([BUY, SELL]),
        st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET, IOC, FOK]),
        st.integers(1, 8),
        st.integers(97, 103),
        st.sampled_from(STPS),
        st.integers(0, 5),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_no_self_trade_ever_prints_unless_the_taker_said_none(stream):
    engine = make_engine()
    resting = []
    for account, side, kind, qty, price, stp, cancel in stream:
        if cancel == 0 and resting:
            try:
                engine.cancel(resting.pop(0))
            except OrderNotOpen:
                pass
        before = {o.order_id: (o.status, o.filled) for o in engine.markets[SYM].book.orders.values()}
        r = engine.submit(
            SYM, side, kind, qty, None if kind is MARKET else price, account_id=account, stp=stp
        )
        for trade in r.trades:
            if stp is not STP_NONE:
                assert trade.maker.account_id != account, "a self-trade printed"
        for maker in r.cancelled:
            assert maker.account_id == account and maker.cancel_reason == "self_trade"
            assert stp in (STP_CANCEL_MAKER, STP_CANCEL_BOTH)
        if kind is FOK:
            assert r.filled in (0, qty)  # all or nothing
            if r.filled == 0:
                assert r.cancelled == () and r.trades == []
                after = {o.order_id: (o.status, o.filled) for o in engine.markets[SYM].book.orders.values()}
                assert after == before
        if r.order.cancel_reason == "self_trade":
            assert stp in (STP_CANCEL_TAKER, STP_CANCEL_BOTH)
        if r.status is NEW or r.status is PARTIALLY_FILLED:
            resting.append(r.order.order_id)
        engine.check()


# -- against a naive reference with owners -------------------------------------------------------
class NaiveStpBook:
    """A flat list of resting orders with owners, scanned on every command:
    self-trade prevention as the contract words it, obviously."""

    def __init__(self) -> None:
        self.resting: list[list] = []  # [order_id, side, price, remaining, owner]

    def submit(self, order_id, side, kind, quantity, price, owner, stp):
        """``(trades [(maker, price, qty)], cancelled maker ids, taker stopped by STP)``."""
        opposite = SELL if side is BUY else BUY
        eligible = [o for o in self.resting if o[1] is opposite]
        if price is not None:
            eligible = [o for o in eligible if (o[2] <= price if side is BUY else o[2] >= price)]
        eligible.sort(key=lambda o: (o[2] if side is BUY else -o[2], o[0]))
        prevent = stp is not STP_NONE
        if kind is FOK:
            available = 0
            for o in eligible:
                if prevent and o[4] == owner:
                    if stp is STP_CANCEL_MAKER:
                        continue
                    break
                available += o[3]
            if available < quantity:
                return [], [], False
        remaining, trades, cancelled, stopped = quantity, [], [], False
        for maker in eligible:
            if not remaining:
                break
            if prevent and maker[4] == owner:
                if stp is not STP_CANCEL_TAKER:
                    maker[3] = 0
                    cancelled.append(maker[0])
                if stp is not STP_CANCEL_MAKER:
                    stopped = True
                    break
                continue
            fill = min(maker[3], remaining)
            maker[3] -= fill
            remaining -= fill
            trades.append((maker[0], maker[2], fill))
        self.resting = [o for o in self.resting if o[3] > 0]
        if remaining and kind is LIMIT and not stopped:
            self.resting.append([order_id, side, price, remaining, owner])
        return trades, cancelled, stopped

    def depth(self):
        levels: dict = {}
        for _, side, price, remaining, _owner in self.resting:
            levels[(side, price)] = levels.get((side, price), 0) + remaining
        bids = sorted(((p, q) for (s, p), q in levels.items() if s is BUY), reverse=True)
        asks = sorted((p, q) for (s, p), q in levels.items() if s is SELL)
        return bids, asks


@settings(max_examples=300, deadline=None)
@given(ops)
def test_stp_matches_the_naive_reference(stream):
    engine = make_engine()
    naive = NaiveStpBook()
    ids = []
    for account, side, kind, qty, price, stp, cancel in stream:
        if cancel == 0 and ids:
            order_id = ids.pop(0)
            try:
                engine.cancel(order_id)
            except OrderNotOpen:
                pass
            naive.resting = [o for o in naive.resting if o[0] != order_id]
        limit = None if kind is MARKET else price
        r = engine.submit(SYM, side, kind, qty, limit, account_id=account, stp=stp)
        trades, cancelled, stopped = naive.submit(r.order.order_id, side, kind, qty, limit, account, stp)
        assert [(t.maker.order_id, t.price, t.quantity) for t in r.trades] == trades
        assert [o.order_id for o in r.cancelled] == cancelled
        assert (r.order.cancel_reason == "self_trade") == stopped
        assert depth(engine) == naive.depth()
        ids.append(r.order.order_id)
    engine.check()


def test_a_snapshot_from_before_accounts_restores_with_the_only_possible_reasons():
    engine = make_engine()
    user = engine.submit(SYM, SELL, LIMIT, 2, 100).order
    engine.cancel(user.order_id)
    ioc = engine.submit(SYM, BUY, IOC, 2, 90).order
    state = engine.snapshot()
    state["orders"] = [row[:11] for row in state["orders"]]  # the rows written before accounts
    state.pop("accounts")
    old = make_engine()
    old.restore(state)
    assert old.orders[user.order_id].cancel_reason == "user"
    assert old.orders[ioc.order_id].cancel_reason == "unfilled"
    assert old.orders[ioc.order_id].account_id is None and len(old.accounts) == 0
    old.check()
