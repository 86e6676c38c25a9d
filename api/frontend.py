"""The browser trading interface: static files served at ``/``.

Routes (blueprint ``frontend``, registered by the app factory):

- ``GET /``                           -> ``frontend/index.html``
- ``GET /ui/<path>``                  -> files under ``frontend/ui/`` (no directory listing,
                                         no escaping the folder)
- ``GET /vendor/socket.io.min.js``    -> the Socket.IO client from ``frontend/node_modules``
- ``GET /vendor/lightweight-charts.js`` -> the standalone production build of lightweight-charts

The two vendor files are a whitelist: nothing else under ``node_modules`` is reachable.
They come from the npm registry at install time (``npm ci`` in ``frontend/``, run by
``make run``); the page never loads anything from another host (no CDN, no web fonts).
When ``frontend/node_modules`` is missing every route answers 503 with the contract's
error envelope, code ``FRONTEND_NOT_INSTALLED``, instead of serving a page that cannot work.

The folder can be overridden with ``app.config["FRONTEND_DIR"]`` (tests use this).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, current_app, jsonify, send_from_directory

log = logging.getLogger(__name__)

bp = Blueprint("frontend", __name__)

DEFAULT_FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"

# URL name -> path inside node_modules. Only these are served.
VENDOR_FILES = {
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "lightweight-charts.js": "lightweight-charts/dist/lightweight-charts.standalone.production.js",
}

# Explicit types: module scripts are refused by browsers unless served as JavaScript,
# and the platform's mimetypes table is not the same on every machine. Werkzeug
# adds `; charset=utf-8` to the text types itself.
_MIMETYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
}


def _frontend_dir() -> Path:
    return Path(current_app.config.get("FRONTEND_DIR", DEFAULT_FRONTEND_DIR))


def _not_installed():
    body = {
        "error": {
            "code": "FRONTEND_NOT_INSTALLED",
            "message": "run make run / npm ci in frontend",
        }
    }
    return jsonify(body), 503


def _installed() -> bool:
    return (_frontend_dir() / "node_modules").is_dir()


def _send(directory: Path, filename: str):
    mimetype = _MIMETYPES.get(Path(filename).suffix.lower())
    response = send_from_directory(directory, filename, mimetype=mimetype, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/")
def index():
    """Serve the trading page, or 503 when the npm dependencies are not installed."""
    if not _installed():
        return _not_installed()
    return _send(_frontend_dir(), "index.html")


@bp.get("/ui/<path:filename>")
def ui_file(filename: str):
    """Serve one of the page's own files; ``send_from_directory`` refuses ``..`` paths."""
    if not _installed():
        return _not_installed()
    return _send(_frontend_dir() / "ui", filename)


@bp.get("/vendor/<name>")
def vendor_file(name: str):
    """Serve a whitelisted library file from ``node_modules``; anything else is a 404."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        return (
            jsonify({"error": {"code": "NOT_FOUND", "message": f"no vendor file {name!r}"}}),
            404,
        )
    if not _installed():
        return _not_installed()
    path = _frontend_dir() / "node_modules" / relative
    if not path.is_file():
        log.warning("vendor file missing: %s", path)
        return _not_installed()
    return _send(path.parent, path.name)
