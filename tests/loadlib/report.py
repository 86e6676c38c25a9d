"""Turn a merged load phase into figures, a summary table, a verdict and a plot.

Figures (all computed from per-request records, see ``httpengine.Recorder``):

* offered rate: orders/s the schedule offered (``--rate``), or ``max`` (closed loop);
* sent: orders actually written to a socket, and their rate over the duration;
* achieved rate: orders *answered* (accepted or rejected) divided by the time from
  the start to the last answer (or the last scheduled send, if later); ``ok/s``
  counts accepted orders only;
* outcomes per order: ok, rejected (4xx, by error code), errors (5xx, timeouts,
  connection errors, not completed by the end of the drain);
* latency from the **scheduled** send time to the answer (coordinated-omission free),
  over answered requests; service time from the actual send; send delay = actual send
  - scheduled time, which shows when the generator (or a full set of busy
  connections) held requests back;
* trades seen: trades listed in the answers (fills where our order was the taker).
"""

from __future__ import annotations

import math

from .httpengine import ERROR, KIND_NAMES, OK, REJECT
from .stats import fmt_ms, per_interval, summarize

RATE_SHORTFALL = 0.95  # achieved below this share of offered => "target rate not reached"


def analyze(res: dict, phase: dict) -> dict:
    """The summary dict of one phase (``phase``: mode, rate, duration, batch_size...)."""
    sched, lat, svc, sent = res["sched"], res["lat"], res["svc"], res["sent"]
    kinds, outcome, norders, trades = res["kind"], res["outcome"], res["orders"], res["trades"]
    n_req = len(sched)
    answered = [i for i in range(n_req) if outcome[i] != ERROR]
    lat_ans = [lat[i] for i in answered]
    oo = res["order_outcomes"]
    orders_total = sum(norders)
    answered_orders = oo[OK] + oo[REJECT]
    last_answer = max((sched[i] + lat[i] for i in answered), default=0.0)
    duration = phase["duration"]
    # From the start to the last answer (or the last scheduled send, if later): a run
    # whose answers keep pace ends ~(latency) after the last send, i.e. at ~duration; a
    # server that falls behind is charged for the time it took to catch up.
    last_sched = sched[-1] if sched else 0.0
    window = max(last_answer, last_sched) if answered else duration
    sent_orders = sum(norders[i] for i in range(n_req) if not math.isnan(sent[i]))
    delays = [sent[i] - sched[i] for i in range(n_req) if not math.isnan(sent[i])]
    rate = phase.get("rate")
    s = {
        "label": phase.get("label", phase["mode"]),
        "mode": phase["mode"],
        "offered_rate": rate,
        "closed_loop": rate is None,
        "duration_s": duration,
        "batch_size": phase.get("batch_size", 1),
        "processes": res.get("processes"),
        "connections": res.get("connections"),
        "connected": res.get("connected"),
        "requests": n_req,
        "orders_scheduled": orders_total,
        "orders_sent": sent_orders,
        "sent_rate": sent_orders / duration if duration else None,
        "orders_answered": answered_orders,
        "achieved_rate": answered_orders / window if window else 0.0,
        "ok_rate": oo[OK] / window if window else 0.0,
        "requests_rate": len(answered) / window if window else 0.0,
        "window_s": window,
        "ok": oo[OK],
        "rejected": oo[REJECT],
        "errors": oo[ERROR],
        "outcomes": dict(sorted(res["counts"].items(), key=lambda kv: -kv[1])),
        "latency_ms": summarize(lat_ans),
        "service_ms": summarize([svc[i] for i in answered]),
        "send_delay_ms": summarize(delays),
        "max_backlog": res.get("max_backlog", 0),
        "trades_seen": sum(trades),
        "per_kind_ms": {},
        "worker_errors": res.get("worker_errors", []),
        "generator_cpu_percent": res.get("worker_cpu_percent", []),
        "server": res.get("server"),
        "machine": res.get("machine"),
    }
    s["trades_rate"] = s["trades_seen"] / window if window else 0.0
    srv = s["server"]
    # Server CPU per answered request: independent of how much CPU the server was
    # given, so it stays comparable on a busy machine (1e6 / this = requests/s per core).
    if srv and srv.get("cpu_s") is not None and len(answered):
        s["server_cpu_us_per_request"] = srv["cpu_s"] * 1e6 / len(answered)
    else:
        s["server_cpu_us_per_request"] = None
    by_kind: dict[int, list[float]] = {}
    for i in answered:
        by_kind.setdefault(kinds[i], []).append(lat[i])
    for k, vals in sorted(by_kind.items()):
        s["per_kind_ms"][KIND_NAMES[k]] = summarize(vals)
    if rate is not None:
        s["rate_reached"] = s["achieved_rate"] >= RATE_SHORTFALL * rate
    else:
        s["rate_reached"] = None
    s["series"] = series(res, duration)
    return s


