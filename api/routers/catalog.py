"""The catalog: every choice a job spec offers, generated from the spec's own definitions."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field

from api.auth import current_tenant
from api.deps import SettingsDep
from api.schemas import StoredObject
from models.catalog import catalog, dataset_availability

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


class DatasetChoice(Choice):
    """A dataset, selected by its `name` (here `type`), and whether this server can train on it now."""

    available: bool = Field(
        description="this server has its files (always, for one shipped, generated or uploaded)"
    )
    install: str | None = Field(
        description="where it is not available: how to install it (a Debian package, or files to put "
        "in the data directory)"
    )


class PresetDefaults(StoredObject):
    """What a job on the preset trains with where its spec leaves these out; the stored spec has them."""

    optimizer: dict[str, Any] = Field(description="the optimizer where the spec gives none")
    lr: dict[str, float] = Field(description="by optimizer type: the lr where the optimizer gives none")
    epochs: int = Field(description="training.epochs where the spec gives none")


class Preset(StoredObject):
    name: str
    description: str
    activation: str
    pooling: str
    default_init: str
    input_size: str
    options: dict[str, Param] = Field(description="the model options a preset takes")
    defaults: PresetDefaults


class CatalogOut(StoredObject):
    presets: list[Preset]
    optimizers: list[Choice]
    schedules: list[Choice]
    layers: list[Choice]
    datasets: list[DatasetChoice]
    training: dict[str, Param]
    regularization: dict[str, Param]
    ensemble: dict[str, Param]
    dropout_modes: list[str]
    activations: list[str]
    inits: list[str]
    sweep: dict[str, Param] = Field(description="a sweep's settings beside its base job and space")
    pruners: list[Choice] = Field(description="a sweep's early_stopping types, each with its knobs")


@lru_cache
def _cached_catalog(data_dir: Path | None) -> CatalogOut:
    return CatalogOut.model_validate(catalog(data_dir))


@router.get("", response_model=CatalogOut)
def read_catalog(settings: SettingsDep) -> CatalogOut:
    # The choices are fixed while the server runs; which dataset files it has is not (apt-get install
    # while it runs), so that part is looked up (a few file checks) on each request.
    cached = _cached_catalog(settings.data_dir)
    datasets = [d.model_copy(update=dataset_availability(d.type, settings.data_dir)) for d in cached.datasets]
    return cached.model_copy(update={"datasets": datasets})
