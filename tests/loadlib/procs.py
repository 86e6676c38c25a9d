"""Find the server process by its listening port and sample its CPU and memory (psutil)."""

from __future__ import annotations

import time


def find_server_pid(port: int, host: str | None = None) -> int | None:
    """PID of the process listening on TCP ``port`` (on ``host`` or any address), or None.

    Tries the system-wide connection table first, then each process's own table
    (which works without privileges for one's own processes).
    """
    try:
        import psutil
    except ImportError:
        return None

    def matches(c) -> bool:
        return (c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                and (host is None or c.laddr.ip in (host, "0.0.0.0", "::")))

    try:
        for c in psutil.net_connections(kind="tcp"):
            if matches(c) and c.pid:
                return c.pid
    except (psutil.AccessDenied, PermissionError):
        pass
    for p in psutil.process_iter(["pid"]):
        try:
            conns = p.net_connections(kind="tcp")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if any(matches(c) for c in conns):
            return p.pid
    return None


class ProcSampler:
    """CPU seconds and RSS of one process (with its children) between ``start`` and ``stop``."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.proc = None
        if pid is not None:
            try:
                import psutil

                self.proc = psutil.Process(pid)
            except Exception:
                self.proc = None
        self.t0 = self.cpu0 = self.rss0 = None

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def start(self) -> None:
        if self.proc is None:
            return
        try:
            self.t0 = time.monotonic()
            self.cpu0 = self._cpu()
            self.rss0 = self.proc.memory_info().rss
        except Exception:
            self.proc = None

    def stop(self) -> dict | None:
        """``{"pid", "cpu_percent", "rss_start_mb", "rss_end_mb"}`` or None if unknown.

        ``cpu_percent`` is of one core (200 = both cores of this machine busy).
        """
        if self.proc is None or self.t0 is None:
            return None
        try:
            wall = time.monotonic() - self.t0
            cpu = self._cpu() - self.cpu0
            rss = self.proc.memory_info().rss
        except Exception:
            return None
        return {"pid": self.pid, "cpu_percent": 100.0 * cpu / wall if wall > 0 else None,
                "rss_start_mb": self.rss0 / 2**20, "rss_end_mb": rss / 2**20}
