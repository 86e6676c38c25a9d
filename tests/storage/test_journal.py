"""The journal: format, round trip, the hash chain, torn writes and corruption."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from engine.order import BUY, LIMIT, SELL
from storage import CorruptJournal, ReplayMismatch
from storage.journal import GENESIS, JournalReader, as_dict, decode

from .helpers import build, commands, fresh, lines_of, rewrite_chain, run, segments, state

pytestmark = pytest.mark.usefixtures("each_writer")


def _records(path) -> list[dict]:
    return [as_dict(json.loads(line)) for line in lines_of(path)]


def test_every_line_is_a_json_array_with_the_documented_fields(tmp_path):
    engine, store = build(tmp_path, count=80)
    store.close(engine)
    path = segments(tmp_path)[0]
    assert os.path.basename(path) == "journal-v2-000000000001.jsonl"
    lines = lines_of(path)
    assert lines and all(line.endswith(b"\n") for line in lines)
    ops = set()
    coids = 0
    for n, line in enumerate(lines, 1):
        line.decode("utf-8")
        command, prev, digest = json.loads(line)
        assert type(command) is list
        ops.add(command[1])
        assert command[0] == n
        if command[1] == "s":
            assert len(command) == 12
            _n, _op, symbol, side, order_type, ts, qty, price, coid, oid, trade_ids, seq = command
            assert side in ("buy", "sell") and order_type in ("limit", "market", "ioc", "fok")
            assert (price is None) == (order_type == "market")
            assert coid is None or isinstance(coid, str)
            coids += coid is not None
            assert isinstance(trade_ids, list) and all(isinstance(t, int) for t in trade_ids)
        else:
            assert len(command) == 6
            _n, _op, symbol, ts, oid, seq = command
        assert symbol in ("BTC-USDT", "ETH-USDT")
        assert all(isinstance(v, int) for v in (ts, oid, seq))
        assert len(prev) == len(digest) == 32
    assert ops == {"s", "c"} and coids


def test_the_hash_is_blake2b_128_of_prev_and_the_command(tmp_path):
    # what Documentation/DURABILITY.md tells a user to check by hand
    engine, store = build(tmp_path, count=20)
    store.close(engine)
    prev = GENESIS
    for line in lines_of(segments(tmp_path)[0]):
        line = line.rstrip(b"\n")
        command = line[1 : line.rindex(b',"', 0, line.rindex(b',"'))]
        assert line == b'[%b,"%b","%b"]' % (command, prev, line[-34:-2])
        assert hashlib.blake2b(prev + command, digest_size=16).hexdigest().encode() == line[-34:-2]
        prev = line[-34:-2]


def test_the_hand_check_with_b2sum_works(tmp_path):
    if shutil.which("b2sum") is None:
        pytest.skip("no b2sum")
    engine, store = build(tmp_path, count=10)
    store.close(engine)
    path = segments(tmp_path)[0]
    line = lines_of(path)[6].rstrip(b"\n").decode()
    script = 'line=$(sed -n 7p "$1"); printf \'%s%s\' "${line: -69:32}" "${line:1:-71}" | b2sum -l 128 | cut -c1-32'
    out = subprocess.run(["bash", "-c", script, "-", path], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == line[-34:-2]


def test_submit_record_holds_what_exact_replay_needs(tmp_path):
    engine, store, _ = fresh(tmp_path)
    with engine.lock("BTC-USDT"):
        store.wait(store.log_submit(engine.submit("BTC-USDT", SELL, LIMIT, 5, 101, "maker")))
    with engine.lock("BTC-USDT"):
        result = engine.submit("BTC-USDT", BUY, LIMIT, 7, 102, 'taker "\u00e9"]')
        store.wait(store.log_submit(result))
    with engine.lock("BTC-USDT"):
        cancel = engine.cancel(result.order.order_id)
        store.wait(store.log_cancel(cancel))
    first, second, third = _records(segments(tmp_path)[0])
    assert second["client_order_id"] == 'taker "\u00e9"]'
    assert second["timestamp"] == result.order.timestamp
    assert second["order_id"] == result.order.order_id
    assert second["trade_ids"] == [t.trade_id for t in result.trades] == [1]
    assert (second["quantity"], second["price"], second["sequence"]) == (7, 102, result.sequence)
    assert (second["symbol"], second["side"], second["order_type"]) == ("BTC-USDT", "buy", "limit")
    assert third["op"] == "c" and third["timestamp"] == cancel.timestamp
    assert third["sequence"] == cancel.sequence and third["order_id"] == result.order.order_id
    assert (
        first["prev"] == GENESIS.decode()
        and second["prev"] == first["hash"]
        and third["prev"] == second["hash"]
    )
    store.close(engine)


def test_a_market_order_has_a_null_price(tmp_path):
    from engine.order import MARKET

    engine, store, _ = fresh(tmp_path)
    with engine.lock("BTC-USDT"):
        store.wait(store.log_submit(engine.submit("BTC-USDT", SELL, LIMIT, 5, 101)))
    with engine.lock("BTC-USDT"):
        store.wait(store.log_submit(engine.submit("BTC-USDT", BUY, MARKET, 2)))
    first, second = _records(segments(tmp_path)[0])
    assert second["price"] is None and second["order_type"] == "market" and second["trade_ids"] == [1]
    store.abandon()


def test_a_journal_of_another_format_version_is_refused(tmp_path):
    from storage import UnsupportedFormat

    (tmp_path / "journal-000000000001.jsonl").write_bytes(b'{"n":1,"op":"submit"}\n')
    with pytest.raises(UnsupportedFormat, match="format v1"):
        fresh(tmp_path)


def test_round_trip_restores_the_exact_state(tmp_path):
    engine, store = build(tmp_path, seed=3, count=300)
    before = state(engine)
    store.abandon()  # a crash: no final snapshot
    again, store2, summary = fresh(tmp_path)
    assert state(again) == before
    assert summary["records_replayed"] == summary["last_record"] > 200
    assert summary["snapshot"] is None and summary["torn_tail"] is None
    again.check()
    store2.close(again)


def test_chain_links_every_record_to_the_one_before(tmp_path):
    engine, store = build(tmp_path, count=50)
    store.close(engine)
    prev = GENESIS.decode()
    for record in _records(segments(tmp_path)[0]):
        assert record["prev"] == prev
        prev = record["hash"]
    reader = JournalReader(str(tmp_path))
    assert sum(1 for _ in reader.records()) == reader.last_n == reader.lines


def _small_journal(tmp_path, count=8):
    src = tmp_path / "src"
    engine, store = build(src, seed=5, count=count)
    store.abandon()
    path = segments(src)[0]
    lines = lines_of(path)
    expected = {}
    # the state after all but the last record: replay the prefix
    shutil.copytree(src, tmp_path / "prefix")
    with open(segments(tmp_path / "prefix")[0], "wb") as f:
        f.write(b"".join(lines[:-1]))
    e, s, _ = fresh(tmp_path / "prefix")
    expected["prefix"] = state(e)
    s.abandon()
    return src, lines, expected


def test_torn_last_record_is_dropped_at_every_byte_offset(tmp_path):
    src, lines, expected = _small_journal(tmp_path)
    keep = b"".join(lines[:-1])
    last = lines[-1]
    for cut in range(len(last)):  # 0 .. len-1 bytes of the last line survived
        work = tmp_path / f"cut{cut}"
        shutil.copytree(src, work)
        path = segments(work)[0]
        with open(path, "wb") as f:
            f.write(keep + last[:cut])
        engine, store, summary = fresh(work)
        assert state(engine) == expected["prefix"], cut
        assert summary["last_record"] == len(lines) - 1
        if cut:
            assert summary["torn_tail"]["offset"] == len(keep)
            assert summary["torn_tail"]["size"] == cut
            assert summary["torn_tail"]["record"] == len(lines)
        else:
            assert summary["torn_tail"] is None
        assert os.path.getsize(path) == len(keep)  # truncated away, durably
        # the journal continues cleanly after the cut
        run(engine, store, commands(99, 5))
        store._check()
        store.abandon()
        engine2, store2, summary2 = fresh(work)
        assert summary2["torn_tail"] is None and state(engine2) == state(engine)
        store2.abandon()
        shutil.rmtree(work)


@pytest.mark.parametrize("where", ["content", "prev", "hash", "newline"])
def test_damaged_complete_last_record_is_a_torn_tail(tmp_path, where):
    src, lines, expected = _small_journal(tmp_path)
    last = bytearray(lines[-1])
    index = {"content": 10, "prev": len(last) - 60, "hash": len(last) - 10, "newline": len(last) - 1}[where]
    last[index] = ord("#") if last[index] != ord("#") else ord("%")
    path = segments(src)[0]
    with open(path, "wb") as f:
        f.write(b"".join(lines[:-1]) + bytes(last))
    engine, store, summary = fresh(src)
    assert summary["torn_tail"] is not None
    assert state(engine) == expected["prefix"]
    store.abandon()


@pytest.mark.parametrize("line_no", [0, 3, 6])
@pytest.mark.parametrize("where", ["content", "prev", "hash", "newline"])
def test_corruption_before_the_last_record_stops_startup_naming_file_and_offset(tmp_path, line_no, where):
    src, lines, _ = _small_journal(tmp_path)
    damaged = bytearray(lines[line_no])
    index = {
        "content": 20,
        "prev": len(damaged) - 60,
        "hash": len(damaged) - 10,
        "newline": len(damaged) - 1,
    }[where]
    damaged[index] = ord("#") if damaged[index] != ord("#") else ord("%")
    path = segments(src)[0]
    data = b"".join(lines[:line_no]) + bytes(damaged) + b"".join(lines[line_no + 1 :])
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(CorruptJournal) as info:
        fresh(src)
    err = info.value
    assert err.path == path
    assert err.offset == len(b"".join(lines[:line_no]))
    # a lost newline merges two lines: the damage shows at the merged line
    assert err.record == line_no + 1
    assert (
        path in str(err) and f"byte offset {err.offset}" in str(err) and f"record {line_no + 1}" in str(err)
    )
    assert os.path.getsize(path) == len(data)  # nothing was truncated


def test_a_missing_record_breaks_the_chain(tmp_path):
    src, lines, _ = _small_journal(tmp_path)
    path = segments(src)[0]
    with open(path, "wb") as f:
        f.write(b"".join(lines[:3] + lines[4:]))
    with pytest.raises(CorruptJournal, match="record 4"):
        fresh(src)


def test_swapped_records_break_the_chain(tmp_path):
    src, lines, _ = _small_journal(tmp_path)
    path = segments(src)[0]
    with open(path, "wb") as f:
        f.write(b"".join(lines[:2] + [lines[3], lines[2]] + lines[4:]))
    with pytest.raises(CorruptJournal, match="record 3"):
        fresh(src)


def test_a_rechained_but_altered_record_is_caught_by_replay(tmp_path):
    # Someone edits a record and recomputes every hash: the chain is valid,
    # but the engine does not reproduce the journaled result.
    src, lines, _ = _small_journal(tmp_path, count=30)
    records = [as_dict(json.loads(line)) for line in lines]
    target = next(r for r in records if r["op"] == "s" and r["n"] > 3)
    row = json.loads(lines[target["n"] - 1])
    row[0][11] += 7  # the command's sequence
    lines[target["n"] - 1] = json.dumps(row, separators=(",", ":")).encode() + b"\n"
    rewrite_chain(segments(src)[0], lines)
    with pytest.raises(ReplayMismatch, match=f"record {target['n']}"):
        fresh(src)


def test_decode_refuses_a_malformed_record():
    with pytest.raises(ReplayMismatch):
        decode(b'[["1","s"],"",""]')
    with pytest.raises(ReplayMismatch):
        decode(b'{"n":1,"op":"submit"}')
