"""GET /v1/jobs/{id}/events: a job's curve and status changes as Server-Sent Events.

The job's Redis stream carries both, in one order with one id sequence, so an event's `id` is its stream
id and a follower that reconnects with `Last-Event-ID` resumes exactly after it. SQL stays the truth for
what Redis may not hear of (a queued job cancelled, a lost job failed by recovery) and for finished jobs,
whose curve it keeps after Redis has let the stream go.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from api.curves import read_job_points
from api.job_cache import get_job_answers
from api.routers.jobs import load_job
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


def finished_points(job_id: str, after: str | None) -> list[dict[str, Any]]:
    with new_session() as session:
        return read_job_points(session, streams.get_redis(), jobs.get_job(session, job_id), after=after)


def sse(event: str | None, data: Any = None, event_id: str | None = None, retry: int | None = None) -> bytes:
    return format_sse_event(data_str=json.dumps(data), event=event, id=event_id, retry=retry)


def status_event(job: JobOut) -> bytes:
    """Where the job stands, read from SQL: sent without an id, as it is not a stream entry."""
    data = {
        "status": job.status,
        "attempt": job.attempts,
        "progress": job.progress.model_dump(),
        "metrics": job.metrics,
    }
    return sse("status", data, retry=RETRY_MS)


def done_event(job: JobOut) -> bytes:
    return format_sse_event(data_str=job.model_dump_json(), event="done")


def entry_event(stream_id: str, fields: dict[str, str]) -> bytes:
    if streams.is_status_entry(fields):
        return sse("status", streams.status_from_entry(fields), stream_id)
    return sse("metric", streams.point_from_entry(stream_id, fields), stream_id)


def ended_in(entries: list[tuple[str, dict[str, str]]]) -> str | None:
    """The terminal status among stream entries, if one is there."""
    for _, fields in entries:
        if streams.is_status_entry(fields) and fields["status"] in TERMINAL:
            return fields["status"]
    return None


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
    last_event_id: Annotated[str | None, Header(pattern=STREAM_ID)] = None,
    after: Annotated[
        str | None,
        Query(alias="last_event_id", pattern=STREAM_ID, description="as the Last-Event-ID header"),
    ] = None,
) -> EventSourceResponse:
    # Read before the stream opens, so that an unknown job is a plain 404 and not a broken stream.
    job = await run_in_threadpool(load_job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    # The events are framed here (with FastAPI's formatter) rather than yielded one by one to FastAPI's
    # SSE machinery: all the entries one XREAD returns go out as one chunk, which with a hundred
    # followers of a job costs several times less CPU per event.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventSourceResponse(job_events(job, last_event_id or after), headers=headers)


async def job_events(job: JobOut, cursor: str | None) -> AsyncIterator[bytes]:
    yield status_event(job)
    if job.status in TERMINAL:
        points = await run_in_threadpool(finished_points, job.id, cursor)
        yield b"".join(sse("metric", point, point["id"]) for point in points) + done_event(job)
        return

    client = streams.get_async_redis()
    key = streams.curve_key(job.id)
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
        chunk = [entry_event(stream_id, fields) for stream_id, fields in entries]
        if entries:
            cursor, last_sent = entries[-1][0], time.monotonic()
            last_status = next(
                (f["status"] for _, f in reversed(entries) if streams.is_status_entry(f)), last_status
            )
        ended = ended_in(entries) is not None
        if not ended and (not entries or time.monotonic() - last_sql_read >= SQL_EVERY_S):
            job = await run_in_threadpool(load_job, job.id)
            last_sql_read = time.monotonic()
            if job.status in TERMINAL:
                # Whatever Redis still holds came before the end: send it, then say how it ended.
                rest = await client.xrange(key, f"({cursor}", "+")
                chunk += [entry_event(stream_id, fields) for stream_id, fields in rest]
                last_status = ended_in(rest) or last_status
                ended = True
            # An ensemble job's progress is its members': only SQL sees it move.
            moved = job.kind == "ensemble" and job.progress.step != last_step
            if job.status != last_status or moved:
                last_status, last_step = job.status, job.progress.step
                chunk.append(status_event(job))
        if ended:
            get_job_answers().forget(job.id)  # so that a GET after `done` reads the end too
            chunk.append(done_event(await run_in_threadpool(load_job, job.id)))
        elif not chunk and time.monotonic() - last_sent >= heartbeat_s:
            chunk.append(format_sse_event(comment="ping"))
        if chunk:
            last_sent = time.monotonic()
            yield b"".join(chunk)
        if ended:
            return
