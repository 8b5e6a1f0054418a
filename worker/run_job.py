"""One attempt at a job: claim it, build everything from its spec, train, store the outcome."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import replace
from typing import Any

import redis
from sqlalchemy.orm import Session

from models.datasets import Splits, load_splits
from models.spec import JobSpec
from store import ensembles, lifecycle, streams, uploads
from store.artifacts import (
    TrainingState,
    job_key,
    load_checkpoint,
    save_val_predictions,
    save_weights,
    val_predictions_path,
)
from store.db import session_scope
from store.lifecycle import Claim, Outcome
from store.objects import Artifact, artifact_store
from store.queue import enqueue_training
from store.settings import Settings, get_settings
from store.states import JobKind, JobStatus, StopReason
from store.tables import Job, Run
from worker.dispatching import dispatch_waiting_jobs
from worker.engine import pick_device
from worker.ensemble_build import build_ensemble
from worker.reporter import Diverged, Stopped
from worker.reporting import JobReporter, announce_status
from worker.sweeps import top_up_sweep_of
from worker.training import TrainResult, train

log = logging.getLogger(__name__)

CURVE_WAIT_S = 30.0  # Redis away as an attempt ends: how long its curve is waited for


def run_job(job_id: str) -> JobStatus | None:
    """Answers the job's new status, or None when this delivery had nothing to do."""
    settings = get_settings()
    claim = claim_job(job_id, settings)
    if claim is None:
        log.info("job %s: not claimable (finished, cancelled or owned by a live worker)", job_id)
        return None
    return train_claimed(claim)


def train_claimed(claim: Claim) -> JobStatus | None:
    """Train a claimed attempt to its end: succeeded, failed, cancelled, handed back or lost (None)."""
    settings = get_settings()
    client = streams.get_redis()
    spec = JobSpec.model_validate(claim.spec)
    reporter = JobReporter(claim, client, settings)
    reporter.announce(JobStatus.RUNNING)
    try:
        # Inside the try: an unreadable checkpoint fails the job with its reason, not as a lost worker.
        resume = resume_state(claim, settings)
        uploads.fetch_upload(spec.dataset, settings)
        splits = load_splits(spec.dataset, spec.model, data_dir=settings.data_dir)
        result = train(
            spec,
            splits,
            reporter,
            device=pick_device(settings.device),
            resume=resume,
            report_every=settings.report_every,
            attempt=claim.attempt,
        )
    except Exception as exc:
        outcome = failure_outcome(claim, exc)
    else:
        # Redis away for a while leaves a gap in the curve, and the metrics say how big.
        dropped = {"dropped_points": reporter.dropped_points} if reporter.dropped_points else {}
        outcome = success_outcome(claim, spec, splits, result, settings, extra_metrics=dropped)
    return end_attempt(claim, client, outcome)


def claim_job(job_id: str, settings: Settings) -> Claim | None:
    with session_scope() as session:
        # A job whose training process died (crash, OOM kill) is redelivered at once by Celery; once it has
        # used its attempts it fails here with the reason, instead of crashing its worker again and again.
        job = session.get(Job, job_id)
        if (
            job is not None
            and job.status == JobStatus.RUNNING
            and lifecycle.used_attempts(job) >= settings.max_attempts
            and lifecycle.is_lost(job, settings.lease_s)
        ):
            lifecycle.recover(session, job, settings.max_attempts)
            return None
        return lifecycle.claim(session, job_id, settings.lease_s)


def resume_state(claim: Claim, settings: Settings) -> TrainingState | None:
    with session_scope() as session:
        checkpoint = lifecycle.latest_checkpoint(session, claim.job_id)
        stored = checkpoint.path if checkpoint else None
    # From the shared store: the attempt before may have run on another host.
    resume = load_checkpoint(artifact_store(settings).at(stored)) if stored else None
    log.info(
        "job %s: attempt %d%s",
        claim.job_id,
        claim.attempt,
        f", resuming after epoch {resume.epoch}" if resume else "",
    )
    return resume


