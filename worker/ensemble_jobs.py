"""Ensemble jobs: choose how the members train, train them (or fan them out), then build the ensemble.

An ensemble job is a parent row with one child TRAIN job per member. Whatever the strategy, each member
is claimed, heartbeats, checkpoints and ends as its own job, so a lost worker's members are recovered one
by one like any job, and one strategy's checkpoints resume under another.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from models.datasets import load_splits
from models.spec import JobSpec
from store import ensembles, jobs, lifecycle, streams, uploads
from store.db import session_scope
from store.queue import queue_for
from store.settings import get_settings
from store.states import TERMINAL, EnsembleStatus, JobStatus
from store.tables import Job
from worker.engine import pick_device
from worker.ensemble_build import build_ensemble
from worker.reporting import JobReporter
from worker.run_job import (
    claim_job,
    end_attempt,
    failure_outcome,
    resume_state,
    run_job,
    success_outcome,
    train_claimed,
)
from worker.vectorized import choose_strategy, train_members

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    spec: JobSpec  # the ensemble job's spec
    strategy: str  # fanout, vmap or sequential
    members: list[str]  # the member jobs still queued


def run_ensemble_job(job_id: str, fan_out: Callable[[list[str], str], None]) -> str | None:
    """Start an ensemble job and train its members here, or hand them to `fan_out` (a chord of tasks on
    the queue the spec picks: the members need what the ensemble job needs)."""
    try:
        plan = plan_ensemble(job_id)
        if plan is None:
            return None
        if plan.strategy == "fanout":
            fan_out(plan.members, queue_for(plan.spec))
            return plan.strategy
        train_here(plan)
    except Exception as exc:  # a bug or an unusable spec: the job fails with the reason, not stays queued
        log.error("ensemble job %s failed:\n%s", job_id, traceback.format_exc())
        cancel_members(job_id)
        return _end(job_id, JobStatus.FAILED, {}, f"{type(exc).__name__}: {exc}")
    return finish_ensemble_job(job_id)


def plan_ensemble(job_id: str) -> Plan | None:
    """Start an ensemble job with the strategy its spec names, or the faster one for this worker."""
    settings = get_settings()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        spec = JobSpec.model_validate(job.spec)
        # A redelivered task keeps the strategy chosen the first time.
        if not job.strategy:
            uploads.fetch_upload(spec.dataset, settings)  # an upload's shape tells the step's FLOPs
        strategy = job.strategy or choose_strategy(spec, pick_device(settings.device), settings.data_dir)
        members = lifecycle.start_ensemble(session, job_id, strategy)
    if members is None:
        return None
    log.info("ensemble job %s: %d members to train, strategy %s", job_id, len(members), strategy)
    return Plan(spec, strategy, members)


def train_here(plan: Plan) -> None:
    """Train the plan's members in this task: one after another, or all at once with vmap."""
    if plan.strategy == "vmap":
        train_vectorized(plan.spec, plan.members)
    else:
        for member_id in plan.members:
            run_job(member_id)


def train_vectorized(spec: JobSpec, member_ids: list[str]) -> None:
    """Claim the members and train them as one vectorized model; each still ends as its own job."""
    settings = get_settings()
    claims = [claim for claim in (claim_job(member_id, settings) for member_id in member_ids) if claim]
    if not claims:
        return
    client = streams.get_redis()
    try:
        resumes = [resume_state(claim, settings) for claim in claims]
        if len({claim.attempt for claim in claims}) > 1 or len({r.step if r else 0 for r in resumes}) > 1:
            # Members recovered one by one stand at different points: each goes on alone.
            for claim in claims:
                train_claimed(claim)
            return
        uploads.fetch_upload(spec.dataset, settings)
        splits = load_splits(spec.dataset, spec.model, data_dir=settings.data_dir)
        reporters = [JobReporter(claim, client, settings) for claim in claims]
        for reporter in reporters:
            reporter.announce(JobStatus.RUNNING)
        results = train_members(
            spec,
            splits,
            reporters,
            members=[claim.member for claim in claims],
            device=pick_device(settings.device),
            resumes=resumes if resumes[0] is not None else None,
            report_every=settings.report_every,
            attempt=claims[0].attempt,
        )
    except Exception as exc:
        # The members trained as one: what stopped one stopped all.
        for claim in claims:
            end_attempt(claim, client, failure_outcome(claim, exc))
        return
    for claim, result in zip(claims, results, strict=True):
        member = JobSpec.model_validate(claim.spec)
        end_attempt(claim, client, success_outcome(claim, member, splits, result, settings))


def cancel_members(job_id: str) -> None:
    client = streams.get_redis()
    with session_scope() as session:
        member_ids = [member.id for member in jobs.member_jobs(session, job_id)]
        running = jobs.cancel_jobs(session, member_ids)
    for member_id in running:
        streams.request_cancel(client, member_id, ttl_s=get_settings().visibility_timeout)


def finish_ensemble_job(job_id: str) -> JobStatus | None:
    """Once every member has ended: build and evaluate the ensemble, and end the job. Safe to repeat."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status in TERMINAL:
            return None
        members = jobs.member_jobs(session, job_id)
        if any(member.status not in TERMINAL for member in members):
            return None  # the chord fired early (a duplicate delivery); the last member's end fires it again
        lifecycle.touch(session, job_id)
        failed = [member for member in members if member.status == JobStatus.FAILED]
        cancelled = [member for member in members if member.status == JobStatus.CANCELLED]
        refs = [ensembles.member_ref(run.id) for run in jobs.runs_of(session, job)]
        name, tenant = job.name, job.tenant
    if failed:
        error = "; ".join(f"member {m.member} failed: {m.error}" for m in failed)
        return _end(job_id, JobStatus.FAILED, {}, error)
    if cancelled:
        return _end(job_id, JobStatus.CANCELLED, {}, None)

    # The ensemble's id is the job's: two finishers racing create it once.
    try:
        with session_scope() as session:
            if ensembles.get_ensemble(session, job_id) is None:
                ensembles.create_ensemble(
                    session,
                    ensemble_id=job_id,
                    name=name,
                    method="mean_probs",
                    refs=refs,
                    job_id=job_id,
                    tenant=tenant,
                )
    except IntegrityError:
        pass
    ensemble = build_ensemble(job_id)
    if ensemble.status != EnsembleStatus.READY:
        return _end(job_id, JobStatus.FAILED, {}, f"building the ensemble failed: {ensemble.error}")
    evaluation = ensemble.evaluation
    metrics = {"test_acc": evaluation["ensemble_accuracy"]} | {
        key: evaluation[key]
        for key in ("ensemble_accuracy", "mean_member_accuracy", "gain", "ensemble_nll", "member_accuracies")
    }
    return _end(job_id, JobStatus.SUCCEEDED, metrics, None)


def _end(job_id: str, status: JobStatus, metrics: dict, error: str | None) -> JobStatus | None:
    with session_scope() as session:
        ended = lifecycle.end_ensemble_job(session, job_id, status=status, metrics=metrics, error=error)
    log.info("ensemble job %s: %s%s", job_id, status, f" ({error})" if error else "")
    return status if ended else None
