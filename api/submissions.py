"""Submitting work: a job (POST /v1/jobs), an ensemble of stored runs (POST /v1/ensembles) or a sweep
(POST /v1/sweeps).

All go one way down. A repeated Idempotency-Key replays the first answer. The request is checked
(spec errors and limits as 422s at their field, the tenant's quota as a 429) before anything is stored.
The row and the kept answer commit in one transaction; then the task is sent, and if the broker is away
the row is taken back with a 503, so that nothing waits forever for a worker that will never hear of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from fastapi import HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.field_errors import spec_errors_as_422
from api.idempotency import Idempotent, commit_or_replay
from api.job_view import present_job
from api.limits import (
    ensemble_limit_errors,
    refuse_over_active_jobs,
)
from api.resources import ApiResources
from api.schemas import EnsembleIn, EnsembleOut, SweepOut
from models.ensemble import Member, check_members
from models.spec import JobSpec, SpecError
from models.sweeps import SweepSpec
from store import ensembles, jobs, queue, sweeps
from store.ensemble_selection import select_members
from store.states import JobKind
from store.tables import Job
from store.vetting import vet_spec


@dataclass(frozen=True)
class Created:
    """A row stored (not yet committed) with its answer, and how to queue it or take it back."""

    answer: BaseModel
    location: str
    enqueue: Callable[[], None]
    take_back: Callable[[], None]


def submit(
    session: Session, idempotent: Idempotent | None, status_code: int, create: Callable[[], Created]
) -> Created | Response:
    """The first answer to a repeated key, or what `create` made, committed and queued."""
    if idempotent is not None and (replay := idempotent.replay()) is not None:
        return replay
    created = create()
    if idempotent is not None:
        idempotent.remember(status_code, created.location, created.answer)
    if (replay := commit_or_replay(session, idempotent)) is not None:
        return replay  # the same key and body, committed first by a concurrent request
    try:
        created.enqueue()
    except Exception as exc:  # the broker is away: take the work back rather than leave it stranded
        created.take_back()
        if idempotent is not None:
            idempotent.forget()
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the job queue is unavailable") from exc
    return created


def submit_job(
    session: Session, resources: ApiResources, tenant: str, spec: JobSpec, idempotency_key: str | None
) -> Created | Response:
    ttl_s = resources.settings.idempotency_ttl_s
    idempotent = Idempotent.of(session, tenant, "jobs", idempotency_key, spec, ttl_s)
    create = partial(_create_job, session, resources, tenant, spec)
    return submit(session, idempotent, status.HTTP_202_ACCEPTED, create)


def _create_job(session: Session, resources: ApiResources, tenant: str, spec: JobSpec) -> Created:
    settings = resources.settings
    with spec_errors_as_422():
        vetted = vet_spec(session, spec, tenant, settings)
    if vetted.errors:
        raise RequestValidationError(vetted.errors)
    refuse_over_active_jobs(session, tenant, spec, settings)
    job = jobs.create_job(session, spec, summary=asdict(vetted.summary), tenant=tenant)
    return Created(
        answer=present_job(job, session, resources.redis),
        location=f"/v1/jobs/{job.id}",
        enqueue=lambda: queue.enqueue_job(job.id, job.kind, spec, celery=resources.producer),
        take_back=lambda: jobs.delete_job(session, job.id),
    )


def submit_ensemble(
    session: Session, resources: ApiResources, tenant: str, body: EnsembleIn, idempotency_key: str | None
) -> Created | Response:
    """Members are checked now, from their files' headers; the evaluation runs on a worker."""
    ttl_s = resources.settings.idempotency_ttl_s
    idempotent = Idempotent.of(session, tenant, "ensembles", idempotency_key, body, ttl_s)
    create = partial(_create_ensemble, session, resources, tenant, body)
    return submit(session, idempotent, status.HTTP_201_CREATED, create)


def _create_ensemble(session: Session, resources: ApiResources, tenant: str, body: EnsembleIn) -> Created:
    with spec_errors_as_422():
        refs = body.refs() if body.from_sweep is None else _sweep_refs(session, tenant, body)
    if errors := ensemble_limit_errors(len(refs), resources.settings):
        raise RequestValidationError(errors)
    with spec_errors_as_422():
        sources = ensembles.resolve_members(session, refs, tenant)  # another tenant's run is unknown
        # Shapes and metadata only: no weights are loaded here.
        check_members([_header_member(index, source) for index, source in enumerate(sources)], body.method)
    name = body.name or (
        f"{body.method} of {len(refs)} members"
        if body.from_sweep is None
        else f"{body.select} {len(refs)} of sweep {body.from_sweep}"
    )
    ensemble = ensembles.create_ensemble(session, name=name, method=body.method, refs=refs, tenant=tenant)
    return Created(
        answer=EnsembleOut.of(ensemble),
        location=f"/v1/ensembles/{ensemble.id}",
        enqueue=lambda: queue.enqueue_build_ensemble(ensemble.id, celery=resources.producer),
        take_back=lambda: session.delete(ensemble),
    )


def submit_sweep(
    session: Session,
    resources: ApiResources,
    tenant: str,
    spec: SweepSpec,
    idempotency_key: str | None,
) -> Created | Response:
    """The sweep and its first trials, vetted and queued; a space with no valid point is a 422 at it."""
    ttl_s = resources.settings.idempotency_ttl_s
    idempotent = Idempotent.of(session, tenant, "sweeps", idempotency_key, spec, ttl_s)
    create = partial(_create_sweep, session, resources, tenant, spec)
    return submit(session, idempotent, status.HTTP_201_CREATED, create)


def _create_sweep(session: Session, resources: ApiResources, tenant: str, spec: SweepSpec) -> Created:
    with spec_errors_as_422():
        spec.check_points()
    sweep = sweeps.create_sweep(session, spec, tenant)
    topped = sweeps.top_up(session, sweep.id, resources.settings)
    created = topped.created if topped is not None else []

    def enqueue() -> None:
        for job_id in created:
            trial_spec = session.get(Job, job_id).spec  # still in the session: no query
            queue.enqueue_job(job_id, JobKind.TRIAL, trial_spec, celery=resources.producer)

    return Created(
        answer=SweepOut.of(sweep),
        location=f"/v1/sweeps/{sweep.id}",
        enqueue=enqueue,
        take_back=lambda: sweeps.delete_sweep(session, sweep.id),
    )


def _sweep_refs(session: Session, tenant: str, body: EnsembleIn) -> list[dict[str, Any]]:
    """The members chosen from the sweep's succeeded trials, on their validation numbers only."""
    sweep = sweeps.get_sweep(session, body.from_sweep, tenant)  # another tenant's sweep is unknown
    if sweep is None:
        raise SpecError(("from_sweep",), f"sweep {body.from_sweep} not found")
    runs = [run for trial in sweep.trials if trial.job is not None for run in trial.job.runs]
    return select_members(runs, body.select, body.size, sweeps.sweep_spec(sweep).objective)


def _header_member(index: int, source: ensembles.MemberSource) -> Member:
    try:
        return Member(source.shapes(), source.meta())
    except Exception as exc:  # a missing or torn file is the member's problem, not a server error
        raise SpecError(
            ("members", index), f"the stored weights of run {source.ref['run_id']} cannot be read"
        ) from exc
