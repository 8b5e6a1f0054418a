"""Jobs: submit, list, read, cancel, and read the curve."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError

from api.deps import RedisDep, SessionDep, SettingsDep
from api.schemas import CurveOut, JobOut, JobPage
from models.cnn import inspect_model
from models.datasets import ensure_available
from models.spec import JobSpec, SpecError
from store import jobs, streams
from store.queue import enqueue_training

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def _job_or_404(session, job_id: str):
    job = jobs.get_job(session, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


def _present(job, client) -> JobOut:
    live = streams.read_progress(client, job.id) if job.status == "running" else None
    return JobOut.of(job, live)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_job(
    spec: JobSpec, response: Response, session: SessionDep, client: RedisDep, settings: SettingsDep
) -> JobOut:
    try:
        # Built on the meta device: shapes and sizes are known before anything is stored or queued.
        summary = inspect_model(spec)
        ensure_available(spec.dataset, settings.data_dir)
    except SpecError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", *exc.loc), "msg": exc.message, "input": None}]
        ) from exc
    job = jobs.create_job(
        session, name=spec.display_name, spec=spec.model_dump(mode="json"), summary=asdict(summary)
    )
    session.commit()
    try:
        enqueue_training(job.id)
    except Exception as exc:  # the broker is away: take the job back rather than leave it stranded
        jobs.delete_job(session, job.id)
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the job queue is unavailable") from exc
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    client: RedisDep,
    status_filter: JobStatus | None = Query(None, alias="status"),
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = None,
) -> JobPage:
    try:
        page, next_cursor = jobs.list_jobs(session, status=status_filter, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc), "input": cursor}]
        ) from exc
    return JobPage(items=[_present(job, client) for job in page], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut)
def read_job(job_id: str, session: SessionDep, client: RedisDep) -> JobOut:
    return _present(_job_or_404(session, job_id), client)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep, client: RedisDep, settings: SettingsDep) -> JobOut:
    job = _job_or_404(session, job_id)
    if not jobs.cancel_queued(session, job_id):
        if not jobs.request_cancel_running(session, job_id):
            session.rollback()
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already {job.status}")
        # The training loop reads this flag with every curve flush: it stops within a few steps.
        streams.request_cancel(client, job_id, ttl_s=settings.visibility_timeout)
    session.commit()
    session.refresh(job)
    return _present(job, client)


@router.get("/{job_id}/metrics", response_model=CurveOut)
def read_curve(
    job_id: str,
    session: SessionDep,
    client: RedisDep,
    after: str | None = Query(None, pattern=r"^\d+-\d+$", description="a point id: only points after it"),
) -> CurveOut:
    job = _job_or_404(session, job_id)
    points = jobs.stored_points(session, job_id) if job.status in jobs.TERMINAL else []
    if points:
        if after:
            points = [p for p in points if streams.stream_id_key(p["id"]) > streams.stream_id_key(after)]
    else:
        points = streams.read_points(client, job_id, after=after)
    return CurveOut(points=points, last_id=points[-1]["id"] if points else after)
