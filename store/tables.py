"""ORM tables: jobs and their tags, runs, curves, checkpoints, ensembles, sweeps and their trials, webhooks
and their secrets, API keys, datasets, idempotency."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from store.states import DeliveryStatus, EnsembleStatus, JobKind, JobStatus, SweepStatus


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class StateColumn(TypeDecorator):
    """A str enum in a VARCHAR(16): SQL holds the value, Python reads the member back.

    Written by hand because sqlalchemy.Enum stores member names, not values, unless configured at length,
    and would change the columns' types under the migrations. A value that is not a member (a typo in a
    query or an assignment) raises ValueError instead of matching nothing.
    """

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value, dialect):
        return None if value is None else self.enum(value).value

    def process_result_value(self, value, dialect):
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Job(Base):
    __tablename__ = "jobs"
    # Whom the dispatcher served last (store/scheduling.py): a tenant's latest dispatch, read off the index.
    __table_args__ = (Index("ix_jobs_tenant_dispatched_at", "tenant", "dispatched_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[JobStatus] = mapped_column(StateColumn(JobStatus), index=True, default=JobStatus.QUEUED)
    spec: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)  # params, FLOPs, shapes
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts given back unfinished because their worker was shutting down (SIGTERM): they were not the
    # job's fault, so they do not count toward max_attempts.
    handed_back: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(200))  # host:pid of the worker running it
    # TRAIN: one model trained by a worker. ENSEMBLE: several members, each a child TRAIN job
    # (parent_id, member), and an ensemble built from them once all have finished.
    kind: Mapped[JobKind] = mapped_column(
        StateColumn(JobKind), default=JobKind.TRAIN, server_default=JobKind.TRAIN.value
    )
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    member: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    strategy: Mapped[str | None] = mapped_column(String(16))  # how an ensemble's members were trained
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default", index=True)
    # spec.training.priority, here so that the dispatcher orders a tenant's waiting jobs in SQL.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the dispatcher sent the job to the broker (store/dispatch.py); null while it waits in SQL for a
    # training slot or its tenant's running limit. An ensemble's members are dispatched with it.
    dispatched_at: Mapped[datetime | None]

    runs: Mapped[list[Run]] = relationship(back_populates="job", order_by="Run.member")
    tags: Mapped[list[JobTag]] = relationship(order_by="JobTag.tag", cascade="all, delete-orphan")
    children: Mapped[list[Job]] = relationship(order_by="Job.member")


class JobTag(Base):
    """One of a job's tags (JobSpec.tags), a row each so that lists filter by tag on any database."""

    __tablename__ = "job_tags"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Run(Base):
    """One trained model: an ensemble job has one per member."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    member: Mapped[int] = mapped_column(Integer, default=0)
    seed: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    test_acc: Mapped[float | None] = mapped_column(Float)
    weights_path: Mapped[str] = mapped_column(Text)
    # Polyak or EMA weights of the same run (param_averaging), when the job asked for them.
    averaged_weights_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="runs")


class Ensemble(Base):
    """Stored runs (or their snapshots) combined into one predictor, and how well it does."""

    __tablename__ = "ensembles"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    method: Mapped[str] = mapped_column(String(16))
    # [{"run_id", "epoch" (a checkpoint snapshot) or null, "averaged": bool}], in the order given.
    members: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    status: Mapped[EnsembleStatus] = mapped_column(
        StateColumn(EnsembleStatus), default=EnsembleStatus.BUILDING
    )
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    weights_path: Mapped[str | None] = mapped_column(Text)  # method "weights": the averaged model
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default", index=True)


class Sweep(Base):
    """A hyperparameter search (POST /v1/sweeps): its request, and whether it is still running.

    Its trials are SweepTrial rows. Optuna decides what to try next and what to prune from a study rebuilt
    in memory from those rows each time (store/sweeps.py), so this schema holds the whole search.
    """

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(120))
    spec: Mapped[dict[str, Any]]  # the request as validated (models.sweeps.SweepSpec), base spec as sent
    status: Mapped[SweepStatus] = mapped_column(StateColumn(SweepStatus), default=SweepStatus.RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    # Bumped by every change to the set of trials: a compare-and-set on it lets only one of two processes
    # topping the sweep up at the same moment add trials, on SQLite and PostgreSQL alike.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]

    trials: Mapped[list[SweepTrial]] = relationship(
        order_by="SweepTrial.number", cascade="all, delete-orphan"
    )


class SweepTrial(Base):
    """One point of a sweep: its parameters and the training job that tries them.

    A point refused before it ran (its spec invalid, over a limit) has no job and says why in `error`.
    The trial's state and objective are its job's (status, metrics); it keeps the objective of each
    epoch as the job reported it (`epoch_objectives`), for the pruner.
    """

    __tablename__ = "sweep_trials"

    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)  # Optuna's trial number: 0, 1, ...
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    params: Mapped[dict[str, Any]]
    epoch_objectives: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"<epoch>": objective}
    system_attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what Optuna's sampler/pruner kept
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job | None] = relationship()


class CurvePoint(Base):
    """The loss curve, copied from Redis when a job ends so history outlives the stream."""

    __tablename__ = "curve_points"
    __table_args__ = (Index("ix_curve_points_job_seq", "job_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # order within the job
    stream_id: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    member: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One notification of a job's end to its notify_url, written with the change it reports (an outbox)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))  # job.succeeded, job.failed, job.cancelled
    payload: Mapped[dict[str, Any]]
    status: Mapped[DeliveryStatus] = mapped_column(
        StateColumn(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # attempts claimed by a sender so far
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    history: Mapped[list[WebhookAttempt]] = relationship(order_by="WebhookAttempt.attempt")


class WebhookAttempt(Base):
    """One POST of a delivery and what the receiver answered (or why there was no answer)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class WebhookSecret(Base):
    """A tenant's webhook signing secret (Standard Webhooks, `whsec_<base64>`).

    Kept in the clear: the worker signs with it, so a hash would not do. A rotated-out secret keeps
    signing beside the new one until `expires_at`, so receivers can switch without losing a delivery.
    """

    __tablename__ = "webhook_secrets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]  # null: the current secret


class ApiKey(Base):
    """A key to the API: shown once, kept only as a hash; it belongs to one tenant."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key's public part
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Dataset(Base):
    """An uploaded dataset (POST /v1/datasets): its file is <data_dir>/uploads/<id>.npz."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(120))
    n: Mapped[int] = mapped_column(Integer)  # samples
    input_shape: Mapped[list[int]] = mapped_column(JSON)  # C, H, W
    num_classes: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)  # of the .npz as uploaded
    sha256: Mapped[str] = mapped_column(String(64))  # of the .npz as uploaded
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class IdempotencyKey(Base):
    """The first answer to a POST that carried an Idempotency-Key, replayed to the same key and body."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # the route: "jobs", "ensembles"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))  # of the request body, canonical JSON
    status_code: Mapped[int] = mapped_column(Integer)
    location: Mapped[str] = mapped_column(String(200))
    response: Mapped[str] = mapped_column(Text)  # the answer's JSON body
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
