"""Runs: one trained model each, with its weights as a safetensors file; its predictions; its ONNX export."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import predictions
from api.auth import current_tenant
from api.deps import ResourcesDep, SessionDep, TenantDep
from api.downloads import DOWNLOAD_RESPONSES, download
from api.limits import page_size
from api.pages import CursorQuery, TagsQuery, bad_cursor_as_422
from api.predictions import PREDICT_BODY, TtaQuery
from api.predictors import run_key
from api.resources import ApiResources
from api.schemas import PredictionOut, RunOut, RunPage
from models.augment import Tta
from models.datasets import DATASETS
from models.ensemble import EnsemblePredictor, Member
from models.export import onnx_bytes
from models.presets import PRESETS
from models.spec import SpecError
from store import ensembles, jobs

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


@router.get(
    "/{run_id}/weights",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
)
def download_weights(
    run_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep
) -> StreamingResponse:
    weights = resources.store.at(_run_or_404(session, run_id, tenant).weights_path)
    missing = HTTPException(status.HTTP_404_NOT_FOUND, f"the weights of run {run_id} are missing")
    return download(weights, missing=missing, filename=f"{run_id}.safetensors")


# ---------------------------------------------------------------- predict and export


@router.post("/{run_id}/predict", response_model=PredictionOut, openapi_extra=PREDICT_BODY)
async def predict(
    run_id: str,
    request: Request,
    resources: ResourcesDep,
    tenant: TenantDep,
    averaged: bool = Query(False, description="the run's Polyak/EMA weights (param_averaging) instead"),
    tta: TtaQuery = None,
) -> PredictionOut:
    """Probabilities and labels of the run's network for raw inputs, preprocessed as in training."""
    inputs = await predictions.read_inputs(request, resources.settings)
    # Loading the weights and running the network block: off the event loop.
    return await run_in_threadpool(_predict, resources, run_id, averaged, inputs, tenant, tta)


def _predict(
    resources: ApiResources, run_id: str, averaged: bool, inputs: np.ndarray, tenant: str, tta: Tta | None
) -> PredictionOut:
    with resources.sessions() as session:
        member = _member_loader(session, resources, run_id, averaged, tenant)
        # As a one-member ensemble of its logits: the same preprocessing and code path as an ensemble's.
        predictor = resources.predictors.get(
            run_key(run_id, averaged), lambda: EnsemblePredictor([member()], "mean_logits")
        )
    return predictions.predict(predictor, inputs, tta)


def _member_loader(
    session: Session, resources: ApiResources, run_id: str, averaged: bool, tenant: str
) -> Callable[[], Member]:
    """The run's network as a Member, loaded when called; 404 for no such run, 409 for no averaged weights."""
    run = _run_or_404(session, run_id, tenant)
    ref = ensembles.member_ref(run.id, averaged=averaged)
    try:
        [source] = ensembles.resolve_members(session, [ref], resources.store)
    except SpecError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from exc
    if not source.tensors.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the weights of run {run_id} are missing")
    return lambda: Member(*source.load())


@router.get(
    "/{run_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/onnx": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def export_run(
    run_id: str,
    resources: ResourcesDep,
    tenant: TenantDep,
    format: Literal["onnx"] = Query("onnx", description="the file format; onnx is the one there is"),
    averaged: bool = Query(False, description="the run's Polyak/EMA weights (param_averaging) instead"),
) -> Response:
    """The run's network as an ONNX file: N×C×H×W inputs at the trained size and pixel scale, normalised in
    the graph, N×classes probabilities out; onnxruntime answers what POST /v1/runs/{id}/predict does."""
    # Tracing and converting the network take seconds of CPU: off the event loop.
    content = await run_in_threadpool(_export_onnx, resources, run_id, averaged, tenant)
    headers = {"Content-Disposition": f'attachment; filename="{run_id}.onnx"'}
    return Response(content, media_type="application/onnx", headers=headers)


def _export_onnx(resources: ApiResources, run_id: str, averaged: bool, tenant: str) -> bytes:
    with resources.sessions() as session:
        member = _member_loader(session, resources, run_id, averaged, tenant)
    return onnx_bytes(member())
