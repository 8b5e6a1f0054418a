"""Jobs: submit, list, read, cancel, and read the curve."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError

from api.auth import current_tenant
from api.curves import read_job_points
from api.deps import RedisDep, SessionDep, SettingsDep, TenantDep
from api.downsample import downsample_curve
from api.idempotency import IdempotencyKeyHeader, Idempotent, commit_or_replay
from api.job_cache import Answer, get_job_answers
from api.limits import PageSize, job_limit_errors, notify_url_errors, refuse_over_active_jobs
from api.schemas import CurveOut, JobOut, JobPage, MemberOut, Progress
from models.cnn import inspect_model
from models.datasets import ensure_available
from models.spec import JobSpec, SpecError
from store import ensembles, jobs, streams, uploads
from store.db import new_session
from store.queue import enqueue_job
from store.tables import TERMINAL

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(current_tenant)])

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def _job_or_404(session, job_id: str, tenant: str):
    # Another tenant's job is as unknown as one that never was.
    job = jobs.get_job(session, job_id, tenant)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


def _live_progress(job, client) -> dict:
    live = streams.read_progress(client, job.id) if job.status == "running" else None
    return job.progress | (live or {})


def present_job(job, session, client) -> JobOut:
    if job.kind != "ensemble":
        return JobOut.of(job, _live_progress(job, client))
    members = [
        MemberOut(
            id=child.id,
            member=child.member,
            status=child.status,
            progress=Progress(**_live_progress(child, client)),
            metrics=child.metrics,
            attempts=child.attempts,
            error=child.error,
        )
        for child in jobs.member_jobs(session, job.id)
    ]
    ensemble = ensembles.of_job(session, job.id)
    return JobOut.of(
        job,
        _combined_progress(job, members),
        runs=jobs.runs_of(session, job),
        members=members,
        ensemble_id=ensemble.id if ensemble else None,
    )


def _combined_progress(job, members: list[MemberOut]) -> dict:
    """An ensemble job's progress: its members' steps added up; the eta of the slowest still running."""
    steps = sum(m.progress.steps for m in members)
    step = sum(m.progress.steps if m.status in TERMINAL else m.progress.step for m in members)
    etas = [m.progress.eta_s for m in members if m.status == "running" and m.progress.eta_s is not None]
    return {
        "epoch": sum(m.progress.epoch for m in members) / max(len(members), 1),
        "epochs": job.spec["training"]["epochs"],
        "step": step,
        "steps": steps,
        "fraction": step / steps if steps else (1.0 if job.status in TERMINAL else 0.0),
        "eta_s": max(etas) if etas else None,
    }


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_job(
    spec: JobSpec,
    response: Response,
    session: SessionDep,
    client: RedisDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut | Response:
    idempotent = Idempotent.of(session, tenant, "jobs", idempotency_key, spec, settings.idempotency_ttl_s)
    if idempotent is not None and (replay := idempotent.replay()) is not None:
        return replay
    try:
        uploads.check_dataset_access(session, spec.dataset, tenant)  # before its file is read
        # Built on the meta device: shapes and sizes are known before anything is stored or queued.
        summary = inspect_model(spec)
        ensure_available(spec.dataset, settings.data_dir)
    except SpecError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", *exc.loc), "msg": exc.message, "input": None}]
        ) from exc
    if errors := job_limit_errors(spec, summary, settings) + notify_url_errors(spec, settings):
        raise RequestValidationError(errors)
    refuse_over_active_jobs(session, tenant, spec, settings)
    job = jobs.create_job(session, spec, summary=asdict(summary), tenant=tenant)
    answer, location = present_job(job, session, client), f"/v1/jobs/{job.id}"
    if idempotent is not None:
        idempotent.remember(status.HTTP_202_ACCEPTED, location, answer)
    if (replay := commit_or_replay(session, idempotent)) is not None:
        return replay  # the same key and body, committed first by a concurrent request
    try:
        enqueue_job(job.id, job.kind)
    except Exception as exc:  # the broker is away: take the job back rather than leave it stranded
        jobs.delete_job(session, job.id)
        if idempotent is not None:
            idempotent.forget()
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the job queue is unavailable") from exc
    response.headers["Location"] = location
    return answer


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    client: RedisDep,
    tenant: TenantDep,
    status_filter: JobStatus | None = Query(None, alias="status"),
    limit: PageSize = 20,
    cursor: str | None = None,
) -> JobPage:
    try:
        page, next_cursor = jobs.list_jobs(
            session, status=status_filter, limit=limit, cursor=cursor, tenant=tenant
        )
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc), "input": cursor}]
        ) from exc
    return JobPage(items=[present_job(job, session, client) for job in page], next_cursor=next_cursor)


def load_answer(job_id: str) -> Answer | None:
    """A job as GET /v1/jobs/{id} answers it, and whose it is, read with a session of its own."""
    with new_session() as session:
        job = jobs.get_job(session, job_id)
        if job is None:
            return None
        presented = present_job(job, session, streams.get_redis())
        return Answer(presented, presented.model_dump_json().encode(), job.tenant)


async def tenants_answer(job_id: str, tenant: str) -> Answer:
    """The job's (cached) answer; a 404 if there is no such job or it is another tenant's."""
    answer = await get_job_answers().get(job_id, load_answer)
    if answer is None or answer.tenant != tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return answer


@router.get("/{job_id}", response_model=JobOut)
async def read_job(job_id: str, tenant: TenantDep) -> Response:
    # Async, and answered from the short-lived cache: the route dashboards poll hardest.
    answer = await tenants_answer(job_id, tenant)
    return Response(answer.body, media_type="application/json")


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def cancel_job(
    job_id: str, session: SessionDep, client: RedisDep, settings: SettingsDep, tenant: TenantDep
) -> JobOut:
    job = _job_or_404(session, job_id, tenant)
    if job.status in TERMINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already {job.status}")
    # An ensemble job is cancelled with its members; it ends once they have.
    targets = [job_id, *(child.id for child in jobs.member_jobs(session, job_id))]
    flagged = jobs.cancel_jobs(session, targets)
    session.commit()
    for changed in targets:
        get_job_answers().forget(changed)
    for running_id in flagged:
        # The training loop reads this flag with every curve flush: it stops within a few steps.
        streams.request_cancel(client, running_id, ttl_s=settings.visibility_timeout)
    session.refresh(job)
    return present_job(job, session, client)


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
