"""Ensembles of stored runs: create (evaluated on a worker), read, predict."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import submissions
from api.auth import current_tenant
from api.body_limit import read_body
from api.deps import ResourcesDep, SessionDep, TenantDep
from api.field_errors import invalid
from api.idempotency import IdempotencyKeyHeader
from api.limits import page_size
from api.pages import CursorQuery, bad_cursor_as_422
from api.resources import ApiResources
from api.schemas import EnsembleIn, EnsembleOut, EnsemblePage, PredictionOut
from models.ensemble import EnsemblePredictor, Member
from store import ensembles, pages
from store.artifacts import load_weights
from store.states import EnsembleStatus
from store.tables import Ensemble

router = APIRouter(prefix="/v1/ensembles", tags=["ensembles"], dependencies=[Depends(current_tenant)])

NPY_TYPES = ("application/x-npy", "application/octet-stream")
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "Raw inputs N×C×H×W at the dataset's pixel scale (any H×W: they are resized), as "
        'JSON {"inputs": [...]} or as a .npy file (application/x-npy) for large batches.',
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {"inputs": {"type": "array", "items": {}}},
                    "additionalProperties": False,
                }
            },
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


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


@router.get("/{ensemble_id}/weights", response_class=FileResponse)
def download_weights(ensemble_id: str, session: SessionDep, tenant: TenantDep) -> FileResponse:
    """The averaged network of a `weights` ensemble, as safetensors with the metadata that rebuilds it."""
    ensemble = _ensemble_or_404(session, ensemble_id, tenant)
    if ensemble.method != "weights":
        raise HTTPException(status.HTTP_409_CONFLICT, "only a weights ensemble is one network with weights")
    if ensemble.weights_path is None or not Path(ensemble.weights_path).is_file():
        raise HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id} is {ensemble.status}")
    return FileResponse(ensemble.weights_path, media_type="application/octet-stream")


@router.post("/{ensemble_id}/predict", response_model=PredictionOut, openapi_extra=PREDICT_BODY)
async def predict(
    ensemble_id: str, request: Request, resources: ResourcesDep, tenant: TenantDep
) -> PredictionOut:
    """Probabilities and labels of the ensemble for raw inputs, preprocessed as in training."""
    settings = resources.settings
    body = await read_body(request, settings.max_predict_bytes)
    inputs = _parse_inputs(body, request.headers.get("content-type", "application/json"))
    if len(inputs) > settings.max_predict_batch:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"{len(inputs)} inputs in one request; at most {settings.max_predict_batch}",
        )
    # Loading members and running the networks block: off the event loop.
    return await run_in_threadpool(_predict, resources, ensemble_id, inputs, tenant)


def _parse_inputs(body: bytes, content_type: str) -> np.ndarray:
    shape_error = "inputs must be an N×C×H×W array of numbers"
    if content_type.split(";")[0].strip() in NPY_TYPES:
        try:
            inputs = np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as exc:  # whatever the bytes are, they are not an .npy array
            raise invalid(("body",), "not a .npy file") from exc
    else:
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise invalid(("body",), "not JSON") from exc
        if not isinstance(document, dict) or set(document) != {"inputs"}:
            raise invalid(("body",), 'the body must be {"inputs": [...]}')
        try:
            inputs = np.asarray(document["inputs"], dtype=np.float32)
        except (ValueError, TypeError) as exc:  # ragged lists, strings, nulls
            raise invalid(("body", "inputs"), shape_error) from exc
    if inputs.ndim != 4 or inputs.dtype.kind not in "fiub" or 0 in inputs.shape:
        raise invalid(("body", "inputs"), f"{shape_error}, got shape {list(inputs.shape)}")
    if not np.isfinite(inputs).all():
        raise invalid(("body", "inputs"), "inputs must be finite numbers")
    return inputs


def _predict(resources: ApiResources, ensemble_id: str, inputs: np.ndarray, tenant: str) -> PredictionOut:
    with resources.sessions() as session:
        ensemble = _ensemble_or_404(session, ensemble_id, tenant)
        if ensemble.status == EnsembleStatus.FAILED:
            raise HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id} failed: {ensemble.error}")
        if ensemble.method == "weights" and ensemble.status != EnsembleStatus.READY:
            raise HTTPException(status.HTTP_409_CONFLICT, f"ensemble {ensemble_id} is still being averaged")
        predictor = resources.predictors.get(ensemble.id, lambda: _load_predictor(session, ensemble))
    try:
        x = predictor.preprocess(inputs)
    except ValueError as exc:
        raise invalid(("body", "inputs"), str(exc)) from exc
    probs = predictor.predict_proba(x)
    return PredictionOut(probs=probs.tolist(), labels=probs.argmax(1).tolist())


def _load_predictor(session: Session, ensemble: Ensemble) -> EnsemblePredictor:
    if ensemble.method == "weights":
        # Averaged (and batch-norm recomputed) once on the worker: one network, predicted as it is.
        return EnsemblePredictor([Member(*load_weights(Path(ensemble.weights_path)))], "mean_logits")
    sources = ensembles.resolve_members(session, ensemble.members)
    return EnsemblePredictor([Member(*source.load()) for source in sources], ensemble.method)
