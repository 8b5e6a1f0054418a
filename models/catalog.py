"""What a job can choose, with defaults read from the spec models (so no number is written twice)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, get_args

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from models.cnn import ACTIVATIONS
from models.datasets import DATASETS
from models.optim import SCHEDULE_FORMULAS, UPDATE_RULES
from models.presets import PRESETS
from models.spec import DropoutMode, Init, Layer, OptimizerSpec, ScheduleSpec


def catalog() -> dict[str, Any]:
    """Presets, optimizers, schedules, dropout modes, datasets and layer types, JSON-ready."""
    return {
        "presets": [asdict(p) for p in PRESETS.values()],
        "optimizers": [_describe(cls, UPDATE_RULES) for cls in _members(OptimizerSpec)],
        "schedules": [_describe(cls, SCHEDULE_FORMULAS) for cls in _members(ScheduleSpec)],
        "layers": [_describe(cls) for cls in _members(Layer)],
        "datasets": [_describe(entry.spec, {name: entry.description}) for name, entry in DATASETS.items()],
        "dropout_modes": list(get_args(DropoutMode)),
        "activations": list(ACTIVATIONS),
        "inits": list(get_args(Init)),
    }


def _members(annotated_union: Any) -> tuple[type[BaseModel], ...]:
    """The models of an Annotated[Union[...], discriminator] type."""
    return get_args(get_args(annotated_union)[0])


def _describe(cls: type[BaseModel], descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """{"type", "description", "params": {name: {"default", "required", "description"}}} of a spec model."""
    fields = dict(cls.model_fields)
    kind = fields.pop("type", None) or fields.pop("name")
    params = {
        name: {
            "default": None if field.default is PydanticUndefined else field.default,
            "required": field.is_required(),
            "description": field.description,
        }
        for name, field in fields.items()
    }
    name = get_args(kind.annotation)[0]
    description = (descriptions or {}).get(name) or (cls.__doc__ or "").strip() or None
    return {"type": name, "description": description, "params": params}
