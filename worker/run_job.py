"""One attempt at a job: claim it, build everything from its spec, train, store the outcome."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import redis

from models.datasets import Splits, load_splits
from models.spec import JobSpec
from store import lifecycle, streams
from store.artifacts import TrainingState, job_dir, load_checkpoint, save_weights
from store.db import session_scope
from store.lifecycle import Claim
from store.settings import Settings, get_settings
from store.tables import Run
from worker.reporting import JobReporter, announce_status
from worker.training import Diverged, Stopped, TrainResult, pick_device, train

log = logging.getLogger(__name__)


def run_job(job_id: str) -> str | None:
    """Answers the job's new status, or None when this delivery had nothing to do."""
    settings = get_settings()
    claim = claim_job(job_id, settings)
    if claim is None:
        log.info("job %s: not claimable (finished, cancelled or owned by a live worker)", job_id)
        return None
    return train_claimed(claim)


def train_claimed(claim: Claim) -> str | None:
    """Train a claimed attempt to its end: succeeded, failed, cancelled, or lost (None)."""
    settings = get_settings()
    client = streams.get_redis()
    spec = JobSpec.model_validate(claim.spec)
    reporter = JobReporter(claim, client, settings)
    reporter.announce("running")
    try:
        # Inside the try: an unreadable checkpoint fails the job with its reason, not as a lost worker.
        resume = resume_state(claim)
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
        outcome = success_outcome(claim, spec, splits, result, settings)
    return end_attempt(claim, client, outcome)


def claim_job(job_id: str, settings: Settings) -> Claim | None:
    with session_scope() as session:
        return lifecycle.claim(session, job_id, settings.lease_s)


def resume_state(claim: Claim) -> TrainingState | None:
    with session_scope() as session:
        checkpoint = lifecycle.latest_checkpoint(session, claim.job_id)
        path = Path(checkpoint.path) if checkpoint else None
    resume = load_checkpoint(path) if path else None
    log.info(
        "job %s: attempt %d%s",
        claim.job_id,
        claim.attempt,
        f", resuming after epoch {resume.epoch}" if resume else "",
    )
    return resume


def failure_outcome(claim: Claim, exc: Exception) -> dict[str, Any] | None:
    """How an attempt that raised ends; None when it lost its lease (another worker owns the job now)."""
    if isinstance(exc, Stopped):
        if exc.reason == "lost":
            log.warning(
                "job %s: attempt %d lost its lease; another worker owns it", claim.job_id, claim.attempt
            )
            return None
        return {"status": "cancelled"}
    if isinstance(exc, Diverged):
        return {"status": "failed", "error": str(exc)}
    # A bug or bad data: the job fails with the reason, the worker lives on.
    log.error("job %s failed:\n%s", claim.job_id, "".join(traceback.format_exception(exc)))
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def success_outcome(
    claim: Claim, spec: JobSpec, splits: Splits, result: TrainResult, settings: Settings
) -> dict[str, Any]:
    """Store the trained weights (and the averaged ones, if kept) and describe the run."""
    directory = job_dir(settings.artifacts_dir, claim.job_id)
    info = rebuild_info(spec, splits, claim.job_id, member=claim.member)
    weights = directory / "member-0.safetensors"
    save_weights(weights, result.model.state_dict(), info)
    averaged = None
    if result.averaged_model is not None:
        averaged = directory / "member-0.averaged.safetensors"
        averaging = spec.ensemble.param_averaging
        save_weights(averaged, result.averaged_model.state_dict(), info | {"averaged": averaging})
    run = Run(
        job_id=claim.job_id,
        member=claim.member,
        seed=spec.training.seed,
        metrics=result.metrics,
        test_acc=result.metrics["test_acc"],
        weights_path=str(weights),
        averaged_weights_path=str(averaged) if averaged else None,
    )
    return {"status": "succeeded", "metrics": result.metrics, "runs": [run]}


def end_attempt(claim: Claim, client: redis.Redis, outcome: dict[str, Any] | None) -> str | None:
    """Write the outcome and the curve in one transaction; answers the status, or None if it was not ours."""
    if outcome is None:
        return None
    curve = streams.read_points(client, claim.job_id)
    with session_scope() as session:
        finished = lifecycle.finish(session, claim, curve=curve, **outcome)
    if finished:
        progress = outcome.get("progress") or streams.read_progress(client, claim.job_id)
        status = streams.status_fields(outcome["status"], claim.attempt, progress, outcome.get("metrics"))
        announce_status(client, claim.job_id, status)
    streams.expire_job_keys(client, claim.job_id)
    log.info("job %s: %s", claim.job_id, outcome["status"] if finished else "lost before it could finish")
    return outcome["status"] if finished else None


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
