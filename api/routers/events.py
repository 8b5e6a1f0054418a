"""GET /v1/jobs/{id}/events: a job's curve and status changes as Server-Sent Events.

The job's Redis stream carries both, in one order with one id sequence, so an event's `id` is its stream
id and a follower that reconnects with `Last-Event-ID` resumes exactly after it. SQL stays the truth for
what Redis may not hear of (a queued job cancelled, a lost job failed by recovery) and for finished jobs,
whose curve it keeps after Redis has let the stream go. Live streams are read through api/job_feeds.py:
one reader per job, however many follow it.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from api.auth import current_tenant
from api.curves import read_job_points
from api.deps import ResourcesDep, TenantDep
from api.job_feeds import Framed, JobFeed, ended, frame, sse
from api.job_view import read_answer, tenants_answer
from api.resources import ApiResources
from api.schemas import JobOut
from store import jobs, streams
from store.states import TERMINAL, JobKind

router = APIRouter(prefix="/v1/jobs", tags=["events"], dependencies=[Depends(current_tenant)])

STREAM_ID = r"^\d+-\d+$"
# While nothing comes from the stream, the job's row is read this often (through the answer cache): the
# bound on how late a follower hears of an end that only SQL knows about. While entries come, every
# SQL_EVERY_S, for the same reason.
QUIET_SQL_EVERY_S = 2.0
SQL_EVERY_S = 10.0
# Browsers reconnect after this many milliseconds when a stream breaks.
RETRY_MS = 2000


def finished_points(resources: ApiResources, job_id: str, after: str | None) -> list[dict[str, Any]]:
    with resources.sessions() as session:
        return read_job_points(session, resources.redis, jobs.get_job(session, job_id), after=after)


def status_event(job: JobOut) -> bytes:
    """Where the job stands, read from SQL: sent without an id, as it is not a stream entry."""
    data = {
        "status": job.status,
        "attempt": job.attempts,
        "progress": job.progress.model_dump(),
        "metrics": job.metrics.model_dump(),
    }
    return sse("status", data, retry=RETRY_MS)


def done_event(job: JobOut) -> bytes:
    return format_sse_event(data_str=job.model_dump_json(), event="done")


async def job_now(resources: ApiResources, job_id: str, fresh: bool = False) -> JobOut:
    """The job's row, from the answer cache (a moment old at most) unless `fresh`, or if that is not final."""
    return (await read_answer(resources, job_id, fresh)).job


@router.get(
    "/{job_id}/events",
    response_class=Response,  # returned as it is: the stream is framed below
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "metric, status and done events"},
        404: {"description": "no such job"},
    },
    summary="Follow a job: curve points, status changes, then done",
)
async def follow_job(
    job_id: str,
    resources: ResourcesDep,
    tenant: TenantDep,
    last_event_id: Annotated[str | None, Header(pattern=STREAM_ID)] = None,
    after: Annotated[
        str | None,
        Query(alias="last_event_id", pattern=STREAM_ID, description="as the Last-Event-ID header"),
    ] = None,
) -> EventSourceResponse:
    # Read before the stream opens, so that an unknown job is a plain 404 and not a broken stream.
    answer = await tenants_answer(resources, job_id, tenant)
    # Framed here (with FastAPI's formatter) rather than yielded one by one to FastAPI's SSE machinery:
    # what is new to a follower goes out as one chunk, several times cheaper per event.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    events = job_events(resources, answer.job, last_event_id or after)
    return EventSourceResponse(events, headers=headers)


async def job_events(resources: ApiResources, job: JobOut, cursor: str | None) -> AsyncIterator[bytes]:
    yield status_event(job)
    if job.status in TERMINAL:
        points = await run_in_threadpool(finished_points, resources, job.id, cursor)
        yield b"".join(sse("metric", point, point["id"]) for point in points) + done_event(job)
        return
    cursor = cursor or "0-0"
    async with resources.feeds.follow(job.id, cursor) as (earlier, feed):
        # The feed's entries up to the cursor were sent before (the follower resumed past the feed's start).
        ids = [streams.stream_id_key(item.stream_id) for item in feed.items]
        sent = bisect.bisect_right(ids, streams.stream_id_key(cursor))
        async for chunk in follow_feed(resources, job, cursor, earlier, feed, sent):
            yield chunk


def last_status_in(batch: list[Framed], default: str) -> str:
    return next((item.status for item in reversed(batch) if item.status), default)


async def follow_feed(
    resources: ApiResources, job: JobOut, cursor: str, earlier: list[Framed], feed: JobFeed, sent: int
) -> AsyncIterator[bytes]:
    """`earlier`, then the feed's items from index `sent` on, with status from SQL where Redis is silent."""
    last_status, last_step = job.status, job.progress.step
    heartbeat_s = resources.settings.sse_heartbeat_s
    last_sent = last_sql_read = time.monotonic()
    batch = earlier
    while True:
        finished = ended(batch)
        last_status = last_status_in(batch, last_status)
        synthesized = []
        now = time.monotonic()
        if not finished and now - last_sql_read >= (SQL_EVERY_S if batch else QUIET_SQL_EVERY_S):
            last_sql_read = now
            row = await job_now(resources, job.id)
            if row.status in TERMINAL:
                # Whatever Redis had before the end is sent first, read from Redis itself: entries
                # written just before the end may still be on their way to the feed.
                after = batch[-1].stream_id if batch else cursor
                entries = await feed.client.xrange(streams.curve_key(job.id), f"({after}", "+")
                rest = [frame(stream_id, fields) for stream_id, fields in entries]
                batch = batch + rest
                last_status = last_status_in(rest, last_status)
                finished = True
            # An ensemble job's progress is its members': only SQL sees it move.
            moved = row.kind == JobKind.ENSEMBLE and row.progress.step != last_step
            if row.status != last_status or moved:
                last_status, last_step = row.status, row.progress.step
                synthesized.append(status_event(row))
        chunk = [item.event for item in batch] + synthesized
        if finished:
            chunk.append(done_event(await job_now(resources, job.id, fresh=True)))
        elif not chunk and now - last_sent >= heartbeat_s:
            chunk.append(format_sse_event(comment="ping"))
        if batch:
            cursor = batch[-1].stream_id
        if chunk:
            last_sent = time.monotonic()
            yield b"".join(chunk)
        if finished or feed.failed:
            return
        await feed.wait(sent)
        batch, sent = feed.items[sent:], len(feed.items)
