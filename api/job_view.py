"""A job as the API answers it: its row, its live progress from Redis, an ensemble job's members."""

from __future__ import annotations

import redis
from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from api.job_cache import Answer
from api.resources import ApiResources
from api.schemas import JobOut, MemberOut, Progress
from store import ensembles, jobs, streams
from store.states import TERMINAL, JobKind, JobStatus
from store.tables import Job


def _live_progress(job: Job, client: redis.Redis) -> dict:
    live = streams.read_progress(client, job.id) if job.status == JobStatus.RUNNING else None
    return job.progress | (live or {})


def present_job(job: Job, session: Session, client: redis.Redis) -> JobOut:
    if job.kind != JobKind.ENSEMBLE:
        # A snapshot job's ensemble is looked up only for such a job: lists stay one query per page.
        snapshots = job.spec.get("ensemble", {}).get("snapshots", 1) > 1
        ensemble = ensembles.of_job(session, job.id) if snapshots else None
        return JobOut.of(job, _live_progress(job, client), ensemble_id=ensemble.id if ensemble else None)
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


def _combined_progress(job: Job, members: list[MemberOut]) -> dict:
    """An ensemble job's progress: its members' steps added up; the eta of the slowest still running."""
    steps = sum(m.progress.steps for m in members)
    step = sum(m.progress.steps if m.status in TERMINAL else m.progress.step for m in members)
    running = [m for m in members if m.status == JobStatus.RUNNING and m.progress.eta_s is not None]
    return {
        "epoch": sum(m.progress.epoch for m in members) / max(len(members), 1),
        "epochs": job.spec["training"]["epochs"],
        "step": step,
        "steps": steps,
        "fraction": step / steps if steps else (1.0 if job.status in TERMINAL else 0.0),
        "eta_s": max(m.progress.eta_s for m in running) if running else None,
    }


def load_answer(resources: ApiResources, job_id: str) -> Answer | None:
    """A job as GET /v1/jobs/{id} answers it, and whose it is, read with a session of its own."""
    with resources.sessions() as session:
        job = jobs.get_job(session, job_id)
        if job is None:
            return None
        presented = present_job(job, session, resources.redis)
        return Answer(presented, presented.model_dump_json().encode(), job.tenant)


async def read_answer(resources: ApiResources, job_id: str, fresh: bool = False) -> Answer | None:
    """The job's answer from the app's short-lived cache; read again if `fresh` and it may have changed."""
    answers = resources.job_answers
    answer = await answers.get(job_id, lambda wanted: load_answer(resources, wanted))
    if fresh and answer is not None and not answer.finished:
        answers.forget(job_id)
        answer = await answers.get(job_id, lambda wanted: load_answer(resources, wanted))
    return answer


async def tenants_answer(resources: ApiResources, job_id: str, tenant: str) -> Answer:
    """The job's (cached) answer; a 404 if there is no such job or it is another tenant's."""
    answer = await read_answer(resources, job_id)
    if answer is None or answer.tenant != tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return answer
