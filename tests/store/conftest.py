"""The store's tests run on both databases the service supports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from store.db import make_engine
from store.migrate import upgrade
from tests.conftest import scratch_postgres


@pytest.fixture(scope="session")
def store_postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the store's tests alone: not the session's stack's, whose worker sweeps
    and sends webhooks on its own (its updates of the rows a test deletes deadlocked with it)."""
    with scratch_postgres("trainyard_store") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Iterator[Engine]:
    """A migrated SQLite file of the test's own, or the store tests' PostgreSQL database (shared by them:
    each looks at rows, tenants or jobs of its own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'trainyard.db'}"
    else:
        url = request.getfixturevalue("store_postgres_url")
    upgrade(url)
    engine = make_engine(url, pool_size=5)
    yield engine
    engine.dispose()
