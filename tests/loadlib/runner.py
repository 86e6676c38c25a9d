"""Run a load phase in several worker processes and merge what they measured.

Protocol: the parent forks ``processes`` workers; each opens its connections and
reports ``ready``; the parent then fixes a common start time ``t0`` (monotonic clock,
which is system-wide on Linux) a little in the future and releases them together.
While they run, each worker publishes a row of counters (``httpengine.P_*``) into a
shared array every 0.1 s, which the parent turns into the progress bar. At the end
each worker sends its records through a queue.

Every worker is a child of this process; a worker that outlives the run's hard
deadline is terminated by its own ``Process`` handle.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from array import array
from collections import Counter

from . import httpengine
from .httpengine import N_PROGRESS, P_BACKLOG, P_DONE, P_ERR, P_OK, P_REJ, P_SENT, P_TRADES

START_DELAY = 0.3  # s between "all ready" and t0


def _worker_main(engine: str, cfg: dict, w: int, progress, start_evt, t0val, q) -> None:
    try:
        if engine == "http":
            worker = httpengine.HttpWorker(cfg, w, progress)
        else:
            from . import wsengine

            cls = wsengine.RawWsWorker if cfg.get("ws_client") == "raw" else wsengine.WsWorker
            worker = cls(cfg, w, progress)
        n = worker.connect_all()
        q.put(("ready", w, n))
        if n == 0:
            q.put(("error", w, f"no connection to {cfg['host']}:{cfg['port']}"))
            return
        if not start_evt.wait(60):
            return
        result = worker.run(t0val.value)
        q.put(("result", w, result))
    except BaseException as exc:  # a worker must always answer, or the parent waits
        q.put(("error", w, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_phase(
    engine: str, cfg: dict, processes: int, label: str = "", show_progress: bool = True, stream=sys.stderr
) -> dict:
    """Run one load phase; returns the merged result (see ``merge``).

    ``cfg`` is the engine's configuration; its ``connections`` is the total, split
    over the processes here.

    Raises:
        RuntimeError: no worker could connect, or a worker crashed.
    """
    from .schedule import split

    processes = max(1, min(processes, cfg["connections"]))
    conns = split(cfg["connections"], processes)
    ctx = mp.get_context("fork")
    progress = ctx.Array("q", processes * N_PROGRESS, lock=False)
    start_evt = ctx.Event()
    t0val = ctx.Value("d", 0.0, lock=False)
    q = ctx.Queue()
    procs = []
    for w in range(processes):
        wcfg = dict(cfg, connections=conns[w], workers=processes)
        p = ctx.Process(
            target=_worker_main,
            args=(engine, wcfg, w, progress, start_evt, t0val, q),
            daemon=True,
            name=f"load-{engine}-{w}",
        )
        p.start()
        procs.append(p)
    results: dict[int, dict] = {}
    errors = []
    ready = 0
    connected = 0
    try:
        deadline = time.monotonic() + 30
        while ready < processes:
            try:
                kind, w, payload = q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("workers did not get ready within 30 s") from None
            if kind == "ready":
                ready += 1
                connected += payload
            elif kind == "error":
                raise RuntimeError(f"worker {w} failed:\n{payload}")
        if connected == 0:
            raise RuntimeError(f"could not connect to {cfg['host']}:{cfg['port']}")
        t0 = time.monotonic() + START_DELAY
        t0val.value = t0
        start_evt.set()
        duration = cfg["duration"]
        hard_deadline = t0 + duration + cfg["drain"] + cfg["timeout"] + 15
        bar = Progress(stream, duration, cfg, label) if show_progress else None
        while len(results) + len(errors) < processes:
            try:
                kind, w, payload = q.get(timeout=0.25)
                if kind == "result":
                    results[w] = payload
                elif kind == "error":
                    errors.append(f"worker {w}: {payload}")
            except queue.Empty:
                pass
            if bar is not None:
                bar.update(time.monotonic() - t0, progress, processes)
            if time.monotonic() > hard_deadline:
                errors.append("workers did not finish by the hard deadline")
                break
        if bar is not None:
            bar.update(time.monotonic() - t0, progress, processes, final=True)
    finally:
        for p in procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
    if errors and not results:
        raise RuntimeError("\n".join(errors))
    merged = merge(list(results.values()))
    merged["worker_errors"] = errors
    merged["processes"] = processes
    merged["connections"] = cfg["connections"]
    merged["connected"] = connected
    return merged


def merge(parts: list[dict]) -> dict:
    """Concatenate the workers' records, sorted by scheduled time."""
    keys = ("sched", "sent", "lat", "svc", "kind", "outcome", "orders", "trades")
    rows = []
    for p in parts:
        cols = [p[k] for k in keys]
        rows.extend(zip(*cols, strict=True))
    rows.sort(key=lambda r: r[0])
    out = {}
    for i, k in enumerate(keys):
        out[k] = [r[i] for r in rows]
    counts: Counter = Counter()
    order_outcomes = [0, 0, 0]
    for p in parts:
        counts.update(p["counts"])
        for i in range(3):
            order_outcomes[i] += p["order_outcomes"][i]
    out["counts"] = dict(counts)
    out["order_outcomes"] = order_outcomes
    out["max_backlog"] = max((p.get("max_backlog", 0) for p in parts), default=0)
    out["connect_errors"] = sum(p.get("connect_errors", 0) for p in parts)
    out["extra"] = [p.get("extra") for p in parts if p.get("extra")]
    out["worker_cpu_percent"] = [round(100.0 * p["cpu_s"] / p["wall_s"], 1) for p in parts if p.get("wall_s")]
    return out


class Progress:
    """One stderr line, rewritten in place: time, counts, current rate and backlog."""

    def __init__(self, stream, duration: float, cfg: dict, label: str):
        self.stream = stream
        self.duration = duration
        self.label = label
        self.tty = stream.isatty()
        self.last_print = 0.0
        self.hist: list[tuple[float, int]] = []
        self.width = 24

    def update(self, elapsed: float, progress, processes: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_print < (0.2 if self.tty else 5.0):
            return
        self.last_print = now
        tot = array("q", [0] * N_PROGRESS)
        for w in range(processes):
            for i in range(N_PROGRESS):
                tot[i] += progress[w * N_PROGRESS + i]
        self.hist.append((elapsed, tot[P_DONE]))
        while len(self.hist) > 2 and self.hist[0][0] < elapsed - 1.0:
            self.hist.pop(0)
        (ta, da), (tb, db) = self.hist[0], self.hist[-1]
        rate = (db - da) / (tb - ta) if tb > ta else 0.0
        frac = min(1.0, max(0.0, elapsed / self.duration)) if self.duration else 1.0
        fill = int(frac * self.width)
        bar = "#" * fill + "." * (self.width - fill)
        t = min(max(elapsed, 0.0), self.duration) if not final else elapsed
        drain = " draining" if elapsed > self.duration and not final else ""
        line = (
            f"{self.label}[{bar}] {t:5.1f}/{self.duration:g}s  sent {tot[P_SENT]}  "
            f"done {tot[P_DONE]}  ok {tot[P_OK]}  rej {tot[P_REJ]}  err {tot[P_ERR]}  "
            f"trades {tot[P_TRADES]}  {rate:,.0f}/s  backlog {tot[P_BACKLOG]}{drain}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def finite(values) -> list[float]:
    """The values that are not NaN."""
    return [v for v in values if not math.isnan(v)]
