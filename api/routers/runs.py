"""Runs: one trained model each, with its weights as a safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import FileResponse

from api.auth import current_tenant
from api.deps import SessionDep, TenantDep
from api.limits import page_size
from api.pages import CursorQuery, TagsQuery, bad_cursor_as_422
from api.schemas import RunOut, RunPage
from models.datasets import DATASETS
from models.presets import PRESETS
from store import jobs

router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[Depends(current_tenant)])

# The filters' choices, read from the definitions so that a new dataset or preset is listed with them.
DatasetName = Literal[tuple(DATASETS)]
Arch = Literal[(*PRESETS, jobs.CUSTOM_ARCH)]


@router.get("", response_model=RunPage)
def list_runs(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, page_size(20)],
    tag: TagsQuery,
    cursor: CursorQuery = None,
    sort: Annotated[
        Literal[tuple(jobs.RUN_ORDERS)],
        Query(description="created_at: newest first; test_acc: best first, runs without one last"),
    ] = "created_at",
    job_id: Annotated[
        str | None, Query(max_length=64, description="a job's runs; an ensemble job's: its members'")
    ] = None,
    dataset: Annotated[DatasetName | None, Query(description="the spec's dataset name")] = None,
    dataset_id: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{32}$", description="an uploaded dataset's id")
    ] = None,
    arch: Annotated[
        Arch | None, Query(description=f"a preset, or {jobs.CUSTOM_ARCH} for a layer list")
    ] = None,
) -> RunPage:
    """The tenant's trained models, newest first (or best first), filtered by their jobs."""
    with bad_cursor_as_422(cursor):
        page, next_cursor = jobs.list_runs(
            session,
            tenant=tenant,
            limit=limit,
            cursor=cursor,
            sort=sort,
            job_id=job_id,
            tags=tag,
            dataset=dataset,
            dataset_id=dataset_id,
            arch=arch,
        )
    return RunPage(items=[RunOut.of(run) for run in page], next_cursor=next_cursor)


def _run_or_404(session, run_id: str, tenant: str):
    run = jobs.get_run(session, run_id, tenant)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


@router.get("/{run_id}", response_model=RunOut)
def read_run(run_id: str, session: SessionDep, tenant: TenantDep) -> RunOut:
    return RunOut.of(_run_or_404(session, run_id, tenant))


@router.get("/{run_id}/weights", response_class=FileResponse)
def download_weights(run_id: str, session: SessionDep, tenant: TenantDep) -> FileResponse:
    path = Path(_run_or_404(session, run_id, tenant).weights_path)
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the weights of run {run_id} are missing")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{run_id}.safetensors")
