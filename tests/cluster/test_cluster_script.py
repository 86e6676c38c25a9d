"""``make cluster`` (``deploy/cluster.py run``) starts everything and stops all of
it, by PID, on Ctrl-C and on ``make cluster-stop``; the nginx site renders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from deploy.cluster import ROOT, free_port, render_site
from tests.cluster.helpers import need_cluster_tools, wait_for

pytestmark = pytest.mark.server
SCRIPT = os.path.join(ROOT, "deploy", "cluster.py")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _start(tmp_path) -> tuple[subprocess.Popen, str, str]:
    need_cluster_tools()
    run_dir = str(tmp_path / "run")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            SCRIPT,
            "run",
            "--port",
            str(port),
            "--engine-port",
            str(free_port()),
            "--edge-port",
            str(free_port()),
            "--redis-port",
            str(free_port()),
            "--edges",
            "1",
            "--data-dir",
            str(tmp_path / "data"),
            "--run-dir",
            run_dir,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: os.path.exists(os.path.join(run_dir, "pids.json")), timeout=60, what="the cluster")
        assert requests.get(url + "/health", timeout=5).json()["role"] == "edge"
    except BaseException:
        proc.kill()
        raise
    return proc, run_dir, url


def _pids(run_dir: str) -> list[int]:
    with open(os.path.join(run_dir, "pids.json")) as f:
        return [c["pid"] for c in json.load(f)]


def test_ctrl_c_stops_every_process(tmp_path):
    proc, run_dir, _ = _start(tmp_path)
    pids = _pids(run_dir)
    assert len(pids) == 4  # redis, engine, one edge, nginx
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "cluster stopped" in out
    assert not [pid for pid in pids if _alive(pid)]


def test_cluster_stop_stops_every_process(tmp_path):
    proc, run_dir, _ = _start(tmp_path)
    pids = _pids(run_dir)
    stop = subprocess.run(
        [sys.executable, SCRIPT, "stop", "--run-dir", run_dir], capture_output=True, text=True
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    proc.communicate(timeout=60)
    assert not [pid for pid in pids + [proc.pid] if _alive(pid)]


def test_nginx_site_routes_reads_to_edges_and_the_rest_to_the_engine():
    site = render_site("80", "10.0.0.2:5000", ["10.0.0.3:5001", "10.0.0.4:5001"])
    assert "ip_hash;" in site
    assert "server 10.0.0.3:5001" in site and "server 10.0.0.4:5001" in site
    assert "server 10.0.0.2:5000;" in site
    assert not any(p in site for p in ("${LISTEN}", "${ENGINE}", "${EDGE_SERVERS}"))
