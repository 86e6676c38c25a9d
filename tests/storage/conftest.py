"""Storage test fixtures.

``each_writer``: the test runs once with each journal writer as the default
of ``batch`` and ``always`` (``storage.store.DEFAULT_WRITER``), so that every
test of recovery, snapshots, verification and the journal's bytes holds for
the inline writer and for the writer process alike. Modules opt in with
``pytestmark = pytest.mark.usefixtures("each_writer")``.
"""

from __future__ import annotations

import pytest

import storage.store as store_module


@pytest.fixture(params=["inline", "process"])
def each_writer(request, monkeypatch) -> str:
    writer = request.param
    monkeypatch.setattr(store_module, "DEFAULT_WRITER", {"batch": writer, "always": writer, "off": "inline"})
    return writer
