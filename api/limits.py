"""Limits from settings, checked before a job or an ensemble costs anything (nothing stored or queued)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SettingsDep
from models.spec import JobSpec
from store import jobs
from store.settings import Settings
from store.states import TRAINING_KINDS, JobStatus
from store.tables import Job
from store.vetting import over_limit

# Retry-After when no running training has an estimate yet (all queued, or none past its first epoch):
# long enough not to be a busy loop, short enough for digits-sized jobs, which finish in seconds.
UNKNOWN_WAIT_S = 30
LONGEST_WAIT_S = 3600


def page_size(default: int) -> Any:
    """The `limit` of a list route: from 1 to the app's max_page_size; `default` when not given.

    Checked here rather than by Query(le=...), which would fix the bound when the routers are imported.
    """

    async def limit_within_max_page_size(
        settings: SettingsDep,
        limit: Annotated[int, Query(ge=1, description="items per page, at most max_page_size")] = default,
    ) -> int:
        if limit > settings.max_page_size:
            max_size = settings.max_page_size
            error = over_limit(("limit",), limit, max_size, "max_page_size", "limit", part="query")
            raise RequestValidationError([error])
        return limit

    return Depends(limit_within_max_page_size)


def ensemble_limit_errors(members: int, settings: Settings) -> list[dict[str, Any]]:
    """POST /v1/ensembles: every member is loaded to predict, so their number is bounded too."""
    if members <= settings.max_members:
        return []
    return [over_limit(("members",), members, settings.max_members, "max_members", "the number of members")]


def refuse_over_active_jobs(session: Session, tenant: str, spec: JobSpec, settings: Settings) -> None:
    """429 when the tenant's queued plus running trainings would pass max_active_jobs with this job.

    A job counts one training, an ensemble job one per member (its own row only waits for them), so a
    K-member ensemble costs K. A tenant with nothing active is always admitted: an ensemble with more
    members than max_active_jobs (max_members may allow it) then runs alone rather than never. Checked,
    not locked: submissions at the same moment may each pass; a quota, not a security boundary.
    """
    cost = spec.ensemble.members
    active = jobs.count_active(session, tenant)
    if active == 0 or active + cost <= settings.max_active_jobs:
        return
    retry_after = _retry_after_s(session, tenant)
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail={
            "msg": f"{active} trainings queued or running; this job adds {cost}, at most "
            f"{settings.max_active_jobs} (max_active_jobs)",
            "active": active,
            "requested": cost,
            "limit": settings.max_active_jobs,
            "retry_after_s": retry_after,
        },
        headers={"Retry-After": str(retry_after)},
    )


def _retry_after_s(session: Session, tenant: str) -> int:
    """When a slot is likely to free: the soonest ETA among the tenant's running trainings.

    The ETA is the one each training records in its row after every epoch; a job that cancels or fails
    frees its slot sooner, so this is an upper bound, and a client that retries then is not early.
    """
    query = select(Job.progress).where(
        Job.tenant == tenant, Job.kind.in_(TRAINING_KINDS), Job.status == JobStatus.RUNNING
    )
    etas = [p.get("eta_s") for p in session.scalars(query) if p]
    known = [eta for eta in etas if isinstance(eta, int | float) and eta >= 0]
    if not known:
        return UNKNOWN_WAIT_S
    return max(1, min(LONGEST_WAIT_S, round(min(known))))
