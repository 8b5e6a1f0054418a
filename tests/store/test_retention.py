"""Deleting jobs in store/deletion.py, and the retention sweep, on real databases (SQLite and PostgreSQL)
with the files a worker writes: rows and files go together, what is in use stays, twice is harmless.

The rows name their files by absolute path, as rows written before the artifact store held keys do: those
go with their jobs too."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from store import deletion, ensembles
from store.artifacts import save_val_predictions, save_weights, val_predictions_path
from store.jobs import create_job
from store.objects import Artifact, LocalStore
from store.states import EnsembleStatus, JobStatus
from store.tables import Checkpoint, CurvePoint, Job, JobTag, Run, WebhookDelivery, utcnow
from tests.factories import job_spec

OLD = utcnow() - timedelta(days=40)
RETENTION = timedelta(days=30)


@pytest.fixture
def sessions(engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def artifacts(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "artifacts")


def job_dir(artifacts: LocalStore, job_id: str) -> Path:
    return artifacts.root / "jobs" / job_id


def scope_of(sessions: sessionmaker):
    @contextmanager
    def scope():
        with sessions() as session, session.begin():
            yield session

    return scope


def finished_job(
    sessions, artifacts: LocalStore, *, finished_at=OLD, members: int = 1, status=JobStatus.SUCCEEDED
):
    """A job as a worker leaves it: runs with weights and validation predictions files, a checkpoint, a
    curve, a webhook delivery."""
    spec = job_spec(tags=["old"], ensemble={"members": members})
    with sessions() as session, session.begin():
        job = create_job(session, spec, {})
        family = [job, *job.children] if members > 1 else [job]
        for row in family:
            row.status, row.finished_at = status, finished_at
        for row in family[1:] if members > 1 else family:
            folder = job_dir(artifacts, row.id)
            save_weights(folder / "weights.safetensors", {"w": torch.zeros(3)}, {})
            predictions = val_predictions_path(folder / "weights.safetensors")
            save_val_predictions(predictions, torch.full((4, 2), 0.5), torch.zeros(4), {})
            save_weights(folder / "checkpoint-1.safetensors", {"model.w": torch.zeros(3)}, {})
            session.add(Run(job_id=row.id, seed=0, weights_path=str(folder / "weights.safetensors")))
            session.add(
                Checkpoint(job_id=row.id, epoch=1, step=1, path=str(folder / "checkpoint-1.safetensors"))
            )
            session.add(
                CurvePoint(
                    job_id=row.id, seq=0, stream_id="1-0", attempt=1, step=1, epoch=1, name="lr", value=1
                )
            )
            session.add(
                WebhookDelivery(job_id=row.id, url="http://example.org/", event="job.succeeded", payload={})
            )
        return job.id, [row.id for row in family]


def rows_of(sessions, job_ids: list[str]) -> int:
    with sessions() as session:
        return sum(
            session.scalar(select(func.count()).select_from(table).where(column.in_(job_ids)))
            for table, column in (
                (Job, Job.id),
                (Run, Run.job_id),
                (Checkpoint, Checkpoint.job_id),
                (CurvePoint, CurvePoint.job_id),
                (JobTag, JobTag.job_id),
                (WebhookDelivery, WebhookDelivery.job_id),
            )
        )


def sweep(sessions, artifacts) -> list[str]:
    return deletion.delete_expired_jobs(
        scope_of(sessions), finished_before=utcnow() - RETENTION, store=artifacts, batch=2
    )


def test_old_finished_jobs_go_with_their_rows_and_files_recent_and_running_ones_stay(sessions, artifacts):
    old = [finished_job(sessions, artifacts, status=status) for status in JobStatus if status.ended]
    ensemble_job, family = finished_job(sessions, artifacts, members=2)
    recent, _ = finished_job(sessions, artifacts, finished_at=utcnow() - timedelta(days=1))
    running, _ = finished_job(sessions, artifacts, finished_at=None, status=JobStatus.RUNNING)
    assert rows_of(sessions, family) > 0 and all(job_dir(artifacts, i).is_dir() for i in family[1:])

    deleted = sweep(sessions, artifacts)  # batches of 2: three transactions for the four old jobs
    assert sorted(deleted) == sorted([job_id for job_id, _ in old] + [ensemble_job])
    gone = [i for _, ids in old for i in ids] + family
    assert rows_of(sessions, gone) == 0
    assert not any(job_dir(artifacts, job_id).exists() for job_id in gone)
    assert rows_of(sessions, [recent, running]) > 0
    assert job_dir(artifacts, recent).is_dir() and job_dir(artifacts, running).is_dir()
    assert sweep(sessions, artifacts) == []  # nothing left to do, and nothing fails


def test_a_job_whose_runs_a_stored_ensemble_uses_stays_until_the_ensemble_is_deleted(sessions, artifacts):
    job_id, ids = finished_job(sessions, artifacts)
    with sessions() as session, session.begin():
        [run] = session.get(Job, job_id).runs
        ensemble = ensembles.create_ensemble(
            session, name="e", method="mean_probs", refs=[ensembles.member_ref(run.id)]
        )
        ensemble.status = EnsembleStatus.READY
        ensemble_id = ensemble.id
    assert sweep(sessions, artifacts) == []
    assert rows_of(sessions, ids) > 0

    with sessions() as session, session.begin():
        with pytest.raises(deletion.Refused, match=f"ensembles {ensemble_id} use runs"):
            deletion.delete_job(session, session.get(Job, job_id), artifacts)
        deletion.delete_ensemble(session, ensembles.get_ensemble(session, ensemble_id), artifacts).finish()
    assert sweep(sessions, artifacts) == [job_id]
    assert rows_of(sessions, ids) == 0


def test_two_workers_deleting_the_same_job_at_once_is_harmless(sessions, artifacts):
    job_id, ids = finished_job(sessions, artifacts)
    with sessions() as first, sessions() as second:
        late = second.get(Job, job_id)  # the second sweep has read the job, and then
        assert late.runs and deletion.job_refusal(second, late) is None
        removal = deletion.delete_job(first, first.get(Job, job_id), artifacts)  # ... the first deletes it
        first.commit()
        removal.finish()
        again = deletion.delete_job(second, late, artifacts)  # deletes nothing, fails nothing
        second.commit()
        again.finish()
    assert rows_of(sessions, ids) == 0 and not job_dir(artifacts, job_id).exists()


def test_a_deleted_runs_validation_predictions_go_with_its_weights(sessions, artifacts):
    job_id, _ = finished_job(sessions, artifacts)
    with sessions() as session, session.begin():
        [run] = session.get(Job, job_id).runs
        predictions = val_predictions_path(Path(run.weights_path))
        assert predictions.is_file()
        removal = deletion.delete_job(session, session.get(Job, job_id), artifacts)
    assert Artifact.file(predictions) in removal.artifacts  # named, not only swept up with the job's folder
    removal.finish()
    assert not predictions.exists()
