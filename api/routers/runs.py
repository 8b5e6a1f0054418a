"""Runs: one trained model each, with its weights as a safetensors file."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import FileResponse

from api.auth import current_tenant
from api.deps import SessionDep, TenantDep
from api.schemas import RunOut
from store import jobs

router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[Depends(current_tenant)])


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
