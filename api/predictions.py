"""Predictions of a stored network or ensemble: the request body, its limits, and the answer.

POST /v1/ensembles/{id}/predict and POST /v1/runs/{id}/predict take the same inputs and answer alike; each
route only finds its predictor (api/predictors.py keeps them loaded).
"""

from __future__ import annotations

import io
import json
from typing import Annotated

import numpy as np
from fastapi import HTTPException, Query, Request, status

from api.body_limit import read_body
from api.field_errors import invalid
from api.schemas import PredictionOut
from models.augment import Tta
from models.ensemble import EnsemblePredictor
from store.settings import Settings

# The `tta` query parameter of both predict routes; another value is a 422 at ["query", "tta"].
TtaQuery = Annotated[
    Tta | None,
    Query(description="test-time augmentation: flip averages each image's probabilities with its mirror's"),
]
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


async def read_inputs(request: Request, settings: Settings) -> np.ndarray:
    """The request's inputs, within max_predict_bytes and max_predict_batch (else 413), checked (else 422)."""
    body = await read_body(request, settings.max_predict_bytes)
    inputs = parse_inputs(body, request.headers.get("content-type", "application/json"))
    if len(inputs) > settings.max_predict_batch:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"{len(inputs)} inputs in one request; at most {settings.max_predict_batch}",
        )
    return inputs


def parse_inputs(body: bytes, content_type: str) -> np.ndarray:
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


def predict(predictor: EnsemblePredictor, inputs: np.ndarray, tta: Tta | None = None) -> PredictionOut:
    """Preprocessed as in training (a channel count the network does not take is a 422), then predicted,
    averaged over each image and its mirror with `tta` "flip"."""
    try:
        x = predictor.preprocess(inputs)
    except ValueError as exc:
        raise invalid(("body", "inputs"), str(exc)) from exc
    probs = predictor.predict_proba(x, tta=tta)
    return PredictionOut(probs=probs.tolist(), labels=probs.argmax(1).tolist())
