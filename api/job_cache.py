"""Job answers kept as JSON bytes for a moment: dashboards poll the same job many times a second.

Reading a job costs a SQL query, a Redis read and a pydantic serialization, about 2 ms of CPU; a cached
answer costs only the HTTP framing. A running job's answer is kept `job_cache_s` (0.25 s by default, about
as often as its worker reports progress), a finished job's longer, as it no longer changes. Concurrent
misses for one job share a single load. The API forgets a job's answer itself when it changes the job
(cancel), so that a client reads its own writes; changes made by workers show within `job_cache_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from api.schemas import JobOut
from store.states import TERMINAL

FINISHED_TTL_S = 30.0


@dataclass(frozen=True)
class Answer:
    job: JobOut
    body: bytes  # job, as JSON
    tenant: str  # whose it is: only they are given it

    @property
    def finished(self) -> bool:
        return self.job.status in TERMINAL


class JobAnswers:
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Answer | None]] = {}

    async def get(self, job_id: str, load: Callable[[str], Answer | None]) -> Answer | None:
        """The job's answer, from the cache or from `load` (run in the thread pool); None if no job."""
        entry = self._entries.get(job_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._loading.get(job_id)
        if pending is None:
            pending = asyncio.ensure_future(run_in_threadpool(load, job_id))
            self._loading[job_id] = pending
            pending.add_done_callback(lambda done: self._keep(job_id, done))
        # Shielded: one waiter hanging up must not cancel the load that the others wait for.
        return await asyncio.shield(pending)

    def forget(self, job_id: str) -> None:
        self._entries.pop(job_id, None)
        self._loading.pop(job_id, None)  # a load already under way may have read the job before the change

    def _keep(self, job_id: str, done: asyncio.Future[Answer | None]) -> None:
        if self._loading.get(job_id) is not done:
            return  # forgotten while it loaded: its waiters get it, later readers load afresh
        del self._loading[job_id]
        if done.cancelled() or done.exception() is not None or done.result() is None or self.ttl_s <= 0:
            return
        answer = done.result()
        ttl = max(self.ttl_s, FINISHED_TTL_S) if answer.finished else self.ttl_s
        self._entries[job_id] = (time.monotonic() + ttl, answer)
        self._entries.move_to_end(job_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
