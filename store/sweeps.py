"""Sweeps in SQL: create one, top it up with trials, record each trial's epochs (and prune), end, cancel.

A sweep's whole state is its rows: the request (`Sweep.spec`) and one SweepTrial per point tried,
whose state and objective are its job's. Every decision (the next point, whether a trial stops) replays
those rows into an in-memory Optuna study (models.sweeps), so Optuna keeps no store of its own that could
disagree with this one, and a restarted API or worker picks the sweep up where the rows leave it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import TrialState
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from models.spec import SpecError
from models.sweeps import SweepSpec, TrialRecord, next_trial, no_trials_left, should_prune
from store import jobs, pages
from store.settings import Settings
from store.states import ACTIVE, REFUSED, TRIAL_JOB_DELETED, JobKind, JobStatus, SweepStatus
from store.tables import Job, Sweep, SweepTrial, utcnow
from store.vetting import vet_spec

log = logging.getLogger(__name__)

SWEEP_ORDER = pages.Sort("created_at", (Sweep.created_at, Sweep.id))


def sweep_spec(sweep: Sweep) -> SweepSpec:
    return SweepSpec.model_validate(sweep.spec)


def trial_status(trial: SweepTrial) -> str:
    """The trial's job's status; REFUSED for a point refused before it ran (it has no job), and
    TRIAL_JOB_DELETED once its job has been deleted (by a client, or by retention)."""
    if trial.job is not None:
        return trial.job.status
    return REFUSED if trial.error is not None else TRIAL_JOB_DELETED


def trial_objective(trial: SweepTrial, objective: str) -> float | None:
    """The kept weights' objective once the trial succeeded; before that, or pruned, its latest epoch's."""
    job = trial.job
    if job is not None and job.status == JobStatus.SUCCEEDED:
        value = job.metrics.get(objective)
        return float(value) if value is not None else None
    epochs = trial_epochs(trial)
    return trial.epoch_objectives[str(epochs)] if epochs else None


def trial_epochs(trial: SweepTrial) -> int:
    return max((int(epoch) for epoch in trial.epoch_objectives), default=0)


def trial_record(trial: SweepTrial, objective: str) -> TrialRecord:
    """The trial as Optuna sees it."""
    status = trial_status(trial)
    state = {
        JobStatus.QUEUED: TrialState.RUNNING,  # asked for and not yet told: Optuna's RUNNING
        JobStatus.RUNNING: TrialState.RUNNING,
        JobStatus.SUCCEEDED: TrialState.COMPLETE,
        JobStatus.PRUNED: TrialState.PRUNED,
    }.get(status, TrialState.FAIL)
    value = trial_objective(trial, objective) if state in (TrialState.COMPLETE, TrialState.PRUNED) else None
    if state == TrialState.COMPLETE and value is None:
        state = TrialState.FAIL  # succeeded without the objective (no validation split): nothing to learn
    return TrialRecord(
        number=trial.number,
        params=trial.params,
        state=state,
        value=value,
        values={int(epoch): value for epoch, value in trial.epoch_objectives.items()},
        system_attrs=trial.system_attrs,
    )


def get_sweep(session: Session, sweep_id: str, tenant: str | None = None) -> Sweep | None:
    sweep = session.get(Sweep, sweep_id, options=[selectinload(Sweep.trials).selectinload(SweepTrial.job)])
    return sweep if sweep is not None and (tenant is None or sweep.tenant == tenant) else None


def list_sweeps(
    session: Session, *, tenant: str, limit: int, cursor: str | None
) -> tuple[list[Sweep], str | None]:
    """The tenant's sweeps newest first, and the next page's cursor; ValueError on a bad cursor."""
    trials = selectinload(Sweep.trials).selectinload(SweepTrial.job)  # each answer shows its trials' jobs
    query = select(Sweep).where(Sweep.tenant == tenant).options(trials)
    return pages.page(session, query, listing="sweeps", sort=SWEEP_ORDER, limit=limit, cursor=cursor)


def create_sweep(session: Session, spec: SweepSpec, tenant: str) -> Sweep:
    """The sweep's row, running, with no trials yet (top_up adds them)."""
    name = spec.name or f"{spec.method} sweep of {', '.join(spec.space)}"
    # Dumped with its base as the client sent it (SweepSpec keeps it), so the stored sweep reloads to the
    # same points, each with the preset defaults of its own values.
    request = spec.model_dump(mode="json")
    sweep = Sweep(tenant=tenant, name=name[:120], spec=request, status=SweepStatus.RUNNING, revision=0)
    session.add(sweep)
    session.flush()
    return sweep


def delete_sweep(session: Session, sweep_id: str) -> None:
    """The sweep and its trials' jobs (a sweep taken back because the broker was away)."""
    job_ids = select(SweepTrial.job_id).where(SweepTrial.sweep_id == sweep_id, SweepTrial.job_id.is_not(None))
    session.execute(delete(Job).where(Job.id.in_(job_ids)))
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))


@dataclass(frozen=True)
class TopUp:
    created: list[str]  # the trial jobs added, queued: a dispatch round sends them once committed
    refused: int  # points refused before they ran
    ended: SweepStatus | None  # the sweep's end, if this top-up found it over


