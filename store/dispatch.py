"""Dispatch: send waiting jobs to the broker as training slots free, in the order store/scheduling.py chooses.

A job submitted to /v1/jobs, and a sweep's trial, is stored waiting (`dispatched_at` null) rather than sent
at once. A dispatch round runs after each submission (in the API), after each job ends, as a worker
registers and in every worker recovery round: the safety net, which makes the waiting jobs, being rows,
survive a restart of any part. An ensemble job's members are sent by its own task, dispatched with it.

Capacity is counted per queue (store.queue.queue_for: a queue per resource kind): the training slots of
the live workers that take it, each registering its own slots and queues in Redis with a TTL that its
recovery loop refreshes, less that queue's trainings running or dispatched and not yet started. A worker
that takes two queues (a GPU worker takes both) counts its slots in each: either queue may fill them. A
queue no live worker takes (no worker registered at all: an API alone, or every worker gone; or no GPU
worker for the GPU queue) has unknown capacity and every job of it within its tenant's limit is sent, as
before there was a dispatcher: the broker holds them until a worker comes (and the API's own tests count
what it sent), and they hold no other queue's slots.

One round at a time across all processes, under a Redis lock. A process that finds the lock taken leaves a
request that the holder serves before it lets go, so a round asked for is never lost. Each job is marked by
a compare-and-set and committed before it is sent; one the broker refuses goes back to waiting.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager

import redis
from redis.exceptions import LockError
from sqlalchemy.orm import Session

from store import lifecycle, scheduling
from store.queue import QUEUE
from store.settings import Settings
from store.states import JobKind

log = logging.getLogger(__name__)

WORKER_KEY_PREFIX = "trainyard:workers:"  # + a worker's host:pid = {"slots": n, "queues": [...]}
LOCK_KEY = "trainyard:dispatch:lock"
REQUEST_KEY = "trainyard:dispatch:requested"  # set: a round is wanted, by whoever holds the lock
# A holder killed mid-round (SIGKILL) lets go after this, and rounds stall meanwhile: short, as a round takes
# milliseconds. One that outlasts it (a database gone slow) may run beside the next: a slot or two sent twice
# over, at worst, which the broker holds until one frees.
LOCK_TIMEOUT_S = 5

Send = Callable[[str, JobKind, dict], None]  # store.queue.enqueue_job (id, kind, spec), the caller's producer
Transaction = Callable[[], AbstractContextManager[Session]]  # a session that commits on leaving


def register_worker(
    client: redis.Redis, identity: str, slots: int, ttl_s: float, queues: Collection[str] = (QUEUE,)
) -> None:
    """This worker has `slots` training processes taking `queues`, for `ttl_s` unless registered again."""
    value = json.dumps({"slots": slots, "queues": sorted(queues)})
    client.set(WORKER_KEY_PREFIX + identity, value, px=max(1, int(ttl_s * 1000)))


def unregister_worker(client: redis.Redis, identity: str) -> None:
    client.delete(WORKER_KEY_PREFIX + identity)


def training_slots(client: redis.Redis) -> dict[str, int]:
    """Per queue, the training slots of the live workers that take it; a queue no worker takes is absent."""
    keys = list(client.scan_iter(match=WORKER_KEY_PREFIX + "*", count=1000))
    slots: Counter[str] = Counter()
    # A key may expire between the scan and the read: its value is None then.
    for value in client.mget(keys) if keys else []:
        if value is not None:
            worker = json.loads(value)
            for queue in worker["queues"]:
                slots[queue] += worker["slots"]
    return dict(slots)


def dispatch(transaction: Transaction, settings: Settings, client: redis.Redis, send: Send) -> list[str]:
    """Run dispatch rounds until none is asked for; answers the ids this process sent. Raises when the
    broker refuses a job (which waits again), or Redis or the database is away."""
    client.set(REQUEST_KEY, 1)
    lock = client.lock(LOCK_KEY, timeout=LOCK_TIMEOUT_S)
    sent: list[str] = []
    while lock.acquire(blocking=False):
        try:
            while client.delete(REQUEST_KEY):
                sent += _round(transaction, settings, client, send)
        finally:
            try:
                lock.release()
            except LockError:  # held past its timeout, and taken since: that holder serves the rest
                log.warning("the dispatch lock expired during a round")
        # Asked for between the last round and the release, by a process that found the lock taken.
        if not client.exists(REQUEST_KEY):
            break
    return sent


def _round(transaction: Transaction, settings: Settings, client: redis.Redis, send: Send) -> list[str]:
    capacity = training_slots(client)
    with transaction() as session:
        waiting, in_use = scheduling.waiting_jobs(session), scheduling.trainings_in_use(session)
        served = scheduling.served_longest_ago(session, {job.tenant for job in waiting})
        chosen = []
        for queue in sorted({job.queue for job in waiting}):  # each queue's slots are its own
            chosen += scheduling.choose(
                [job for job in waiting if job.queue == queue],
                in_use[queue],
                served,
                capacity.get(queue),
                settings.max_running_per_tenant,
            )
        marked = [job for job in chosen if lifecycle.mark_dispatched(session, job.job_id)]
    for index, job in enumerate(marked):
        try:
            send(job.job_id, job.kind, job.spec)
        except Exception:
            with transaction() as session:
                for unsent in marked[index:]:
                    lifecycle.undo_dispatch(session, unsent.job_id)
            raise
    if marked:
        log.info("dispatched %s (slots per queue: %s)", [job.job_id for job in marked], capacity or "unknown")
    return [job.job_id for job in marked]