def series_interval(duration: float) -> float:
    """Bin width of the time series: 1 s, finer for runs shorter than 20 s."""
    if duration >= 20:
        return 1.0
    return max(0.1, round(duration / 20, 1))


def series(res: dict, duration: float) -> dict:
    """Time series by bin (see ``series_interval``): answered/ok/errors per second
    (answers by arrival time, errors by scheduled time) and p50/p99/max latency of the
    requests scheduled in each bin."""
    sched, lat, outcome, norders = res["sched"], res["lat"], res["outcome"], res["orders"]
    n = len(sched)
    iv = series_interval(duration)
    end = max([duration] + [sched[i] + lat[i] for i in range(n) if outcome[i] != ERROR])
    ans_t = [sched[i] + lat[i] for i in range(n) if outcome[i] != ERROR]
    ans_n = [norders[i] for i in range(n) if outcome[i] != ERROR]
    ok_t = [sched[i] + lat[i] for i in range(n) if outcome[i] == OK]
    ok_n = [norders[i] for i in range(n) if outcome[i] == OK]
    err_t = [sched[i] for i in range(n) if outcome[i] == ERROR]
    err_n = [norders[i] for i in range(n) if outcome[i] == ERROR]
    lat_bins = per_interval(
        [sched[i] for i in range(n) if outcome[i] != ERROR],
        [lat[i] for i in range(n) if outcome[i] != ERROR],
        iv,
        end,
    )
    out = {
        "interval_s": iv,
        "t": [round(k * iv, 3) for k in range(len(lat_bins))],
        "answered_per_s": [sum(b) / iv for b in per_interval(ans_t, ans_n, iv, end)],
        "ok_per_s": [sum(b) / iv for b in per_interval(ok_t, ok_n, iv, end)],
        "errors_per_s": [sum(b) / iv for b in per_interval(err_t, err_n, iv, end)],
        "p50_ms": [summarize(b)["p50"] for b in lat_bins],
        "p99_ms": [summarize(b)["p99"] for b in lat_bins],
        "max_ms": [summarize(b)["max"] for b in lat_bins],
    }
    return out


def _lat_line(name: str, st: dict) -> str:
    if not st["count"]:
        return f"{name:<22}-"
    return (
        f"{name:<22}p50 {fmt_ms(st['p50']):>7}  p90 {fmt_ms(st['p90']):>7}  "
        f"p99 {fmt_ms(st['p99']):>7}  p99.9 {fmt_ms(st['p99.9']):>7}  "
        f"max {fmt_ms(st['max']):>7}  (n={st['count']})"
    )


# The baseline phases: the endpoint each loads (the framework's own ceilings).
BASELINE_ENDPOINTS = {"health": "GET /health", "ping": "POST /ping"}


