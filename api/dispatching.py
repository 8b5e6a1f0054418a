"""The API's dispatch rounds (store/dispatch.py): after a submission commits, and after a cancel frees a slot.

In the request's own process, with the app's sessions, Redis and producer: no process of its own.
"""

from __future__ import annotations

import logging
from functools import partial

from api.resources import ApiResources
from store import dispatch, queue
from store.db import session_scope

log = logging.getLogger(__name__)


def dispatch_waiting_jobs(resources: ApiResources) -> list[str]:
    """Send the waiting jobs that have a turn now; raises when the broker, Redis or the database is away."""
    send = partial(queue.enqueue_job, celery=resources.producer)
    transaction = partial(session_scope, resources.sessions)
    sent = dispatch.dispatch(transaction, resources.settings, resources.redis, send)
    for job_id in sent:  # a client reads what its request changed (api/job_cache.py)
        resources.job_answers.forget(job_id)
    return sent


def dispatch_after_cancel(resources: ApiResources) -> None:
    """A cancelled job that was dispatched but not started frees its slot now; should this fail, the
    workers' recovery rounds dispatch in its place."""
    try:
        dispatch_waiting_jobs(resources)
    except Exception:
        log.warning("dispatch after a cancel failed; a worker's recovery round will", exc_info=True)
