"""Every matching rule of the contract, observed through the REST API only."""

from __future__ import annotations

from decimal import Decimal

from tests.api.conftest import BTC


def fills(report):
    return [(t["maker_order_id"], t["price"], t["quantity"]) for t in report["trades"]]


def test_better_price_fills_first(api):
    worse = api.limit("sell", "1", "101")
    better = api.limit("sell", "1", "100")
    taker = api.order("buy", "market", "1.5")
    assert fills(taker) == [
        (better["order_id"], "100.00", "1.00000"),
        (worse["order_id"], "101.00", "0.50000"),
    ]
    api.check()


def test_same_price_fills_in_arrival_order(api):
    first = api.limit("buy", "1", "100")
    second = api.limit("buy", "1", "100")
    third = api.limit("buy", "1", "100")
    taker = api.order("sell", "limit", "2.5", "100")
    assert [f[0] for f in fills(taker)] == [first["order_id"], second["order_id"], third["order_id"]]
    assert [f[2] for f in fills(taker)] == ["1.00000", "1.00000", "0.50000"]
    assert api.get(f"/order/{third['order_id']}")["remaining_quantity"] == "0.50000"


def test_trade_prints_at_resting_price(api):
    api.limit("sell", "1", "100.00")
    taker = api.limit("buy", "1", "105.00")
    assert taker["trades"][0]["price"] == "100.00"
    assert taker["average_price"] == "100.00"
    assert taker["status"] == "filled"


def test_no_trade_through_level_by_level(api):
    api.limit("sell", "1", "100")
    api.limit("sell", "1", "102")
    api.limit("sell", "1", "104")
    taker = api.limit("buy", "3", "102")
    assert [f[1] for f in fills(taker)] == ["100.00", "102.00"]
    assert taker["status"] == "partially_filled"
    book = api.book()
    assert book["bids"] == [["102.00", "1.00000"]]
    assert book["asks"] == [["104.00", "1.00000"]]
    api.check()


def test_book_never_crossed_or_locked_after_an_order(api):
    api.limit("sell", "1", "100")
    api.limit("buy", "2", "100")  # would lock: trades instead, rests the rest
    bbo = api.get(f"/bbo/{BTC}")
    assert bbo["best_ask"] is None
    assert bbo["best_bid"] == {"price": "100.00", "quantity": "1.00000"}
    api.check()


def test_limit_rests_remainder_partially_filled(api):
    api.limit("sell", "1", "100")
    taker = api.limit("buy", "3", "100")
    assert (taker["status"], taker["filled_quantity"], taker["remaining_quantity"]) == (
        "partially_filled", "1.00000", "2.00000",
    )  # fmt: skip
    assert api.book()["bids"] == [["100.00", "2.00000"]]


def test_market_order_remainder_is_cancelled_never_rests(api):
    api.limit("sell", "1", "100")
    taker = api.order("buy", "market", "3")
    assert taker["status"] == "cancelled"
    assert (taker["filled_quantity"], taker["remaining_quantity"]) == ("1.00000", "2.00000")
    assert taker["price"] is None and taker["average_price"] == "100.00"
    assert api.book()["bids"] == []


def test_market_order_against_empty_side_changes_nothing(api):
    api.limit("buy", "1", "100")
    before = api.state()
    taker = api.order("buy", "market", "1")
    assert taker["status"] == "cancelled" and taker["trades"] == []
    assert taker["filled_quantity"] == "0.00000" and taker["average_price"] is None
    assert api.state() == before


def test_ioc_fills_what_it_can_at_limit_or_better_cancels_rest(api):
    api.limit("sell", "1", "100")
    api.limit("sell", "1", "101")
    api.limit("sell", "1", "103")
    taker = api.order("buy", "ioc", "5", "101")
    assert taker["status"] == "cancelled"
    assert taker["filled_quantity"] == "2.00000" and taker["remaining_quantity"] == "3.00000"
    assert taker["average_price"] == "100.50"
    assert api.book()["bids"] == [] and api.book()["asks"] == [["103.00", "1.00000"]]


