"""The frontend blueprint and the offline rule, without a browser or a server.

These run everywhere (no ``browser`` mark): a bare Flask app with only the
``frontend`` blueprint, pointed at a throwaway copy of ``frontend/``.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from flask import Flask

from api import frontend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRONTEND = os.path.join(ROOT, "frontend")


def make_client(frontend_dir: str):
    app = Flask(__name__)
    app.config["FRONTEND_DIR"] = frontend_dir
    app.register_blueprint(frontend.bp)
    return app.test_client()


@pytest.fixture
def installed(tmp_path):
    """A copy of frontend/ with stand-ins for the two vendor files."""
    root = tmp_path / "frontend"
    shutil.copytree(os.path.join(FRONTEND, "ui"), root / "ui")
    shutil.copy(os.path.join(FRONTEND, "index.html"), root / "index.html")
    for relative in frontend.VENDOR_FILES.values():
        path = root / "node_modules" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"/* {relative} */")
    (root / "node_modules" / "socket.io-client" / "package.json").write_text("{}")
    return make_client(str(root))


def test_index_and_page_files_are_served(installed):
    r = installed.get("/")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    assert b'src="/vendor/socket.io.min.js"' in r.data
    r = installed.get("/ui/app.js")
    assert r.status_code == 200
    assert r.mimetype == "text/javascript"  # module scripts need a JavaScript type
    assert installed.get("/ui/style.css").mimetype == "text/css"


@pytest.mark.parametrize("name", sorted(frontend.VENDOR_FILES))
def test_whitelisted_vendor_files_come_from_node_modules(installed, name):
    r = installed.get(f"/vendor/{name}")
    assert r.status_code == 200
    assert r.data.decode() == f"/* {frontend.VENDOR_FILES[name]} */"
    assert r.mimetype == "text/javascript"


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/package.json",
        "/vendor/socket.io.js",
        "/vendor/..%2fsocket.io-client%2fpackage.json",
        "/ui/../index.html",
        "/ui/..%2f..%2fapi%2ffrontend.py",
        "/ui/missing.js",
    ],
)
def test_nothing_else_is_reachable(installed, path):
    assert installed.get(path).status_code == 404


@pytest.mark.parametrize(
    "path", ["/", "/ui/app.js", "/vendor/socket.io.min.js", "/vendor/lightweight-charts.js"]
)
def test_missing_node_modules_answers_503_with_the_error_envelope(tmp_path, path):
    shutil.copytree(os.path.join(FRONTEND, "ui"), tmp_path / "ui")
    shutil.copy(os.path.join(FRONTEND, "index.html"), tmp_path / "index.html")
    r = make_client(str(tmp_path)).get(path)
    assert r.status_code == 503
    assert r.get_json() == {
        "error": {"code": "FRONTEND_NOT_INSTALLED", "message": "run make run / npm ci in frontend"}
    }


def test_vendor_files_exist_in_the_npm_packages_when_installed():
    """The whitelist names files that the pinned packages really ship."""
    modules = os.path.join(FRONTEND, "node_modules")
    if not os.path.isdir(modules):
        pytest.skip("frontend/node_modules not installed (npm ci)")
    for relative in frontend.VENDOR_FILES.values():
        assert os.path.isfile(os.path.join(modules, relative)), relative


def own_files():
    yield os.path.join(FRONTEND, "index.html")
    for name in sorted(os.listdir(os.path.join(FRONTEND, "ui"))):
        yield os.path.join(FRONTEND, "ui", name)


def test_page_references_only_its_own_host():
    """The offline rule, statically: no absolute or protocol-relative URL in src/href/url()/fetch/io."""
    html = open(os.path.join(FRONTEND, "index.html"), encoding="utf-8").read()
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs, "index.html should load its scripts and styles"
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
    for path in own_files():
        if path.endswith(".svg"):
            continue  # only the SVG namespace URI, which is never fetched
        text = open(path, encoding="utf-8").read()
        assert not re.search(r"https?://|wss?://|url\(\s*['\"]?//|@import", text), path
