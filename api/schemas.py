"""Response bodies: what clients and dashboards read."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_serializer, model_validator

from api.pages import Page
from models.cnn import ModelSummary
from models.spec import JobSpec
from models.sweeps import best_trial, importances
from store import sweeps
from store.ensembles import member_ref
from store.states import EnsembleStatus, JobKind, JobStatus, SweepStatus
from store.tables import Ensemble, Job, Run, Sweep, SweepTrial


class UtcModel(BaseModel):
    @field_serializer("*", when_used="json")
    def _utc(self, value: Any) -> Any:
        # SQLite returns naive datetimes; every stored time is UTC, so say so.
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class StoredObject(BaseModel):
    """A JSON object that other code writes (a row's metrics, the catalog), typed: the keys it writes are
    described, any other is kept (extra="allow": a key added there is answered before it is described
    here), and it is answered as written, without the keys it lacks (a queued job's metrics stay {}, not a
    dozen nulls)."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: Any) -> Any:
        return {key: value for key, value in handler(self).items() if key in self.model_fields_set}


class EngineReport(StoredObject):
    """How the training steps ran (worker/engine.py: EngineFeatures), and why torch.compile was or was not."""

    channels_last: bool
    bf16_autocast: bool
    compiled: bool
    vectorized: bool = False
    compile_reason: str = Field(
        "", description="the spec's choice, or what training.compile auto measured and concluded"
    )


class RunMetrics(StoredObject):
    """One model's numbers: the latest epoch's while it trains, then the kept epoch's (training.keep: the
    last or the best) and the test split's (worker/training.py)."""

    train_loss: float | None = Field(None, description="mean training loss over the latest epoch's steps")
    val_loss: float | None = None
    val_acc: float | None = None
    best_val_acc: float | None = Field(None, description="the best val_acc of any epoch so far")
    lr: float | None = Field(None, description="the learning rate at the latest epoch's end")
    best_epoch: int | None = Field(
        None,
        description="with keep best or early stopping: the epoch (from 1) best by the early-stopping metric, "
        "else by val_acc",
    )
    stopped_epoch: int | None = Field(
        None, description="with early stopping: the last epoch trained (epochs, if it never stopped early)"
    )
    test_loss: float | None = None
    test_acc: float | None = Field(None, description="on the test split, once finished")
    averaged_test_loss: float | None = Field(None, description="of the Polyak or EMA weights, if kept")
    averaged_test_acc: float | None = Field(None, description="of the Polyak or EMA weights, if kept")
    engine: EngineReport | None = Field(None, description="how the steps ran, once finished")


class JobMetrics(RunMetrics):
    """A job's numbers: its training's (RunMetrics), an ensemble job's ensemble, and what went missing."""

    dropped_points: int | None = Field(None, description="curve points Redis could not take while training")
    curve_lost: bool | None = Field(None, description="the curve could not be copied into SQL at the end")
    ensemble_accuracy: float | None = Field(None, description="an ensemble job's, on the test split")
    mean_member_accuracy: float | None = None
    gain: float | None = Field(None, description="ensemble_accuracy - mean_member_accuracy")
    ensemble_nll: float | None = None
    member_accuracies: list[float] | None = None


class Progress(BaseModel):
    epoch: float = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    fraction: float = 0.0
    eta_s: float | None = None


class RunOut(UtcModel):
    id: str
    job_id: str
    member: int
    seed: int
    metrics: RunMetrics
    test_acc: float | None
    weights_url: str
    tags: list[str] = Field(default_factory=list, description="its job's tags")
    created_at: datetime

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            job_id=run.job_id,
            member=run.member,
            seed=run.seed,
            metrics=run.metrics,
            test_acc=run.test_acc,
            weights_url=f"/v1/runs/{run.id}/weights",
            tags=[tag.tag for tag in run.job.tags],
            created_at=run.created_at,
        )


class MemberOut(BaseModel):
    """One member of an ensemble job: itself a job, readable at /v1/jobs/{id}."""

    id: str
    member: int
    status: JobStatus
    progress: Progress
    metrics: JobMetrics
    attempts: int
    error: str | None


