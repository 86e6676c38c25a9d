"""Browser tests: the trading page in real headless Chromium against a real server.

- Chromium is Debian's ``/usr/bin/chromium`` (``apt-get install -y chromium``), driven by
  Python Playwright; no browser is ever downloaded (never ``playwright install``).
- Each test starts its own server, ``python api/app.py --host 127.0.0.1 --port <free>
  --data-dir <tmp> --rate-limit 0``, waits for ``GET /health`` and stops it by PID.
- When Chromium, Playwright or ``frontend/node_modules`` is missing, the tests FAIL in
  CI (``CI`` set to a true value) and are skipped with the reason elsewhere.
- ``BROWSER_TESTS_SERVER_SCRIPT`` may point at another server script (a development
  knob for working on the page before/without the real service); CI leaves it unset.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from browser_server import ROOT, Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-sandbox",
]
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
VIEWPORT = {"width": 1440, "height": 900}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere: CI must never pass without having run these tests."""
    if in_ci():
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def playwright_driver():
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    if not os.path.isdir(os.path.join(ROOT, "frontend", "node_modules")):
        unavailable("frontend/node_modules is missing (cd frontend && npm ci)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"python playwright is not installed ({exc}); pip install -r requirements-dev.txt")
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser(playwright_driver):
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def server(tmp_path):
    """A fresh server (own data dir, own port) for each test; ``--auth off``."""
    srv = Server(str(tmp_path / "data"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def auth_server(tmp_path):
    """A fresh server with ``--auth on`` (its admin token in ``data/admin.token``)."""
    srv = Server(str(tmp_path / "data"), "--auth", "on")
    srv.start()
    yield srv
    srv.stop()


class PageWatch:
    """What the page did: console errors, uncaught exceptions, every request's URL
    (and in ``sent``, its method, URL and headers)."""

    def __init__(self, page, server_url: str) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.requests: list[str] = []
        self.sent: list[tuple[str, str, dict]] = []
        self.origin = urlsplit(server_url).netloc
        page.on(
            "console", lambda m: m.type == "error" and self.console_errors.append(f"{m.text} @ {m.location}")
        )
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("request", lambda r: self.sent.append((r.method, r.url, r.headers)))

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the server (data: and blob: URLs never leave the page)."""
        return [
            u
            for u in self.requests
            if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != self.origin
        ]


@pytest.fixture(scope="session", autouse=True)
def generous_expect_timeout():
    """CI shares two cores between the server, Chromium and pytest: wait up to 10 s."""
    try:
        from playwright.sync_api import expect
    except ImportError:
        return
    expect.set_options(timeout=10_000)


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, server):
    page = context.new_page()
    page.watch = PageWatch(page, server.url)
    yield page
    page.close()


@pytest.fixture
def auth_page(context, auth_server):
    page = context.new_page()
    page.watch = PageWatch(page, auth_server.url)
    yield page
    page.close()


@pytest.fixture(scope="session")
def artifacts_dir():
    os.makedirs(ARTIFACTS, exist_ok=True)
    return ARTIFACTS
