"""The catalog lists every choice with the schema's own defaults, bounds and choices, as JSON."""

import json
from functools import partial

from pydantic import TypeAdapter, ValidationError

from models.catalog import catalog
from models.cnn import ACTIVATIONS
from models.spec import (
    Adam,
    DatasetSpec,
    DropoutLayer,
    EnsembleSpec,
    Layer,
    ModelSpec,
    OptimizerSpec,
    RegularizationSpec,
    ScheduleSpec,
    StepSchedule,
    TrainingSpec,
)

UNIONS = {"optimizers": OptimizerSpec, "schedules": ScheduleSpec, "layers": Layer, "datasets": DatasetSpec}
BLOCKS = {"training": TrainingSpec, "regularization": RegularizationSpec, "ensemble": EnsembleSpec}


def forms(entries):
    """(validate, fixed fields, params) for every form a client could build from the catalog."""
    for key, union in UNIONS.items():
        discriminator = "name" if key == "datasets" else "type"
        for entry in entries[key]:
            yield TypeAdapter(union).validate_python, {discriminator: entry["type"]}, entry["params"]
    for key, cls in BLOCKS.items():
        yield cls.model_validate, {}, entries[key]
    for preset in entries["presets"]:
        yield ModelSpec.model_validate, {"arch": preset["name"]}, preset["options"]


def accepts(validate, fixed, params, name, value) -> bool:
    """Whether the spec takes `value` for `name`, the other required fields at their minimum."""
    # Required fields at their minimum; those without one (an upload's id) at a valid example.
    examples = {"id": "0" * 32}
    required = {
        n: p.get("minimum", examples.get(n)) for n, p in params.items() if p["required"] and n != name
    }
    try:
        validate({**fixed, **required, name: value})
    except ValidationError:
        return False
    return True


def fields(entries):
    """(accepts(value), param) for every parameter, nested ones (a momentum ramp) included."""
    pending = list(forms(entries))
    while pending:
        validate, fixed, params = pending.pop()
        for name, param in params.items():
            yield partial(accepts, validate, fixed, params, name), param
            if "params" in param:
                pending.append((partial(validate_nested, validate, fixed, name), {}, param["params"]))


def validate_nested(validate, fixed, name, value):
    return validate({**fixed, name: value})


def test_catalog_is_json_and_reads_defaults_from_the_schema():
    entries = json.loads(json.dumps(catalog()))
    optimizers = {o["type"]: o for o in entries["optimizers"]}
    assert set(optimizers) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    assert optimizers["adam"]["params"]["beta2"]["default"] == Adam.model_fields["beta2"].default
    assert "v = mu*v - lr*dx" in optimizers["momentum"]["description"]
    schedules = {s["type"]: s for s in entries["schedules"]}
    assert schedules["step"]["params"]["gamma"]["default"] == StepSchedule.model_fields["gamma"].default
    assert schedules["step"]["params"]["step_size"]["required"] is True
    assert {p["name"] for p in entries["presets"]} == {"lenet5", "alexnet"}
    assert {d["type"] for d in entries["datasets"]} == {
        "digits",
        "synthetic",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "upload",
    }
    assert entries["dropout_modes"] == ["inverted", "vanilla"]
    assert "none" in entries["activations"]


def test_ranges_and_choices_a_form_would_show():
    entries = catalog()
    layers = {entry["type"]: entry["params"] for entry in entries["layers"]}
    p = layers["dropout"]["p"]
    assert (p["type"], p["minimum"], p["exclusive_maximum"]) == ("number", 0, 1)
    assert p["default"] == DropoutLayer.model_fields["p"].default
    assert layers["activation"]["fn"]["choices"] == list(ACTIVATIONS)
    assert layers["conv"]["out_channels"]["required"] and layers["conv"]["out_channels"]["type"] == "integer"
    assert layers["maxpool"]["stride"]["nullable"] is True
    lr = {o["type"]: o["params"]["lr"] for o in entries["optimizers"]}["sgd"]
    assert lr["exclusive_minimum"] == 0 and "maximum" not in lr
    ramp = {o["type"]: o["params"] for o in entries["optimizers"]}["nesterov"]["momentum_ramp"]
    assert ramp["type"] == "object" and ramp["params"]["epochs"]["minimum"] == 1
    mnist = {d["type"]: d for d in entries["datasets"]}["mnist"]
    assert "never downloaded" in mnist["description"]
    assert mnist["params"]["test_fraction"]["default"] == 1.0
    assert entries["training"]["epochs"]["maximum"] == TrainingSpec.model_fields["epochs"].metadata[1].le
    assert entries["regularization"]["dropout_mode"]["choices"] == ["inverted", "vanilla"]
    presets = {p["name"]: p for p in entries["presets"]}
    assert presets["lenet5"]["options"]["activation"]["default"] == "tanh"
    assert presets["alexnet"]["options"]["activation"]["default"] == "relu"
    assert presets["alexnet"]["options"]["activation"]["choices"] == list(ACTIVATIONS)
    assert presets["lenet5"]["options"]["init"]["choices"] == entries["inits"]


def test_every_bound_in_the_catalog_is_the_one_validation_enforces():
    checked = 0
    for accepts_value, param in fields(catalog()):
        step = 1 if param["type"] == "integer" else 1e-6
        if "minimum" in param:
            assert accepts_value(param["minimum"]) and not accepts_value(param["minimum"] - step), param
        if "exclusive_minimum" in param:
            low = param["exclusive_minimum"]
            assert not accepts_value(low) and accepts_value(low + step), param
        if "maximum" in param:
            assert accepts_value(param["maximum"]) and not accepts_value(param["maximum"] + step), param
        if "exclusive_maximum" in param:
            high = param["exclusive_maximum"]
            assert not accepts_value(high) and accepts_value(high - step), param
        checked += sum(
            key in param for key in ("minimum", "exclusive_minimum", "maximum", "exclusive_maximum")
        )
    assert checked > 80


def test_every_choice_and_default_in_the_catalog_is_accepted():
    checked = 0
    for accepts_value, param in fields(catalog()):
        if not param["required"] and param["type"] != "object":
            assert accepts_value(param["default"]), param
        for choice in param.get("choices", []):
            assert accepts_value(choice), param
            checked += 1
        if "choices" in param:
            assert not accepts_value("not-in-the-catalog"), param
    assert checked > 30


def test_the_sweep_settings_and_pruners_are_the_sweep_specs_own():
    from models.sweep_spec import PRUNER_KNOBS, SweepSpec

    listed = catalog()
    assert listed["sweep"]["method"]["choices"] == ["grid", "random", "tpe"]
    assert listed["sweep"]["objective"]["default"] == "val_acc"
    pruners = {pruner["type"]: pruner for pruner in listed["pruners"]}
    assert list(pruners) == list(PRUNER_KNOBS)
    for kind, pruner in pruners.items():
        knobs = {name: param["default"] for name, param in pruner["params"].items()}
        assert knobs == PRUNER_KNOBS[kind] and pruner["description"], pruner
        base = {"dataset": {"name": "digits"}, "model": {"arch": "lenet5"}}
        space = {"optimizer.lr": {"choice": [0.1]}}
        stopping = {"type": kind} | {name: value for name, value in knobs.items() if value is not None}
        SweepSpec.model_validate({"base": base, "space": space, "early_stopping": stopping})