class JobOut(UtcModel):
    id: str
    name: str
    kind: JobKind = Field(
        description='"train" (one model), "ensemble" (members, then an ensemble) or "trial" (a sweep\'s)'
    )
    status: JobStatus
    tags: list[str] = Field(default_factory=list, description="the spec's tags, sorted")
    spec: JobSpec = Field(description="the job's spec as accepted, defaults filled in")
    summary: ModelSummary | None = Field(description="the network's size, as checked against the limits")
    progress: Progress
    metrics: JobMetrics
    attempts: int
    error: str | None
    runs: list[RunOut]
    parent_id: str | None = Field(None, description="the ensemble job this job is a member of")
    member: int = 0
    strategy: str | None = Field(None, description="how an ensemble job's members train")
    members: list[MemberOut] = Field(default_factory=list, description="an ensemble job's members")
    ensemble_id: str | None = Field(
        None, description="the ensemble an ensemble job built, or a snapshot job's (ensemble.snapshots)"
    )
    created_at: datetime
    dispatched_at: datetime | None = Field(
        None,
        description="when the job was sent to the workers; null while it is queued and waits in SQL for a "
        "training slot, or for its tenant's running limit (max_running_per_tenant)",
    )
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(
        cls,
        job: Job,
        live_progress: dict[str, float] | None = None,
        *,
        runs: list[Run] | None = None,
        members: list[MemberOut] = (),
        ensemble_id: str | None = None,
    ) -> JobOut:
        return cls(
            id=job.id,
            name=job.name,
            kind=job.kind,
            status=job.status,
            tags=[tag.tag for tag in job.tags],
            spec=job.spec,
            summary=job.summary or None,
            progress=Progress(**(job.progress | (live_progress or {}))),
            metrics=job.metrics,
            attempts=job.attempts,
            error=job.error,
            runs=[RunOut.of(run) for run in (job.runs if runs is None else runs)],
            parent_id=job.parent_id,
            member=job.member,
            strategy=job.strategy,
            members=list(members),
            ensemble_id=ensemble_id,
            created_at=job.created_at,
            dispatched_at=job.dispatched_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(Page[JobOut]):
    pass


class CurvePoint(BaseModel):
    id: str
    step: int
    epoch: float
    name: str
    value: float
    attempt: int


class CurveOut(BaseModel):
    points: list[CurvePoint]
    last_id: str | None


# ---------------------------------------------------------------- ensembles


class MemberRefIn(BaseModel):
    """A stored model: a run's final weights, its averaged weights, or its checkpoint after an epoch."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, max_length=64)
    epoch: int | None = Field(None, ge=1, description="a snapshot: the run's checkpoint after this epoch")
    averaged: bool = Field(False, description="the run's Polyak or EMA weights (param_averaging)")


class EnsembleIn(BaseModel):
    """Stored runs by id (`members`), or chosen from a sweep's succeeded trials (`from_sweep`)."""

    model_config = ConfigDict(extra="forbid")

    members: list[str | MemberRefIn] | None = Field(
        None, min_length=1, max_length=64, description="run ids, or {run_id, epoch | averaged} objects"
    )
    from_sweep: str | None = Field(
        None, min_length=1, max_length=64, description="a sweep whose succeeded trials are the candidates"
    )
    select: Literal["top_k", "greedy"] = Field(
        "greedy",
        description="with from_sweep: the `size` trials best by the sweep's objective (top_k), or Caruana "
        "et al. 2004 forward selection with replacement on the validation split (greedy: a trial may be "
        "chosen more than once, and weighs as often); never on the test split",
    )
    size: int = Field(5, ge=1, le=64, description="with from_sweep: how many members to choose")
    method: Literal["mean_probs", "mean_logits", "weights"] = Field(
        "mean_probs",
        description="mean_probs: average of the members' softmax outputs; mean_logits: softmax of the "
        "average logits; weights: one network with the members' averaged parameters (same architecture "
        "only; batch-norm statistics recomputed)",
    )
    name: str | None = Field(None, min_length=1, max_length=120)

    @model_validator(mode="after")
    def _members_or_a_sweep(self) -> EnsembleIn:
        if (self.members is None) == (self.from_sweep is None):
            raise ValueError("give either members (run ids) or from_sweep (a sweep's id)")
        if self.from_sweep is not None and self.method == "weights":
            raise ValueError("a sweep's trials are independent runs: average their outputs, not weights")
        return self

    def refs(self) -> list[dict[str, Any]]:
        """The members given by id (from_sweep: see store/ensemble_selection.py)."""
        return [member_ref(m) if isinstance(m, str) else member_ref(**m.model_dump()) for m in self.members]


class BestSingle(StoredObject):
    """The member best on the validation split, scored on the test split beside the ensemble."""

    run_id: str
    member: int = Field(description="its index among the members (the first, if its run is repeated)")
    val_acc: float = Field(description="its run's, of the kept weights: what chose it (never the test split)")
    accuracy: float = Field(description="on the test split, as member_accuracies[member]")
    gain: float = Field(description="ensemble_accuracy - accuracy")


class EnsembleEvaluation(StoredObject):
    """The ensemble and its members on the test split of member 0's dataset (models/ensemble.py)."""

    method: str
    test_samples: int
    member_accuracies: list[float]
    mean_member_accuracy: float
    ensemble_accuracy: float
    gain: float = Field(description="ensemble_accuracy - mean_member_accuracy")
    member_nll: list[float | None] = Field(description="mean negative log-likelihood of each member")
    mean_member_nll: float | None
    ensemble_nll: float | None
    warnings: list[str] | None = Field(None, description="what makes the result doubtful, if anything")
    best_single: BestSingle | None = Field(
        None, description="for members of more than one run: the best single run by validation accuracy"
    )


class EnsembleOut(UtcModel):
    id: str
    name: str
    method: str
    members: list[MemberRefIn] = Field(description="the stored models, as {run_id, epoch, averaged}")
    job_id: str | None
    status: EnsembleStatus = Field(description="building (being evaluated on a worker), ready or failed")
    evaluation: EnsembleEvaluation | None = Field(None, description="once ready")
    error: str | None
    predict_url: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, ensemble: Ensemble) -> EnsembleOut:
        return cls(
            id=ensemble.id,
            name=ensemble.name,
            method=ensemble.method,
            members=ensemble.members,
            job_id=ensemble.job_id,
            status=ensemble.status,
            evaluation=ensemble.evaluation,
            error=ensemble.error,
            predict_url=f"/v1/ensembles/{ensemble.id}/predict",
            created_at=ensemble.created_at,
            finished_at=ensemble.finished_at,
        )


