"""Dependencies shared by the routers, as Annotated aliases, each read from the request's own app.

Every one is `async def`: FastAPI would run a plain `def` dependency in the thread pool, a thread hop
for what is an attribute read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.auth import TenantDep
from api.resources import ApiResources
from store.settings import Settings


async def app_resources(request: Request) -> ApiResources:
    return request.app.state.resources


ResourcesDep = Annotated[ApiResources, Depends(app_resources)]


async def app_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


async def app_redis(resources: ResourcesDep) -> redis.Redis:
    return resources.redis


# A request's session keeps its pooled connection until FastAPI has serialized the answer, which for a
# sync route happens in the thread pool. Unbounded, a burst of requests deadlocks: every connection held
# by an answer waiting for a thread, every thread waiting for a connection. So at most pool-size requests
# hold a session at once; the others wait on the event loop, which costs no thread. The session is closed
# on the event loop (an async dependency, scope "function") once the route function and its serialization
# are done. The bound is the app's own db_pool_size, hence a semaphore of the app's rather than
# Depends(max_concurrency=...), which is fixed when the routers are imported.
async def get_db(resources: ResourcesDep) -> AsyncIterator[Session]:
    """A session per request; routes that write commit explicitly."""
    async with resources.session_slots.semaphore():
        with resources.sessions() as session:
            yield session


SessionDep = Annotated[Session, Depends(get_db, scope="function")]
RedisDep = Annotated[redis.Redis, Depends(app_redis)]
SettingsDep = Annotated[Settings, Depends(app_settings)]

__all__ = ["RedisDep", "ResourcesDep", "SessionDep", "SettingsDep", "TenantDep"]
