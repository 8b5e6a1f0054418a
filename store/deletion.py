"""Deleting what a tenant owns: a job (with its members, runs, curves, checkpoints, webhook deliveries and
files), an ensemble, an uploaded dataset; and the retention sweep, which deletes old jobs the same way.

Each delete_* removes rows in the caller's transaction and answers a Removal: the files and Redis keys,
which the caller removes only once that transaction has committed. A crash between the two leaves orphan
files, never rows pointing at missing files. Deleting what is already gone is harmless (two workers'
retention sweeps may meet), and what is in use is refused (Refused, a 409 to the API) before anything
changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

import redis
from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session

from store import jobs, streams, uploads
from store.artifacts import job_prefix, val_predictions_path
from store.objects import Artifact, ArtifactStore
from store.settings import Settings
from store.states import ACTIVE, TERMINAL, EnsembleStatus
from store.tables import (
    Checkpoint,
    CurvePoint,
    Dataset,
    Ensemble,
    Job,
    JobTag,
    Run,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger(__name__)


class Refused(Exception):
    """What is to be deleted is in use; the message says by what, and what to do first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Removal:
    """What goes once the rows are gone: objects of the artifact store, folders of it (a prefix each), and
    the Redis keys of the jobs deleted."""

    artifacts: list[Artifact] = field(default_factory=list)
    folders: list[Artifact] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    ensemble_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    def finish(self, client: redis.Redis | None = None) -> None:
        """Remove the files (and, given a client, the jobs' streams); call it after the commit."""
        for artifact in self.artifacts:
            artifact.delete()
        for folder in self.folders:
            folder.store.delete_prefix(folder.key)
        if client is not None and self.job_ids:
            keys = [key(job_id) for job_id in self.job_ids for key in JOB_KEYS]
            client.delete(*keys)


JOB_KEYS = (streams.curve_key, streams.progress_key, streams.cancel_key)


# ---------------------------------------------------------------- jobs


def job_refusal(session: Session, job: Job) -> str | None:
    """Why `job` cannot be deleted now, or None."""
    if job.parent_id is not None:
        return f"job {job.id} is member {job.member} of ensemble job {job.parent_id}: delete that job"
    family = [job, *jobs.member_jobs(session, job.id)]
    active = [member for member in family if member.status in ACTIVE]
    if active and active[0] is job:
        return f"job {job.id} is {job.status}: cancel it first"
    if active:
        return f"member job {active[0].id} of job {job.id} is {active[0].status}: cancel job {job.id} first"
    own = ensembles_built_by(session, job.id)
    users = ensembles_using(session, _run_ids(family), job.tenant, excluding={e.id for e in own})
    if users:
        return f"ensembles {', '.join(users)} use runs of job {job.id}: delete them first"
    return None


