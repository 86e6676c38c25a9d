"""The ``Order`` record's layout: the rarely set fields live in ``Order.ext``
(an ``OrderExt``, None for most orders) and read through properties with the
defaults; each ext belongs to one order; snapshots restore them exactly."""

from engine.order import (
    BUY,
    LIMIT,
    SELL,
    STOP_LOSS,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    STP_NONE,
    Order,
    order_ext,
)
from tests.engine.helpers import SYM, make_engine

RARE = ("stop_price", "display_quantity", "post_only", "expire_time", "quote_quantity", "stp")
DEFAULTS = (None, None, False, None, None, STP_CANCEL_TAKER)


def rare(order: Order) -> tuple:
    return tuple(getattr(order, name) for name in RARE)


def test_an_order_keeps_fourteen_fields():
    # Each field is 8 bytes of every order kept in memory (up to order_history of them):
    # a new field belongs in OrderExt unless nearly every order sets it (PERFORMANCE.md §12).
    assert len(Order.__struct_fields__) == 14
    assert not set(RARE) & set(Order.__struct_fields__)


def test_orders_of_the_four_types_have_no_ext_and_read_the_defaults():
    engine = make_engine()
    plain = engine.submit(SYM, BUY, LIMIT, 5, 100).order
    owned = engine.submit(SYM, BUY, LIMIT, 5, 100, account_id=7).order
    assert plain.ext is None and owned.ext is None
    assert rare(plain) == rare(owned) == DEFAULTS
    assert order_ext() is None and order_ext(stp=STP_CANCEL_TAKER) is None


def test_a_non_default_stp_needs_an_owner_to_be_kept():
    engine = make_engine()
    owned = engine.submit(SYM, BUY, LIMIT, 5, 100, account_id=7, stp=STP_CANCEL_MAKER).order
    ownerless = engine.submit(SYM, BUY, LIMIT, 5, 100, stp=STP_NONE).order
    assert owned.stp is STP_CANCEL_MAKER and owned.ext is not None
    assert ownerless.ext is None and ownerless.stp is STP_CANCEL_TAKER  # no prevention without an owner


def test_each_order_has_its_own_ext():
    engine = make_engine()
    engine.submit(SYM, SELL, LIMIT, 1, 100)
    engine.submit(SYM, BUY, LIMIT, 1, 100)  # last trade price 100
    first = engine.submit_extended(SYM, SELL, STOP_LOSS, 1, stop_price=90).order
    second = engine.submit_extended(SYM, SELL, STOP_LOSS, 1, stop_price=90).order
    assert first.ext is not second.ext
    engine.amend(first.order_id, stop_price=80)
    engine.check()
    assert (first.stop_price, second.stop_price) == (80, 90)


def test_a_snapshot_restores_every_rare_field_and_no_ext_where_there_was_none():
    engine = make_engine()
    engine.submit(SYM, SELL, LIMIT, 1, 100)
    engine.submit(SYM, BUY, LIMIT, 1, 100)
    orders = [
        engine.submit(SYM, BUY, LIMIT, 5, 90).order,
        engine.submit(SYM, BUY, LIMIT, 5, 90, account_id=3, stp=STP_NONE).order,
        engine.submit_extended(SYM, SELL, STOP_LOSS, 2, stop_price=80, account_id=4).order,
        engine.submit_extended(SYM, SELL, LIMIT, 9, 120, display_quantity=2, post_only=True).order,
        engine.submit_extended(SYM, SELL, LIMIT, 1, 130, expire_time=2**62).order,
    ]
    restored = make_engine()
    restored.restore(engine.snapshot())
    restored.check()
    for order in orders:
        again = restored.get_order(order.order_id)
        assert rare(again) == rare(order)
        assert (again.ext is None) == (order.ext is None)
        assert again.account_id == order.account_id
