"""``python -m storage.verify``: summary, exit status, repair."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from storage.snapshot import list_snapshots
from storage.verify import main

from .helpers import PROJECT_ROOT, build, fresh, lines_of, segments, state

pytestmark = pytest.mark.usefixtures("each_writer")


def _run(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_a_sound_data_dir_verifies(tmp_path, capsys):
    engine, store = build(tmp_path, seed=40, count=300, snapshot_every=70)
    store.close(engine)
    code, out = _run(capsys, "--data-dir", str(tmp_path))
    assert code == 0, out
    assert "result        OK" in out
    assert "replay identical" in out
    assert "identical to the full replay" in out


def test_command_line_entry_point(tmp_path):
    engine, store = build(tmp_path, seed=41, count=40)
    store.close(engine)
    out = subprocess.run(
        [sys.executable, "-m", "storage.verify", "--data-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout


def test_torn_tail_is_a_note_and_repair_drops_it(tmp_path, capsys):
    engine, store = build(tmp_path, seed=42, count=40)
    store.abandon()
    path = segments(tmp_path)[0]
    with open(path, "ab") as f:
        f.write(b'{"n":999,"op":"sub')
    code, out = _run(capsys, "--data-dir", str(tmp_path))
    assert code == 0 and "torn tail" in out
    code, out = _run(capsys, "--data-dir", str(tmp_path), "--repair")
    assert code == 0 and "dropped" in out and "torn tail" not in out.split("dropped")[1]


def test_corruption_fails_and_can_be_cut_with_the_loss_reported(tmp_path, capsys):
    engine, store = build(tmp_path, seed=43, count=60)
    store.abandon()
    path = segments(tmp_path)[0]
    lines = lines_of(path)
    with open(path, "r+b") as f:
        f.seek(len(b"".join(lines[:10])) + 30)
        f.write(b"#")
    code, out = _run(capsys, "--data-dir", str(tmp_path))
    assert code == 1 and "PROBLEM" in out and path in out and "record 11" in out
    code, out = _run(capsys, "--data-dir", str(tmp_path), "--repair")
    assert code == 1 and "--cut-at-corruption" in out
    code, out = _run(capsys, "--data-dir", str(tmp_path), "--repair", "--cut-at-corruption")
    assert code == 0, out
    assert "record 11" in out and "quarantine-" in out
    engine2, store2, summary = fresh(tmp_path)
    assert summary["last_record"] == 10
    store2.abandon()


def test_a_snapshot_that_disagrees_with_the_replay_fails(tmp_path, capsys):
    engine, store = build(tmp_path, seed=44, count=80)
    store.close(engine)
    ((n, snap),) = list_snapshots(str(tmp_path))
    data = open(snap, "rb").read().rstrip(b"\n")
    body = data[: data.rindex(b',"checksum":"')]
    body = body.replace(b'"next_order_id":', b'"next_order_id":1', 1)  # a forged, re-checksummed state
    digest = hashlib.sha256(body).hexdigest().encode()
    with open(snap, "wb") as f:
        f.write(b'%b,"checksum":"%b"}\n' % (body, digest))
    code, out = _run(capsys, "--data-dir", str(tmp_path))
    assert code == 1 and "differs from the replay" in out and "next_order_id" in out


def test_verify_leaves_the_data_dir_unchanged(tmp_path, capsys):
    engine, store = build(tmp_path, seed=45, count=50)
    before = state(engine)
    store.abandon()
    path = segments(tmp_path)[0]
    with open(path, "ab") as f:
        f.write(b"partial")
    size = os.path.getsize(path)
    _run(capsys, "--data-dir", str(tmp_path))
    assert os.path.getsize(path) == size
    again, s, _ = fresh(tmp_path)
    assert state(again) == before
    s.abandon()


def test_rejection_counters_are_the_only_tolerated_difference(tmp_path, capsys):
    # refused orders are not journaled, so a snapshot's rejection counters
    # cannot be replayed: equal but for those counters is "equivalent", OK
    engine, store = build(tmp_path, seed=46, count=50)
    engine.record_rejection("BTC-USDT")
    store.close(engine)
    code, out = _run(capsys, "--data-dir", str(tmp_path))
    assert code == 0, out
    assert "replay equivalent" in out and "rejections" in out
