"""Sweeps: create (its first trials queued at once), list, read, cancel, and follow as Server-Sent Events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.sse import EventSourceResponse, format_sse_event
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import submissions
from api.auth import current_tenant
from api.deps import ResourcesDep, SessionDep, TenantDep
from api.idempotency import IdempotencyKeyHeader
from api.limits import page_size
from api.pages import CursorQuery, bad_cursor_as_422
from api.resources import ApiResources
from api.schemas import SweepOut, SweepPage
from models.sweeps import SweepSpec
from store import streams, sweeps
from store.states import SweepStatus
from store.tables import Sweep

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], dependencies=[Depends(current_tenant)])

# How often a follower's sweep is read from SQL: a sweep moves at the pace of its trials' epochs.
FOLLOW_EVERY_S = 1.0
RETRY_MS = 2000


def _sweep_or_404(session: Session, sweep_id: str, tenant: str) -> Sweep:
    sweep = sweeps.get_sweep(session, sweep_id, tenant)
    if sweep is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found")
    return sweep


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepOut)
def create_sweep(
    spec: SweepSpec,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> SweepOut | Response:
    """Search `space` around `base`: its first `parallelism` trials are queued now, each a job of kind
    trial, and each trial that ends starts the next until `max_trials` have run."""
    submitted = submissions.submit_sweep(session, resources, tenant, spec, idempotency_key)
    if isinstance(submitted, Response):
        return submitted  # the first answer to this Idempotency-Key
    response.headers["Location"] = submitted.location
    return submitted.answer


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep, tenant: TenantDep, limit: Annotated[int, page_size(20)], cursor: CursorQuery = None
) -> SweepPage:
    """The tenant's sweeps, newest first (parameter importances only in each sweep's own answer)."""
    with bad_cursor_as_422(cursor):
        page, next_cursor = sweeps.list_sweeps(session, tenant=tenant, limit=limit, cursor=cursor)
    return SweepPage(items=[SweepOut.of(sweep) for sweep in page], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepOut)
def read_sweep(sweep_id: str, session: SessionDep, tenant: TenantDep) -> SweepOut:
    return SweepOut.of(_sweep_or_404(session, sweep_id, tenant), with_importances=True)


@router.post("/{sweep_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=SweepOut)
def cancel_sweep(sweep_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep) -> SweepOut:
    """Cancel the sweep and every trial still queued or running (409 once it has ended)."""
    sweep = _sweep_or_404(session, sweep_id, tenant)
    if sweep.status != SweepStatus.RUNNING:
        raise HTTPException(status.HTTP_409_CONFLICT, f"sweep {sweep_id} is {sweep.status}")
    running = sweeps.cancel_sweep(session, sweep)
    session.commit()
    ttl_s = resources.settings.visibility_timeout
    for job_id in running:  # their training processes stop at their next curve flush
        streams.request_cancel(resources.redis, job_id, ttl_s=ttl_s)
    session.expire_all()
    return SweepOut.of(_sweep_or_404(session, sweep_id, tenant))


@router.get(
    "/{sweep_id}/events",
    response_class=Response,  # returned as it is: the stream is framed below
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "sweep events, then done"},
        404: {"description": "no such sweep"},
    },
    summary="Follow a sweep: its state each time a trial moves, then done",
)
async def follow_sweep(sweep_id: str, resources: ResourcesDep, tenant: TenantDep) -> EventSourceResponse:
    # Read before the stream opens, so that an unknown sweep is a plain 404 and not a broken stream.
    first = await run_in_threadpool(_read, resources, sweep_id, tenant)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventSourceResponse(_sweep_events(resources, sweep_id, tenant, first), headers=headers)


def _read(resources: ApiResources, sweep_id: str, tenant: str) -> SweepOut:
    with resources.sessions() as session:
        return SweepOut.of(_sweep_or_404(session, sweep_id, tenant))


async def _sweep_events(
    resources: ApiResources, sweep_id: str, tenant: str, answer: SweepOut
) -> AsyncIterator[bytes]:
    """A `sweep` event with the whole sweep whenever it changed (a trial started, reported an epoch,
    ended), read from SQL, where the whole sweep is; `done` with the final one (and importances)."""
    sent, last_sent = None, time.monotonic()
    while True:
        data = answer.model_dump_json()
        if answer.status != SweepStatus.RUNNING:
            final = await run_in_threadpool(_final, resources, sweep_id, tenant)
            yield format_sse_event(data_str=final.model_dump_json(), event="done")
            return
        if data != sent:
            sent, last_sent = data, time.monotonic()
            yield format_sse_event(data_str=data, event="sweep", retry=RETRY_MS)
        elif time.monotonic() - last_sent >= resources.settings.sse_heartbeat_s:
            last_sent = time.monotonic()
            yield format_sse_event(comment="ping")
        await asyncio.sleep(FOLLOW_EVERY_S)
        answer = await run_in_threadpool(_read, resources, sweep_id, tenant)


def _final(resources: ApiResources, sweep_id: str, tenant: str) -> SweepOut:
    with resources.sessions() as session:
        return SweepOut.of(_sweep_or_404(session, sweep_id, tenant), with_importances=True)
