"""Response bodies: what clients and dashboards read."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, field_serializer

from store.tables import Job, Run


class UtcModel(BaseModel):
    @field_serializer("*", when_used="json")
    def _utc(self, value: Any) -> Any:
        # SQLite returns naive datetimes; every stored time is UTC, so say so.
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


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
    metrics: dict[str, Any]
    test_acc: float | None
    weights_url: str
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
            created_at=run.created_at,
        )


class JobOut(UtcModel):
    id: str
    name: str
    status: str
    spec: dict[str, Any]
    summary: dict[str, Any]
    progress: Progress
    metrics: dict[str, Any]
    attempts: int
    error: str | None
    runs: list[RunOut]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, live_progress: dict[str, float] | None = None) -> JobOut:
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            spec=job.spec,
            summary=job.summary,
            progress=Progress(**(job.progress | (live_progress or {}))),
            metrics=job.metrics,
            attempts=job.attempts,
            error=job.error,
            runs=[RunOut.of(run) for run in job.runs],
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


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
