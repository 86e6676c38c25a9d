"""Tests of the load-test runner, the monitoring suite and the market-data probe.

The pure parts (scheduling math, percentiles, parsing, the loopback-only rule, the
HTTP and WebSocket framing, the summary) are tested directly; one short smoke run of
``advanced_load_test.py`` goes against a real ``api/app.py`` started as a subprocess
(marked ``server``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import advanced_load_test  # noqa: E402
import md_latency  # noqa: E402
import monitoring_suite  # noqa: E402
from loadlib import accounts, report  # noqa: E402
from loadlib.http11 import ProtocolError, build_request, parse_response, parse_response_eof  # noqa: E402
from loadlib.httpengine import ERROR, KIND_INDEX, OK, REJECT, Recorder  # noqa: E402
from loadlib.orders import (  # noqa: E402
    DEFAULT_SPECS,
    CrossingFactory,
    OrderFactory,
    build_specs,
    fmt_units,
    mid_from_bbo,
    order_json,
    scale_of,
)
from loadlib.rawsio import OP_TEXT, mask_frame, parse_frames  # noqa: E402
from loadlib.runner import merge  # noqa: E402
from loadlib.safety import UnsafeTargetError, check_url, is_loopback_host  # noqa: E402
from loadlib.schedule import (  # noqa: E402
    PoissonSchedule,
    UniformSchedule,
    parse_mix,
    parse_rate,
    split,
    total_requests,
    worker_share,
)
from loadlib.stats import per_interval, percentile, summarize  # noqa: E402

from tests.serverproc import ServerProcess  # noqa: E402


# ---------------------------------------------------------------- percentiles
@pytest.mark.parametrize(
    ("p", "expected"),
    [(0, 1), (1, 1), (50, 50), (90, 90), (99, 99), (99.9, 100), (100, 100)],
)
def test_percentile_is_nearest_rank(p, expected):
    assert percentile(list(range(1, 101)), p) == expected


def test_percentile_of_empty_and_single():
    assert percentile([], 50) is None
    assert percentile([7.0], 0) == 7.0
    assert percentile([7.0], 99.9) == 7.0


def test_percentile_rejects_out_of_range():
    with pytest.raises(ValueError):
        percentile([1, 2], 101)
    with pytest.raises(ValueError):
        percentile([1, 2], -1)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300), st.floats(0.01, 100))
def test_percentile_property(values, p):
    s = sorted(values)
    r = percentile(s, p)
    assert r in s
    n = len(s)
    # at least p% of the samples are <= r, and fewer than p% are < r
    assert sum(v <= r for v in s) >= p / 100 * n - 1e-9
    assert sum(v < r for v in s) < p / 100 * n + 1e-9


def test_summarize_scales_to_ms_and_handles_empty():
    s = summarize([0.001, 0.002, 0.003, 0.004])
    assert s["count"] == 4 and s["p50"] == pytest.approx(2.0) and s["max"] == pytest.approx(4.0)
    assert summarize([])["p99"] is None


def test_per_interval_bins_cover_the_run():
    bins = per_interval([0.1, 0.9, 1.5, 2.99, 3.0], interval=1.0, end=3.0)
    assert [len(b) for b in bins] == [2, 1, 2]  # 3.0 goes to the last bin


# ---------------------------------------------------------------- scheduling
def test_total_requests():
    assert total_requests(1000, 60) == 60_000
    assert total_requests(3, 1) == 3
    assert total_requests(2.5, 1) == 3  # due at 0, 0.4, 0.8
    assert total_requests(0, 10) == 0


@given(st.integers(1, 5000), st.integers(1, 16))
def test_worker_shares_add_up(n_total, workers):
    shares = [worker_share(n_total, w, workers) for w in range(workers)]
    assert sum(shares) == n_total
    assert max(shares) - min(shares) <= 1


@given(st.floats(1, 5000), st.floats(0.1, 5), st.integers(1, 6))
def test_uniform_schedules_partition_the_global_schedule(rate, duration, workers):
    times = []
    for w in range(workers):
        sch = UniformSchedule(rate, duration, w, workers)
        mine = []
        while (t := sch.next_time()) is not None:
            mine.append(t)
        assert mine == sorted(mine)
        times.extend(mine)
    times.sort()
    n = total_requests(rate, duration)
    assert len(times) == n
    for j, t in enumerate(times):
        assert t == pytest.approx(j / rate)
        assert t < duration + 1e-9


def test_poisson_schedule_offers_the_rate_on_average():
    rate, duration, workers = 1000.0, 10.0, 4
    n = 0
    for w in range(workers):
        sch = PoissonSchedule(rate, duration, w, workers, seed=3)
        while sch.next_time() is not None:
            n += 1
    assert abs(n - rate * duration) < 5 * math.sqrt(rate * duration)


def test_split():
    assert split(8, 3) == [3, 3, 2]
    assert split(2, 2) == [1, 1]
    assert sum(split(17, 5)) == 17


# ---------------------------------------------------------------- argument parsing
def test_parse_rate():
    assert parse_rate("500") == 500.0
    assert parse_rate("max") is None
    for bad in ("0", "-3", "nan", "inf-ish"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_parse_mix_normalizes():
    mix = parse_mix("limit=70,market=10,ioc=10,fok=5,cancel=5")
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["limit"] == pytest.approx(0.7)
    assert parse_mix("limit=1")["cancel"] == 0.0


@pytest.mark.parametrize("bad", ["stop=5", "limit=1,limit=2", "limit=-1", "limit=0", "limit", "limit=x"])
def test_parse_mix_rejects(bad):
    with pytest.raises(ValueError):
        parse_mix(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--rate", "-5"],
        ["--mix", "limit=50,teleport=50"],
        ["--duration", "0"],
        ["--duration", "100000"],
        ["--symbols", "BTC-USDT,BTC-USDT"],
        ["--min-baseline-ratio", "0.8"],
        ["--baseline", "--baseline-only"],
        ["--mode", "batch", "--mix", "cancel=1"],
    ],
)
def test_load_test_rejects_bad_arguments(argv, capsys):
    try:
        rc = advanced_load_test.main(argv + ["--url", "http://127.0.0.1:9"])
    except SystemExit as exc:  # argparse's own type errors
        rc = exc.code
    assert rc == 2


def test_batch_mode_drops_cancels_from_the_mix():
    args = advanced_load_test.build_parser().parse_args(["--mode", "batch"])
    v = advanced_load_test.validate(args)
    assert v["mix"]["cancel"] == 0 and sum(v["mix"].values()) == pytest.approx(1.0)
    assert v["notes"]


@pytest.mark.parametrize(
    "argv, connections",
    [
        ([], advanced_load_test.CONNECTIONS),
        (["--rate", "max"], advanced_load_test.MAX_REST_CONNECTIONS),
        (["--rate", "max", "--baseline"], advanced_load_test.MAX_REST_CONNECTIONS),
        (["--rate", "max", "--mode", "batch"], advanced_load_test.CONNECTIONS),
        (["--rate", "max", "--mode", "ws"], advanced_load_test.CONNECTIONS),
        (["--rate", "max", "--connections", "3"], 3),
        (["--rate", "1000", "--connections", "3"], 3),
    ],
)
def test_default_connections(argv, connections):
    # REST flat out needs enough durable orders in flight to fill the commit groups;
    # every other load keeps the smaller default
    v = advanced_load_test.validate(advanced_load_test.build_parser().parse_args(argv))
    assert v["connections"] == connections
    assert advanced_load_test.MAX_REST_CONNECTIONS > advanced_load_test.CONNECTIONS


# ---------------------------------------------------------------- loopback only
@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "LOCALHOST"])
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.5", "0.0.0.0", "example.com", "8.8.8.8", "::"])
def test_remote_hosts(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:5000",
        "http://example.com",
        "https://127.0.0.1:5000",
        "ftp://127.0.0.1",
        "http://127.0.0.1:5000/order",
        "http://:5000",
        "http://127.0.0.1:99999",
    ],
)
def test_check_url_refuses(url):
    with pytest.raises(UnsafeTargetError):
        check_url(url)


def test_check_url_accepts_loopback_and_explicit_remote():
    assert check_url("http://127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert check_url("http://localhost:5001/") == ("127.0.0.1", 5001)
    assert check_url("http://[::1]:5002") == ("::1", 5002)
    assert check_url("http://10.0.0.1:5000", allow_remote=True) == ("10.0.0.1", 5000)


def test_tools_refuse_a_remote_target_before_sending_anything(capsys):
    # 192.0.2.0/24 is TEST-NET-1: it must be refused without a connection attempt.
    url = "http://192.0.2.1:5000"
    assert advanced_load_test.main(["--url", url, "--duration", "1"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert md_latency.main(["--url", url, "--duration", "1"]) == 2
    assert monitoring_suite.main(["--test", "monitor", "--url", url, "--iterations", "1"]) == 2


# ---------------------------------------------------------------- HTTP framing
def test_build_request():
    req = build_request("POST", "/order", "127.0.0.1", 5000, b'{"a":1}')
    assert req.startswith(b"POST /order HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n")
    assert b'Content-Length: 7\r\n\r\n{"a":1}' in req


def test_build_request_carries_the_api_key_header_before_the_body():
    req = build_request("POST", "/order", "127.0.0.1", 5000, b"{}", extra="X-API-Key: k1\r\n")
    head, _, body = req.partition(b"\r\n\r\n")
    assert b"\r\nX-API-Key: k1\r\n" in head + b"\r\n" and body == b"{}"
    assert b"X-API-Key" not in build_request("GET", "/health", "127.0.0.1", 5000)


def test_parse_response_content_length_and_partial():
    raw = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
    for cut in range(len(raw)):
        assert parse_response(raw[:cut]) is None
    status, body, used, close = parse_response(raw + b"HTTP/1.1 ...")
    assert (status, body, used, close) == (200, b'{"ok":true}', len(raw), False)


def test_parse_response_chunked_and_close():
    raw = (
        b"HTTP/1.1 404 NOT FOUND\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    assert parse_response(raw[:-2]) is None
    assert parse_response(raw) == (404, b'{"a":1}', len(raw), True)


def test_parse_response_until_eof_and_garbage():
    raw = b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert parse_response(raw) is None
    assert parse_response_eof(raw)[:2] == (200, b"hello")
    with pytest.raises(ProtocolError):
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")


# ---------------------------------------------------------------- WebSocket framing
def _unmask(frame: bytes) -> bytes:
    n = frame[1] & 0x7F
    pos = 2
    if n == 126:
        n, pos = int.from_bytes(frame[2:4], "big"), 4
    key, data = frame[pos : pos + 4], frame[pos + 4 :]
    assert len(data) == n
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 1000, 70000])
def test_client_frames_are_masked_and_round_trip(size):
    payload = bytes(i % 251 for i in range(size))
    frame = mask_frame(OP_TEXT, payload)
    assert frame[0] == 0x81 and frame[1] & 0x80
    if size < 65536:
        assert _unmask(frame) == payload


def test_parse_server_frames():
    def server_frame(text: bytes) -> bytes:
        n = len(text)
        head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
        return head + text

    buf = bytearray(server_frame(b"2") + server_frame(b'42/market,["trade",{}]') + server_frame(b"x" * 300))
    frames, used = parse_frames(buf[:-10])
    assert [f[2] for f in frames] == [b"2", b'42/market,["trade",{}]']
    frames, used = parse_frames(buf)
    assert len(frames) == 3 and used == len(buf) and frames[2][2] == b"x" * 300


# ---------------------------------------------------------------- orders
def test_decimal_formatting():
    assert scale_of(Decimal("0.01")) == (1, 2)
    assert scale_of(Decimal("0.00001")) == (1, 5)
    assert scale_of(Decimal("0.5")) == (5, 1)
    assert scale_of(Decimal("10")) == (10, 0)
    assert fmt_units(3000012, 2) == "30000.12"
    assert fmt_units(5, 5) == "0.00005"
    assert fmt_units(7, 0) == "7"


def test_mid_from_bbo():
    assert mid_from_bbo(None) is None
    assert mid_from_bbo({"best_bid": None, "best_ask": None}) is None
    assert mid_from_bbo({"best_bid": {"price": "99.00"}, "best_ask": {"price": "101.00"}}) == 100
    assert mid_from_bbo({"best_bid": None, "best_ask": {"price": "101.50"}}) == Decimal("101.50")


def test_build_specs_from_server_and_defaults():
    listing = {"symbols": [{"symbol": "BTC-USDT", "tick_size": "0.5", "lot_size": "0.1"}]}
    bbo = {"BTC-USDT": {"best_bid": {"price": "100.0"}, "best_ask": {"price": "101.0"}}}
    specs, notes = build_specs(["BTC-USDT", "ETH-USDT"], listing, bbo)
    assert specs[0].tick == Decimal("0.5") and specs[0].mid_ticks == 201
    assert specs[0].price(201) == "100.5"
    assert specs[1].tick == Decimal("0.01") and specs[1].mid_ticks == 200_000
    assert any("ETH-USDT" in n for n in notes)
    with pytest.raises(ValueError):
        build_specs(["NOPE-USDT"], listing, {})


@given(st.integers(0, 10_000), st.sampled_from(sorted(DEFAULT_SPECS)))
def test_generated_orders_are_on_the_grid(seed, symbol):
    specs, _ = build_specs([symbol], None, {})
    spec = specs[0]
    f = OrderFactory(specs, parse_mix("limit=60,market=10,ioc=10,fok=10,cancel=10"), seed)
    for _ in range(50):
        code, fields = f.next()
        if code == "C":
            continue
        body = json.loads(order_json(fields))
        assert body["symbol"] == symbol
        q = Decimal(body["quantity"])
        assert q > 0 and q % spec.lot == 0
        if code == "M":
            assert "price" not in body
        else:
            p = Decimal(body["price"])
            assert p > 0 and p % spec.tick == 0
            assert abs(p - spec.mid_ticks * spec.tick) <= 300 * spec.tick
        if code == "L":
            f.remember(f"id{f.seq}")


def test_cancels_target_remembered_orders_only():
    specs, _ = build_specs(["BTC-USDT"], None, {})
    f = OrderFactory(specs, parse_mix("cancel=1"), 1)
    assert f.next()[0] == "L"  # nothing rests yet: a limit instead
    f.remember("42")
    assert f.next() == ("C", ("42",))
    assert f.next()[0] == "L"


def test_orders_go_to_the_accounts_in_turn_and_cancels_to_the_orders_account():
    specs, _ = build_specs(["BTC-USDT"], None, {})
    f = OrderFactory(specs, parse_mix("limit=1"), 1, worker=1, accounts=3)
    seen = []
    for _ in range(6):
        code, fields = f.next()
        seen.append(f.account)
        f.remember(fields[5], f.account)  # the client_order_id stands in for an order_id
    assert seen == [1, 2, 0, 1, 2, 0]  # worker 1 starts on account 1
    owners = dict(f.resting)
    cancels = OrderFactory(specs, parse_mix("cancel=1"), 1, accounts=3)
    cancels.resting = list(f.resting)
    for _ in range(6):
        code, (order_id,) = cancels.next()
        assert code == "C" and cancels.account == owners[order_id]


def test_crossing_factory_puts_makers_and_takers_on_two_accounts():
    specs, _ = build_specs(["BTC-USDT"], None, {})
    f = CrossingFactory(specs[0], accounts=2)
    roles = []
    for _ in range(8):
        code, fields = f.next()
        roles.append((fields[2], f.account))
    assert {r for r in roles if r[0] == "limit"} == {("limit", 0)}
    assert {r for r in roles if r[0] == "ioc"} == {("ioc", 1)}


def test_api_keys_never_reach_the_json_summary():
    argv = ["--rate", "5", "--api-key", "secret1", "--api-key=secret2", "--accounts", "2"]
    assert accounts.redact_argv(argv) == [
        "--rate",
        "5",
        "--api-key",
        "***",
        "--api-key=***",
        "--accounts",
        "2",
    ]


def test_key_file_is_private_and_holds_one_key_a_line(tmp_path):
    path = accounts.write_key_file(["k1", "k2"], str(tmp_path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert open(path).read().splitlines() == ["k1", "k2"]


def test_crossing_factory_cycles_maker_and_taker():
    specs, _ = build_specs(["BTC-USDT"], None, {})
    f = CrossingFactory(specs[0])
    kinds = [(c, fl[1], fl[2]) for c, fl in (f.next() for _ in range(4))]
    assert kinds == [("L", "sell", "limit"), ("I", "buy", "ioc"), ("L", "buy", "limit"), ("I", "sell", "ioc")]


# ---------------------------------------------------------------- summary and verdict
def _fake_result(lat_ms: list[float], outcomes: list[int], interval: float = 0.01) -> dict:
    rec = Recorder()
    for i, (lat, out) in enumerate(zip(lat_ms, outcomes, strict=True)):
        sched = i * interval
        answered = None if out == ERROR else sched + lat / 1000
        rec.add(sched, sched, answered, KIND_INDEX["L"], out, 1, 1 if out == OK else 0)
        rec.counts["ok" if out == OK else ("VALIDATION_ERROR (400)" if out == REJECT else "timeout")] += 1
        rec.order_outcomes[out] += 1
    res = rec.result()
    res.update(max_backlog=0, connect_errors=0, pid=1, cpu_s=0.1, wall_s=1.0)
    return merge([res])


def test_analyze_and_verdict():
    res = _fake_result([1.0] * 98 + [5.0, 20.0], [OK] * 99 + [REJECT])
    s = report.analyze(res, {"mode": "rest", "rate": 100.0, "duration": 1.0})
    assert s["ok"] == 99 and s["rejected"] == 1 and s["errors"] == 0
    assert s["achieved_rate"] == pytest.approx(100, rel=0.05)
    assert s["latency_ms"]["p50"] == pytest.approx(1.0)
    assert s["latency_ms"]["max"] == pytest.approx(20.0)
    assert s["trades_seen"] == 99
    assert s["rate_reached"] is True
    assert report.verdict(s, target_p99_ms=10, target_rate=90)[0] is True
    assert report.verdict(s, target_p99_ms=4, target_rate=None)[0] is False
    assert report.verdict(s, target_p99_ms=None, target_rate=150)[0] is False
    assert "latency ms" in report.format_summary(s)


def test_errors_fail_the_verdict_and_shortfall_is_reported():
    res = _fake_result([1.0] * 50 + [0.0] * 50, [OK] * 50 + [ERROR] * 50)
    s = report.analyze(res, {"mode": "rest", "rate": 100.0, "duration": 1.0})
    assert s["errors"] == 50 and s["rate_reached"] is False
    passed, line = report.verdict(s, None, None)
    assert not passed and "FAILED" in line
    assert "TARGET RATE NOT REACHED" in report.format_summary(s)


def test_plot_writes_a_png(tmp_path):
    res = _fake_result([1.0 + (i % 7) for i in range(200)], [OK] * 200)
    s = report.analyze(res, {"mode": "rest", "rate": 100.0, "duration": 2.0})
    out = tmp_path / "p.png"
    report.plot(str(out), [(s, res)], "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- market-data matching
def test_first_event_at_or_after_the_orders_sequence():
    orders = [
        {"changed": True, "sequence": 5, "timestamp": "", "t_sched": 10.0},
        {"changed": True, "sequence": 7, "timestamp": "", "t_sched": 10.5},
        {"changed": False, "sequence": 7, "timestamp": "", "t_sched": 10.6},
        {"changed": True, "sequence": 9, "timestamp": "", "t_sched": 11.0},
    ]
    events = [(4, 10.2, ""), (6, 10.3, ""), (8, 10.9, "")]  # 5 and 7 conflated away
    lats, missing = md_latency.first_at_or_after(events, orders, by_seq=True)
    assert lats == pytest.approx([0.3, 0.4])
    assert missing == 1  # nothing reached sequence 9


def test_lost_trades_are_counted_per_subscriber():
    orders = [{"changed": True, "sequence": 1, "timestamp": "", "t_sched": 0.0, "trades": ["t1", "t2"]}]
    subs = [
        {
            "trades": {"t1": 0.01, "t2": 0.02},
            "dup_trades": 0,
            "bbo": [(1, 0.01, "")],
            "l2": [],
            "regressions": {"bbo": 0, "l2_update": 0},
            "events": 3,
            "other": 0,
        },
        {
            "trades": {"t1": 0.03},
            "dup_trades": 0,
            "bbo": [],
            "l2": [],
            "regressions": {"bbo": 0, "l2_update": 0},
            "events": 1,
            "other": 0,
        },
    ]
    res = md_latency.analyze(orders, subs, by_seq=True)
    assert res["lost_trades"] == 1 and res["subscribers_with_lost_trades"] == 1
    assert res["latency_ms"]["trade"]["max"] == pytest.approx(30.0)
    assert res["bbo_not_reflected"] == 1


def test_monitor_flatten():
    flat = monitoring_suite.flatten({"a": {"b": 1, "c": {"d": "2.5"}}, "e": [1, 2], "f": None})
    assert flat == {"a.b": 1, "a.c.d": "2.5", "f": None}
    assert monitoring_suite.as_number("2.5") == 2.5 and monitoring_suite.as_number(True) is None


# ---------------------------------------------------------------- smoke run against a real server
@pytest.fixture
def live_server(tmp_path):
    with ServerProcess(tmp_path / "data") as server:
        yield server.url


def run_load_test(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """``advanced_load_test.py --no-progress args...`` in a subprocess; it must exit
    ``expect`` (0: PASS)."""
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "advanced_load_test.py"), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """One ``--auth on`` server for the module's account tests."""
    with ServerProcess(tmp_path_factory.mktemp("auth") / "data", "--auth", "on") as server:
        yield server


