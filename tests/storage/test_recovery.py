"""Recovery: ids and sequences continue, configuration and locking guards."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest

from engine.matcher import MatchingEngine
from engine.order import BUY, LIMIT, SELL
from engine.symbols import SymbolSpec, default_symbols
from storage import ConfigMismatch, DataDirLocked, Store

from .helpers import build, fresh, state

pytestmark = pytest.mark.usefixtures("each_writer")


def _ids(engine):
    snap = engine.snapshot()
    return snap["next_order_id"], snap["next_trade_id"], {s: m.sequence for s, m in engine.markets.items()}


@pytest.mark.parametrize("shutdown", ["crash", "clean"])
def test_ids_and_sequences_continue_without_reuse_or_gaps(tmp_path, shutdown):
    engine, store = build(tmp_path, seed=30, count=200)
    next_order, next_trade, sequences = _ids(engine)
    assert next_trade > 1
    store.abandon() if shutdown == "crash" else store.close(engine)
    again, store2, _ = fresh(tmp_path)
    assert _ids(again) == (next_order, next_trade, sequences)
    with again.lock("SOL-USDT"):
        maker = again.submit("SOL-USDT", SELL, LIMIT, 3, 100)
        store2.wait(store2.log_submit(maker))
    with again.lock("SOL-USDT"):
        taker = again.submit("SOL-USDT", BUY, LIMIT, 3, 200)
        store2.wait(store2.log_submit(taker))
    assert maker.order.order_id == next_order and taker.order.order_id == next_order + 1
    assert [t.trade_id for t in taker.trades][0] == next_trade
    assert maker.sequence == sequences["SOL-USDT"] + 1 and taker.sequence == maker.sequence + 1
    before = state(again)
    store2.abandon()
    third, store3, _ = fresh(tmp_path)
    assert state(third) == before
    store3.abandon()


def test_every_acknowledged_record_survives_and_nothing_else(tmp_path):
    # records logged but never waited for may be lost in a crash; every
    # waited-for one is there
    engine, store, _ = fresh(tmp_path)
    with engine.lock("ETH-USDT"):
        acked = store.log_submit(engine.submit("ETH-USDT", BUY, LIMIT, 1, 100))
    store.wait(acked)
    with engine.lock("ETH-USDT"):
        store.log_submit(engine.submit("ETH-USDT", BUY, LIMIT, 1, 101))  # never waited for
    store.abandon()
    again, s, summary = fresh(tmp_path)
    assert summary["last_record"] == acked
    assert list(again.orders) == [1]
    s.abandon()


def test_a_fresh_data_dir_is_created(tmp_path):
    engine, store, summary = fresh(tmp_path / "new" / "dir")
    assert summary["last_record"] == 0 and summary["segments"] == 0
    assert os.path.exists(tmp_path / "new" / "dir" / "journal-v2-000000000001.jsonl")
    store.close(engine)


def test_a_second_store_on_the_same_data_dir_is_refused(tmp_path):
    engine, store, _ = fresh(tmp_path)
    with pytest.raises(DataDirLocked):
        Store(str(tmp_path)).recover(MatchingEngine())
    store.close(engine)
    engine2, store2, _ = fresh(tmp_path)  # released by close
    store2.close(engine2)


def test_changed_tick_size_is_refused(tmp_path):
    engine, store = build(tmp_path, count=20)
    store.close(engine)
    specs = default_symbols()
    specs[0] = SymbolSpec("BTC-USDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.00001"))
    with pytest.raises(ConfigMismatch, match="BTC-USDT tick_size"):
        Store(str(tmp_path)).recover(MatchingEngine(specs))


def test_changed_fee_is_refused(tmp_path):
    engine, store = build(tmp_path, count=20)
    store.close(engine)
    specs = default_symbols()
    specs[1] = SymbolSpec("ETH-USDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0005"))
    with pytest.raises(ConfigMismatch, match="maker_fee"):
        Store(str(tmp_path)).recover(MatchingEngine(specs))


def test_removed_symbol_is_refused_and_added_symbol_is_fine(tmp_path):
    engine, store = build(tmp_path, count=20)
    store.close(engine)
    with pytest.raises(ConfigMismatch, match="SOL-USDT"):
        Store(str(tmp_path)).recover(MatchingEngine(default_symbols()[:3]))
    more = default_symbols() + [SymbolSpec("XRP-USDT", "XRP", "USDT", Decimal("0.0001"), Decimal("1"))]
    engine2 = MatchingEngine(more)
    store2 = Store(str(tmp_path))
    store2.recover(engine2)
    store2.close(engine2)
    saved = json.loads((tmp_path / "symbols.json").read_text())
    assert [s["symbol"] for s in saved["symbols"]][-1] == "XRP-USDT"


def test_recover_twice_is_an_error(tmp_path):
    engine, store, _ = fresh(tmp_path)
    with pytest.raises(Exception, match="already"):
        store.recover(engine)
    store.close(engine)


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Store(str(tmp_path), fsync="sometimes")