def delete_job(session: Session, job: Job, store: ArtifactStore) -> Removal:
    """Delete a finished top-level job with its member jobs and the ensemble it built (an ensemble job's,
    which is part of it); Refused while it or a member is queued or running, or another stored ensemble
    uses one of its runs."""
    refusal = job_refusal(session, job)
    if refusal:
        raise Refused(refusal)
    family = [job, *jobs.member_jobs(session, job.id)]
    ids = [member.id for member in family]
    runs = [run for member in family for run in member.runs]
    own = ensembles_built_by(session, job.id)
    checkpoints = session.scalars(select(Checkpoint.path).where(Checkpoint.job_id.in_(ids))).all()
    removal = Removal(
        # Each stored object by its row too: rows from before keys name absolute paths, anywhere.
        artifacts=[store.at(path) for path in checkpoints]
        + [artifact for run in runs for artifact in run_files(run, store)]
        + [store.at(ensemble.weights_path) for ensemble in own if ensemble.weights_path],
        folders=[Artifact(store, job_prefix(job_id)) for job_id in ids],
        job_ids=ids,
        ensemble_ids=[ensemble.id for ensemble in own],
        run_ids=[run.id for run in runs],
    )
    # Explicitly, child rows first: the foreign keys cascade too, but SQLite only with its pragma on.
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.job_id.in_(ids))
    _delete(session, delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    for table in (WebhookDelivery, CurvePoint, Checkpoint, JobTag, Run):
        _delete(session, delete(table).where(table.job_id.in_(ids)))
    _delete(session, delete(Ensemble).where(Ensemble.id.in_(removal.ensemble_ids)))
    # Only jobs that have ended: a state a job never leaves, so the check above still holds.
    _delete(session, delete(Job).where(Job.id.in_(ids), Job.status.in_(TERMINAL)))
    return removal


def run_files(run: Run, store: ArtifactStore) -> list[Artifact]:
    """A run's files: its weights, averaged weights and validation predictions (which runs stored before
    they were kept lack: removing what is not there is harmless)."""
    weights = store.at(run.weights_path)
    averaged = [store.at(run.averaged_weights_path)] if run.averaged_weights_path else []
    return [weights, val_predictions_path(weights), *averaged]


def ensembles_built_by(session: Session, job_id: str) -> list[Ensemble]:
    """The ensemble an ensemble job built from its members (its id is the job's)."""
    return list(session.scalars(select(Ensemble).where(Ensemble.job_id == job_id)))


def ensembles_using(
    session: Session, run_ids: Iterable[str], tenant: str, excluding: Iterable[str] = ()
) -> list[str]:
    """Ids of the tenant's ensembles with a member from `run_ids`, oldest first."""
    # Members are a JSON list, which SQLite and PostgreSQL query differently: the tenant's ensembles are
    # read and matched here (a tenant's ensembles are few next to its jobs).
    wanted, skipped = set(run_ids), set(excluding)
    query = (
        select(Ensemble.id, Ensemble.members)
        .where(Ensemble.tenant == tenant)
        .order_by(Ensemble.created_at, Ensemble.id)
    )
    return [
        ensemble_id
        for ensemble_id, members in session.execute(query)
        if ensemble_id not in skipped and any(member["run_id"] in wanted for member in members)
    ]


def _run_ids(family: list[Job]) -> set[str]:
    return {run.id for member in family for run in member.runs}


def _delete(session: Session, statement) -> None:
    # The session's objects of deleted rows are not looked up (they are discarded with the session).
    session.execute(statement, execution_options={"synchronize_session": False})


# ---------------------------------------------------------------- ensembles and datasets


def delete_ensemble(session: Session, ensemble: Ensemble, store: ArtifactStore) -> Removal:
    """Delete an ensemble and its averaged weights; Refused while it is being built."""
    if ensemble.status == EnsembleStatus.BUILDING:
        raise Refused(f"ensemble {ensemble.id} is still building: delete it once it is ready or failed")
    _delete(session, delete(Ensemble).where(Ensemble.id == ensemble.id))
    artifacts = [store.at(ensemble.weights_path)] if ensemble.weights_path else []
    return Removal(artifacts=artifacts, ensemble_ids=[ensemble.id])


def delete_dataset(session: Session, dataset: Dataset, settings: Settings) -> Removal:
    """Delete an uploaded dataset and its file; Refused while a queued or running job trains on it."""
    users = dataset_users(session, dataset)
    if users:
        raise Refused(f"jobs {', '.join(users)} train on dataset {dataset.id}: wait for them or cancel them")
    _delete(session, delete(Dataset).where(Dataset.id == dataset.id))
    return Removal(artifacts=uploads.upload_files(dataset.id, settings))


def dataset_users(session: Session, dataset: Dataset) -> list[str]:
    """Top-level ids of the tenant's queued or running jobs that name the dataset."""
    # Through the spec's JSON path, as GET /v1/runs?dataset_id= filters (store/jobs.py list_runs).
    named = and_(
        Job.spec[("dataset", "name")].as_string() == "upload",
        Job.spec[("dataset", "id")].as_string() == dataset.id,
    )
    query = (
        select(func.coalesce(Job.parent_id, Job.id))
        .where(Job.tenant == dataset.tenant, Job.status.in_(ACTIVE), named)
        .group_by(func.coalesce(Job.parent_id, Job.id))
        .order_by(func.min(Job.created_at))
    )
    return list(session.scalars(query))


# ---------------------------------------------------------------- retention


def delete_expired_jobs(
    scope: Callable[[], AbstractContextManager[Session]],
    *,
    finished_before: datetime,
    store: ArtifactStore,
    client: redis.Redis | None = None,
    batch: int = 100,
) -> list[str]:
    """Delete the top-level jobs that finished before `finished_before`, `batch` per transaction (from
    `scope`, a session that commits on leaving); those still in use are kept and logged. Answers the ids
    deleted."""
    deleted: list[str] = []
    kept: set[str] = set()
    while True:
        with scope() as session:
            query = (
                select(Job)
                .where(
                    Job.parent_id.is_(None),
                    Job.status.in_(TERMINAL),
                    Job.finished_at < finished_before,
                    Job.id.not_in(kept),
                )
                .order_by(Job.finished_at, Job.id)
                .limit(batch)
            )
            expired = list(session.scalars(query))
            removals = []
            for job in expired:
                refusal = job_refusal(session, job)
                if refusal:
                    log.info("retention keeps job %s: %s", job.id, refusal)
                    kept.add(job.id)
                    continue
                removals.append(delete_job(session, job, store))
        for removal in removals:  # committed: now the files
            removal.finish(client)
            deleted.append(removal.job_ids[0])
        if len(expired) < batch:
            return deleted
