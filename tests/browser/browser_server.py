"""A real server process for the tests in this folder: ``api/app.py`` on 127.0.0.1,
a free port, a temporary data dir, ``--rate-limit 0``; stopped by its PID.

``BROWSER_TESTS_SERVER_SCRIPT`` may name another server script (a development knob
for working on the page alone); CI leaves it unset.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_SCRIPT = os.environ.get("BROWSER_TESTS_SERVER_SCRIPT") or os.path.join(ROOT, "api", "app.py")
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``api/app.py`` process on 127.0.0.1; ``start()`` returns once /health answers."""

    def __init__(self, data_dir: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(data_dir, "server.log")

    def start(self, timeout: float = 30.0) -> Server:
        os.makedirs(self.data_dir, exist_ok=True)
        python = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
        cmd = [python, SERVER_SCRIPT, "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", self.data_dir, "--rate-limit", "0"]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer GET /health within {timeout}s:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM the process we started (by PID), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""
