"""The reporter a worker hands to the training loop: curve to Redis, progress and checkpoints to SQL."""

from __future__ import annotations

import logging
import time

import redis

from models.spec import JobSpec
from store import lifecycle, streams, sweeps
from store.artifacts import TrainingState, job_key, save_checkpoint
from store.db import session_scope
from store.lifecycle import Claim
from store.objects import Artifact, artifact_store
from store.settings import Settings, get_settings
from store.states import JobKind, JobStatus, StopReason
from store.tables import Checkpoint
from worker import shutdown

log = logging.getLogger(__name__)


class JobReporter:
    def __init__(self, claim: Claim, client: redis.Redis, settings: Settings) -> None:
        self.claim = claim
        self.client = client
        self.settings = settings
        self.last_heartbeat = time.monotonic()
        self.dropped_points = 0
        # A snapshot ensemble's members: checkpoints that pruning keeps, however old.
        self.snapshot_epochs = JobSpec.model_validate(claim.spec).snapshot_epochs()

    def announce(self, status: JobStatus) -> None:
        """Tell the job's followers that this attempt has started (the end is announced by end_attempt)."""
        announce_status(self.client, self.claim.job_id, streams.status_fields(status, self.claim.attempt))

    def report(
        self, points: list[streams.Point], progress: dict[str, float], status: dict[str, str] | None = None
    ) -> StopReason | None:
        if shutdown.requested():  # the worker is shutting down (SIGTERM): give the job back now
            return StopReason.SHUTDOWN
        try:
            maxlen = self.settings.stream_maxlen
            if streams.publish(self.client, self.claim.job_id, points, progress, maxlen, status):
                return StopReason.CANCELLED
        except redis.RedisError as exc:
            # Redis being away must not kill a training run: the curve gets a gap, and says so.
            self.dropped_points += len(points)
            log.warning("job %s: %d curve points not published: %s", self.claim.job_id, len(points), exc)
        if time.monotonic() - self.last_heartbeat >= self.settings.heartbeat_s:
            return self._heartbeat()
        return None

    def _heartbeat(self) -> StopReason | None:
        self.last_heartbeat = time.monotonic()
        with session_scope() as session:
            return lifecycle.heartbeat(session, self.claim)

    def epoch_end(
        self, state: TrainingState, metrics: dict[str, float], progress: dict[str, float]
    ) -> StopReason | None:
        store = artifact_store(self.settings)
        # Named by attempt too: a lost attempt that has not noticed yet never overwrites its successor's.
        file_name = f"checkpoint-e{state.epoch:04d}-a{self.claim.attempt}.safetensors"
        artifact = Artifact(store, job_key(self.claim.job_id, file_name))
        save_checkpoint(artifact, state)
        epoch_points = [
            streams.Point(state.step, float(state.epoch), name, metrics[name], self.claim.attempt)
            for name in ("val_loss", "val_acc")
        ]
        status = streams.status_fields(JobStatus.RUNNING, self.claim.attempt, progress, metrics)
        reason = self.report(epoch_points, progress, status)
        checkpoint = Checkpoint(
            job_id=self.claim.job_id, epoch=state.epoch, step=state.step, path=artifact.key
        )
        job_metrics = metrics | ({"dropped_points": self.dropped_points} if self.dropped_points else {})
        pruned = False
        with session_scope() as session:
            owned = lifecycle.record_epoch(
                session, self.claim, progress=progress, metrics=job_metrics, checkpoint=checkpoint
            )
            if owned and self.claim.kind == JobKind.TRIAL:
                # In the transaction that records the epoch: a resumed attempt re-reports it, no harm.
                pruned = sweeps.record_trial_epoch(session, self.claim.job_id, state.epoch, metrics)
            stale = (
                lifecycle.prune_checkpoints(
                    session, self.claim.job_id, self.settings.keep_checkpoints, self.snapshot_epochs
                )
                if owned
                else []
            )
        for stale_path in stale:
            store.at(stale_path).delete()
        if reason or not owned:
            return reason or StopReason.LOST
        if pruned:
            log.info("job %s: pruned by its sweep after epoch %d", self.claim.job_id, state.epoch)
            return StopReason.PRUNED
        return None


def announce_status(client: redis.Redis, job_id: str, status: dict[str, str]) -> None:
    """Best effort, like the curve: followers that miss it read the status from SQL."""
    try:
        streams.publish(client, job_id, [], {}, get_settings().stream_maxlen, status)
    except redis.RedisError as exc:
        log.warning("job %s: status %s not published: %s", job_id, status["status"], exc)
