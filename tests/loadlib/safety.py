"""Refuse to load anything but this machine unless explicitly allowed.

Every tool calls :func:`check_url` before it sends a single byte.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class UnsafeTargetError(ValueError):
    """The URL is not a loopback http URL and --allow-remote was not given."""


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual localhost names.

    Names are not resolved through DNS: a name other than localhost counts as remote,
    so that an /etc/hosts or DNS trick cannot turn a remote machine into a target.
    """
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_remote: bool = False) -> tuple[str, int]:
    """Validate a target URL and return ``(host, port)`` to connect to.

    Only ``http://`` is supported (the load engines speak plain HTTP/1.1). A path other
    than ``/`` is refused too: the tools build their own paths.

    Raises:
        UnsafeTargetError: not http, no host, a path, or a non-loopback host without
            ``allow_remote``.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise UnsafeTargetError(f"only http:// URLs are supported, got {url!r}")
    host = parts.hostname
    if not host:
        raise UnsafeTargetError(f"no host in {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UnsafeTargetError(f"give the server's base URL without a path: {url!r}")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise UnsafeTargetError(f"bad port in {url!r}") from exc
    if not allow_remote and not is_loopback_host(host):
        raise UnsafeTargetError(
            f"refusing to load {host!r}: only loopback targets (127.0.0.0/8, localhost, ::1) "
            "are allowed; pass --allow-remote if you own that machine"
        )
    if host.lower() in LOOPBACK_NAMES:
        host = "127.0.0.1"
    return host.strip("[]"), port


def base_url(host: str, port: int) -> str:
    """The canonical base URL of a checked (host, port)."""
    if ":" in host:
        return f"http://[{host}]:{port}"
    return f"http://{host}:{port}"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rate_limit_problem(limit_header: str | None, requests_per_second: float | None) -> str | None:
    """Why a run would measure the server's rate limiter instead of the server, or None.

    ``limit_header`` is the server's ``X-RateLimit-Limit`` (requests per minute per
    client; absent when the server runs with ``--rate-limit 0``);
    ``requests_per_second`` is what the run offers over REST and ``/trade`` (None:
    as fast as possible). A run within the limit is fine; anything else would be answered
    ``429 RATE_LIMITED`` from the limit on, by design.
    """
    if limit_header is None:
        return None
    try:
        per_minute = int(limit_header)
    except ValueError:
        return None
    if requests_per_second is not None and requests_per_second * 60 <= per_minute:
        return None
    offered = (
        "as many requests as it can"
        if requests_per_second is None
        else f"{requests_per_second:,.0f} requests/s"
    )
    return (
        f"the server limits each client to {per_minute:,} requests per minute "
        f"({per_minute / 60:,.0f}/s, its X-RateLimit-Limit; REST and /trade commands alike) and this run "
        f"offers {offered}: "
        "beyond the limit every answer would be 429 RATE_LIMITED. Start the server for load tests "
        'with the limit off -- python api/app.py --rate-limit 0 (make run ARGS="--rate-limit 0") -- '
        "or pass --allow-rate-limit to load the limiter on purpose."
    )
