"""Reading and writing jobs from the API side: create, list, read, cancel."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from store.tables import CurvePoint, Job, Run, utcnow

TERMINAL = ("succeeded", "failed", "cancelled")


def create_job(session: Session, *, name: str, spec: dict[str, Any], summary: dict[str, Any]) -> Job:
    job = Job(name=name, spec=spec, summary=summary, status="queued", progress={}, metrics={})
    session.add(job)
    session.flush()
    return job


def delete_job(session: Session, job_id: str) -> None:
    session.execute(delete(Job).where(Job.id == job_id))


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def get_run(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError on anything that is not a cursor this API issued."""
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created_at), str(job_id)
    except Exception as exc:  # any malformed input is the same client error
        raise ValueError("not a valid cursor") from exc


def list_jobs(
    session: Session, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated so pages stay stable while jobs are added."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Job.status == status)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    jobs = list(session.scalars(query))
    next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


def cancel_queued(session: Session, job_id: str) -> bool:
    """A queued job is cancelled at once; the worker that later receives it skips it."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=utcnow())
    )
    return result.rowcount == 1


def request_cancel_running(session: Session, job_id: str) -> bool:
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status == "running").values(cancel_requested=True)
    )
    return result.rowcount == 1


def stored_points(session: Session, job_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(CurvePoint).where(CurvePoint.job_id == job_id).order_by(CurvePoint.seq))
    return [
        {
            "id": p.stream_id,
            "step": p.step,
            "epoch": p.epoch,
            "name": p.name,
            "value": p.value,
            "attempt": p.attempt,
        }
        for p in rows
    ]
