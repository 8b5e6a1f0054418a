"""Redis keys of a job: its curve stream, live progress and cancel flag."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import redis

from store.settings import get_settings

# A finished job's stream is kept this long for live readers; SQL holds the curve for good.
FINISHED_STREAM_TTL_S = 7 * 24 * 3600


def curve_key(job_id: str) -> str:
    return f"trainyard:job:{job_id}:curve"


def progress_key(job_id: str) -> str:
    return f"trainyard:job:{job_id}:progress"


def cancel_key(job_id: str) -> str:
    return f"trainyard:job:{job_id}:cancel"


@lru_cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().redis_url, decode_responses=True, socket_timeout=10, health_check_interval=30
    )


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


def publish(
    client: redis.Redis, job_id: str, points: list[Point], progress: dict[str, float], maxlen: int
) -> bool:
    """Append points and progress in one round trip; answers whether a cancel was requested."""
    pipe = client.pipeline(transaction=False)
    for point in points:
        pipe.xadd(curve_key(job_id), point.fields(), maxlen=maxlen, approximate=True)
    if progress:
        pipe.hset(progress_key(job_id), mapping={k: repr(v) for k, v in progress.items()})
    pipe.exists(cancel_key(job_id))
    return bool(pipe.execute()[-1])


def read_points(
    client: redis.Redis, job_id: str, after: str | None = None, count: int | None = None
) -> list[dict]:
    start = f"({after}" if after else "-"
    return [point_from_entry(i, f) for i, f in client.xrange(curve_key(job_id), start, "+", count=count)]


def read_progress(client: redis.Redis, job_id: str) -> dict[str, float]:
    return {k: float(v) for k, v in client.hgetall(progress_key(job_id)).items()}


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
