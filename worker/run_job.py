"""One attempt at a job: claim it, build everything from its spec, train, store the outcome."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from models.datasets import load_splits
from models.spec import JobSpec
from store import lifecycle, streams
from store.artifacts import job_dir, load_checkpoint, save_weights
from store.db import session_scope
from store.settings import get_settings
from store.tables import Run
from worker.reporting import JobReporter
from worker.training import Diverged, Stopped, pick_device, train

log = logging.getLogger(__name__)


def run_job(job_id: str) -> str | None:
    """Answers the job's new status, or None when this delivery had nothing to do."""
    settings = get_settings()
    with session_scope() as session:
        claim = lifecycle.claim(session, job_id, settings.lease_s)
        checkpoint = lifecycle.latest_checkpoint(session, job_id) if claim else None
    if claim is None:
        log.info("job %s: not claimable (finished, cancelled or owned by a live worker)", job_id)
        return None

    client = streams.get_redis()
    spec = JobSpec.model_validate(claim.spec)
    reporter = JobReporter(claim, client, settings)
    outcome: dict = {}
    try:
        # Inside the try: an unreadable checkpoint fails the job with its reason, not as a lost worker.
        resume = load_checkpoint(Path(checkpoint.path)) if checkpoint else None
        log.info(
            "job %s: attempt %d%s",
            job_id,
            claim.attempt,
            f", resuming after epoch {resume.epoch}" if resume else "",
        )
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
    except Stopped as stop:
        if stop.reason == "lost":
            log.warning("job %s: attempt %d lost its lease; another worker owns it", job_id, claim.attempt)
            return None
        outcome = {"status": "cancelled"}
    except Diverged as diverged:
        outcome = {"status": "failed", "error": str(diverged)}
    except Exception as exc:  # a bug or bad data: the job fails with the reason, the worker lives on
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    else:
        weights = job_dir(settings.artifacts_dir, job_id) / "member-0.safetensors"
        save_weights(weights, result.model.state_dict(), rebuild_info(spec, splits, job_id, member=0))
        run = Run(
            job_id=job_id,
            member=0,
            seed=spec.training.seed,
            metrics=result.metrics,
            test_acc=result.metrics["test_acc"],
            weights_path=str(weights),
        )
        outcome = {"status": "succeeded", "metrics": result.metrics, "runs": [run]}

    curve = streams.read_points(client, job_id)
    with session_scope() as session:
        finished = lifecycle.finish(session, claim, curve=curve, **outcome)
    streams.expire_job_keys(client, job_id)
    log.info("job %s: %s", job_id, outcome["status"] if finished else "lost before it could finish")
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
