"""What a job can choose, read from the spec models (so no number is written twice), enough to build a form.

Every parameter lists its type, default, bounds (minimum, exclusive_minimum, maximum, exclusive_maximum)
and, for a fixed set of values, its choices. Each dataset also says whether this server has it.
"""

from __future__ import annotations

import types
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from models.cnn import ACTIVATIONS
from models.datasets import DATASETS, availability
from models.optim import SCHEDULE_FORMULAS, UPDATE_RULES
from models.presets import PRESETS, PresetInfo
from models.spec import (
    DropoutMode,
    EnsembleSpec,
    Init,
    JobSpec,
    Layer,
    ModelSpec,
    OptimizerSpec,
    RegularizationSpec,
    ResourcesSpec,
    ScheduleSpec,
    TrainingSpec,
)
from models.sweep_spec import PRUNER_KNOBS, SweepEarlyStopping, SweepSpec

# pydantic's constraint names, as JSON Schema calls them (in snake case, like the rest of the API).
BOUNDS = {"ge": "minimum", "gt": "exclusive_minimum", "le": "maximum", "lt": "exclusive_maximum"}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
PRESET_OPTIONS = ("activation", "init", "batchnorm")
# A sweep's own settings, beside its base job and its space (which a form builds from the job's blocks).
SWEEP_SETTINGS = ("name", "method", "max_trials", "parallelism", "objective", "seed")


def catalog(data_dir: Path | None = None) -> dict[str, Any]:
    """Presets, optimizers, schedules, layers, datasets and the job's other blocks, JSON-ready.

    `data_dir` (settings.data_dir) is where the datasets read from files are looked for."""
    return {
        "presets": [_describe_preset(p) for p in PRESETS.values()],
        "optimizers": [_describe(cls, UPDATE_RULES) for cls in _members(OptimizerSpec)],
        "schedules": [_describe(cls, SCHEDULE_FORMULAS) for cls in _members(ScheduleSpec)],
        "layers": [_describe(cls) for cls in _members(Layer)],
        "datasets": [
            _describe(entry.spec, {name: entry.description}) | dataset_availability(name, data_dir)
            for name, entry in DATASETS.items()
        ],
        "training": _params(TrainingSpec),
        "regularization": _params(RegularizationSpec),
        "ensemble": _params(EnsembleSpec),
        "resources": _params(ResourcesSpec),
        "dropout_modes": list(get_args(DropoutMode)),
        "activations": list(ACTIVATIONS),
        "inits": list(get_args(Init)),
        "sweep": {name: _param(SweepSpec.model_fields[name]) for name in SWEEP_SETTINGS},
        "pruners": _describe_pruners(),
    }


def _describe_pruners() -> list[dict[str, Any]]:
    """Each early-stopping type of a sweep as a kind with its own knobs, their defaults filled in (the
    spec resolves them in a validator, so its fields default to None); its description is its part of
    the type's ("median: ...; asha: ...")."""
    knobs = _params(SweepEarlyStopping)
    kind = knobs.pop("type")
    about = dict(part.split(": ", 1) for part in kind["description"].split("; "))
    return [
        {
            "type": name,
            "description": about.get(name),
            "params": {knob: knobs[knob] | {"default": value} for knob, value in PRUNER_KNOBS[name].items()},
        }
        for name in kind["choices"]
    ]


def dataset_availability(name: str, data_dir: Path | None) -> dict[str, Any]:
    """{"available": bool, "install": how to install it, or None}: the catalog's part that a server's
    files decide (a package installed while it runs changes it)."""
    return availability(name, data_dir)._asdict()


def _members(annotated_union: Any) -> tuple[type[BaseModel], ...]:
    """The models of an Annotated[Union[...], discriminator] type."""
    return get_args(get_args(annotated_union)[0])


def _describe(cls: type[BaseModel], descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """{"type", "description", "params"} of a spec model; "type" is its discriminator's value."""
    params = _params(cls)
    kind = params.pop("type", None) or params.pop("name")
    name = kind["choices"][0]
    description = (descriptions or {}).get(name) or (cls.__doc__ or "").strip() or None
    return {"type": name, "description": description, "params": params}


def _describe_preset(preset: PresetInfo) -> dict[str, Any]:
    """The preset, the model options it takes (an unset activation means the preset's own) and its
    defaults."""
    fields = ModelSpec.model_fields
    options = {name: _param(fields[name]) for name in PRESET_OPTIONS}
    options["activation"]["default"] = preset.activation
    return {**asdict(preset), "options": options, "defaults": _preset_defaults(preset.name)}


def _preset_defaults(arch: str) -> dict[str, Any]:
    """What a job on the preset trains with where its spec says nothing, read from the spec as validation
    resolves it: the optimizer, each optimizer type's lr and the epochs."""

    def resolved(**parts: Any) -> JobSpec:
        return JobSpec.model_validate({"dataset": {"name": "digits"}, "model": {"arch": arch}, **parts})

    minimal = resolved()
    kinds = [get_args(cls.model_fields["type"].annotation)[0] for cls in _members(OptimizerSpec)]
    return {
        "optimizer": minimal.optimizer.model_dump(mode="json"),
        "lr": {kind: resolved(optimizer={"type": kind}).optimizer.lr for kind in kinds},
        "epochs": minimal.training.epochs,
    }


def _params(cls: type[BaseModel]) -> dict[str, dict[str, Any]]:
    return {name: _param(field) for name, field in cls.model_fields.items()}


def _param(field: FieldInfo) -> dict[str, Any]:
    """One field as a form needs it: type, nullable, default, required, description, bounds, choices."""
    options = [a for a in _union_args(field.annotation) if a is not type(None)]
    param: dict[str, Any] = {
        "type": _json_type(options[0]),
        "nullable": len(options) < len(_union_args(field.annotation)),
        "default": None if field.default is PydanticUndefined else field.default,
        "required": field.is_required(),
        "description": field.description,
    }
    for constraint in field.metadata:  # annotated_types.Ge(ge=0), Lt(lt=1), ...
        param |= {key: getattr(constraint, attr) for attr, key in BOUNDS.items() if hasattr(constraint, attr)}
    choices = [value for a in options if get_origin(a) is Literal for value in get_args(a)]
    if choices and bool in options:  # training.compile: "auto", true or false
        choices += [True, False]
    if choices:
        param["choices"] = choices
    if isinstance(options[0], type) and issubclass(options[0], BaseModel):
        param["params"] = _params(options[0])
    return param


def _union_args(annotation: Any) -> tuple[Any, ...]:
    return get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)


def _json_type(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        annotation = type(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return JSON_TYPES[get_origin(annotation) or annotation]
