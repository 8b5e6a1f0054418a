"""The request rate of each API key, counted in Redis so that every API process shares the count.

Two moving windows per key, from the `limits` library (its Redis storage runs each check and count as
one Lua script, so concurrent requests on several processes cannot both take the last slot):
rate_limit_per_minute and rate_limit_per_second, 0 turning either off. A request over either gets 429
with Retry-After: the seconds until the window's oldest request leaves it, when one more is admitted.

This is not the active-jobs quota (api/limits.py), which bounds work; this bounds requests, of any kind.
When Redis cannot be reached, requests are admitted (fail open) and a warning is logged at most once a
minute: the quota and the per-job limits, which read SQL, still hold, and an outage of Redis should
not lock every key out of reading its results.
"""

from __future__ import annotations

import logging
import math
import time

import redis
import redis.asyncio
from fastapi import HTTPException, status
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from store.settings import Settings

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 1.0  # a Redis that hangs must not hang every request: fail open after this
WARN_EVERY_S = 60.0


class KeyRateLimit:
    """One per app (api/resources.py); `admit` is awaited by api/auth.py's current_tenant."""

    def __init__(self, settings: Settings) -> None:
        self.limits: list[tuple[RateLimitItem, str]] = [
            (item_type(amount, namespace="trainyard"), setting)
            for item_type, amount, setting in (
                (RateLimitItemPerSecond, settings.rate_limit_per_second, "rate_limit_per_second"),
                (RateLimitItemPerMinute, settings.rate_limit_per_minute, "rate_limit_per_minute"),
            )
            if amount > 0
        ]
        # The pool is ours (closed at shutdown); the storage only borrows it.
        self._pool = redis.asyncio.ConnectionPool.from_url(
            settings.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix="trainyard:rate",
            connection_pool=self._pool,
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._warned_at = -math.inf

    async def admit(self, key_id: str) -> None:
        """Count one request of the key; 429 if that is one too many in any of its windows."""
        for item, setting in self.limits:
            try:
                if await self._limiter.hit(item, key_id):
                    continue
                stats = await self._limiter.get_window_stats(item, key_id)
            except redis.RedisError as exc:
                self._warn_unreachable(exc)
                return
            raise _too_many(item, setting, stats.reset_time)

    def _warn_unreachable(self, exc: Exception) -> None:
        if time.monotonic() - self._warned_at >= WARN_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning("rate limit not counted, requests admitted: Redis unreachable (%s)", exc)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _too_many(item: RateLimitItem, setting: str, reset_time: float) -> HTTPException:
    retry_after = max(1, math.ceil(reset_time - time.time()))
    per = "second" if isinstance(item, RateLimitItemPerSecond) else "minute"
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail={
            "msg": f"more than {item.amount} requests per {per} with this API key ({setting})",
            "limit": item.amount,
            "setting": setting,
            "retry_after_s": retry_after,
        },
        headers={"Retry-After": str(retry_after)},
    )
