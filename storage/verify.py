"""Offline verification of a data dir: ``python -m storage.verify --data-dir DIR``.

Checks, in one pass over the journal:
  1. the chain: every segment and line (see ``storage.journal``); a torn last
     record is reported (startup would drop it), anything else fails;
  2. every snapshot: checksum, and its hash against the chain;
  3. a full replay into a fresh engine (from record 1, or from the oldest
     valid snapshot when older segments were pruned), comparing the replayed
     state with each snapshot at its record;
  4. the newest valid snapshot plus the journal after it, compared with the
     full replay's final state, and the engine's own invariants (``check()``);
  5. with funds (the data dir's ``mode.json`` says so: it was run with
     ``--auth on``), conservation of the replayed balances, at every snapshot's
     record and at the end: per asset, the sum of every account's available
     and locked plus the fees equals deposits minus withdrawals, no balance is
     negative, and each account's locked equals what its open orders hold.
     The per-asset figures are printed.

Prints a summary; exit status 0 when the data dir is sound, 1 when not.
``--repair`` (with the server stopped) truncates a torn tail the way startup
would; with ``--cut-at-corruption`` it also cuts the journal at the first
damaged record, moving the cut-off bytes and any later segments into
``DIR/quarantine-<time>/`` -- records after the damage are then lost, which is
why it is never done automatically.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from decimal import Decimal  # noqa: E402

from engine.matcher import MatchingEngine  # noqa: E402
from engine.symbols import SymbolSpec, default_symbols  # noqa: E402
from storage.errors import ConfigMismatch, CorruptJournal, CorruptSnapshot, ReplayMismatch  # noqa: E402
from storage.journal import JournalReader, apply_record, decode, list_segments  # noqa: E402
from storage.snapshot import list_snapshots, read_snapshot  # noqa: E402
from storage.store import LOCK_FILE, MODE_FILE, SYMBOLS_FILE, read_mode  # noqa: E402


def state_json(engine) -> str:
    """The engine's state as canonical text: what "byte-identical" compares."""
    return json.dumps(engine.snapshot(), sort_keys=True)


def canonical(state: dict) -> dict:
    """``state`` without what a replay cannot reproduce by design: the
    ``rejections`` counters (refused orders are not journaled) and the
    relative order of commands on different symbols that ran concurrently on
    real threads (the order of ``orders`` and ``closed``). Balances need no
    such care: a snapshot lists them by account and leaves out accounts with
    nothing, whatever order they were first touched in (a refused order's
    account included)."""
    state = json.loads(json.dumps(state))
    state["orders"].sort(key=lambda row: row[0])
    state["closed"].sort()
    for market in state["markets"].values():
        market["stats"]["rejections"] = 0
    return state