class PredictionOut(BaseModel):
    probs: list[list[float]] = Field(description="N×classes")
    labels: list[int]


# ---------------------------------------------------------------- pages (api/pages.py)


class RunPage(Page[RunOut]):
    pass


class EnsemblePage(Page[EnsembleOut]):
    pass


# ---------------------------------------------------------------- sweeps


class TrialOut(BaseModel):
    """One point of a sweep and the job that tries it (readable at /v1/jobs/{job_id})."""

    number: int
    job_id: str | None = Field(description="null for a point refused before it ran (see error)")
    params: dict[str, Any] = Field(description="the value at each of the space's paths")
    status: str = Field(
        description="the job's status (pruned: stopped early by the sweep); refused: refused before it ran; "
        "deleted: its job was deleted since"
    )
    objective: float | None = Field(
        description="the sweep's objective (val_acc or val_loss): of the kept weights once succeeded, of "
        "the latest epoch before that and when pruned"
    )
    epochs: int = Field(description="the epochs the trial has reported")
    error: str | None

    @classmethod
    def of(cls, trial: SweepTrial, objective: str) -> TrialOut:
        return cls(
            number=trial.number,
            job_id=trial.job_id,
            params=trial.params,
            status=sweeps.trial_status(trial),
            objective=sweeps.trial_objective(trial, objective),
            epochs=sweeps.trial_epochs(trial),
            error=trial.error if trial.job is None else trial.job.error,
        )


class SweepOut(UtcModel):
    id: str
    name: str
    status: SweepStatus
    method: str
    objective: str
    max_trials: int
    parallelism: int
    spec: dict[str, Any] = Field(description="the request as sent")
    trials: list[TrialOut]
    trial_epochs: int = Field(description="the epochs all trials trained, together: what the sweep cost")
    best: TrialOut | None = Field(description="the best succeeded trial by the objective")
    importances: dict[str, float] | None = Field(
        None, description="each parameter's importance (Optuna's fANOVA), once two trials have succeeded"
    )
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, sweep: Sweep, *, with_importances: bool = False) -> SweepOut:
        spec = sweeps.sweep_spec(sweep)
        trials = [TrialOut.of(trial, spec.objective) for trial in sweep.trials]
        records = [sweeps.trial_record(trial, spec.objective) for trial in sweep.trials]
        best = best_trial(spec, records)
        return cls(
            id=sweep.id,
            name=sweep.name,
            status=sweep.status,
            method=spec.method,
            objective=spec.objective,
            max_trials=spec.max_trials,
            parallelism=spec.parallelism,
            spec=sweep.spec,
            trials=trials,
            trial_epochs=sum(trial.epochs for trial in trials),
            best=trials[best.number] if best is not None else None,
            importances=importances(spec, sweep.id, records) if with_importances else None,
            error=sweep.error,
            created_at=sweep.created_at,
            finished_at=sweep.finished_at,
        )


class SweepPage(Page[SweepOut]):
    pass
