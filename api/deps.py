"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import Depends
from sqlalchemy.orm import Session

from api.auth import TenantDep
from store.db import new_session
from store.settings import Settings, get_settings
from store.streams import get_redis


async def get_db() -> AsyncIterator[Session]:
    """A session per request; routes that write commit explicitly."""
    with new_session() as session:
        yield session


# A request's session keeps its pooled connection until FastAPI has serialized the answer, which for a
# sync route happens in the thread pool. Unbounded, a burst of requests deadlocks: every connection held
# by an answer waiting for a thread, every thread waiting for a connection. So at most pool-size requests
# hold a session at once; the others wait on the event loop, which costs no thread. The session is closed
# on the event loop (an async dependency) once the route function and its serialization are done.
SessionDep = Annotated[
    Session, Depends(get_db, scope="function", max_concurrency=get_settings().db_pool_size)
]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

__all__ = ["RedisDep", "SessionDep", "SettingsDep", "TenantDep"]  # TenantDep: the request's tenant
