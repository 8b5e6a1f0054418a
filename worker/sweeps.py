"""Keeping sweeps going from the worker side: after a trial ends, and in every recovery round."""

from __future__ import annotations

import logging

from store import sweeps
from store.db import session_scope
from store.queue import enqueue_training
from store.settings import get_settings
from store.tables import Job

log = logging.getLogger(__name__)

# Tries at topping a sweep up while other processes top it up too: each lost try means another process
# committed trials meanwhile, so the next try reads what they left.
TOP_UP_TRIES = 3


def top_up_sweep(sweep_id: str) -> list[str]:
    """Start the sweep's next trials (or end it); answers the trial jobs sent to the broker."""
    settings = get_settings()
    for _ in range(TOP_UP_TRIES):
        with session_scope() as session:
            topped = sweeps.top_up(session, sweep_id, settings)
            # Each trial's own spec picks its queue (a space may vary resources.gpu); no query: just added.
            specs = {job_id: session.get(Job, job_id).spec for job_id in topped.created} if topped else {}
        if topped is not None:
            break
    else:
        return []  # busy elsewhere: whoever holds it tops it up
    for job_id in topped.created:
        # Committed first: a trial the broker never hears of (it is away) stays queued until Redis is back
        # (a restarted Redis has every queued job sent again: worker.celery_app).
        try:
            enqueue_training(job_id, specs[job_id])
        except Exception:
            log.warning("sweep %s: trial job %s not sent to the broker", sweep_id, job_id, exc_info=True)
    if topped.created or topped.refused:
        log.info("sweep %s: %d trials started, %d refused", sweep_id, len(topped.created), topped.refused)
    if topped.ended:
        log.info("sweep %s: %s", sweep_id, topped.ended)
    return topped.created


def top_up_sweep_of(job_id: str) -> None:
    """A trial's job has ended: its sweep's next trial starts (a failure here leaves it to recovery)."""
    try:
        with session_scope() as session:
            trial = sweeps.trial_of_job(session, job_id)
            sweep_id = trial.sweep_id if trial is not None else None
        if sweep_id is not None:
            top_up_sweep(sweep_id)
    except Exception:
        log.exception("job %s: topping its sweep up failed; the next recovery round will", job_id)


def top_up_running_sweeps() -> None:
    """The safety net: a trial whose worker died after ending it, or a trial job cancelled or failed by
    the API or a recovery, left its sweep short of trials; every recovery round tops each sweep up."""
    with session_scope() as session:
        running = sweeps.running_sweep_ids(session)
    for sweep_id in running:
        try:
            top_up_sweep(sweep_id)
        except Exception:
            log.exception("sweep %s: topping up failed", sweep_id)
