"""Jobs: submit, list, read, cancel, delete, and read the curve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from sqlalchemy.orm import Session

from api import submissions
from api.auth import current_tenant
from api.curves import read_job_points
from api.deps import RedisDep, ResourcesDep, SessionDep, TenantDep
from api.dispatching import dispatch_after_cancel
from api.downsample import downsample_curve
from api.idempotency import IdempotencyKeyHeader
from api.job_view import present_job, tenants_answer
from api.limits import page_size
from api.pages import CursorQuery, TagsQuery, bad_cursor_as_422
from api.predictors import run_keys
from api.schemas import CurveOut, JobOut, JobPage
from models.spec import JobSpec
from store import deletion, jobs, streams
from store.states import TERMINAL, JobStatus
from store.tables import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(current_tenant)])


def _job_or_404(session: Session, job_id: str, tenant: str) -> Job:
    # Another tenant's job is as unknown as one that never was.
    job = jobs.get_job(session, job_id, tenant)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_job(
    spec: JobSpec,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut | Response:
    submitted = submissions.submit_job(session, resources, tenant, spec, idempotency_key)
    if isinstance(submitted, Response):
        return submitted  # the first answer to this Idempotency-Key
    response.headers["Location"] = submitted.location
    return submitted.answer


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    client: RedisDep,
    tenant: TenantDep,
    limit: Annotated[int, page_size(20)],
    tag: TagsQuery,
    cursor: CursorQuery = None,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
) -> JobPage:
    """The tenant's jobs, newest first; an ensemble job's members are listed within it."""
    with bad_cursor_as_422(cursor):
        page, next_cursor = jobs.list_jobs(
            session, tenant=tenant, limit=limit, cursor=cursor, status=status_filter, tags=tag
        )
    return JobPage(items=[present_job(job, session, client) for job in page], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut)
async def read_job(job_id: str, resources: ResourcesDep, tenant: TenantDep) -> Response:
    # Async, and answered from the short-lived cache: the route dashboards poll hardest.
    answer = await tenants_answer(resources, job_id, tenant)
    return Response(answer.body, media_type="application/json")


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep) -> JobOut:
    job = _job_or_404(session, job_id, tenant)
    if job.status in TERMINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already {job.status}")
    # An ensemble job is cancelled with its members; it ends once they have.
    targets = [job_id, *(child.id for child in jobs.member_jobs(session, job_id))]
    flagged = jobs.cancel_jobs(session, targets)
    session.commit()
    for changed in targets:
        resources.job_answers.forget(changed)
    for running_id in flagged:
        # The training loop reads this flag with every curve flush: it stops within a few steps.
        streams.request_cancel(resources.redis, running_id, ttl_s=resources.settings.visibility_timeout)
    dispatch_after_cancel(resources)
    session.refresh(job)
    return present_job(job, session, resources.redis)


@router.get("/{job_id}/metrics", response_model=CurveOut)
def read_curve(
    job_id: str,
    session: SessionDep,
    client: RedisDep,
    tenant: TenantDep,
    after: str | None = Query(None, pattern=r"^\d+-\d+$", description="a point id: only points after it"),
    max_points: int | None = Query(
        None,
        ge=4,
        le=100_000,
        description="at most this many points per series: first, last, and each bucket's min and max",
    ),
) -> CurveOut:
    points = read_job_points(session, client, _job_or_404(session, job_id, tenant), after=after)
    last_id = points[-1]["id"] if points else after
    if max_points is not None:
        points = downsample_curve(points, max_points)
    return CurveOut(points=points, last_id=last_id)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_job(job_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep) -> Response:
    """Delete a finished job with its runs, curves, checkpoints, webhook deliveries and files (an ensemble
    job with its members and the ensemble it built); 409 while it runs or a stored ensemble uses its runs."""
    job = _job_or_404(session, job_id, tenant)
    try:
        removal = deletion.delete_job(session, job, resources.store)
    except deletion.Refused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from exc
    session.commit()
    removal.finish(resources.redis)  # files after the rows: a crash between leaves only orphan files
    for deleted in removal.job_ids:
        resources.job_answers.forget(deleted)
    resources.predictors.forget(*removal.ensemble_ids, *run_keys(removal.run_ids))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
