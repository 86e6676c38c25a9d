"""Shared helpers of the load-test runner, the monitoring suite and the market-data probe.

Modules:
    safety      loopback-only URL check (every tool refuses other hosts by default)
    stats       percentiles and summaries (nearest-rank, no interpolation)
    schedule    open-loop send-time math, ``--rate`` / ``--mix`` parsing
    orders      realistic order bodies on each symbol's tick and lot grid
    httpengine  one-process, selector-based keep-alive HTTP/1.1 load engine
    wsengine    Socket.IO (python-socketio) order-entry engine
    runner      multi-process orchestration, progress bar, result merging
    report      summary table, verdict, JSON and PNG output

The tools are run as scripts (``python tests/advanced_load_test.py``); they put
``tests/`` on ``sys.path`` so that ``import loadlib`` works from any directory.
"""