def format_summary(s: dict) -> str:
    """The human-readable table of one phase."""
    unit = "req" if s["mode"] in BASELINE_ENDPOINTS else "orders"
    rate = "max (closed loop)" if s["closed_loop"] else f"{s['offered_rate']:,.1f} {unit}/s"
    head = (
        f"=== {s['label']}: {s['mode']}"
        + (f" x{s['batch_size']}" if s["mode"] == "batch" else "")
        + f", {rate} for {s['duration_s']:g} s, {s['processes']} processes, "
        f"{s['connections']} connections ==="
    )
    lines = [head]
    if not s["closed_loop"]:
        lines.append(
            f"{'offered':<22}{s['offered_rate']:,.1f} {unit}/s ({s['orders_scheduled']:,} scheduled)"
        )
    lines.append(f"{'sent':<22}{s['orders_sent']:,} ({s['sent_rate']:,.1f}/s)")
    achieved = f"{s['achieved_rate']:,.1f} {unit}/s answered, {s['ok_rate']:,.1f}/s ok"
    if s["mode"] == "batch":
        achieved += f" ({s['requests_rate']:,.1f} requests/s)"
    lines.append(f"{'achieved':<22}{achieved}   (over {s['window_s']:.1f} s)")
    if s["rate_reached"] is False:
        lines.append(
            f"{'':<22}!! TARGET RATE NOT REACHED: achieved "
            f"{s['achieved_rate'] / s['offered_rate']:.0%} of offered"
        )
    lines.append(f"{'outcomes':<22}ok {s['ok']:,}  |  rejected {s['rejected']:,}  |  errors {s['errors']:,}")
    for label, n in s["outcomes"].items():
        if label != "ok":
            lines.append(f"{'':<24}{label}: {n:,}")
    lines.append(_lat_line("latency ms", s["latency_ms"]))
    lines.append(_lat_line("service ms", s["service_ms"]))
    sd = s["send_delay_ms"]
    if sd["count"]:
        lines.append(
            f"{'send delay ms':<22}p50 {fmt_ms(sd['p50']):>7}  p99 {fmt_ms(sd['p99']):>7}  "
            f"max {fmt_ms(sd['max']):>7}  (max backlog {s['max_backlog']})"
        )
    if len(s["per_kind_ms"]) > 1:
        for kind, st in s["per_kind_ms"].items():
            lines.append(_lat_line(f"  {kind}", st))
    if s["mode"] not in BASELINE_ENDPOINTS:
        lines.append(f"{'trades seen':<22}{s['trades_seen']:,} ({s['trades_rate']:,.1f}/s)")
    gen = s["generator_cpu_percent"]
    cpu = f"{'cpu':<22}generator " + " + ".join(f"{c:.0f}%" for c in gen) + " of a core"
    srv = s.get("server")
    if srv and srv.get("cpu_percent") is not None:
        cpu += (
            f"; server pid {srv['pid']} {srv['cpu_percent']:.0f}%, RSS "
            f"{srv['rss_start_mb']:.0f} -> {srv['rss_end_mb']:.0f} MB"
        )
        if s.get("server_cpu_us_per_request"):
            per = "order" if s["mode"] in ("rest", "ws") else "request"
            cpu += f", {s['server_cpu_us_per_request']:,.0f} us CPU per {per}"
    mach = s.get("machine")
    if mach and mach.get("busy_percent") is not None:
        cpu += (
            f"; machine busy {mach['busy_percent']:.0f}% of {mach['cores'] * 100}% "
            f"(load avg {mach['load_avg_1m']:.1f}"
        )
        if mach.get("cpu_pressure_percent") is not None:
            cpu += (
                f", CPU pressure {mach['cpu_pressure_percent']:.0f}%, "
                f"IO pressure {mach['io_pressure_percent']:.0f}%"
            )
        cpu += ")"
    lines.append(cpu)
    for e in s["worker_errors"]:
        lines.append(f"!! {e.splitlines()[0]}")
    return "\n".join(lines)


def verdict(
    s: dict,
    target_p99_ms: float | None,
    target_rate: float | None,
    max_errors: int = 0,
    baseline: dict | None = None,
    min_baseline_ratio: float | None = None,
) -> tuple[bool, str]:
    """``(passed, line)``: PASS only if every check given holds.

    Checks: offered rate reached (open loop), ``target_rate`` achieved, errors <=
    ``max_errors``, p99 <= ``target_p99_ms``, orders/s >= ``min_baseline_ratio`` of the
    baseline's requests/s.
    """
    checks = []
    if s["rate_reached"] is not None:
        checks.append(
            (
                s["rate_reached"],
                f"achieved {s['achieved_rate']:,.0f}/s of offered "
                f"{s['offered_rate']:,.0f}/s (>= {RATE_SHORTFALL:.0%})",
            )
        )
    if target_rate is not None:
        # The window runs from the first send to the last answer, so an open-loop run
        # that kept up exactly (1,000/s for 60 s, every order answered) measures
        # 999.99/s; the orders answered per second of load count as well.
        duration = s.get("duration_s") or 0.0
        per_load_second = s["orders_answered"] / duration if duration else 0.0
        reached = max(s["achieved_rate"], per_load_second) >= target_rate
        checks.append(
            (
                reached,
                f"achieved {s['achieved_rate']:,.1f}/s vs target {target_rate:,.0f}/s",
            )
        )
    checks.append((s["errors"] <= max_errors, f"{s['errors']} errors (max {max_errors})"))
    p99 = s["latency_ms"]["p99"]
    if target_p99_ms is not None:
        checks.append(
            (p99 is not None and p99 <= target_p99_ms, f"p99 {fmt_ms(p99)} ms vs target {target_p99_ms:g} ms")
        )
    if baseline is not None and min_baseline_ratio is not None:
        ratio = s["achieved_rate"] / baseline["achieved_rate"] if baseline["achieved_rate"] else 0
        checks.append(
            (
                ratio >= min_baseline_ratio,
                f"{ratio:.0%} of the {BASELINE_ENDPOINTS[baseline['mode']]} baseline "
                f"(min {min_baseline_ratio:.0%})",
            )
        )
    passed = all(ok for ok, _ in checks)
    text = "; ".join(msg if ok else f"FAILED: {msg}" for ok, msg in checks)
    return passed, ("PASS: " if passed else "FAIL: ") + text


