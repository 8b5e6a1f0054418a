"""Engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from celery import Celery
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from store.settings import Settings, get_settings


def make_engine(url: str, pool_size: int) -> Engine:
    """An engine on `url` keeping `pool_size` connections."""
    # Half as many again on top of the pool: the API's request sessions are limited to pool_size
    # (api.deps), so the work it does outside them (event streams, caches) always finds a connection.
    pool = {"pool_size": pool_size, "max_overflow": max(2, pool_size // 2)}
    if url.startswith("sqlite"):
        # The API and the worker write concurrently: WAL lets readers run beside one writer,
        # and the busy timeout makes a second writer wait instead of failing.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.sqlalchemy_url, settings.db_pool_size)


# A session's `info` key for the Celery producer that what it commits is sent with (store/webhooks.py);
# absent: the process's.
PRODUCER_INFO = "trainyard.producer"


def make_session_factory(settings: Settings, producer: Celery | None = None) -> sessionmaker[Session]:
    """Sessions on an engine of their own, built from `settings` (an API app's), not the process's; what
    they commit is sent to the queue with `producer`."""
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool_size)
    return sessionmaker(engine, expire_on_commit=False, info={PRODUCER_INFO: producer})


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(sessions: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """A session (of `sessions`, default the process's) that commits on success and rolls back on error."""
    with (sessions or _session_factory())() as session, session.begin():
        yield session


def reset_after_fork() -> None:
    """A forked child must not share its parent's pooled connections."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