def failure_outcome(claim: Claim, exc: Exception) -> Outcome | StopReason:
    """How an attempt that raised ends: an Outcome that ends the job, or the reason it stopped without
    ending it (SHUTDOWN: its worker hands it back; LOST: another worker owns it now)."""
    if isinstance(exc, Stopped):
        # Cancelled or pruned, the job ends so, keeping its last epoch's metrics; shut down or lost, it
        # does not end here.
        ending = {StopReason.CANCELLED: JobStatus.CANCELLED, StopReason.PRUNED: JobStatus.PRUNED}
        return Outcome(ending[exc.reason]) if exc.reason in ending else exc.reason
    if isinstance(exc, Diverged):
        return Outcome(JobStatus.FAILED, error=str(exc))
    # A bug or bad data: the job fails with the reason, the worker lives on.
    log.error("job %s failed:\n%s", claim.job_id, "".join(traceback.format_exception(exc)))
    return Outcome(JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")


def success_outcome(
    claim: Claim,
    spec: JobSpec,
    splits: Splits,
    result: TrainResult,
    settings: Settings,
    extra_metrics: dict[str, Any] | None = None,
) -> Outcome:
    """Store the trained weights (and the averaged ones, if kept) and the validation predictions, and describe
    the run."""
    store = artifact_store(settings)
    info = rebuild_info(spec, splits, claim.job_id, member=claim.member)
    weights = Artifact(store, job_key(claim.job_id, "member-0.safetensors"))
    save_weights(weights, result.model.state_dict(), info)
    averaged = None
    if result.averaged_model is not None:
        averaged = Artifact(store, job_key(claim.job_id, "member-0.averaged.safetensors"))
        averaging = spec.ensemble.param_averaging
        save_weights(averaged, result.averaged_model.state_dict(), info | {"averaged": averaging})
    if result.val_probs is not None:
        # The split's labels beside the probabilities: selection checks its candidates share one split.
        meta = {"job_id": claim.job_id, "member": claim.member, "split": "val"}
        save_val_predictions(val_predictions_path(weights), result.val_probs, splits.val_raw[1], meta)
    # What the engine chose (training.compile "auto" among it) and why, beside the numbers it produced.
    metrics = result.metrics | {"engine": result.engine.report()}
    run = Run(
        job_id=claim.job_id,
        member=claim.member,
        seed=spec.training.seed,
        metrics=metrics,
        test_acc=result.metrics["test_acc"],
        weights_path=weights.key,
        averaged_weights_path=averaged.key if averaged else None,
    )
    return Outcome(JobStatus.SUCCEEDED, metrics=metrics | (extra_metrics or {}), runs=(run,))


def end_attempt(claim: Claim, client: redis.Redis, outcome: Outcome | StopReason) -> JobStatus | None:
    """Write the outcome and the curve in one transaction, or hand the job back; answers the job's status,
    or None if it was not ours."""
    if outcome == StopReason.SHUTDOWN:
        return hand_back(claim, client)
    if outcome == StopReason.LOST:
        log.warning("job %s: attempt %d lost its lease; another worker owns it", claim.job_id, claim.attempt)
        return None
    curve = read_final_curve(claim, client)
    if curve is None:  # Redis did not come back: the job ends all the same, saying its curve is lost
        curve = []
        if outcome.metrics is not None:
            outcome = replace(outcome, metrics=outcome.metrics | {"curve_lost": True})
    with session_scope() as session:
        finished = lifecycle.finish(session, claim, outcome, curve=curve)
        snapshot_ensemble = finished and create_snapshot_ensemble(session, claim, outcome)
    if snapshot_ensemble:
        build_ensemble(claim.job_id)  # here and now, as an ensemble job builds its own
    try:
        if finished:
            progress = streams.read_progress(client, claim.job_id)
            status = streams.status_fields(outcome.status, claim.attempt, progress, outcome.metrics)
            announce_status(client, claim.job_id, status)
        streams.expire_job_keys(client, claim.job_id)
    except redis.RedisError as exc:  # followers read the outcome from SQL; the keys expire another time
        log.warning("job %s: Redis away after the job ended: %s", claim.job_id, exc)
    log.info("job %s: %s", claim.job_id, outcome.status if finished else "lost before it could finish")
    if finished and claim.kind == JobKind.TRIAL:
        top_up_sweep_of(claim.job_id)  # the sweep's next trial, dispatched below like any waiting job
    if finished:
        dispatch_waiting_jobs()  # the slot this job held goes to whoever is next
    return outcome.status if finished else None


def create_snapshot_ensemble(session: Session, claim: Claim, outcome: Outcome) -> bool:
    """For a succeeded job with ensemble.snapshots: its ensemble (the job's id, like an ensemble job's) of
    the run's checkpoints at the cycles' ends, to be built; answers whether there is one."""
    epochs = JobSpec.model_validate(claim.spec).snapshot_epochs()
    if outcome.status != JobStatus.SUCCEEDED or not epochs:
        return False
    [run] = outcome.runs
    session.flush()  # the run's id
    job = session.get(Job, claim.job_id)
    ensembles.create_ensemble(
        session,
        ensemble_id=job.id,
        name=f"{job.name[:100]}: {len(epochs)} snapshots",
        method="mean_probs",
        refs=[ensembles.member_ref(run.id, epoch=epoch) for epoch in epochs],
        job_id=job.id,
        tenant=job.tenant,
    )
    return True


def read_final_curve(claim: Claim, client: redis.Redis) -> list[dict[str, Any]] | None:
    """The attempt's curve from Redis; None if Redis stays away for CURVE_WAIT_S.

    Redis restarting just as a job ends is waited for, with heartbeats meanwhile: without them the job
    would be presumed lost and trained again.
    """
    deadline = time.monotonic() + CURVE_WAIT_S
    while True:
        try:
            return streams.read_points(client, claim.job_id)
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                log.error("job %s: the curve could not be read from Redis: %s", claim.job_id, exc)
                return None
        with session_scope() as session:
            lifecycle.heartbeat(session, claim)
        time.sleep(0.5)


def hand_back(claim: Claim, client: redis.Redis) -> JobStatus | None:
    """Its worker is shutting down: the job goes back to the queue now, not after its lease, and the next
    attempt resumes from the last checkpoint. Its curve stays in Redis for that attempt to continue."""
    with session_scope() as session:
        requeued = lifecycle.requeue(session, claim)
    if not requeued:
        return None
    enqueue_training(claim.job_id, claim.spec)  # still dispatched: to the broker, not behind the waiting
    announce_status(client, claim.job_id, streams.status_fields(JobStatus.QUEUED, claim.attempt))
    log.warning("job %s: worker shutting down; attempt %d handed back", claim.job_id, claim.attempt)
    return JobStatus.QUEUED


def rebuild_info(spec: JobSpec, splits, job_id: str, member: int) -> dict:
    """What a stored model needs to be rebuilt and fed exactly as in training."""
    return {
        "spec": spec.model_dump(mode="json"),
        "input_shape": list(splits.input_shape),
        "num_classes": splits.num_classes,
        "mean": list(splits.mean),
        "std": list(splits.std),
        "job_id": job_id,
        "member": member,
        "seed": spec.training.seed,
    }
