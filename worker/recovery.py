"""Requeue jobs whose worker was lost, fail those that have used their attempts, finish stalled ensembles,
top sweeps up, dispatch waiting jobs, send the webhook deliveries that are due, delete finished jobs older
than the retention."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from store import deletion, lifecycle, streams
from store.db import session_scope
from store.objects import artifact_store
from store.queue import enqueue_finish_ensemble, enqueue_job, enqueue_training
from store.settings import Settings
from store.states import JobStatus
from store.tables import utcnow
from worker.dispatching import dispatch_waiting_jobs
from worker.sweeps import top_up_running_sweeps
from worker.webhooks import send_due_webhooks

log = logging.getLogger(__name__)


def recover_lost_jobs(settings: Settings) -> list[str]:
    requeued: dict[str, dict] = {}  # id: spec, which picks the queue
    with session_scope() as session:
        to_finish = lifecycle.ensembles_to_finish(session, settings.lease_s)
        for job in lifecycle.find_lost_jobs(session, settings.lease_s):
            status = lifecycle.recover(session, job, settings.max_attempts)
            if status:
                log.warning("job %s: worker lost during attempt %d; now %s", job.id, job.attempts, status)
            if status == JobStatus.QUEUED:
                requeued[job.id] = job.spec
    for job_id, spec in requeued.items():
        enqueue_training(job_id, spec)  # it was dispatched before it was lost, and stays so: its turn goes on
    for job_id in to_finish:
        log.warning("ensemble job %s: all members ended but the job did not; finishing it", job_id)
        enqueue_finish_ensemble(job_id)
    try:
        top_up_running_sweeps()
    except Exception:  # as below: the database may be away; the next round tries again
        log.exception("topping up sweeps failed")
    dispatch_waiting_jobs()  # the safety net: whatever a restart or a lost message left waiting
    try:
        send_due_webhooks(settings)
    except Exception:  # whatever fails here must not stop the recovery of jobs, next round included
        log.exception("sending due webhooks failed")
    try:
        apply_retention(settings)
    except Exception:  # as above: a failed sweep is tried again at its next turn
        log.exception("deleting expired jobs failed")
    return list(requeued)


# When the next retention sweep is due (monotonic seconds), in this process.
_next_sweep_at = 0.0


def apply_retention(settings: Settings) -> list[str]:
    """Delete the finished jobs older than retention_days, swept every minute (every tenth of the retention
    where that is shorter), so a job outlives its retention by that at most. Answers the ids deleted."""
    global _next_sweep_at
    if settings.retention_days is None or time.monotonic() < _next_sweep_at:
        return []
    retention = timedelta(days=settings.retention_days)
    _next_sweep_at = time.monotonic() + min(60.0, retention.total_seconds() / 10)
    finished_before = utcnow() - retention
    deleted = deletion.delete_expired_jobs(
        session_scope,
        finished_before=finished_before,
        store=artifact_store(settings),
        client=streams.get_redis(),
    )
    if deleted:
        log.info("retention: deleted %d jobs finished before %s", len(deleted), finished_before.isoformat())
    return deleted


def requeue_queued_jobs() -> list[str]:
    """Send every dispatched queued job to the broker again: for a fresh, empty broker (the embedded
    stack's). Those still waiting in SQL are sent by dispatch rounds, in their turn.

    Duplicates are harmless: only one delivery can claim a job.
    """
    with session_scope() as session:
        queued = lifecycle.dispatched_queued_jobs(session)
    for job_id, kind, spec in queued:
        enqueue_job(job_id, kind, spec)
    return [job_id for job_id, _, _ in queued]
