"""The worker's part in dispatch (store/dispatch.py): its training slots registered, and rounds run
after a job ends and in every recovery round."""

from __future__ import annotations

import logging

from store import dispatch, streams
from store.db import session_scope
from store.lifecycle import worker_identity
from store.queue import enqueue_job
from store.settings import get_settings

log = logging.getLogger(__name__)


def dispatch_waiting_jobs() -> list[str]:
    """Send the waiting jobs that have a slot now; a failure is logged, and the next round tries again."""
    try:
        return dispatch.dispatch(session_scope, get_settings(), streams.get_redis(), enqueue_job)
    except Exception:
        log.warning("dispatching waiting jobs failed; the next recovery round tries again", exc_info=True)
        return []


def register_slots(slots: int, queues: list[str]) -> None:
    """This worker's training processes count toward its queues' capacity for a lease, renewed every
    recovery round: a worker gone quiet stops counting when a job of its would be presumed lost."""
    dispatch.register_worker(streams.get_redis(), worker_identity(), slots, get_settings().lease_s, queues)


def unregister_slots() -> None:
    """At shutdown: the worker's slots stop counting at once, not after their lease."""
    try:
        dispatch.unregister_worker(streams.get_redis(), worker_identity())
    except Exception:  # Redis away: the registration expires with its lease
        log.warning("unregistering this worker's slots failed", exc_info=True)
