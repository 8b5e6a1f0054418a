"""Job state transitions: dispatch, claim, heartbeat, finish, and recovery of lost jobs.

Every transition is a compare-and-set UPDATE, so two workers (or a redelivered message and a
recovered job) can never both own one attempt, and two dispatchers never both send one waiting job.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from store import webhooks
from store.states import ACTIVE, TERMINAL, TRAINING_KINDS, JobKind, JobStatus, StopReason
from store.tables import Checkpoint, CurvePoint, Job, Run, utcnow


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    spec: dict[str, Any]
    member: int = 0  # which member of its ensemble job, if it is one
    kind: JobKind = JobKind.TRAIN  # TRIAL: a sweep's trial, whose epochs its sweep's pruner hears


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without their zone; everything here is UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _owner_is_dead(owner: str | None) -> bool:
    """True when the owner ran on this host and its process is gone (no need to wait for the lease)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def is_lost(job: Job, lease_s: float, now: datetime | None = None) -> bool:
    now = now or utcnow()
    heartbeat = _aware(job.heartbeat_at)
    stale = heartbeat is None or now - heartbeat > timedelta(seconds=lease_s)
    return stale or _owner_is_dead(job.owner)


def mark_dispatched(session: Session, job_id: str) -> bool:
    """A job waiting in SQL is about to be sent to the broker (store/dispatch.py); an ensemble job's
    members go with it, sent by its own task. False when another dispatcher took it, or it was cancelled.

    A job that comes back to the queue after this (its worker lost, or shutting down) stays dispatched:
    it is sent again at once, as it has already had its turn."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.dispatched_at.is_(None))
        .values(dispatched_at=now)
    )
    if result.rowcount != 1:
        return False
    session.execute(update(Job).where(Job.parent_id == job_id).values(dispatched_at=now))
    return True


def undo_dispatch(session: Session, job_id: str) -> None:
    """The broker did not take the job: it waits in SQL again, for the next dispatch round."""
    session.execute(
        update(Job)
        .where(or_(Job.id == job_id, Job.parent_id == job_id), Job.status == JobStatus.QUEUED)
        .values(dispatched_at=None)
    )


def claim(session: Session, job_id: str, lease_s: float) -> Claim | None:
    """Take a queued job (or a running one whose worker is lost) and start a new attempt."""
    job = session.get(Job, job_id)
    if job is None or job.cancel_requested:
        return None
    if job.status == JobStatus.RUNNING and not is_lost(job, lease_s):
        return None
    if job.status not in ACTIVE:
        return None
    now = utcnow()
    attempt = job.attempts + 1  # read before the UPDATE, which also refreshes `job` in the session
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == job.status, Job.attempts == job.attempts)
        .values(
            status=JobStatus.RUNNING,
            attempts=attempt,
            owner=worker_identity(),
            heartbeat_at=now,
            started_at=job.started_at or now,
            error=None,
        )
    )
    if result.rowcount != 1:
        return None
    return Claim(job_id=job_id, attempt=attempt, spec=job.spec, member=job.member, kind=job.kind)


def heartbeat(session: Session, claim: Claim) -> StopReason | None:
    """Prove the attempt is alive; answers why it must stop (CANCELLED, LOST), or None."""
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.status == JobStatus.RUNNING, Job.attempts == claim.attempt)
        .values(heartbeat_at=utcnow())
    )
    if result.rowcount != 1:
        return StopReason.LOST
    cancel = session.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id))
    return StopReason.CANCELLED if cancel else None


def record_epoch(
    session: Session,
    claim: Claim,
    *,
    progress: dict[str, Any],
    metrics: dict[str, Any],
    checkpoint: Checkpoint | None,
) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.status == JobStatus.RUNNING, Job.attempts == claim.attempt)
        .values(progress=progress, metrics=metrics, heartbeat_at=utcnow())
    )
    if result.rowcount == 1 and checkpoint is not None:
        session.add(checkpoint)
    return result.rowcount == 1


def latest_checkpoint(session: Session, job_id: str, member: int = 0) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.member == member)
        .order_by(Checkpoint.epoch.desc())
        .limit(1)
    )


def prune_checkpoints(
    session: Session, job_id: str, keep: int, kept_epochs: Collection[int] = ()
) -> list[str]:
    """Forget all but the newest `keep` checkpoints and those of `kept_epochs`; answers the files."""
    newest_first = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.epoch.desc())
    stale = [c for c in session.scalars(newest_first.offset(keep)) if c.epoch not in kept_epochs]
    for checkpoint in stale:
        session.delete(checkpoint)
    return [checkpoint.path for checkpoint in stale]


def final_curve(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curve as it happened in the end: where a resumed attempt redid steps, its points win."""
    latest = {}
    for point in points:
        key = (point["name"], point["step"])
        if key not in latest or point["attempt"] >= latest[key]["attempt"]:
            latest[key] = point
    return [p for p in points if latest[(p["name"], p["step"])] is p]


def store_curve(session: Session, job_id: str, points: list[dict[str, Any]]) -> None:
    session.add_all(
        CurvePoint(
            job_id=job_id,
            seq=seq,
            stream_id=p["id"],
            attempt=p["attempt"],
            step=p["step"],
            epoch=p["epoch"],
            name=p["name"],
            value=p["value"],
        )
        for seq, p in enumerate(final_curve(points))
    )


@dataclass(frozen=True)
class Outcome:
    """How an attempt ends its job: a state it never leaves, and what goes with it."""

    status: JobStatus
    metrics: dict[str, Any] | None = None  # None: the job keeps the metrics of its last epoch
    error: str | None = None
    runs: tuple[Run, ...] = ()

    def __post_init__(self) -> None:
        if not self.status.ended:
            raise ValueError(f"an attempt ends its job in one of {sorted(TERMINAL)}, not {self.status}")


