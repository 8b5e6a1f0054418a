"""The catalog: every choice a job spec offers, generated from the spec's own definitions."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends

from api.auth import current_tenant
from models.catalog import catalog

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], dependencies=[Depends(current_tenant)])


@lru_cache
def _cached_catalog() -> dict[str, Any]:
    return catalog()


@router.get("")
def read_catalog() -> dict[str, Any]:
    return _cached_catalog()
