"""Test-wide setup: the project root on sys.path, shared fixtures.

The in-process API tests build apps in threading mode (Flask-SocketIO's test
clients work in every mode), so this process never monkey-patches; tests that
need the real eventlet server start ``api/app.py`` as a subprocess
(see ``tests/serverproc.py``).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
