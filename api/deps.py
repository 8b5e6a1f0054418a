"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import redis
from fastapi import Depends
from sqlalchemy.orm import Session

from store.db import new_session
from store.settings import Settings, get_settings
from store.streams import get_redis


def get_db() -> Iterator[Session]:
    """A session per request; routes that write commit explicitly."""
    with new_session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
