"""GET /v1/jobs/{id}/events: a job's curve and status changes as Server-Sent Events.

The job's Redis stream carries both, in one order with one id sequence, so an event's `id` is its stream
id and a follower that reconnects with `Last-Event-ID` resumes exactly after it. SQL stays the truth for
what Redis may not hear of (a queued job cancelled, a lost job failed by recovery) and for finished jobs,
whose curve it keeps after Redis has let the stream go.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.routers.jobs import present_job
from api.schemas import JobOut
from store import jobs, streams
from store.db import new_session
from store.settings import get_settings
from store.tables import TERMINAL

router = APIRouter(prefix="/v1/jobs", tags=["events"])

STREAM_ID = r"^\d+-\d+$"
# How long one XREAD waits for news before the job's row is read again: the bound on how late a follower
# hears of an end that only SQL knows about.
BLOCK_MS = 2000
# While points keep coming, the row is still read this often, for the same reason.
SQL_EVERY_S = 10.0
# Browsers reconnect after this many milliseconds when a stream breaks.
RETRY_MS = 2000


def job_now(job_id: str) -> JobOut | None:
    with new_session() as session:
        job = jobs.get_job(session, job_id)
        return present_job(job, session, streams.get_redis()) if job else None


def finished_points(job_id: str, after: str | None) -> list[dict[str, Any]]:
    with new_session() as session:
        points = jobs.stored_points(session, job_id)
    if not points:  # a job that ended before its curve was copied to SQL (cancelled while queued)
        return streams.read_points(streams.get_redis(), job_id, after=after)
    if after:
        points = [p for p in points if streams.stream_id_key(p["id"]) > streams.stream_id_key(after)]
    return points


async def existing_job(job_id: str) -> JobOut:
    """Read before the stream opens, so that an unknown job is a plain 404 and not a broken stream."""
    job = await run_in_threadpool(job_now, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


def status_event(job: JobOut, event_id: str | None = None) -> ServerSentEvent:
    data = {
        "status": job.status,
        "attempt": job.attempts,
        "progress": job.progress.model_dump(),
        "metrics": job.metrics,
    }
    return ServerSentEvent(event="status", id=event_id, data=data, retry=RETRY_MS)


def done_event(job: JobOut) -> ServerSentEvent:
    return ServerSentEvent(event="done", data=job.model_dump(mode="json"))


def entry_event(stream_id: str, fields: dict[str, str]) -> ServerSentEvent:
    if streams.is_status_entry(fields):
        return ServerSentEvent(event="status", id=stream_id, data=streams.status_from_entry(fields))
    return ServerSentEvent(event="metric", id=stream_id, data=streams.point_from_entry(stream_id, fields))


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={404: {"description": "no such job"}},
    summary="Follow a job: curve points, status changes, then done",
)
async def follow_job(
    job_id: str,
    job: Annotated[JobOut, Depends(existing_job)],
    last_event_id: Annotated[str | None, Header(pattern=STREAM_ID)] = None,
    after: Annotated[
        str | None,
        Query(alias="last_event_id", pattern=STREAM_ID, description="as the Last-Event-ID header"),
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    cursor = last_event_id or after
    yield status_event(job)
    if job.status in TERMINAL:
        for point in await run_in_threadpool(finished_points, job_id, cursor):
            yield ServerSentEvent(event="metric", id=point["id"], data=point)
        yield done_event(job)
        return

    client = streams.get_async_redis()
    key = streams.curve_key(job_id)
    cursor = cursor or "0-0"
    last_status, last_step, last_sql_read = job.status, job.progress.step, time.monotonic()
    heartbeat_s, last_sent = get_settings().sse_heartbeat_s, time.monotonic()
    block_ms = int(min(BLOCK_MS, heartbeat_s * 1000))
    while True:
        try:
            reply = await client.xread({key: cursor}, block=block_ms, count=1000)
        except redis.RedisError:
            return  # the client reconnects with its Last-Event-ID once Redis is back
        entries = reply[0][1] if reply else []
        ended = False
        for stream_id, fields in entries:
            cursor = stream_id
            event = entry_event(stream_id, fields)
            if event.event == "status":
                last_status = event.data["status"]
                ended = last_status in TERMINAL
            yield event
        if not ended and (not entries or time.monotonic() - last_sql_read >= SQL_EVERY_S):
            job = await run_in_threadpool(job_now, job_id)
            last_sql_read = time.monotonic()
            if job.status in TERMINAL:
                # Whatever Redis still holds came before the end: send it, then say how it ended.
                for stream_id, fields in await client.xrange(key, f"({cursor}", "+"):
                    event = entry_event(stream_id, fields)
                    last_status = event.data["status"] if event.event == "status" else last_status
                    yield event
                ended = True
            # An ensemble job's progress is its members': only SQL sees it move.
            moved = job.kind == "ensemble" and job.progress.step != last_step
            if job.status != last_status or moved:
                last_status, last_step = job.status, job.progress.step
                yield status_event(job)
        if ended:
            yield done_event(await run_in_threadpool(job_now, job_id))
            return
        if entries:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= heartbeat_s:
            last_sent = time.monotonic()
            yield ServerSentEvent(comment="ping")
