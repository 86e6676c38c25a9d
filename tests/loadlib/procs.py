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
        return (
            c.status == psutil.CONN_LISTEN
            and c.laddr
            and c.laddr.port == port
            and (host is None or c.laddr.ip in (host, "0.0.0.0", "::"))
        )

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
        return {
            "pid": self.pid,
            "cpu_s": cpu,
            "cpu_percent": 100.0 * cpu / wall if wall > 0 else None,
            "rss_start_mb": self.rss0 / 2**20,
            "rss_end_mb": rss / 2**20,
        }


class SystemSampler:
    """Machine-wide CPU use between ``start`` and ``stop`` (all cores, all processes).

    On a shared machine this tells whether other work competed with the server and the
    generator during a run: compare ``busy_percent`` with their own figures, and look at
    the pressure figures (the share of the time some task waited for a CPU, or for I/O).
    """

    def __init__(self):
        self.t0 = None
        self.psi0 = {}
        self.wall0 = None

    @staticmethod
    def _psi() -> dict:
        """Linux pressure-stall totals (µs during which some task waited), cpu and io."""
        out = {}
        for res in ("cpu", "io"):
            try:
                with open(f"/proc/pressure/{res}") as f:
                    for line in f:
                        if line.startswith("some"):
                            out[res] = int(line.rsplit("total=", 1)[1])
            except (OSError, ValueError, IndexError):
                pass
        return out

    @staticmethod
    def _times():
        import psutil

        t = psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return sum(t) - idle, sum(t)

    def start(self) -> None:
        try:
            self.t0 = self._times()
        except Exception:
            self.t0 = None
        self.psi0 = self._psi()
        self.wall0 = time.monotonic()

    def stop(self) -> dict | None:
        """``{"busy_percent", "cores", "load_avg_1m", "cpu_pressure_percent",
        "io_pressure_percent"}``: busy is of one core (200 = both cores of a 2-core
        machine); a pressure is None where /proc/pressure is missing."""
        if self.t0 is None:
            return None
        try:
            import os

            import psutil

            busy1, total1 = self._times()
            cores = psutil.cpu_count() or 1
            busy = busy1 - self.t0[0]
            total = total1 - self.t0[1]
            wall_us = (time.monotonic() - self.wall0) * 1e6
            psi = self._psi()
            out = {
                "busy_percent": 100.0 * cores * busy / total if total > 0 else None,
                "cores": cores,
                "load_avg_1m": os.getloadavg()[0],
            }
            for res in ("cpu", "io"):
                ok = res in psi and res in self.psi0 and wall_us > 0
                out[f"{res}_pressure_percent"] = 100.0 * (psi[res] - self.psi0[res]) / wall_us if ok else None
            return out
        except Exception:
            return None
