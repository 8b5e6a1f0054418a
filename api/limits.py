"""Limits from settings, checked before a job or an ensemble costs anything (nothing stored or queued)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.cnn import ModelSummary
from models.spec import JobSpec
from store import egress, jobs
from store.settings import Settings, get_settings
from store.tables import Job

# Retry-After when no running training has an estimate yet (all queued, or none past its first epoch):
# long enough not to be a busy loop, short enough for digits-sized jobs, which finish in seconds.
UNKNOWN_WAIT_S = 30
LONGEST_WAIT_S = 3600

# The `limit` of every list route. Read when the routers are imported, as OpenAPI states the bound.
PageSize = Annotated[
    int, Query(ge=1, le=get_settings().max_page_size, description="items per page (max_page_size)")
]


def _over(loc: tuple, value: int, limit: int, setting: str, what: str) -> dict[str, Any]:
    """One error as FastAPI reports a field over its `le` bound, naming the setting that set it."""
    return {
        "type": "less_than_equal",
        "loc": ("body", *loc),
        "msg": f"{what} is {value:,}; at most {limit:,} ({setting})",
        "input": value,
        "ctx": {"le": limit, "setting": setting},
    }


def job_limit_errors(spec: JobSpec, summary: ModelSummary, settings: Settings) -> list[dict[str, Any]]:
    """Every limit the job exceeds, as 422 errors; the network's size as built on the meta device."""
    members = spec.ensemble.members
    checks = [
        (("training", "epochs"), spec.training.epochs, settings.max_epochs, "max_epochs", "epochs"),
        (
            ("training", "batch_size"),
            spec.training.batch_size,
            settings.max_batch_size,
            "max_batch_size",
            "the batch size",
        ),
        (("ensemble", "members"), members, settings.max_members, "max_members", "the number of members"),
        (("model",), summary.params, settings.max_params, "max_params", "the parameter count"),
        (
            ("model",),
            summary.flops_per_sample,
            settings.max_flops,
            "max_flops",
            "the FLOPs per sample (forward pass)",
        ),
    ]
    return [_over(*check) for check in checks if check[1] > check[2]]


def notify_url_errors(spec: JobSpec, settings: Settings) -> list[dict[str, Any]]:
    """A notify_url the worker may not POST to (a private address: store/egress.py), as a 422."""
    url = str(spec.notify_url) if spec.notify_url else None
    refused = url and egress.refusal(url, allow_private=settings.webhook_allow_private, resolve=False)
    if not refused:
        return []
    return [{"type": "value_error", "loc": ("body", "notify_url"), "msg": refused, "input": url}]


def ensemble_limit_errors(members: int, settings: Settings) -> list[dict[str, Any]]:
    """POST /v1/ensembles: every member is loaded to predict, so their number is bounded too."""
    if members <= settings.max_members:
        return []
    return [_over(("members",), members, settings.max_members, "max_members", "the number of members")]


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
    query = select(Job.progress).where(Job.tenant == tenant, Job.kind == "train", Job.status == "running")
    etas = [p.get("eta_s") for p in session.scalars(query) if p]
    known = [eta for eta in etas if isinstance(eta, int | float) and eta >= 0]
    if not known:
        return UNKNOWN_WAIT_S
    return max(1, min(LONGEST_WAIT_S, round(min(known))))
