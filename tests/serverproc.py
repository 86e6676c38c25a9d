"""Subprocesses for tests: a real server (127.0.0.1, a free port, a temporary
data dir; stopped by PID), and one-shot Python scripts that report in JSON
(tests that need eventlet monkey-patched run in a fresh interpreter).

    with ServerProcess(tmp_path) as server:
        requests.get(server.url + "/health")
    result = run_script_json(SCRIPT, str(tmp_path), ROOT)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script_json(script: str, *args: str, timeout: float = 60) -> dict:
    """Run ``python -c script args...``; it must exit 0 (else the assertion shows
    its stderr). Returns its last line of output, parsed as JSON."""
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python api/app.py`` (or ``script``) in a subprocess; ``start()`` waits for /health.

    Started with ``--auth off`` (the original, keyless contract) unless ``args``
    name ``--auth`` themselves (the command line's default is ``on``), or the
    script predates the option (a benchmark running an older tree's server)."""

    def __init__(
        self,
        data_dir,
        *args: str,
        port: int | None = None,
        timeout: float = 20.0,
        script: str | None = None,
    ) -> None:
        self.data_dir = str(data_dir)
        self.script = script or os.path.join(ROOT, "api", "app.py")
        self.args = list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.data_dir, f"server-{self.port}.out")

    def start(self) -> ServerProcess:
        os.makedirs(self.data_dir, exist_ok=True)
        cmd = [
            sys.executable,
            self.script,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            self.data_dir,
            "--rate-limit",
            "0",
            *self._auth_args(),
            *self.args,
        ]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health in {self.timeout}s: {self.output()[-2000:]}")

    def _auth_args(self) -> list[str]:
        """``--auth off`` unless the test names ``--auth`` or the script (an older
        tree's ``api/app.py``, for before/after benchmarks) has no such option."""
        if any(a == "--auth" or a.startswith("--auth=") for a in self.args):
            return []
        try:
            with open(self.script, encoding="utf-8") as f:
                knows_auth = '"--auth"' in f.read()
        except OSError:
            knows_auth = False
        return ["--auth", "off"] if knows_auth else []

    def output(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (clean shutdown), SIGKILL if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
