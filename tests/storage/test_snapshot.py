"""Snapshots: snapshot + replay == full replay, fallbacks, retention, pruning."""

from __future__ import annotations

import json
import os

import pytest

from storage import CorruptJournal, CorruptSnapshot
from storage.journal import SEGMENT_RE, segment_name
from storage.snapshot import list_snapshots, read_snapshot
from storage.store import KEEP_SNAPSHOTS
from storage.verify import verify

from .helpers import build, commands, fresh, run, segments, state

pytestmark = pytest.mark.usefixtures("each_writer")


def _first(path) -> int:
    return int(SEGMENT_RE.fullmatch(os.path.basename(path)).group(1))


def _snapshots(path):
    return [p for _, p in list_snapshots(str(path))]


def test_snapshot_plus_replay_equals_full_replay(tmp_path):
    engine, store = build(tmp_path, seed=7, count=400, snapshot_every=60)
    before = state(engine)
    store.abandon()
    snaps = _snapshots(tmp_path)
    assert snaps, "snapshot_every=60 must have written snapshots"
    with_snapshot, s1, summary = fresh(tmp_path)
    assert summary["snapshot"] == snaps[-1]
    assert summary["records_replayed"] == summary["last_record"] - summary["snapshot_record"]
    s1.abandon()
    for path in snaps:
        os.unlink(path)
    full, s2, summary2 = fresh(tmp_path)
    assert summary2["snapshot"] is None and summary2["records_replayed"] == summary2["last_record"]
    s2.abandon()
    assert state(with_snapshot) == state(full) == before


def test_two_replays_are_byte_identical(tmp_path):
    engine, store = build(tmp_path, seed=8, count=300)
    store.abandon()
    first, s1, _ = fresh(tmp_path)
    s1.abandon()
    second, s2, _ = fresh(tmp_path)
    s2.abandon()
    assert state(first) == state(second) == state(engine)


def test_each_snapshot_is_the_state_after_its_record(tmp_path):
    engine, store = build(tmp_path, seed=9, count=300, snapshot_every=70)
    store.abandon()
    for path in _snapshots(tmp_path):
        snap = read_snapshot(path)
        work = tmp_path / f"upto{snap['n']}"
        os.makedirs(work)
        # the journal's first snap["n"] records alone
        with open(segments(tmp_path)[0], "rb") as f:
            data = b"".join(f.read().splitlines(keepends=True)[: snap["n"]])
        rest = b"".join(open(p, "rb").read() for p in segments(tmp_path)[1:])
        (work / segment_name(1)).write_bytes(b"".join((data + rest).splitlines(keepends=True)[: snap["n"]]))
        replayed, s, summary = fresh(work)
        s.abandon()
        assert summary["last_record"] == snap["n"]
        assert json.dumps(snap["engine"], sort_keys=True) == state(replayed)


def test_snapshots_roll_the_journal_and_keep_the_newest(tmp_path):
    engine, store = build(tmp_path, seed=10, count=600, snapshot_every=50)
    store.close(engine)
    snaps = list_snapshots(str(tmp_path))
    assert len(snaps) == KEEP_SNAPSHOTS
    firsts = [_first(p) for p in segments(tmp_path)]
    assert firsts[0] == 1 and len(firsts) > KEEP_SNAPSHOTS  # segments are all kept
    for n, _ in snaps:  # every snapshot sits on a segment boundary
        assert n + 1 in firsts


def test_close_writes_a_final_snapshot_and_restart_replays_nothing(tmp_path):
    engine, store = build(tmp_path, seed=11, count=120)
    before = state(engine)
    store.close(engine)
    again, s, summary = fresh(tmp_path)
    assert summary["records_replayed"] == 0 and summary["snapshot"] is not None
    assert state(again) == before
    s.close(again)
    # nothing new: the second close writes no snapshot
    assert len(_snapshots(tmp_path)) == 1


