"""One reader of a job's Redis stream per API process, shared by everyone following that job.

A hundred dashboards following one job would otherwise mean a hundred XREADs for every entry, each parsed
and framed again: most of the API's CPU. A feed reads the stream once, frames each entry as an SSE event
once, and keeps the framed events in order; followers take what is new to them and wait for more. A
follower that resumes from an older id first reads the stream up to where the feed began by itself.
The feed stops when its last follower leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from fastapi.sse import format_sse_event

from store import streams
from store.states import TERMINAL

# How long one XREAD waits for news; followers are woken this often even when nothing came, so they
# can send heartbeats and look at the job's row.
BLOCK_MS = 1000


def sse(event: str, data: Any, event_id: str | None = None, retry: int | None = None) -> bytes:
    return format_sse_event(data_str=json.dumps(data), event=event, id=event_id, retry=retry)


@dataclass(frozen=True)
class Framed:
    """A stream entry as followers send it, with what they need to know about it."""

    stream_id: str
    event: bytes
    status: str | None  # for status entries


def frame(stream_id: str, fields: dict[str, str]) -> Framed:
    if streams.is_status_entry(fields):
        status = streams.status_from_entry(fields)
        return Framed(stream_id, sse("status", status, stream_id), status["status"])
    return Framed(stream_id, sse("metric", streams.point_from_entry(stream_id, fields), stream_id), None)


@dataclass
class JobFeed:
    job_id: str
    client: redis.asyncio.Redis
    start_id: str  # the feed holds every entry after this one
    batch_s: float = 0.0  # at most one batch of news per this many seconds
    items: list[Framed] = field(default_factory=list)
    followers: int = 0
    failed: bool = False
    _news: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task | None = None

    async def run(self) -> None:
        key, cursor = streams.curve_key(self.job_id), self.start_id
        try:
            while True:
                reply = await self.client.xread({key: cursor}, block=BLOCK_MS, count=1000)
                for stream_id, fields in reply[0][1] if reply else []:
                    self.items.append(frame(stream_id, fields))
                    cursor = stream_id
                self._wake()
                if reply and self.batch_s:
                    # What arrives meanwhile comes in the next reply, and goes to every follower as one
                    # chunk: a few sends a second per follower instead of one per worker flush.
                    await asyncio.sleep(self.batch_s)
        except redis.RedisError:
            self.failed = True  # followers end their streams; clients reconnect with Last-Event-ID
            self._wake()

    def _wake(self) -> None:
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def wait(self, seen: int) -> None:
        """Until there are more than `seen` items, or one XREAD has passed with nothing new."""
        if len(self.items) <= seen and not self.failed:
            await self._news.wait()


class JobFeeds:
    def __init__(self, client: redis.asyncio.Redis, batch_s: float = 0.0) -> None:
        self.client = client
        self.batch_s = batch_s
        self._feeds: dict[str, JobFeed] = {}

    @contextlib.asynccontextmanager
    async def follow(self, job_id: str, after: str) -> AsyncIterator[tuple[list[Framed], JobFeed]]:
        """The entries after `after` that came before the job's feed began, and the feed itself."""
        feed = self._feeds.get(job_id)
        if feed is None:
            newest = await self.client.xrevrange(streams.curve_key(job_id), count=1)
            feed = JobFeed(job_id, self.client, newest[0][0] if newest else "0-0", self.batch_s)
            if job_id in self._feeds:  # another follower made one while this one asked Redis
                feed = self._feeds[job_id]
            else:
                self._feeds[job_id] = feed
                feed._task = asyncio.create_task(feed.run())
        feed.followers += 1
        try:
            earlier = []
            if streams.stream_id_key(after) < streams.stream_id_key(feed.start_id):
                entries = await self.client.xrange(streams.curve_key(job_id), f"({after}", feed.start_id)
                earlier = [frame(stream_id, fields) for stream_id, fields in entries]
            yield earlier, feed
        finally:
            feed.followers -= 1
            if feed.followers == 0 and self._feeds.get(job_id) is feed:
                del self._feeds[job_id]
                feed._task.cancel()


def ended(items: list[Framed]) -> bool:
    return any(item.status in TERMINAL for item in items)
