"""``api.app.configure_gc``: the server's cyclic-collector setting."""

from __future__ import annotations

import gc

from api.app import GC_YOUNG_THRESHOLD, configure_gc


def test_configure_gc_raises_only_the_young_threshold():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        configure_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 11, 12)
        assert gc.isenabled()
    finally:
        gc.set_threshold(*before)
