"""The catalog: every choice a job spec offers, generated from the spec's own definitions."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field

from api.auth import current_tenant
from api.schemas import StoredObject
from models.catalog import catalog

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], dependencies=[Depends(current_tenant)])


class Param(StoredObject):
    """One field of a spec block, as a form needs it (models/catalog.py)."""

    type: str = Field(description="its JSON type: string, number, integer, boolean, array or object")
    nullable: bool
    default: Any = Field(description="null where it has none, or where it is made afresh for each job")
    required: bool
    description: str | None
    minimum: int | float | None = None
    exclusive_minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_maximum: int | float | None = None
    choices: list[Any] | None = Field(None, description="the values it takes, where they are a fixed set")
    params: dict[str, Param] | None = Field(None, description="an object's own fields")


class Choice(StoredObject):
    """An optimizer, schedule, layer or dataset: the `type` (or dataset `name`) that selects it."""

    type: str
    description: str | None
    params: dict[str, Param]


class Preset(StoredObject):
    name: str
    description: str
    activation: str
    pooling: str
    default_init: str
    input_size: str
    options: dict[str, Param] = Field(description="the model options a preset takes")


class CatalogOut(StoredObject):
    presets: list[Preset]
    optimizers: list[Choice]
    schedules: list[Choice]
    layers: list[Choice]
    datasets: list[Choice]
    training: dict[str, Param]
    regularization: dict[str, Param]
    ensemble: dict[str, Param]
    dropout_modes: list[str]
    activations: list[str]
    inits: list[str]


@lru_cache
def _cached_catalog() -> CatalogOut:
    return CatalogOut.model_validate(catalog())


@router.get("", response_model=CatalogOut)
def read_catalog() -> CatalogOut:
    return _cached_catalog()