def baseline_line(orders: dict, baseline: dict) -> str:
    """One line comparing the orders phase with a baseline phase (``GET /health`` or
    ``POST /ping``) of the same run."""
    hb = baseline["achieved_rate"]
    ratio = orders["requests_rate"] / hb if hb else float("nan")
    return (
        f"baseline: {BASELINE_ENDPOINTS[baseline['mode']]} answered {hb:,.0f} req/s; orders phase "
        f"{orders['requests_rate']:,.0f} req/s ({orders['achieved_rate']:,.0f} orders/s) = "
        f"{ratio:.0%} of it in this run"
    )


def plot(path: str, phases: list[tuple[dict, dict]], title: str) -> None:
    """Write a PNG: latency over time, latency distribution, achieved rate over time.

    ``phases`` is a list of ``(summary, merged_result)``; the first is the main one,
    later ones (the baselines) are overlaid in the distribution and rate panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 12))
    colors = ["tab:blue", "tab:gray", "tab:green", "tab:purple"]
    main_s, main_r = phases[0]
    n = len(main_r["sched"])
    ans = [i for i in range(n) if main_r["outcome"][i] != ERROR]
    ax = axes[0]
    xs = [main_r["sched"][i] for i in ans]
    ys = [max(main_r["lat"][i] * 1000, 1e-3) for i in ans]
    step = max(1, len(xs) // 50000)  # keep the scatter drawable
    ax.scatter(
        xs[::step],
        ys[::step],
        s=2,
        alpha=0.3,
        color=colors[0],
        lw=0,
        label="each request" + (f" (1 in {step})" if step > 1 else ""),
    )
    ser = main_s["series"]
    iv = ser["interval_s"]
    for key, color, name in (("p50_ms", "black", "p50"), ("p99_ms", "tab:red", "p99")):
        ax.step(
            ser["t"],
            [v if v is not None else math.nan for v in ser[key]],
            where="post",
            color=color,
            lw=1.2,
            label=f"{name} per {iv:g} s",
        )
    errs = [main_r["sched"][i] for i in range(n) if main_r["outcome"][i] == ERROR]
    if errs:
        ax.scatter(errs, [max(ys, default=1)] * len(errs), marker="x", color="tab:red", s=12, label="errors")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled send time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency over time (from scheduled send time)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[1]
    ax2 = ax.twinx()
    for k, (s, r) in enumerate(phases):
        vals = sorted(r["lat"][i] * 1000 for i in range(len(r["sched"])) if r["outcome"][i] != ERROR)
        if not vals:
            continue
        lo, hi = max(vals[0], 1e-3), max(vals[-1], 1e-3) * 1.01
        bins = [lo * (hi / lo) ** (j / 60) for j in range(61)] if hi > lo else 10
        ax.hist(vals, bins=bins, color=colors[k % 4], alpha=0.35, label=f"{s['label']} histogram")
        m = len(vals)
        ax2.plot(
            vals,
            [(j + 1) / m * 100 for j in range(m)],
            color=colors[k % 4],
            lw=1.5,
            label=f"{s['label']} CDF (p99 {fmt_ms(s['latency_ms']['p99'])} ms)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("requests")
    ax2.set_ylabel("cumulative %")
    ax2.set_ylim(0, 100.5)
    ax.set_title("latency distribution")
    ax.grid(True, which="both", alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)

    ax = axes[2]
    for k, (s, _r) in enumerate(phases):
        ser = s["series"]
        unit = "req/s" if s["mode"] in BASELINE_ENDPOINTS else "orders/s"
        ax.step(
            ser["t"],
            ser["answered_per_s"],
            where="post",
            color=colors[k % 4],
            lw=1.5,
            label=f"{s['label']} answered {unit}",
        )
        if any(ser["errors_per_s"]):
            ax.step(
                ser["t"],
                ser["errors_per_s"],
                where="post",
                color="tab:red",
                lw=1,
                label=f"{s['label']} errors/s",
            )
    if main_s["offered_rate"]:
        ax.axhline(main_s["offered_rate"], color="black", ls="--", lw=1, label="offered")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("per second")
    ax.set_title("achieved rate over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
