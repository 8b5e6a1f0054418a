"""Reading and writing jobs from the API side: create, list, read, cancel."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from models.spec import JobSpec
from store import webhooks
from store.states import ACTIVE, JobKind, JobStatus
from store.tables import CurvePoint, Job, JobTag, Run, utcnow


def create_job(session: Session, spec: JobSpec, summary: dict[str, Any], tenant: str = "default") -> Job:
    """A job row; an ensemble job also gets one child TRAIN job per member, all queued together."""
    members = spec.ensemble.members
    job = Job(
        tenant=tenant,
        name=spec.display_name,
        spec=spec.model_dump(mode="json"),
        summary=summary,
        status=JobStatus.QUEUED,
        kind=JobKind.ENSEMBLE if members > 1 else JobKind.TRAIN,
        progress={},
        metrics={},
        tags=[JobTag(tag=tag) for tag in spec.tags],
    )
    session.add(job)
    session.flush()
    for member in range(members if members > 1 else 0):
        member_spec = spec.member_spec(member)
        session.add(
            Job(
                tenant=tenant,
                name=member_spec.display_name,
                spec=member_spec.model_dump(mode="json"),
                summary=summary,
                status=JobStatus.QUEUED,
                kind=JobKind.TRAIN,
                parent_id=job.id,
                member=member,
                progress={},
                metrics={},
                tags=[JobTag(tag=tag) for tag in spec.tags],
            )
        )
    session.flush()
    return job


def delete_job(session: Session, job_id: str) -> None:
    session.execute(delete(Job).where(Job.id == job_id))


def get_job(session: Session, job_id: str, tenant: str | None = None) -> Job | None:
    """The job; None also when `tenant` is given and the job is another tenant's."""
    job = session.get(Job, job_id)
    return job if job is not None and (tenant is None or job.tenant == tenant) else None


def get_run(session: Session, run_id: str, tenant: str | None = None) -> Run | None:
    """The run; None also when `tenant` is given and the run's job is another tenant's."""
    run = session.get(Run, run_id)
    return run if run is not None and (tenant is None or run.job.tenant == tenant) else None


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
    session: Session, *, status: str | None, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated so pages stay stable while jobs are added."""
    # Members of an ensemble job are listed with it, not beside it.
    query = (
        select(Job)
        .where(Job.parent_id.is_(None))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit + 1)
    )
    if status:
        query = query.where(Job.status == status)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    jobs = list(session.scalars(query))
    next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


def cancel_jobs(session: Session, job_ids: list[str]) -> list[str]:
    """Cancel queued jobs at once (the worker that later receives one skips it) and flag running ones.

    Answers the running ones flagged: their training loops must also be told through Redis, once this
    transaction is committed, and they stop at their next curve flush.
    """
    cancelled = session.scalars(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=utcnow())
        .returning(Job.id)
    ).all()
    for job_id in cancelled:
        webhooks.job_ended(session, job_id)
    running_now = select(Job.id).where(Job.id.in_(job_ids), Job.status == JobStatus.RUNNING)
    running = list(session.scalars(running_now))
    session.execute(
        update(Job).where(Job.id.in_(running), Job.status == JobStatus.RUNNING).values(cancel_requested=True)
    )
    return running


def member_jobs(session: Session, job_id: str) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.member)))


def runs_of(session: Session, job: Job) -> list[Run]:
    """A job's trained models: its own run, or for an ensemble job its members' runs."""
    if job.kind != JobKind.ENSEMBLE:
        return list(job.runs)
    query = select(Run).join(Job, Run.job_id == Job.id).where(Job.parent_id == job.id).order_by(Job.member)
    return list(session.scalars(query))


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


def count_active(session: Session, tenant: str) -> int:
    """Queued plus running trainings of a tenant: a job counts one, an ensemble job one per member."""
    # Rows of kind TRAIN are the work a worker does; an ensemble job's own row only waits for them.
    query = select(func.count()).where(
        Job.tenant == tenant, Job.kind == JobKind.TRAIN, Job.status.in_(ACTIVE)
    )
    return session.scalar(query) or 0
