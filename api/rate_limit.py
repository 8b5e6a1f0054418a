"""The request rate of each API key, counted in Redis so that every API process shares the count.

A token bucket per key, as GCRA (the generic cell rate algorithm) from the `throttled-py` library: a key
may make rate_limit_burst requests at once, and rate_limit_per_minute in a minute on average; 0 as the
rate turns the limit off. GCRA keeps one timestamp per key (Redis's clock, so API hosts need not agree)
and checks and counts a request in one Redis script, where the `limits` library's moving windows took a
script per window and a list of timestamps each. That round trip is still most of what the limit costs:
bench/rate_limit_overhead.py measures the cached GET /v1/jobs/{id} at 1.85 times the requests per
second without the limit (1.99 with `limits`' two windows). A request over the rate gets 429 with
Retry-After: the seconds until the bucket admits one more.

This is not the active-jobs quota (api/limits.py), which bounds work; this bounds requests, of any kind.
When Redis cannot be reached, requests are admitted (fail open) and a warning is logged at most once a
minute: the quota and the per-job limits, which read SQL, still hold, and an outage of Redis should
not lock every key out of reading its results.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import HTTPException, status
from throttled.asyncio import RateLimiterType, RedisStore, Throttled, per_min
from throttled.exceptions import StoreUnavailableError

from store.settings import Settings

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 1.0  # a Redis that hangs must not hang every request: fail open after this
WARN_EVERY_S = 60.0
KEY_PREFIX = "trainyard:rate:"


class KeyRateLimit:
    """One per app (api/resources.py); `admit` is awaited by api/auth.py's current_tenant."""

    def __init__(self, settings: Settings) -> None:
        self.per_minute, self.burst = settings.rate_limit_per_minute, settings.rate_limit_burst
        self._throttle: Throttled | None = None
        if self.per_minute > 0:
            # The store opens its own connection pool on first use; it lives as long as the app's process.
            options = {"SOCKET_TIMEOUT": REDIS_TIMEOUT_S, "SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT_S}
            store = RedisStore(server=settings.redis_url, options=options)
            quota = per_min(self.per_minute, burst=self.burst)
            self._throttle = Throttled(using=RateLimiterType.GCRA.value, quota=quota, store=store)
        self._warned_at = -math.inf

    async def admit(self, key_id: str) -> None:
        """Count one request of the key; 429 if the key is over its rate."""
        if self._throttle is None:
            return
        try:
            result = await self._throttle.limit(KEY_PREFIX + key_id)
        except StoreUnavailableError as exc:
            self._warn_unreachable(exc)
            return
        if result.limited:
            raise self._too_many(result.state.retry_after)

    def _warn_unreachable(self, exc: Exception) -> None:
        if time.monotonic() - self._warned_at >= WARN_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning("rate limit not counted, requests admitted: Redis unreachable (%s)", exc)

    def _too_many(self, retry_after_s: float) -> HTTPException:
        retry_after = max(1, math.ceil(retry_after_s))
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail={
                "msg": f"more than {self.per_minute} requests per minute, or {self.burst} at once, with "
                "this API key (rate_limit_per_minute, rate_limit_burst)",
                "limit": self.per_minute,
                "burst": self.burst,
                "setting": "rate_limit_per_minute",
                "retry_after_s": retry_after,
            },
            headers={"Retry-After": str(retry_after)},
        )
