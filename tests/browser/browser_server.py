"""A real server process for the tests in this folder: ``tests/serverproc.py``'s
``ServerProcess`` (``api/app.py`` on 127.0.0.1, a free port, a temporary data dir,
``--rate-limit 0``; stopped by its PID), with a longer start timeout.

``BROWSER_TESTS_SERVER_SCRIPT`` may name another server script (a development knob
for working on the page alone); CI leaves it unset.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # this folder is no package: make ``tests.serverproc`` importable
    sys.path.insert(0, ROOT)

from tests.serverproc import ServerProcess, free_port  # noqa: E402

SERVER_SCRIPT = os.environ.get("BROWSER_TESTS_SERVER_SCRIPT") or None

__all__ = ["ROOT", "Server", "free_port"]


class Server(ServerProcess):
    """One server for a browser test; ``start()`` returns once /health answers."""

    def __init__(self, data_dir: str, *args: str, port: int | None = None) -> None:
        super().__init__(data_dir, *args, port=port, timeout=30.0, script=SERVER_SCRIPT)
