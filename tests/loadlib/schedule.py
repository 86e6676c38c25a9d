"""Open-loop scheduling math and the parsing of ``--rate`` and ``--mix``.

Open loop: request ``j`` of the run is due at ``t0 + j / rate`` whatever happened to
the requests before it. A worker that cannot send on time (every connection busy)
sends late, and the lateness counts in the latency, because latency is measured from
the *scheduled* time. A closed-loop client (send, wait, send) would instead slow down
with the server and hide the queueing delay: that is coordinated omission.

With ``W`` worker processes, worker ``w`` owns requests ``j = w, w + W, w + 2W, ...``,
so the union of the workers' schedules is exactly the global schedule.
"""

from __future__ import annotations

import math
import random
import time

ORDER_KINDS = ("limit", "market", "ioc", "fok", "cancel")
DEFAULT_MIX = "limit=70,market=10,ioc=10,fok=5,cancel=5"


def parse_rate(text: str) -> float | None:
    """``--rate``: a positive number of orders/s, or ``max`` for closed-loop flat out.

    Returns ``None`` for ``max``.

    Raises:
        ValueError: not a positive finite number nor ``max``.
    """
    if text.strip().lower() in ("max", "inf", "unlimited"):
        return None
    rate = float(text)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number or 'max', got {text!r}")
    return rate


def parse_mix(text: str) -> dict[str, float]:
    """``--mix`` such as ``limit=70,market=10,ioc=10,fok=5,cancel=5``.

    Weights need not add up to 100; they are normalized. Kinds left out get weight 0.

    Raises:
        ValueError: unknown kind, repeated kind, negative or non-numeric weight, or all zero.
    """
    mix = dict.fromkeys(ORDER_KINDS, 0.0)
    seen = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"mix entries look like kind=weight, got {part!r}")
        kind, _, weight = part.partition("=")
        kind = kind.strip().lower()
        if kind not in mix:
            raise ValueError(f"unknown order kind {kind!r}; known: {', '.join(ORDER_KINDS)}")
        if kind in seen:
            raise ValueError(f"order kind {kind!r} given twice")
        seen.add(kind)
        w = float(weight)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weight of {kind!r} must be a non-negative number")
        mix[kind] = w
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("the mix needs at least one positive weight")
    return {k: v / total for k, v in mix.items()}


def total_requests(rate: float, duration: float) -> int:
    """Number of requests a run of ``duration`` seconds offers at ``rate`` per second.

    Request ``j`` is due at ``j / rate``; those due before ``duration`` are offered.
    """
    if rate <= 0 or duration <= 0:
        return 0
    return max(1, math.ceil(rate * duration - 1e-9))


def worker_share(n_total: int, worker: int, workers: int) -> int:
    """How many of the run's ``n_total`` requests worker ``worker`` owns."""
    if worker >= n_total:
        return 0
    return (n_total - 1 - worker) // workers + 1


def split(total: int, parts: int) -> list[int]:
    """Split ``total`` items into ``parts`` near-equal integers, larger first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class UniformSchedule:
    """Evenly spaced send times of one worker: ``(w + k W) / rate`` for k = 0, 1, ...

    ``next_time()`` returns the next due time relative to the start of the run, or
    ``None`` when the worker's share of the run is exhausted.
    """

    __slots__ = ("interval", "step", "index", "n_total")

    def __init__(self, rate: float, duration: float, worker: int = 0, workers: int = 1):
        if workers < 1 or not 0 <= worker < workers:
            raise ValueError("need 0 <= worker < workers")
        self.interval = 1.0 / rate
        self.step = workers
        self.index = worker
        self.n_total = total_requests(rate, duration)

    def next_time(self) -> float | None:
        if self.index >= self.n_total:
            return None
        t = self.index * self.interval
        self.index += self.step
        return t


class PoissonSchedule:
    """Exponential inter-arrival times at ``rate / workers`` per worker.

    The superposition of independent Poisson processes is a Poisson process at the
    sum of the rates, so the run as a whole offers ``rate`` per second on average,
    with the bursts a real population of clients produces.
    """

    __slots__ = ("rate", "duration", "t", "rng")

    def __init__(self, rate: float, duration: float, worker: int = 0, workers: int = 1, seed: int = 0):
        if workers < 1 or not 0 <= worker < workers:
            raise ValueError("need 0 <= worker < workers")
        self.rate = rate / workers
        self.duration = duration
        self.rng = random.Random(seed * 7919 + worker)
        self.t = 0.0

    def next_time(self) -> float | None:
        t = self.t
        if t >= self.duration:
            return None
        self.t = t + self.rng.expovariate(self.rate)
        return t


def make_schedule(arrival: str, rate: float, duration: float, worker: int, workers: int, seed: int = 0):
    """The schedule object for ``--arrival uniform|poisson``."""
    if arrival == "uniform":
        return UniformSchedule(rate, duration, worker, workers)
    if arrival == "poisson":
        return PoissonSchedule(rate, duration, worker, workers, seed)
    raise ValueError(f"unknown arrival process {arrival!r}")


def worker_schedule(cfg: dict, worker: int, rate: float | None):
    """``(schedule, first send time)`` of one worker at ``rate`` sends per second
    in total; ``(None, None)`` for a closed loop (``rate`` None)."""
    if rate is None:
        return None, None
    sched = make_schedule(cfg["arrival"], rate, cfg["duration"], worker, cfg["workers"], cfg["seed"])
    return sched, sched.next_time()


def start_together(t0: float) -> tuple[float, float]:
    """Sleep until monotonic time ``t0``, so that every worker starts at the same
    instant; returns the process and wall clocks then (for ``cpu_s``/``wall_s``)."""
    delay = t0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return time.process_time(), time.monotonic()