def top_up(session: Session, sweep_id: str, settings: Settings) -> TopUp | None:
    """Add trials until `parallelism` are active, `max_trials` are tried or no point is left; end the sweep
    once every trial has ended and none is left to try. None: another process is topping it up right now
    (whoever commits first wins; the loser's caller may try again to see what the winner left)."""
    sweep = get_sweep(session, sweep_id)
    if sweep is None or sweep.status != SweepStatus.RUNNING:
        return TopUp([], 0, None)
    # Claimed by a compare-and-set on its revision: on PostgreSQL the UPDATE holds the row until commit,
    # so a concurrent top-up waits, then finds the revision moved and gives way.
    claimed = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep.id, Sweep.revision == sweep.revision)
        .values(revision=sweep.revision + 1)
    )
    if claimed.rowcount != 1:
        return None
    spec = sweep_spec(sweep)
    records = [trial_record(trial, spec.objective) for trial in sweep.trials]
    active = sum(record.state == TrialState.RUNNING for record in records)
    created, refused = [], 0
    while active < spec.parallelism and not _tenant_is_full(session, sweep.tenant, settings):
        record = next_trial(spec, sweep.id, records)
        if record is None:
            break
        trial = SweepTrial(
            sweep_id=sweep.id,
            number=record.number,
            params=record.params,
            epoch_objectives={},
            system_attrs=record.system_attrs,
        )
        job_id = _trial_job(session, sweep, spec, trial, settings)
        if job_id is None:
            record.state, refused = TrialState.FAIL, refused + 1
        else:
            created.append(job_id)
            active += 1
        session.add(trial)
        sweep.trials.append(trial)
        records.append(record)
    ended = None
    if active == 0 and no_trials_left(spec, records):
        ended = _end(sweep, records)
    session.flush()
    return TopUp(created, refused, ended)


def _tenant_is_full(session: Session, tenant: str, settings: Settings) -> bool:
    # Trials count against the tenant's active trainings like jobs sent by hand; the sweep waits for room
    # (the next trial to end, or a recovery round, tops it up again) instead of refusing its points.
    active = jobs.count_active(session, tenant)
    return active > 0 and active + 1 > settings.max_active_jobs


def _trial_job(
    session: Session, sweep: Sweep, spec: SweepSpec, trial: SweepTrial, settings: Settings
) -> str | None:
    """The trial's job, queued, vetted like a submitted job; None (and the trial's `error`) if refused."""
    try:
        job_spec = spec.trial_spec(trial.params, trial.number)
        vetted = vet_spec(session, job_spec, sweep.tenant, settings)
    except SpecError as exc:
        trial.error = f"{'.'.join(str(part) for part in exc.loc)}: {exc.message}"
        return None
    if vetted.errors:
        trial.error = "; ".join(error["msg"] for error in vetted.errors)
        return None
    summary = asdict(vetted.summary)
    job = jobs.create_job(session, job_spec, summary=summary, tenant=sweep.tenant, kind=JobKind.TRIAL)
    trial.job_id = job.id
    trial.job = job
    return job.id


def _end(sweep: Sweep, records: list[TrialRecord]) -> SweepStatus:
    succeeded = any(record.state == TrialState.COMPLETE for record in records)
    sweep.status = SweepStatus.SUCCEEDED if succeeded else SweepStatus.FAILED
    sweep.error = None if succeeded else "no trial succeeded"
    sweep.finished_at = utcnow()
    return sweep.status


def trial_of_job(session: Session, job_id: str) -> SweepTrial | None:
    return session.scalar(select(SweepTrial).where(SweepTrial.job_id == job_id))


def record_trial_epoch(session: Session, job_id: str, epoch: int, metrics: dict[str, Any]) -> bool:
    """Keep a trial's objective at `epoch` (1-based) and answer whether its pruner stops it now."""
    trial = trial_of_job(session, job_id)
    if trial is None:
        return False
    sweep = get_sweep(session, trial.sweep_id)
    spec = sweep_spec(sweep)
    value = metrics.get(spec.objective)
    if value is None:
        return False
    # A new dict, not a change inside the old one: the JSON column sees only reassignment.
    trial.epoch_objectives = trial.epoch_objectives | {str(epoch): float(value)}
    if sweep.status != SweepStatus.RUNNING or spec.early_stopping is None:
        return False
    records = [trial_record(other, spec.objective) for other in sweep.trials]
    prune, trial.system_attrs = should_prune(spec, sweep.id, records, trial.number)
    return prune


def cancel_sweep(session: Session, sweep: Sweep) -> list[str]:
    """End the sweep as cancelled and cancel its active trials; answers the running ones' ids (their
    training processes are told through Redis, as a cancelled job's are)."""
    if sweep.status != SweepStatus.RUNNING:
        return []
    sweep.status, sweep.finished_at = SweepStatus.CANCELLED, utcnow()
    active = [trial.job_id for trial in sweep.trials if trial.job is not None and trial.job.status in ACTIVE]
    return jobs.cancel_jobs(session, active)


def running_sweep_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING)))


def sweep_of_job(session: Session, job: Job) -> str | None:
    trial = trial_of_job(session, job.id) if job.kind == JobKind.TRIAL else None
    return trial.sweep_id if trial is not None else None
