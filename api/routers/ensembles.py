"""Ensembles of stored runs: create (evaluated on a worker), read, predict, delete."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import predictions, submissions
from api.auth import current_tenant
from api.deps import ResourcesDep, SessionDep, TenantDep
from api.downloads import DOWNLOAD_RESPONSES, download
from api.idempotency import IdempotencyKeyHeader
from api.limits import page_size
from api.pages import CursorQuery, bad_cursor_as_422
from api.predictions import PREDICT_BODY, TtaQuery
from api.resources import ApiResources
from api.schemas import EnsembleIn, EnsembleOut, EnsemblePage, PredictionOut
from models.augment import Tta
from models.ensemble import EnsemblePredictor, Member
from models.spec import SpecError
from store import deletion, ensembles, pages
from store.artifacts import load_weights
from store.objects import ArtifactStore
from store.states import EnsembleStatus
from store.tables import Ensemble

router = APIRouter(prefix="/v1/ensembles", tags=["ensembles"], dependencies=[Depends(current_tenant)])


def _ensemble_or_404(session: Session, ensemble_id: str, tenant: str) -> Ensemble:
    ensemble = ensembles.get_ensemble(session, ensemble_id, tenant)
    if ensemble is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ensemble {ensemble_id} not found")
    return ensemble


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EnsembleOut)
def create_ensemble(
    body: EnsembleIn,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> EnsembleOut | Response:
    """Combine stored runs; the members are checked now, the evaluation runs on a worker (status building)."""
    submitted = submissions.submit_ensemble(session, resources, tenant, body, idempotency_key)
    if isinstance(submitted, Response):
        return submitted  # the first answer to this Idempotency-Key
    response.headers["Location"] = submitted.location
    return submitted.answer


ENSEMBLE_ORDER = pages.Sort("created_at", (Ensemble.created_at, Ensemble.id))


@router.get("", response_model=EnsemblePage)
def list_ensembles(
    session: SessionDep, tenant: TenantDep, limit: Annotated[int, page_size(20)], cursor: CursorQuery = None
) -> EnsemblePage:
    """The tenant's ensembles, newest first."""
    query = select(Ensemble).where(Ensemble.tenant == tenant)
    with bad_cursor_as_422(cursor):
        page, next_cursor = pages.page(
            session, query, listing="ensembles", sort=ENSEMBLE_ORDER, limit=limit, cursor=cursor
        )
    return EnsemblePage(items=[EnsembleOut.of(ensemble) for ensemble in page], next_cursor=next_cursor)


@router.get("/{ensemble_id}", response_model=EnsembleOut)
def read_ensemble(ensemble_id: str, session: SessionDep, tenant: TenantDep) -> EnsembleOut:
    return EnsembleOut.of(_ensemble_or_404(session, ensemble_id, tenant))


@router.get(
    "/{ensemble_id}/weights",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
)
def download_weights(
    ensemble_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep
) -> StreamingResponse:
    """The averaged network of a `weights` ensemble, as safetensors with the metadata that rebuilds it."""
    ensemble = _ensemble_or_404(session, ensemble_id, tenant)
    if ensemble.method != "weights":
        raise HTTPException(status.HTTP_409_CONFLICT, "only a weights ensemble is one network with weights")
    not_ready = HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id} is {ensemble.status}")
    if ensemble.weights_path is None:
        raise not_ready
    return download(resources.store.at(ensemble.weights_path), missing=not_ready)


@router.post("/{ensemble_id}/predict", response_model=PredictionOut, openapi_extra=PREDICT_BODY)
async def predict(
    ensemble_id: str, request: Request, resources: ResourcesDep, tenant: TenantDep, tta: TtaQuery = None
) -> PredictionOut:
    """Probabilities and labels of the ensemble for raw inputs, preprocessed as in training."""
    inputs = await predictions.read_inputs(request, resources.settings)
    # Loading members and running the networks block: off the event loop.
    return await run_in_threadpool(_predict, resources, ensemble_id, inputs, tenant, tta)


def _predict(
    resources: ApiResources, ensemble_id: str, inputs: np.ndarray, tenant: str, tta: Tta | None
) -> PredictionOut:
    with resources.sessions() as session:
        ensemble = _ensemble_or_404(session, ensemble_id, tenant)
        if ensemble.status == EnsembleStatus.FAILED:
            raise HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id} failed: {ensemble.error}")
        if ensemble.method == "weights" and ensemble.status != EnsembleStatus.READY:
            raise HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id} is still being averaged")
        try:
            predictor = resources.predictors.get(
                ensemble.id, lambda: _load_predictor(session, resources.store, ensemble)
            )
        except SpecError as exc:  # a member's run deleted while this ensemble was being created
            raise HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id}: {exc.message}") from exc
    return predictions.predict(predictor, inputs, tta)


def _load_predictor(session: Session, store: ArtifactStore, ensemble: Ensemble) -> EnsemblePredictor:
    if ensemble.method == "weights":
        # Averaged (and batch-norm recomputed) once on the worker: one network, predicted as it is.
        return EnsemblePredictor([Member(*load_weights(store.at(ensemble.weights_path)))], "mean_logits")
    sources = ensembles.resolve_members(session, ensemble.members, store)
    return EnsemblePredictor([Member(*source.load()) for source in sources], ensemble.method)


@router.delete("/{ensemble_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_ensemble(
    ensemble_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep
) -> Response:
    """Delete the ensemble and its averaged weights (its member runs stay); 409 while it is building."""
    ensemble = _ensemble_or_404(session, ensemble_id, tenant)
    try:
        removal = deletion.delete_ensemble(session, ensemble, resources.store)
    except deletion.Refused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from exc
    session.commit()
    removal.finish()  # the file after the row: a crash between leaves only an orphan file
    resources.predictors.forget(ensemble_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
