"""python-socketio clients for tests that check the order of events.

python-socketio's client hands every message it receives to a new thread
(engineio's ``Client._trigger_event(..., run_async=True)``), so two events
that arrive back to back may reach their handlers in either order: a test
that asserts the server's order would then fail now and then for a reason
that is the client's. ``in_arrival_order`` makes a client run its handlers on
its read loop, one after another, in the order the frames arrived -- what a
browser's single-threaded client does. Handlers must then not block (no
``call`` from inside one).
"""

from __future__ import annotations


def in_arrival_order(sio):
    """``sio`` (a ``socketio.Client``), its messages dispatched in arrival order."""
    trigger = sio.eio._trigger_event

    def dispatch(event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return trigger(event, *args, **kwargs)

    sio.eio._trigger_event = dispatch
    return sio