def test_ioc_filled_completely_is_filled(api):
    api.limit("sell", "2", "100")
    assert api.order("buy", "ioc", "2", "100")["status"] == "filled"


def test_ioc_that_finds_nothing_changes_nothing(api):
    api.limit("sell", "1", "105")
    before = api.state()
    taker = api.order("buy", "ioc", "1", "100")
    assert taker["status"] == "cancelled" and taker["trades"] == []
    assert api.state() == before


def test_fok_fills_completely_across_levels(api):
    api.limit("sell", "1", "100")
    api.limit("sell", "1", "101")
    taker = api.order("buy", "fok", "2", "101")
    assert taker["status"] == "filled" and len(taker["trades"]) == 2
    assert api.book()["asks"] == []


def test_fok_that_cannot_fill_changes_nothing(api):
    api.limit("sell", "1", "100")
    api.limit("sell", "1", "102")  # beyond the FOK's limit
    before = api.state()
    taker = api.order("buy", "fok", "2", "101")
    assert taker["status"] == "cancelled"
    assert taker["trades"] == [] and taker["filled_quantity"] == "0.00000"
    assert api.state() == before  # same book, same sequence


def test_sequence_advances_only_on_changes(api):
    seq = api.state()[0]
    api.limit("buy", "1", "100")  # rests
    assert api.state()[0] == seq + 1
    api.order("sell", "fok", "5", "100")  # killed
    api.order("buy", "market", "1")  # empty side
    api.order("buy", "limit", "1", "1.001", expect=400)  # rejected
    assert api.state()[0] == seq + 1
    api.order("sell", "market", "0.5")  # trades
    assert api.state()[0] == seq + 2
    resting = api.limit("buy", "1", "90")
    assert api.state()[0] == seq + 3
    api.cancel(resting["order_id"])
    assert api.state()[0] == seq + 4
    api.cancel(resting["order_id"], expect=409)
    assert api.state()[0] == seq + 4


def test_sequence_is_per_symbol(api):
    api.limit("buy", "1", "100")
    api.limit("buy", "1", "100", symbol="ETH-USDT")
    api.limit("buy", "1", "100", symbol="ETH-USDT")
    assert api.get(f"/bbo/{BTC}")["sequence"] == 1
    assert api.get("/bbo/ETH-USDT")["sequence"] == 2


def test_fees_on_every_trade_maker_and_taker_rates(api):
    """Fees are the exact notional times the rate, rounded half-even to 8 places."""
    api.limit("buy", "0.12345", "30123.45")
    taker = api.order("sell", "market", "0.12345")
    trade = taker["trades"][0]
    notional = Decimal("30123.45") * Decimal("0.12345")
    assert trade["maker_fee"] == f"{(notional * Decimal('0.001')).quantize(Decimal('1e-8'))}"
    assert trade["taker_fee"] == f"{(notional * Decimal('0.002')).quantize(Decimal('1e-8'))}"
    assert trade["aggressor_side"] == "sell"


def test_partial_fills_of_a_maker_update_its_report(api):
    maker = api.limit("sell", "1", "100")
    api.order("buy", "market", "0.3")
    api.order("buy", "market", "0.3")
    now = api.get(f"/order/{maker['order_id']}")
    assert (now["status"], now["filled_quantity"], now["remaining_quantity"]) == (
        "partially_filled", "0.60000", "0.40000",
    )  # fmt: skip
    api.order("buy", "market", "0.4")
    assert api.get(f"/order/{maker['order_id']}")["status"] == "filled"


def test_average_price_over_several_levels(api):
    api.limit("sell", "1", "100")
    api.limit("sell", "3", "104")
    taker = api.order("buy", "market", "4")
    assert taker["average_price"] == "103.00"


def test_ids_are_increasing_strings_never_reused(api):
    ids = [int(api.limit("buy", "1", "1")["order_id"]) for _ in range(5)]
    assert ids == sorted(set(ids))
    rejected = api.order("buy", "limit", "1", "0", expect=400)
    assert "order_id" not in rejected
    assert int(api.limit("buy", "1", "1")["order_id"]) > ids[-1]
