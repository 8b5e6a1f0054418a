"""What one app is built on: its settings, and the database, Redis, queue and caches made from them.

create_app builds them and keeps them on `app.state`, so that nothing is read at import time and two
apps with different settings (tests) live side by side in one process; routes reach them through the
dependencies of api/deps.py. The process-wide singletons of store/ are the worker's, never the API's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import redis.asyncio
from anyio import Semaphore
from anyio.lowlevel import RunVar
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from api.auth import RememberedKeys
from api.job_cache import JobAnswers
from api.job_feeds import JobFeeds
from api.predictors import PredictorCache
from api.rate_limit import KeyRateLimit
from store.db import make_session_factory
from store.objects import ArtifactStore, artifact_store
from store.queue import make_celery
from store.settings import Settings
from store.streams import make_async_redis, make_redis


class SessionSlots:
    """At most `size` requests hold a database session at once (why: api/deps.py), counted per event loop
    as anyio's primitives belong to the loop that made them (a TestClient runs one of its own)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._per_loop: RunVar[Semaphore] = RunVar(f"trainyard-session-slots-{id(self)}")

    def semaphore(self) -> Semaphore:
        try:
            return self._per_loop.get()
        except LookupError:
            semaphore = Semaphore(self.size)
            self._per_loop.set(semaphore)
            return semaphore


@dataclass
class ApiResources:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: redis.Redis
    async_redis: redis.asyncio.Redis
    producer: Celery  # sends tasks by name: the API never imports the worker
    session_slots: SessionSlots
    job_answers: JobAnswers
    predictors: PredictorCache
    feeds: JobFeeds
    rate_limit: KeyRateLimit
    store: ArtifactStore  # weights, checkpoints and uploads, as every host sees them
    keys: RememberedKeys = field(default_factory=RememberedKeys)

    @classmethod
    def of(cls, settings: Settings) -> ApiResources:
        """Connections are opened on first use: building this reaches neither the database nor Redis."""
        async_client = make_async_redis(settings.redis_url)
        producer = make_celery(settings)
        return cls(
            settings=settings,
            sessions=make_session_factory(settings, producer),
            redis=make_redis(settings.redis_url),
            async_redis=async_client,
            producer=producer,
            session_slots=SessionSlots(settings.db_pool_size),
            job_answers=JobAnswers(settings.job_cache_s),
            predictors=PredictorCache(settings.predictor_cache_mb * 2**20),
            feeds=JobFeeds(async_client, settings.sse_batch_s),
            rate_limit=KeyRateLimit(settings),
            store=artifact_store(settings),
        )

    async def aclose(self) -> None:
        """At the app's shutdown: every pooled connection closed, but the rate limit's, which its library
        keeps to itself (api/rate_limit.py): those go with the process."""
        await self.async_redis.aclose()
        self.redis.close()
        self.producer.close()
        self.sessions.kw["bind"].dispose()
