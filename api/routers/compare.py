"""Several jobs' curves on shared x axes, for overlays such as "SGD vs momentum vs Nesterov"."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.auth import current_tenant
from api.curves import read_job_points
from api.deps import RedisDep, SessionDep, TenantDep
from api.downsample import downsample_curve
from api.field_errors import invalid
from store import jobs
from store.states import JobStatus
from store.tables import Job

router = APIRouter(prefix="/v1/compare", tags=["compare"], dependencies=[Depends(current_tenant)])

MIN_JOBS, MAX_JOBS = 2, 16
Axis = Literal["step", "epoch"]


class LegendSpec(BaseModel):
    """What tells the compared jobs apart in a legend."""

    optimizer: str
    lr: float
    momentum: float | None = None
    lr_schedule: str | None = None
    arch: str | None = Field(None, description="the preset; null for a model given as layers")
    batch_size: int | None = None


class ComparedJob(BaseModel):
    id: str
    name: str
    status: JobStatus
    spec: LegendSpec

    @classmethod
    def of(cls, job: Job) -> ComparedJob:
        spec = job.spec
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            spec=LegendSpec(
                optimizer=spec["optimizer"]["type"],
                lr=spec["optimizer"]["lr"],
                momentum=spec["optimizer"].get("momentum"),
                lr_schedule=spec.get("lr_schedule", {}).get("type"),
                arch=spec.get("model", {}).get("arch"),
                batch_size=spec.get("training", {}).get("batch_size"),
            ),
        )


class AlignedSeries(BaseModel):
    x: list[int | float] = Field(description="the union of the jobs' x values, ascending")
    values: dict[str, list[float | None]] = Field(
        description="per job id, one value per x; null where that job has no point there"
    )


class CompareOut(BaseModel):
    x: Axis
    jobs: list[ComparedJob]
    series: dict[str, AlignedSeries] = Field(description="per curve name (train_loss, val_acc, ...)")


def _parse_ids(raw: str) -> list[str]:
    ids = [part.strip() for part in raw.split(",")]
    if any(not i for i in ids):
        raise invalid(("query", "jobs"), "job ids are separated by single commas, none of them empty", raw)
    if not MIN_JOBS <= len(ids) <= MAX_JOBS:
        raise invalid(("query", "jobs"), f"give {MIN_JOBS} to {MAX_JOBS} job ids, not {len(ids)}", raw)
    if len(set(ids)) != len(ids):
        raise invalid(("query", "jobs"), "each job may be named once", raw)
    return ids


def _parse_names(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [part.strip() for part in raw.split(",")]
    if any(not name for name in names):
        message = "curve names are separated by single commas, none of them empty"
        raise invalid(("query", "names"), message, raw)
    return list(dict.fromkeys(names))


def align(curves: dict[str, list[dict[str, Any]]], names: list[str], axis: Axis) -> dict[str, AlignedSeries]:
    """Per curve name: the sorted union of the jobs' x values and each job's value at each (None where
    it has none). `names` come first, in their order; names met in the points follow."""
    by_name: dict[str, dict[str, dict[float, float]]] = {name: {} for name in names}
    for job_id, points in curves.items():
        for point in points:
            # A resumed attempt may repeat x values: the later point, in stream order, wins.
            by_name.setdefault(point["name"], {}).setdefault(job_id, {})[point[axis]] = point["value"]
    aligned = {}
    for name, per_job in by_name.items():
        xs = sorted({x for values in per_job.values() for x in values})
        aligned[name] = AlignedSeries(
            x=xs, values={job_id: [per_job.get(job_id, {}).get(x) for x in xs] for job_id in curves}
        )
    return aligned


@router.get("", response_model=CompareOut)
def compare_jobs(
    session: SessionDep,
    client: RedisDep,
    tenant: TenantDep,
    job_ids: str = Query(
        ..., alias="jobs", description=f"{MIN_JOBS} to {MAX_JOBS} comma-separated job ids", examples=["a1,b2"]
    ),
    names: str | None = Query(None, description="comma-separated curve names; default all of them"),
    x: Axis = Query("epoch", description="the shared x axis: optimizer steps or (fractional) epochs"),
    max_points: int | None = Query(
        None,
        ge=4,
        le=100_000,
        description="at most this many points per job and series before aligning: first, last, and each "
        "bucket's min and max (as in /v1/jobs/{id}/metrics)",
    ),
) -> CompareOut:
    ids, wanted = _parse_ids(job_ids), _parse_names(names)
    found = {job_id: jobs.get_job(session, job_id, tenant) for job_id in ids}
    missing = [job_id for job_id, job in found.items() if job is None]
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {', '.join(missing)} not found")
    curves = {}
    for job_id, job in found.items():
        points = read_job_points(session, client, job)
        if wanted is not None:
            points = [p for p in points if p["name"] in wanted]
        curves[job_id] = downsample_curve(points, max_points) if max_points is not None else points
    return CompareOut(
        x=x, jobs=[ComparedJob.of(job) for job in found.values()], series=align(curves, wanted or [], x)
    )