def finish(session: Session, claim: Claim, outcome: Outcome, *, curve: list[dict[str, Any]]) -> bool:
    """End the attempt in the outcome's terminal state, with its runs and its curve, in one transaction."""
    values: dict[str, Any] = {
        "status": outcome.status,
        "finished_at": utcnow(),
        "error": outcome.error,
        "owner": None,
    }
    if outcome.metrics is not None:
        values["metrics"] = outcome.metrics
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.status == JobStatus.RUNNING, Job.attempts == claim.attempt)
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    session.add_all(outcome.runs)
    store_curve(session, claim.job_id, curve)
    webhooks.job_ended(session, claim.job_id)
    return True


def requeue(session: Session, claim: Claim) -> bool:
    """Give a running attempt's job back to the queue at once (its worker is shutting down, warm)."""
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.status == JobStatus.RUNNING, Job.attempts == claim.attempt)
        .values(status=JobStatus.QUEUED, owner=None, handed_back=Job.handed_back + 1)
    )
    return result.rowcount == 1


def used_attempts(job: Job) -> int:
    """The attempts that count toward max_attempts: those lost or crashed, not those handed back."""
    return job.attempts - job.handed_back


def dispatched_queued_jobs(session: Session) -> list[tuple[str, str, dict]]:
    """(id, kind, spec) of every queued job that has been sent to the broker, oldest first (those still
    waiting in SQL are the dispatcher's to send)."""
    query = (
        select(Job.id, Job.kind, Job.spec)
        .where(Job.status == JobStatus.QUEUED, Job.dispatched_at.is_not(None))
        .order_by(Job.created_at)
    )
    return [(job_id, kind, spec) for job_id, kind, spec in session.execute(query)]


def find_lost_jobs(session: Session, lease_s: float) -> list[Job]:
    # An ensemble job trains nothing itself and has no heartbeat: its members are the jobs that get lost.
    query = select(Job).where(Job.status == JobStatus.RUNNING, Job.kind.in_(TRAINING_KINDS))
    running = session.scalars(query)
    return [job for job in running if is_lost(job, lease_s)]


def recover(session: Session, job: Job, max_attempts: int) -> JobStatus | None:
    """Put a lost job back in the queue, or fail it once it has used its attempts.

    Answers the new status, or None when another worker got there first.
    """
    if used_attempts(job) >= max_attempts:
        values = {
            "status": JobStatus.FAILED,
            "finished_at": utcnow(),
            "owner": None,
            "error": f"worker lost during attempt {job.attempts}; gave up after {max_attempts} attempts"
            + (f" ({job.handed_back} more handed back by workers shutting down)" if job.handed_back else ""),
        }
    else:
        values = {"status": JobStatus.QUEUED, "owner": None}
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.RUNNING, Job.attempts == job.attempts)
        .values(**values)
    )
    if result.rowcount != 1:
        return None
    if values["status"] == JobStatus.FAILED:
        webhooks.job_ended(session, job.id)
    return values["status"]


# ---------------------------------------------------------------- ensemble jobs


def start_ensemble(session: Session, job_id: str, strategy: str) -> list[str] | None:
    """Mark an ensemble job running with its strategy; answers its members still queued.

    None when the job has ended (cancelled, say). A redelivered ensemble task finds it running already
    and picks up whichever members are still queued.
    """
    job = session.get(Job, job_id)
    if job is None or job.status not in ACTIVE or job.cancel_requested:
        return None
    if job.status == JobStatus.QUEUED:
        now = utcnow()
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, strategy=strategy, attempts=Job.attempts + 1, started_at=now)
        )
        if result.rowcount != 1:
            return None
    query = select(Job.id).where(Job.parent_id == job_id, Job.status == JobStatus.QUEUED).order_by(Job.member)
    return list(session.scalars(query))


def ensembles_to_finish(session: Session, quiet_s: float) -> list[str]:
    """Ensemble jobs whose members have all ended and that nobody has tried to finish for `quiet_s`.

    The members' chord normally finishes an ensemble job as soon as its last member ends; this is the
    safety net for when it cannot (its worker died, the broker lost the chord). Each job found is claimed
    by a compare-and-set on its `heartbeat_at`, so several workers' recovery loops never all finish it.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=quiet_s)
    parents = session.scalars(
        select(Job).where(Job.kind == JobKind.ENSEMBLE, Job.status.in_(ACTIVE))
    ).all()
    ready = []
    for parent in parents:
        members = session.execute(select(Job.status, Job.finished_at).where(Job.parent_id == parent.id)).all()
        if any(status not in TERMINAL for status, _ in members):
            continue
        moments = [_aware(finished) for _, finished in members] + [_aware(parent.heartbeat_at)]
        if any(moment is not None and moment > cutoff for moment in moments):
            continue
        unchanged = (
            Job.heartbeat_at.is_(None)
            if parent.heartbeat_at is None
            else Job.heartbeat_at == parent.heartbeat_at
        )
        claimed = session.execute(update(Job).where(Job.id == parent.id, unchanged).values(heartbeat_at=now))
        if claimed.rowcount == 1:
            ready.append(parent.id)
    return ready


def touch(session: Session, job_id: str) -> None:
    """An ensemble job being finished: keeps the recovery loops from finishing it too meanwhile."""
    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))


def end_ensemble_job(
    session: Session, job_id: str, *, status: JobStatus, metrics: dict[str, Any], error: str | None = None
) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=status, metrics=metrics, error=error, finished_at=utcnow())
    )
    if result.rowcount != 1:
        return False
    webhooks.job_ended(session, job_id)
    return True
