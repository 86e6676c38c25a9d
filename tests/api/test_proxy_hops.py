"""``--proxy-hops``: behind the cluster's nginx, rate limits count per client
(``X-Forwarded-For``), not per proxy; without it the header is ignored."""

from __future__ import annotations

import pytest

from api.app import close_app, create_app


@pytest.fixture
def make_client(tmp_path):
    apps = []

    def make(**config):
        app, _ = create_app(
            {"data_dir": str(tmp_path / f"d{len(apps)}"), "store": False, "audit": False, **config}
        )
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        close_app(app)


def _statuses(client, addresses):
    return [
        client.get(
            "/health", headers={"X-Forwarded-For": a}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
        ).status_code
        for a in addresses
    ]


def test_behind_one_proxy_each_client_has_its_own_limit(make_client):
    client = make_client(rate_limit=2, proxy_hops=1)
    assert _statuses(client, ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]) == [200, 200, 200, 200]
    assert _statuses(client, ["10.0.0.1"]) == [429]


def test_without_proxy_hops_the_header_is_not_trusted(make_client):
    client = make_client(rate_limit=2)
    assert _statuses(client, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [200, 200, 429]
