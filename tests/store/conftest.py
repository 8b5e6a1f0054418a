"""The store's tests run on both databases the service supports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from store.db import make_engine
from store.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Iterator[Engine]:
    """A migrated SQLite file of the test's own, or the session's PostgreSQL database (shared by the
    session's tests: each looks at rows, tenants or jobs of its own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'trainyard.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url, pool_size=5)
    yield engine
    engine.dispose()