def test_damaged_newest_snapshot_falls_back_to_an_older_one(tmp_path, caplog):
    engine, store = build(tmp_path, seed=12, count=400, snapshot_every=80)
    before = state(engine)
    store.abandon()
    snaps = _snapshots(tmp_path)
    with open(snaps[-1], "r+b") as f:
        f.seek(200)
        f.write(b"#")
    again, s, summary = fresh(tmp_path)
    s.abandon()
    assert summary["snapshot"] == snaps[-2]
    assert summary["skipped_snapshots"][0]["path"] == snaps[-1]
    assert "checksum mismatch" in caplog.text
    assert state(again) == before


def test_truncated_snapshot_falls_back_to_full_replay(tmp_path):
    engine, store = build(tmp_path, seed=13, count=150)
    before = state(engine)
    store.close(engine)
    (snap,) = _snapshots(tmp_path)
    with open(snap, "r+b") as f:
        f.truncate(os.path.getsize(snap) // 2)
    again, s, summary = fresh(tmp_path)
    s.abandon()
    assert summary["snapshot"] is None and summary["records_replayed"] == summary["last_record"]
    assert state(again) == before


def test_snapshot_from_another_history_is_refused(tmp_path):
    # A valid snapshot whose hash is not the journal's (copied from another
    # data dir): it must not be trusted; the journal is replayed instead.
    a, sa = build(tmp_path / "a", seed=14, count=60)
    sa.close(a)
    b, sb = build(tmp_path / "b", seed=15, count=200)
    before = state(b)
    sb.abandon()
    (snap_a,) = _snapshots(tmp_path / "a")
    assert 0 < read_snapshot(snap_a)["n"] < sb.statistics()["last_record"]
    os.link(snap_a, tmp_path / "b" / os.path.basename(snap_a))
    again, s, summary = fresh(tmp_path / "b")
    s.abandon()
    assert summary["snapshot"] is None
    assert "differs from the journal" in summary["skipped_snapshots"][0]["reason"]
    assert state(again) == before


def test_snapshot_beyond_the_end_of_the_journal_stops_startup(tmp_path):
    engine, store = build(tmp_path, seed=16, count=100)
    store.close(engine)
    # lose the journal's tail: the snapshot covers records that are gone
    first, rolled = segments(tmp_path)
    os.unlink(rolled)  # the empty segment close() started
    path = first
    lines = open(path, "rb").read().splitlines(keepends=True)
    with open(path, "wb") as f:
        f.write(b"".join(lines[:-5]))
    with pytest.raises(CorruptJournal, match="journal ends at record"):
        fresh(tmp_path)


def test_pruned_segments_are_anchored_by_a_snapshot(tmp_path):
    engine, store = build(tmp_path, seed=17, count=500, snapshot_every=100)
    before = state(engine)
    store.abandon()
    oldest = list_snapshots(str(tmp_path))[0][0]
    for path in segments(tmp_path):
        if _first(path) <= oldest:
            os.unlink(path)  # the documented pruning rule
    again, s, summary = fresh(tmp_path)
    assert state(again) == before
    run(again, s, commands(18, 20))
    s.abandon()


def test_pruned_segments_stay_usable_after_their_snapshot_is_rotated_away(tmp_path):
    # Prune by the rule, then keep running until snapshot retention deletes
    # the snapshot the pruning was based on: a later snapshot still vouches.
    engine, store = build(tmp_path, seed=24, count=300, snapshot_every=60)
    oldest = list_snapshots(str(tmp_path))[0][0]
    for path in segments(tmp_path):
        if _first(path) <= oldest:
            os.unlink(path)
    run(engine, store, commands(25, 400))
    before = state(engine)
    store.abandon()
    assert list_snapshots(str(tmp_path))[0][0] > oldest  # the anchoring snapshot is gone
    again, s, summary = fresh(tmp_path)
    assert state(again) == before
    s.abandon()
    report = verify(str(tmp_path), out=lambda *a: None)
    assert report["ok"], report["problems"]


def test_a_pruned_journal_behind_a_foreign_snapshot_stops_startup(tmp_path):
    engine, store = build(tmp_path / "a", seed=26, count=300, snapshot_every=60)
    store.abandon()
    other, other_store = build(tmp_path / "b", seed=27, count=300, snapshot_every=60)
    other_store.abandon()
    oldest = list_snapshots(str(tmp_path / "a"))[0][0]
    for path in segments(tmp_path / "a"):
        if _first(path) <= oldest:
            os.unlink(path)
    for _n, path in list_snapshots(str(tmp_path / "a")):
        os.unlink(path)
    for _n, path in list_snapshots(str(tmp_path / "b")):
        os.link(path, tmp_path / "a" / os.path.basename(path))  # snapshots of another history
    # the newer ones are refused at their record; the one just before the
    # journal does not chain to its first record
    with pytest.raises(CorruptJournal, match="record 121: broken chain"):
        fresh(tmp_path / "a")


def test_pruned_segments_without_their_snapshot_stop_startup(tmp_path):
    engine, store = build(tmp_path, seed=19, count=500, snapshot_every=100)
    store.abandon()
    os.unlink(segments(tmp_path)[0])
    for path in _snapshots(tmp_path):
        os.unlink(path)
    with pytest.raises(CorruptSnapshot, match="no valid snapshot"):
        fresh(tmp_path)


def test_unfinished_snapshot_temp_file_is_removed(tmp_path):
    engine, store = build(tmp_path, seed=20, count=50)
    store.close(engine)
    tmp = tmp_path / "snapshot-000000000999.json.tmp"
    tmp.write_bytes(b'{"format":')
    again, s, _ = fresh(tmp_path)
    s.abandon()
    assert not tmp.exists()


def test_engine_lock_is_held_only_while_copying(tmp_path):
    # maybe_snapshot is cheap when not due and snapshots when due
    engine, store, _ = fresh(tmp_path, snapshot_every=10)
    run(engine, store, commands(21, 9))
    store.maybe_snapshot(engine)
    n_before = len(_snapshots(tmp_path))
    run(engine, store, commands(22, 30))
    assert len(_snapshots(tmp_path)) > n_before
    for market in engine.markets.values():  # no lock left held
        assert market.lock.acquire(blocking=False)
        market.lock.release()
    store.close(engine)


def test_a_failing_snapshot_write_is_logged_and_retried_later(tmp_path, monkeypatch, caplog):
    import storage.store as store_module

    calls = []

    def broken(*args, **kwargs):
        calls.append(args[1])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "write_snapshot", broken)
    engine, store, _ = fresh(tmp_path, snapshot_every=20)
    run(engine, store, commands(23, 70))  # the requests themselves succeed
    assert "snapshot failed" in caplog.text
    first = calls[0]
    assert all(b - a >= 20 for a, b in zip(calls, calls[1:], strict=False)), calls  # no retry storm
    assert first >= 20
    before = state(engine)
    monkeypatch.undo()
    store.abandon()
    again, s, summary = fresh(tmp_path)
    assert summary["snapshot"] is None and state(again) == before
    s.abandon()


def test_snapshot_file_round_trips_unicode_and_large_integers_and_reads_the_older_encoding(tmp_path):
    import hashlib

    from storage.snapshot import write_snapshot

    state = {"orders": [[1, "clé-ü", 10**19 * 9, -(10**19)]], "next_order_id": 2}
    symbols = [{"symbol": "BTC-USDT"}]
    path = write_snapshot(str(tmp_path), 7, b"ab" * 16, symbols, state)
    snap = read_snapshot(path)
    assert snap["engine"] == state and snap["n"] == 7 and snap["hash"] == b"ab" * 16
    # a snapshot written by the first encoder (json.dumps: ASCII with \u escapes) still reads
    head = {k: snap[k] for k in ("format", "version", "n", "created", "symbols", "engine")}
    head.update(n=8, hash="ab" * 16)
    content = json.dumps(head, separators=(",", ":")).encode("ascii")[:-1]
    assert b"\\u" in content
    older = tmp_path / "snapshot-000000000008.json"
    older.write_bytes(b'%b,"checksum":"%b"}\n' % (content, hashlib.sha256(content).hexdigest().encode()))
    assert read_snapshot(str(older))["engine"] == state