def own_orders(url: str, key: str) -> list:
    import requests

    r = requests.get(url + "/orders?status=all&limit=1000", headers={"X-API-Key": key}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["orders"]


@pytest.mark.server
def test_with_auth_on_the_load_runner_makes_its_own_accounts(auth_server, tmp_path):
    out = tmp_path / "run.json"
    proc = run_load_test(
        *("--url", auth_server.url, "--rate", "100", "--duration", "2", "--drain", "3"),
        *("--processes", "2", "--connections", "4", "--json", str(out)),
        *("--data-dir", auth_server.data_dir, "--accounts", "3"),
    )
    assert "orders sent as 3 account(s), made with the admin token" in proc.stderr
    s = json.loads(out.read_text())["phases"][-1]
    assert s["errors"] == 0 and s["ok"] + s["rejected"] == 200
    assert s["ok"] >= 180 and s["trades_seen"] > 0  # the accounts trade with each other
    admin = accounts.AdminClient(auth_server.url, accounts.read_admin_token(auth_server.data_dir))
    names = [a["name"] for a in admin.list_accounts()["accounts"] if a["name"].startswith("load-")]
    assert len(names) == 3


@pytest.mark.server
@pytest.mark.parametrize("mode", ["rest", "ws"])
def test_with_auth_on_the_load_runner_sends_the_given_keys(auth_server, tmp_path, mode):
    admin = accounts.AdminClient(auth_server.url, accounts.read_admin_token(auth_server.data_dir))
    keys = [admin.create_account(f"given-{mode}-{i}", admin.load_deposits())["api_key"] for i in range(2)]
    key_file = accounts.write_key_file(keys, str(tmp_path))
    out = tmp_path / "run.json"
    run_load_test(
        *("--url", auth_server.url, "--rate", "100", "--duration", "2", "--drain", "3"),
        *("--connections", "4", "--mode", mode, "--json", str(out)),
        *("--api-key-file", key_file, "--api-key", keys[0]),
    )
    s = json.loads(out.read_text())["phases"][-1]
    assert s["errors"] == 0 and s["ok"] >= 180
    assert all(own_orders(auth_server.url, k) for k in keys)  # both accounts traded
    assert keys[0] not in out.read_text()  # --api-key is redacted from the JSON's argv


@pytest.mark.server
def test_with_auth_on_and_no_way_to_keys_the_tools_stop_with_a_hint(auth_server, tmp_path, capsys):
    proc = run_load_test(
        *("--url", auth_server.url, "--rate", "10", "--duration", "1"),
        *("--data-dir", str(tmp_path / "not-the-servers")),
        expect=2,
    )
    assert "--api-key" in proc.stderr and "admin token" in proc.stderr
    run = run_load_test(
        *("--url", auth_server.url, "--rate", "10", "--duration", "1", "--api-key", "wrong"), expect=2
    )
    assert "not accepted" in run.stderr
    code = md_latency.main(
        ["--url", auth_server.url, "--rate", "10", "--duration", "1", "--data-dir", str(tmp_path)]
    )
    assert code == 2 and "--api-key" in capsys.readouterr().err


@pytest.mark.server
def test_smoke_run_against_a_real_server(live_server, tmp_path):
    out = tmp_path / "run.json"
    proc = run_load_test(
        *("--url", live_server, "--rate", "100", "--duration", "2", "--drain", "3"),
        *("--processes", "2", "--connections", "4", "--json", str(out)),
    )
    assert "PASS" in proc.stdout
    data = json.loads(out.read_text())
    s = data["phases"][-1]
    assert s["orders_scheduled"] == 200
    assert s["errors"] == 0
    assert s["ok"] + s["rejected"] == 200
    assert s["ok"] >= 180  # rejects only from cancels racing fills
    assert s["trades_seen"] > 0
    assert s["latency_ms"]["p50"] is not None


@pytest.mark.server
def test_baseline_run_loads_health_and_ping_then_compares(live_server, tmp_path):
    out = tmp_path / "base.json"
    proc = run_load_test(
        *("--url", live_server, "--rate", "100", "--duration", "1", "--drain", "3"),
        *("--connections", "2", "--baseline", "--min-baseline-ratio", "0.5", "--json", str(out)),
    )
    assert "baseline: GET /health answered" in proc.stdout
    assert "baseline: POST /ping answered" in proc.stdout
    assert "of the POST /ping baseline (min 50%)" in proc.stdout  # the target compares with the POST
    data = json.loads(out.read_text())
    health, ping, orders = data["phases"]
    assert (health["mode"], ping["mode"], orders["mode"]) == ("health", "ping", "rest")
    for s in (health, ping):
        assert s["ok"] == s["orders_scheduled"] == 100 and s["errors"] == 0
        assert s["trades_seen"] == 0
    assert set(data["baseline_ratios"]) == {"health", "ping"}
    assert data["baseline_ratio"] == data["baseline_ratios"]["ping"]


@pytest.mark.server
def test_comprehensive_ceilings_load_the_phase_they_are_named_after(live_server, tmp_path):
    # --baseline-only once loaded only GET /health; when it came to load POST /ping
    # too, the suite's "health ceiling" silently reported the /ping phase.
    expected = {"health ceiling": "health", "ping ceiling": "ping", "orders ceiling": "rest"}
    for label, extra in monitoring_suite.CEILINGS:
        out = monitoring_suite.run_load(
            live_server,
            ["--duration", "1", "--connections", "2", *extra],
            str(tmp_path / "c.json"),
            None,
            False,
            60,
        )
        assert out is not None, label
        assert [p["mode"] for p in out["phases"]] == [expected[label]], label


def test_target_rate_counts_orders_per_second_of_load():
    # an open-loop run at exactly 1,000/s (60,000 answered, window 60.0006 s) once
    # measured 999.99/s and FAILED --target-rate 1000 with zero errors
    s = {
        "achieved_rate": 60000 / 60.00062,
        "orders_answered": 60000,
        "window_s": 60.00062,
        "duration_s": 60.0,
        "rate_reached": None,
        "errors": 0,
        "latency_ms": {"p99": 1.0},
    }
    assert report.verdict(s, target_p99_ms=None, target_rate=1000)[0] is True
    s.update(achieved_rate=59900 / 60.001, orders_answered=59900, window_s=60.001)
    assert report.verdict(s, target_p99_ms=None, target_rate=1000)[0] is False


@pytest.mark.parametrize(
    ("limit", "rate", "refused"),
    [
        (None, None, False),  # --rate-limit 0: no header, anything goes
        ("10000", 100.0, False),  # 6,000/min within 10,000/min
        ("10000", 1000.0, True),
        ("10000", None, True),  # rate max
        ("10000", 0.0, False),  # Socket.IO only
        ("garbage", 1000.0, False),
    ],
)
def test_rate_limit_problem(limit, rate, refused):
    from loadlib.safety import rate_limit_problem

    problem = rate_limit_problem(limit, rate)
    assert (problem is not None) == refused
    if refused:
        assert "--rate-limit 0" in problem and "429" in problem


@pytest.fixture
def rate_limited_health():
    """A stand-in server whose /health carries X-RateLimit-Limit: 10000."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-RateLimit-Limit", "10000")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("tool", ["advanced_load_test", "md_latency"])
def test_tools_refuse_a_rate_limited_server_with_a_hint(tool, rate_limited_health, capsys):
    module = __import__(tool)
    code = module.main(["--url", rate_limited_health, "--rate", "1000", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "10,000 requests per minute" in err and "--rate-limit 0" in err


@pytest.mark.server
def test_md_latency_smoke_run_against_a_real_server(live_server, tmp_path, capsys):
    out = tmp_path / "md.json"
    code = md_latency.main(
        ["--url", live_server, "--rate", "50", "--duration", "1", "--subscribers", "2", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "send delay p50 / p99" in printed and "PASS" in printed
    result = json.loads(out.read_text())["results"][0]
    assert result["orders_answered"] == 50 and result["lost_trades"] == 0
    assert result["send_delay_ms"]["count"] == 50


@pytest.mark.server
def test_md_latency_with_auth_on_trades_between_its_two_accounts(auth_server, tmp_path, capsys):
    out = tmp_path / "md.json"
    argv = ["--url", auth_server.url, "--rate", "40", "--duration", "1", "--subscribers", "1"]
    code = md_latency.main([*argv, "--json", str(out), "--data-dir", auth_server.data_dir])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(out.read_text())["results"][0]
    assert result["orders_answered"] == 40 and result["lost_trades"] == 0
    assert result["trades_expected_per_subscriber"] > 0  # two accounts: no self-trade prevention


@pytest.mark.server
def test_monitoring_suite_comprehensive_with_auth_on_makes_accounts_once(auth_server, tmp_path, capsys):
    out_dir = tmp_path / "report"
    code = monitoring_suite.main(
        [
            *("--test", "comprehensive", "--url", auth_server.url, "--levels", "50"),
            *("--level-duration", "1", "--no-ceilings", "--out-dir", str(out_dir)),
            *("--data-dir", auth_server.data_dir, "--accounts", "2"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "orders sent as 2 account(s)" in printed and "--api-key-file" in printed
    assert (out_dir / "report.md").exists()
    assert not [p for p in os.listdir(out_dir) if p.startswith(".keys-")]  # the key file is gone
    level = json.loads((out_dir / "level_50.json").read_text())["phases"][-1]
    assert level["errors"] == 0 and level["ok"] >= 45


def watch(url: str, *args: str, seconds: float = 4.0, during=None) -> str:
    """examples/market_watch.py for ``seconds`` (``during()`` runs meanwhile); its output."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "examples", "market_watch.py"), "--url", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1.5)
        if during:
            during()
        time.sleep(seconds - 1.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    return out


@pytest.mark.server
def test_market_watch_shows_the_keyed_accounts_order_events_only(auth_server, tmp_path):
    import requests

    admin = accounts.AdminClient(auth_server.url, accounts.read_admin_token(auth_server.data_dir))
    mine, other = (admin.create_account(n, admin.load_deposits())["api_key"] for n in ("watcher", "stranger"))
    key_file = tmp_path / "key"
    key_file.write_text(mine + "\n")

    def place():
        for key, price in ((mine, "100.00"), (other, "101.00")):
            body = {
                "symbol": "BTC-USDT",
                "side": "buy",
                "order_type": "limit",
                "price": price,
                "quantity": "0.01",
            }
            r = requests.post(auth_server.url + "/order", json=body, headers={"X-API-Key": key}, timeout=5)
            assert r.status_code == 200, r.text

    out = watch(auth_server.url, "--order-events", "--no-book", "--api-key-file", str(key_file), during=place)
    orders = [line for line in out.splitlines() if " ORDER " in line]
    assert len(orders) == 1 and "@ 100.00" in orders[0], out
    assert mine not in out
    keyless = watch(auth_server.url, "--order-events", "--no-book", seconds=2.5)
    assert "UNAUTHENTICATED" in keyless and "--api-key-file" in keyless
