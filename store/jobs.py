"""Reading and writing jobs from the API side: create, list, read, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from models.spec import JobSpec
from store import pages, webhooks
from store.states import ACTIVE, TRAINING_KINDS, JobKind, JobStatus
from store.tables import CurvePoint, Job, JobTag, Run, utcnow

# The `arch` filter's name for a job whose model is a layer list rather than a preset.
CUSTOM_ARCH = "custom"


def create_job(
    session: Session,
    spec: JobSpec,
    summary: dict[str, Any],
    tenant: str = "default",
    kind: JobKind = JobKind.TRAIN,
) -> Job:
    """A job row; an ensemble job also gets one child TRAIN job per member, all queued together.

    `kind` TRIAL: the job is a sweep's trial (a sweep never samples an ensemble: see models.sweeps)."""
    members = spec.ensemble.members
    job = Job(
        tenant=tenant,
        name=spec.display_name,
        spec=spec.model_dump(mode="json"),
        summary=summary,
        status=JobStatus.QUEUED,
        priority=spec.training.priority,
        kind=JobKind.ENSEMBLE if members > 1 else kind,
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
                priority=spec.training.priority,
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


JOB_ORDER = pages.Sort("created_at", (Job.created_at, Job.id))
RUN_ORDERS = {
    "created_at": pages.Sort("created_at", (Run.created_at, Run.id)),
    # Best first; a run without a test accuracy (none was measured) after every run with one: accuracies
    # are 0 to 1, so -1 sorts below them all, and keyset paging needs a key that is never NULL.
    "test_acc": pages.Sort("test_acc", (func.coalesce(Run.test_acc, -1.0), Run.created_at, Run.id)),
}


def _has_tags(tags: Sequence[str]) -> list[ColumnElement[bool]]:
    """A job carries every one of `tags`."""
    return [Job.tags.any(JobTag.tag == tag) for tag in tags]


def list_jobs(
    session: Session,
    *,
    tenant: str,
    limit: int,
    cursor: str | None,
    status: JobStatus | None = None,
    tags: Sequence[str] = (),
) -> tuple[list[Job], str | None]:
    """The tenant's jobs newest first, and the next page's cursor; ValueError on a bad cursor."""
    # Members of an ensemble job are listed with it, not beside it.
    query = select(Job).where(Job.tenant == tenant, Job.parent_id.is_(None), *_has_tags(tags))
    if status:
        query = query.where(Job.status == status)
    query = query.options(selectinload(Job.tags), selectinload(Job.runs))
    return pages.page(session, query, listing="jobs", sort=JOB_ORDER, limit=limit, cursor=cursor)


def list_runs(
    session: Session,
    *,
    tenant: str,
    limit: int,
    cursor: str | None,
    sort: str = "created_at",
    job_id: str | None = None,
    tags: Sequence[str] = (),
    dataset: str | None = None,
    dataset_id: str | None = None,
    arch: str | None = None,
) -> tuple[list[Run], str | None]:
    """The tenant's runs (a run is its job's tenant's) in `sort` order, and the next page's cursor.

    `job_id`: that job's runs, for an ensemble job its members'; `tags`: runs whose job has all of them;
    `dataset` and `dataset_id`: the spec's dataset name and upload id; `arch`: the preset, or "custom" for
    a layer list. Filters read the job's stored spec through JSON paths, which SQLite and PostgreSQL both
    answer. ValueError on a bad cursor.
    """
    query = select(Run).join(Job, Run.job_id == Job.id).where(Job.tenant == tenant, *_has_tags(tags))
    if job_id is not None:
        query = query.where(or_(Job.id == job_id, Job.parent_id == job_id))
    if dataset is not None:
        query = query.where(Job.spec[("dataset", "name")].as_string() == dataset)
    if dataset_id is not None:
        query = query.where(Job.spec[("dataset", "id")].as_string() == dataset_id)
    if arch is not None:
        preset = Job.spec[("model", "arch")].as_string()
        query = query.where(preset.is_(None) if arch == CUSTOM_ARCH else preset == arch)
    query = query.options(selectinload(Run.job).selectinload(Job.tags))
    return pages.page(session, query, listing="runs", sort=RUN_ORDERS[sort], limit=limit, cursor=cursor)


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
    # Rows of the training kinds are the work a worker does; an ensemble job's own row only waits for them.
    query = select(func.count()).where(
        Job.tenant == tenant, Job.kind.in_(TRAINING_KINDS), Job.status.in_(ACTIVE)
    )
    return session.scalar(query) or 0
