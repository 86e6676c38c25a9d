"""Cluster tests: real Debian ``redis-server`` and ``nginx``, the engine process and
two edges (``deploy/cluster.py``'s ``Cluster``), all on 127.0.0.1 with free ports
and temporary dirs, stopped by PID. They fail in CI (``CI=true``) and skip
elsewhere when redis-server or nginx is missing."""

from __future__ import annotations

import pytest

from deploy.cluster import Cluster
from tests.cluster.helpers import need_cluster_tools

# The cluster tests check the market data of the original contract, which is --auth off's
# (the command line's default is on; private order events: test_private_events.py).
AUTH_OFF = ["--auth", "off"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need_cluster_tools()
    base = tmp_path_factory.mktemp("cluster")
    with Cluster(str(base / "run"), str(base / "data"), engine_args=AUTH_OFF) as c:
        yield c


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster for one test (the fault tests break theirs)."""
    need_cluster_tools()
    with Cluster(str(tmp_path / "run"), str(tmp_path / "data"), engine_args=AUTH_OFF) as c:
        yield c