def first_difference(a, b, path: str = "") -> str | None:
    """The first path at which two JSON values differ, or None."""
    if type(a) is not type(b):
        return f"{path or '/'}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}/{key}: only on one side"
            found = first_difference(a[key], b[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def compare(expected: dict, actual: dict) -> tuple[str, str | None]:
    """``("identical" | "equivalent" | "different", detail)``."""
    if json.dumps(expected, sort_keys=True) == json.dumps(actual, sort_keys=True):
        return "identical", None
    ca, cb = canonical(expected), canonical(actual)
    if ca == cb:
        return "equivalent", first_difference(expected, actual)
    return "different", first_difference(ca, cb)


def load_symbols(data_dir: str, snapshots: list[dict]) -> list[SymbolSpec]:
    """The symbol table the data dir was written with."""
    specs = None
    path = os.path.join(data_dir, SYMBOLS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            specs = json.load(f)["symbols"]
    elif snapshots:
        specs = snapshots[-1]["symbols"]
    if specs is None:
        return default_symbols()
    return [
        SymbolSpec(
            d["symbol"],
            d["base"],
            d["quote"],
            Decimal(d["tick_size"]),
            Decimal(d["lot_size"]),
            Decimal(d["maker_fee"]),
            Decimal(d["taker_fee"]),
        )
        for d in specs
    ]


def verify(data_dir: str, *, out=print, symbols: list[SymbolSpec] | None = None) -> dict:
    """Run every check; return the report (``report["ok"]``). Never raises
    for a damaged data dir: damage is what it reports."""
    started = time.perf_counter()
    report: dict = {"data_dir": os.path.abspath(data_dir), "ok": True, "problems": [], "notes": []}
    problems, notes = report["problems"], report["notes"]
    if not os.path.isdir(data_dir):
        problems.append(f"{data_dir}: not a directory")
        report["ok"] = False
        return report
    if _in_use(data_dir):
        notes.append("a server has this data dir open: its newest records may be in flight")

    snapshots = []
    for _n, path in list_snapshots(data_dir):
        try:
            snap = read_snapshot(path)
            snap["path"] = path
            snapshots.append(snap)
        except CorruptSnapshot as exc:
            problems.append(f"snapshot unusable: {exc}")
    report["snapshots"] = {s["path"]: "checksum ok" for s in snapshots}
    segments = list_segments(data_dir)
    report["segments"] = len(segments)
    specs = symbols or load_symbols(data_dir, snapshots)
    try:
        funds = bool(read_mode(data_dir))  # no mode.json: written before balances existed
    except ConfigMismatch as exc:
        problems.append(str(exc))
        funds = any(s["engine"].get("funds") is not None for s in snapshots)
    report["mode"] = "funds" if funds else "no funds"

    first_n = segments[0][0] if segments else 1
    base = None  # where the full replay starts
    if first_n > 1:
        older = [s for s in snapshots if s["n"] >= first_n - 1]
        if older:
            base = older[0]
            notes.append(
                f"segments before record {first_n} were pruned: full replay starts at {base['path']}"
            )
        else:
            problems.append(
                f"the journal starts at record {first_n} and no valid snapshot covers the records before it"
            )
    first_prev = base["hash"] if base and base["n"] == first_n - 1 else None
    by_n = {s["n"]: s for s in snapshots}
    reader = JournalReader(data_dir, watch=by_n, first_prev=first_prev)
    full = MatchingEngine(specs, funds=funds)
    replay_seconds = 0.0
    restored = _restore(full, base, problems) if base is not None else True
    replayed = False  # the whole journal went into ``full``
    if restored and (first_n == 1 or base is not None):
        t0 = time.perf_counter()
        try:
            for n, line in reader.records(after=base["n"] if base else 0):
                apply_record(full, decode(line))
                snap = by_n.get(n)
                if snap is not None and funds:
                    _conservation(full, f"after record {n} ({os.path.basename(snap['path'])})", problems)
                if snap is not None and snap is not base:
                    verdict, detail = compare(snap["engine"], full.snapshot())
                    report["snapshots"][snap["path"]] = f"checksum ok, replay {verdict}"
                    if verdict == "different":
                        problems.append(f"{snap['path']} differs from the replay at record {n}: {detail}")
                    elif verdict == "equivalent":
                        notes.append(
                            f"{snap['path']}: equal to the replay up to rejection counters / "
                            f"cross-symbol order ({detail})"
                        )
            replayed = True
        except (CorruptJournal, ReplayMismatch) as exc:
            problems.append(str(exc))
        replay_seconds = time.perf_counter() - t0
    for s in snapshots:
        if s["n"] > reader.last_n and not problems:
            problems.append(
                f"{s['path']} covers record {s['n']} but the journal ends at record {reader.last_n}"
            )
        elif s["n"] >= first_n and s["n"] in reader.hashes and reader.hashes[s["n"]] != s["hash"]:
            problems.append(f"{s['path']}: its hash is not the journal's hash of record {s['n']}")
    if reader.torn is not None:
        notes.append(f"torn tail (startup drops it): {reader.torn}")
        report["torn_tail"] = reader.torn.to_dict()
    report.update(
        first_record=first_n,
        last_record=reader.last_n,
        records=reader.lines,
        journal_bytes=reader.bytes,
        full_replay_seconds=round(replay_seconds, 3),
    )

    if replayed and funds:  # the figures, even when other checks failed
        report["funds"] = _conservation(full, "at the end of the journal", problems)
        report["scales"] = dict(full.ledger.scales)
        _locks(full, problems)
    if not problems:
        try:
            full.check()
        except AssertionError as exc:
            problems.append(f"the replayed engine fails its invariants: {exc!r}")
        valid = [s for s in snapshots if s["n"] <= reader.last_n]
        if valid and _restore(quick := MatchingEngine(specs, funds=funds), valid[-1], problems):
            newest = valid[-1]
            t0 = time.perf_counter()
            tail = 0
            reader2 = JournalReader(data_dir, first_prev=first_prev)
            try:
                for _n, line in reader2.records(after=newest["n"]):
                    apply_record(quick, decode(line))
                    tail += 1
            except (CorruptJournal, ReplayMismatch) as exc:
                problems.append(str(exc))
            verdict, detail = compare(full.snapshot(), quick.snapshot())
            report["snapshot_plus_replay"] = {
                "snapshot": newest["path"],
                "records_replayed": tail,
                "seconds": round(time.perf_counter() - t0, 3),
                "vs_full_replay": verdict,
            }
            if verdict == "different":
                problems.append(f"snapshot + replay differs from the full replay: {detail}")
        report["final_state"] = {
            symbol: {"sequence": m.sequence, "resting_orders": len(m.book.orders)}
            for symbol, m in full.markets.items()
        }
        state = full.snapshot()
        registry = full.accounts
        report["accounts"] = {
            "accounts": len(registry),
            "keys": len(registry.keys),
            "revoked": sum(1 for k in registry.keys.values() if k.revoked is not None),
        }
        report["next_order_id"] = state["next_order_id"]
        report["next_trade_id"] = state["next_trade_id"]
    report["ok"] = not problems
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _restore(engine, snap: dict, problems: list) -> bool:
    """Load ``snap`` into ``engine``; a snapshot it cannot take is a problem."""
    try:
        engine.restore(snap["engine"])
        return True
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"{snap['path']}: cannot be restored: {exc}")
        return False


def _conservation(engine, where: str, problems: list) -> dict:
    """Check that the balances add up (``Ledger.conservation``); a problem per
    asset that does not, naming the figures and any negative balance. Returns
    the figures per asset (ints in the asset's units)."""
    ledger = engine.ledger
    figures = ledger.conservation()
    for asset, f in figures.items():
        if f["ok"]:
            continue
        held = f["available"] + f["locked"] + f["fees"]
        net = f["deposits"] - f["withdrawals"]
        negative = [
            f"account {account_id} {name} {ledger.format(asset, value)}"
            for account_id, cells in ledger.balances.items()
            for name, value in zip(("available", "locked"), cells[asset], strict=True)
            if value < 0
        ]
        if held != net:
            problems.append(
                f"{asset} does not add up {where}: available + locked + fees = "
                f"{ledger.format(asset, held)}, deposits - withdrawals = {ledger.format(asset, net)}"
            )
        if negative:
            problems.append(f"{asset} has negative balances {where}: {', '.join(negative)}")
    return figures


def _locks(engine, problems: list) -> None:
    """Check that each account's locked balance equals what its open orders
    (resting and pending) hold (``Ledger.check``)."""
    open_orders = [
        order
        for m in engine.markets.values()
        for order in (*m.book.orders.values(), *m.stops.orders.values())
    ]
    try:
        engine.ledger.check(open_orders)
    except AssertionError as exc:
        problems.append(f"the replayed balances fail their checks: {exc}")


def _units(value: int, scale: int) -> str:
    """An amount in units as a decimal with ``scale`` decimals (``Ledger.format``)."""
    if not scale:
        return str(value)
    digits = str(abs(value)).rjust(scale + 1, "0")
    return f"{'-' if value < 0 else ''}{digits[:-scale]}.{digits[-scale:]}"


def _in_use(data_dir: str) -> bool:
    path = os.path.join(data_dir, LOCK_FILE)
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def repair(data_dir: str, cut_at_corruption: bool, out=print) -> bool:
    """Drop a torn tail; optionally cut at the first corrupt record. True if
    the journal is sound afterwards."""
    if _in_use(data_dir):
        out("refusing to repair: a server has this data dir open")
        return False
    reader = JournalReader(data_dir, repair_tail=True)  # a pruned journal's start is taken on trust
    try:
        for _ in reader.records(after=1 << 62):
            pass
    except CorruptJournal as exc:
        if not cut_at_corruption:
            out(f"corruption (not a torn tail): {exc}")
            out(
                "  re-run with --repair --cut-at-corruption to cut the journal there (records after it are lost)"
            )
            return False
        quarantine = os.path.join(data_dir, time.strftime("quarantine-%Y%m%dT%H%M%S"))
        os.makedirs(quarantine)
        later = [path for first, path in reader.segments if first > (exc.record or 0)]
        later = [p for p in later if p != exc.path]
        with open(exc.path, "rb") as f:
            f.seek(exc.offset)
            with open(os.path.join(quarantine, os.path.basename(exc.path) + ".cut"), "wb") as g:
                shutil.copyfileobj(f, g)
        from storage.journal import truncate

        truncate(exc.path, exc.offset)
        for path in later:
            shutil.move(path, quarantine)
        out(
            f"cut the journal at {exc.path} byte {exc.offset} (record {exc.record}); "
            f"the rest is in {quarantine}"
        )
        return repair(data_dir, False, out)
    if reader.torn:
        out(f"dropped {reader.torn}")
    else:
        out("nothing to repair")
    return True


def _print(report: dict, out) -> None:
    out(f"data dir      {report['data_dir']}")
    if "records" in report:
        out(
            f"journal       {report['segments']} segment(s), records {report['first_record']}.."
            f"{report['last_record']} ({report['records']} verified, {report['journal_bytes']:,} bytes)"
        )
        out(f"full replay   {report['full_replay_seconds']} s")
    for path, status in report.get("snapshots", {}).items():
        out(f"snapshot      {os.path.basename(path)}: {status}")
    spr = report.get("snapshot_plus_replay")
    if spr:
        out(
            f"snap+replay   {os.path.basename(spr['snapshot'])} + {spr['records_replayed']} records "
            f"in {spr['seconds']} s: {spr['vs_full_replay']} to the full replay"
        )
    for symbol, st in report.get("final_state", {}).items():
        out(f"  {symbol:10} sequence {st['sequence']}, {st['resting_orders']} resting orders")
    if "accounts" in report:
        a = report["accounts"]
        out(f"accounts      {a['accounts']} account(s), {a['keys']} key(s) of which {a['revoked']} revoked")
    if "next_order_id" in report:
        out(f"ids           next order id {report['next_order_id']}, next trade id {report['next_trade_id']}")
    if report.get("mode") == "no funds":
        out("funds         none: the data dir was run without balances (--auth off)")
    elif "funds" in report:
        out(
            f"funds         per asset: available + locked + fees = deposits - withdrawals ({MODE_FILE}: funds)"
        )
        for asset, f in report["funds"].items():
            scale = report["scales"][asset]
            held = f["available"] + f["locked"] + f["fees"]
            out(
                f"  {asset:6} {_units(f['available'], scale)} + {_units(f['locked'], scale)} + "
                f"{_units(f['fees'], scale)} = {_units(held, scale)}; {_units(f['deposits'], scale)} - "
                f"{_units(f['withdrawals'], scale)} = {_units(f['deposits'] - f['withdrawals'], scale)}"
                f"  {'ok' if f['ok'] else 'BROKEN'}"
            )
    for note in report["notes"]:
        out(f"note          {note}")
    for problem in report["problems"]:
        out(f"PROBLEM       {problem}")
    out(f"result        {'OK' if report['ok'] else 'FAILED'} ({report.get('seconds', 0)} s)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m storage.verify", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--repair", action="store_true", help="drop a torn tail (server stopped)")
    p.add_argument(
        "--cut-at-corruption",
        action="store_true",
        help="with --repair: cut the journal at the first damaged record (loses what follows)",
    )
    args = p.parse_args(argv)
    if args.repair and not repair(args.data_dir, args.cut_at_corruption):
        return 1
    report = verify(args.data_dir)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        _print(report, print)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
