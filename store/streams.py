"""Redis keys of a job: its event stream (curve points and status changes), live progress and cancel flag."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio

from store.settings import get_settings
from store.states import JobStatus

# A finished job's stream is kept this long for live readers; SQL holds the curve for good.
FINISHED_STREAM_TTL_S = 7 * 24 * 3600


def curve_key(job_id: str) -> str:
    return f"trainyard:job:{job_id}:curve"


def progress_key(job_id: str) -> str:
    return f"trainyard:job:{job_id}:progress"


def cancel_key(job_id: str) -> str:
    return f"trainyard:job:{job_id}:cancel"


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, health_check_interval=30)


def make_async_redis(url: str) -> redis.asyncio.Redis:
    """For the API's event streams: one blocked XREAD per follower must not hold a thread."""
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=30,
        health_check_interval=30,
        # Each follower holds a connection while its XREAD blocks; the default pool (100) would make
        # the 101st follower wait for one.
        max_connections=10_000,
    )


@lru_cache
def get_redis() -> redis.Redis:
    """The process's client (the worker's), on the process's settings."""
    return make_redis(get_settings().redis_url)


@dataclass(frozen=True)
class Point:
    step: int
    epoch: float
    name: str
    value: float
    attempt: int = 1

    def fields(self) -> dict[str, str]:
        return {
            "step": str(self.step),
            "epoch": repr(self.epoch),
            "name": self.name,
            "value": repr(self.value),
            "attempt": str(self.attempt),
        }


def point_from_entry(stream_id: str, fields: dict[str, str]) -> dict:
    return {
        "id": stream_id,
        "step": int(fields["step"]),
        "epoch": float(fields["epoch"]),
        "name": fields["name"],
        "value": float(fields["value"]),
        "attempt": int(fields.get("attempt", 1)),
    }


# The curve stream also carries status changes, so that a follower sees both in one order with one id
# sequence (what makes resuming from Last-Event-ID exact). Status entries are marked by this field.
STATUS_EVENT = "status"


def status_fields(
    status: JobStatus,
    attempt: int,
    progress: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, str]:
    return {
        "event": STATUS_EVENT,
        "status": status,
        "attempt": str(attempt),
        "progress": json.dumps(progress or {}),
        "metrics": json.dumps(metrics or {}),
    }


def is_status_entry(fields: dict[str, str]) -> bool:
    return fields.get("event") == STATUS_EVENT


def status_from_entry(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "status": fields["status"],
        "attempt": int(fields["attempt"]),
        "progress": json.loads(fields["progress"]),
        "metrics": json.loads(fields["metrics"]),
    }


def publish(
    client: redis.Redis,
    job_id: str,
    points: list[Point],
    progress: dict[str, float],
    maxlen: int,
    status: dict[str, str] | None = None,
) -> bool:
    """Append points (then a status entry) and progress in one round trip; answers whether a cancel
    was requested."""
    pipe = client.pipeline(transaction=False)
    for point in points:
        pipe.xadd(curve_key(job_id), point.fields(), maxlen=maxlen, approximate=True)
    if status:
        pipe.xadd(curve_key(job_id), status, maxlen=maxlen, approximate=True)
    if progress:
        pipe.hset(progress_key(job_id), mapping={k: repr(v) for k, v in progress.items()})
    pipe.exists(cancel_key(job_id))
    return bool(pipe.execute()[-1])


def read_points(
    client: redis.Redis, job_id: str, after: str | None = None, count: int | None = None
) -> list[dict]:
    start = f"({after}" if after else "-"
    entries = client.xrange(curve_key(job_id), start, "+", count=count)
    return [point_from_entry(i, f) for i, f in entries if not is_status_entry(f)]


def read_progress(client: redis.Redis, job_id: str) -> dict[str, float | int]:
    # Counts (step, steps, epochs) were written as ints and come back as ints.
    stored = client.hgetall(progress_key(job_id))
    return {k: int(v) if v.lstrip("-").isdigit() else float(v) for k, v in stored.items()}


def request_cancel(client: redis.Redis, job_id: str, ttl_s: int) -> None:
    client.set(cancel_key(job_id), "1", ex=ttl_s)


def expire_job_keys(client: redis.Redis, job_id: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.expire(curve_key(job_id), FINISHED_STREAM_TTL_S)
    pipe.delete(progress_key(job_id), cancel_key(job_id))
    pipe.execute()


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence), not as strings."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
