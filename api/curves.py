"""A job's curve points, read from where they live: SQL once the job has ended, its Redis stream before."""

from __future__ import annotations

from typing import Any

import redis
from sqlalchemy.orm import Session

from store import jobs, streams
from store.states import TERMINAL
from store.tables import Job


def read_job_points(
    session: Session, client: redis.Redis, job: Job, *, after: str | None = None
) -> list[dict[str, Any]]:
    """Points in stream order, only those after the point id `after` when given."""
    # An ended job's curve was copied to SQL; one that ended without points (or before the copy) falls
    # back to the stream, which is kept a while after the job ends.
    points = jobs.stored_points(session, job.id) if job.status in TERMINAL else []
    if not points:
        return streams.read_points(client, job.id, after=after)
    if after:
        after_key = streams.stream_id_key(after)
        points = [p for p in points if streams.stream_id_key(p["id"]) > after_key]
    return points
